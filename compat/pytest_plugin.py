"""Collects the load summaries of a cell's tests: loaded by `python -m compat` into each
cell's pytest (``-p compat.pytest_plugin``), never by a plain pytest run.

After each compat-marked test, every ``summary.json`` the test left under its ``tmp_path``
(where ``python -m load run --out`` writes) is copied to
``$COMPAT_RESULTS_DIR/<test name>/summary.json``, where the report reads the delivery ratio.
So a load smoke test needs nothing beyond writing its output under ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator
from pathlib import Path

import pytest

from compat import RESULTS_DIR_VARIABLE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    results_dir = os.environ.get(RESULTS_DIR_VARIABLE)
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    # After the call, failed or not: a red cell's delivery ratio is part of its story.
    if call.when == "call" and results_dir and tmp_path and item.get_closest_marker("compat"):
        target = Path(results_dir) / re.sub(r"[^\w.\[\]-]+", "_", item.name)
        for summary in sorted(Path(tmp_path).rglob("summary.json")):
            relative = summary.parent.relative_to(tmp_path)
            destination = target / relative / "summary.json"
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(summary, destination)
    return report
