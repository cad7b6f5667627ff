"""An earlier command's summary.json, read back. Standard library only: the compat
runner (compat/run.py) reads its cells' capacity summaries without the harness's packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_capacity_summary(path: Path, *, what: str) -> list[dict[str, Any]]:
    """The ``capacity`` entries of the summary.json of a ``python -m load capacity`` at
    ``path``. ValueError says, in one line naming ``what`` the file is for (e.g. "the
    baseline"), why it cannot be read."""
    try:
        summary = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8 text"
        raise ValueError(f"{what} {path} is not JSON ({reason})") from None
    entries = summary.get("capacity") if isinstance(summary, dict) else None
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise ValueError(
            f"{what} {path} has no capacity entries: give the summary.json of an earlier "
            "`python -m load capacity`"
        )
    return entries
