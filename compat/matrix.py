"""Which version combinations `nox -s compat` checks, and what each one installs.

A cell pins one release series of each package under test (``Django~=4.2.0`` is the newest
4.2.x, ``redis~=5.0`` the newest 5.x: what a user who pins a series gets) and leaves every
other dependency, the test tools included, to the resolver, inside pyproject.toml's ranges.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Django 6 needs Python 3.12, beyond the Python this matrix runs on; redis-py runs from
# pyproject.toml's floor (5) to the newest major on PyPI when this was written (8).
# `python -m compat` warns in the report when a newer series of any axis is released.
AXES: dict[str, tuple[str, ...]] = {
    "Django": ("4.2", "5.2"),
    # 4.1 is the last series without the per-event thread hop 4.2 added to consumers'
    # dispatch; with `--capacity` its cells show what that hop costs.
    "channels": ("4.1", "4.2", "4.3"),
    "channels-redis": ("4.2", "4.3"),
    "redis": ("5", "6", "7", "8"),
}

# Combinations no one can install, left out of the matrix rather than shown red forever:
# the series they pin, and the reason the report gives.
UNINSTALLABLE: tuple[tuple[Mapping[str, str], str], ...] = (
    (
        {"channels": "4.1", "channels-redis": "4.3"},
        "channels-redis 4.3 requires channels >= 4.2.2",
    ),
)

# Dependencies of the project that some cells install without, because they do not admit
# the cell's pins: the series they apply to, the packages left out, and why. The layers
# those packages provide are then missing in the cell (its tests use the Redis layers).
LEFT_OUT: tuple[tuple[Mapping[str, str], tuple[str, ...], str], ...] = (
    ({"channels": "4.1"}, ("channels-nats",), "channels-nats 0.6.1 requires channels >= 4.2.1"),
    (
        {"channels": "4.1"},
        ("channels-valkey",),
        "channels-valkey 0.3.0 requires channels >= 4.2.2",
    ),
    ({"channels": "4.1"}, ("channels-lite",), "channels-lite 0.4.0 requires channels >= 4.3.2"),
    ({"channels": "4.2"}, ("channels-lite",), "channels-lite 0.4.0 requires channels >= 4.3.2"),
)
# The layer (the `layer` fixture's id) each left-out package provides: a cell without the
# package deselects that layer's tests, which could only fail on the missing import.
LAYER_OF_PACKAGE = {"channels-nats": "nats", "channels-postgres": "postgres",
                    "channels-rabbitmq": "rabbitmq", "channels-redis": "redis",
                    "channels-valkey": "valkey", "channels-lite": "sqlite"}  # fmt: skip

# A cell's name joins package and series: Django4.2-channels4.3-channels-redis4.2-redis6.
PACKAGES = tuple(AXES)


@dataclass(frozen=True)
class Cell:
    """One combination: a name, its series per package and the requirements it installs.
    (A combination that needs configuration to work is fixed in the app, for every user,
    as REDIS_POOL_OPTIONS in app/mysite/environment.py was for redis-py 8.)"""

    name: str
    series: Mapping[str, str]
    requirements: tuple[str, ...]
    # pyproject.toml's dependencies this cell installs without (see LEFT_OUT).
    without: tuple[str, ...] = ()


def series_requirement(package: str, series: str) -> str:
    """``Django~=4.2.0`` (any 4.2.x) for "4.2"; ``redis~=5.0`` (any 5.x) for "5"."""
    return f"{package}~={series}.0"


def pytest_args_for(cell: Cell, pytest_args: tuple[str, ...]) -> tuple[str, ...]:
    """``pytest_args`` with the tests of layers the cell lacks deselected: its ``-k``
    expression (pytest keeps only the last ``-k``) gains ``and not <layer>``."""
    layers = [LAYER_OF_PACKAGE[p] for p in cell.without if p in LAYER_OF_PACKAGE]
    if not layers:
        return pytest_args
    extra = " and ".join(f"not {layer}" for layer in layers)
    args = list(pytest_args)
    if "-k" in args:
        index = len(args) - 1 - args[::-1].index("-k")
        args[index + 1] = f"({args[index + 1]}) and {extra}"
    else:
        args += ["-k", extra]
    return tuple(args)


def _applies(rule: Mapping[str, str], series: Mapping[str, str]) -> bool:
    return all(series.get(package) == wanted for package, wanted in rule.items())


def make_cell(series: Mapping[str, str]) -> Cell:
    """The cell for one series of each package."""
    requirements = tuple(series_requirement(package, series[package]) for package in PACKAGES)
    name = "-".join(f"{package}{series[package]}" for package in PACKAGES)
    return Cell(name, dict(series), requirements, _left_out(series))


def _left_out(series: Mapping[str, str]) -> tuple[str, ...]:
    """The LEFT_OUT packages a cell of these series installs without."""
    return tuple(
        package for rule, packages, _ in LEFT_OUT if _applies(rule, series) for package in packages
    )


def uninstallable(series: Mapping[str, str]) -> str | None:
    """Why no one can install this combination, or None when it can be."""
    return next((why for rule, why in UNINSTALLABLE if _applies(rule, series)), None)


def all_cells() -> list[Cell]:
    """Every installable combination of AXES, Django varying slowest and redis-py fastest."""
    combinations = (
        dict(zip(PACKAGES, combination, strict=True))
        for combination in itertools.product(*AXES.values())
    )
    return [make_cell(series) for series in combinations if uninstallable(series) is None]


def matrix_notes() -> list[str]:
    """What the matrix leaves out, and why, for the report."""
    notes = [f"not in the matrix: {_rule_text(rule)} ({why})" for rule, why in UNINSTALLABLE]
    notes += [
        f"{_rule_text(rule)} cells install the project without {', '.join(packages)} ({why})"
        for rule, packages, why in LEFT_OUT
    ]
    return notes


def _rule_text(rule: Mapping[str, str]) -> str:
    return " with ".join(f"{package} {series}" for package, series in rule.items())


def project_requirements(pyproject: Path, *, without: Iterable[str] = ()) -> list[str]:
    """pyproject.toml's dependencies and its ``test`` extra, less the packages ``without``
    names: what a cell with LEFT_OUT packages installs instead of the whole project."""
    # Imported here: tomllib is Python 3.11+, and only cells with LEFT_OUT packages need it.
    import tomllib

    left_out = {_normalized(package) for package in without}
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return [r for r in requirements if _normalized(_requirement_name(r)) not in left_out]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=~!;@]", requirement.strip(), maxsplit=1)[0]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def custom_cell(requirements: Iterable[str]) -> Cell:
    """A cell outside the matrix, from requirement strings such as ``redis~=4.0``: to try
    one combination by hand (it is not part of the grid, only of the cell list).

    The matrix's rules hold for it as for a named cell, by the series its requirements pin
    (``pinned_series``): it installs without the LEFT_OUT packages of those series, and a
    combination no one can install (UNINSTALLABLE) is refused with ValueError."""
    requirements = tuple(requirements)
    name = "custom-" + re.sub(r"[^A-Za-z0-9.]+", "_", "-".join(requirements)).strip("_")
    series = pinned_series(requirements)
    why = uninstallable(series)
    if why is not None:
        raise ValueError(f"the cell {' '.join(requirements)!r} cannot be installed: {why}")
    return Cell(name[:100], {}, requirements, _left_out(series))


def pinned_series(requirements: Iterable[str]) -> dict[str, str]:
    """The series of each axis that ``requirements`` pin to a single one, in the axis's
    own depth: ``channels~=4.1.0`` and ``channels==4.1.2`` pin channels 4.1, ``redis~=6.0``
    pins redis 6. A range (``channels>=4.1``, ``channels~=4.1``) may admit several series
    and pins none."""
    axes = {_normalized(package): package for package in PACKAGES}
    series = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9][\w.-]*)\s*(~=|==)\s*(\d+(?:\.\d+)*)\s*", requirement)
        if match is None or _normalized(match[1]) not in axes:
            continue
        package = axes[_normalized(match[1])]
        depth = len(AXES[package][0].split("."))
        parts = match[3].split(".")
        # ~=4.1.0 admits 4.1.*, its last component free; ==4.1.2 admits itself alone.
        fixed = parts[:-1] if match[2] == "~=" else parts
        if len(fixed) >= depth:
            series[package] = ".".join(fixed[:depth])
    return series


def newest_release(package: str, python: str = sys.executable) -> str:
    """The newest release of ``package`` installable on ``python``, as ``pip index`` sees it;
    raises LookupError with pip's last line when the index cannot be asked."""
    try:
        completed = subprocess.run(
            [python, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LookupError("pip index versions did not answer within 60 s") from None
    match = re.search(rf"^{re.escape(package)} \(([^)]+)\)", completed.stdout, re.I | re.M)
    if completed.returncode != 0 or not match:
        raise LookupError((completed.stderr.strip().splitlines() or ["no output"])[-1])
    return match[1]


def newer_releases(python: str = sys.executable) -> list[str]:
    """One line per axis whose newest release (for this Python) is beyond the matrix, and
    one per package that could not be looked up (never silently "nothing newer")."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(AXES)) as pool:
        lookups = {package: pool.submit(newest_release, package, python) for package in AXES}
    notes = []
    for package, lookup in lookups.items():
        try:
            newest = lookup.result()
        except LookupError as error:
            notes.append(f"could not look up the newest {package}: {error}")
            continue
        covered = max(_version_key(series) for series in AXES[package])
        # Compare as many components as the axis uses: redis "8" covers every 8.x.
        if _version_key(newest)[: len(covered)] > covered:
            notes.append(
                f"{package} {newest} is released and the matrix stops at "
                f"{AXES[package][-1]}: add its series to AXES in compat/matrix.py"
            )
    return notes


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])
