"""load/ is split by the process that runs the code: ``core`` (pure, imported by both),
``inlocust`` (runs inside Locust, which patches the standard library with gevent),
``commands`` (``python -m load``) and ``reporting``. Importing Locust or gevent into
``python -m load`` would patch nothing but could change how its threads and sockets
behave, so the rule is checked here rather than left to docstrings."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

from load.tests.helpers import ROOT

OUTSIDE_LOCUST = ("load.core", "load.commands", "load.reporting")
LOCUST_SIDE = ("gevent", "locust")


def modules_of(package: str) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    return [f"{package}.{info.name}" for info in pkgutil.iter_modules([str(folder)])]


def imported_after(modules: list[str]) -> set[str]:
    """The top-level packages in ``sys.modules`` of a fresh interpreter that imported
    ``modules`` (a subprocess: this one may have imported anything already)."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'app'}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("package", OUTSIDE_LOCUST)
def test_code_outside_locust_never_imports_gevent_or_locust(package: str) -> None:
    modules = modules_of(package)
    assert modules, f"{package} has no modules: the layout changed"
    assert not imported_after(modules) & set(LOCUST_SIDE)


def test_the_locust_side_does_import_gevent() -> None:
    # The positive control: the check above sees gevent when it is there.
    assert "gevent" in imported_after(modules_of("load.inlocust"))


def test_the_app_never_names_the_load_harness_or_the_studies() -> None:
    # (Its tests use the fixtures of harness/, the servers every test suite here uses.)
    named = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in (ROOT / "app").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(word in line for word in ("load.", "load/", "studies"))
    ]
    assert named == []
