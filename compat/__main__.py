"""``python -m compat``: run the version matrix and write results/compat/compat.{md,json}.

Usually run as ``nox -s compat [-- OPTIONS]``; ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compat import report
from compat.matrix import Cell, all_cells, custom_cell, matrix_notes, newer_releases
from compat.run import DEFAULT_CAPACITY_ARGS, DEFAULT_PYTEST_ARGS, ROOT, run_cell
from harness import RedisServer, ServiceError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nox -s compat --",
        description="Install each Django / channels / channels-redis / redis-py combination in "
        "a fresh virtualenv and run the compat-marked tests on both Redis layers.",
    )
    parser.add_argument("--list", action="store_true", help="print the cell names and exit")
    parser.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="run the cells whose name matches (repeatable), e.g. 'Django5.2-*-redis8'",
    )
    parser.add_argument(
        "--cell",
        action="append",
        metavar="REQUIREMENTS",
        help="run a combination outside the matrix instead, e.g. "
        "'Django~=4.2.0 channels~=4.2.0 channels-redis~=4.2.0 redis~=4.0' (repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where compat.md, compat.json and the cell logs go (default results/compat, "
        "or results/compat-selected when --only or --cell narrows the run)",
    )
    parser.add_argument(
        "--pytest-args",
        default=shlex.join(DEFAULT_PYTEST_ARGS),
        help="what each cell passes to pytest (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="longest one cell's tests may run before the cell is red (default %(default)s)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter the cells' virtualenvs are made from (default: this one)",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="after each cell's tests, a short InMemory capacity search in the cell's "
        "virtualenv (python -m load capacity): the table gains the cell's deliveries/s and "
        "server CPU µs per delivery (about 70 s more per cell)",
    )
    parser.add_argument(
        "--capacity-args",
        default=shlex.join(DEFAULT_CAPACITY_ARGS),
        help="what --capacity passes to `python -m load capacity` (default: %(default)s)",
    )
    parser.add_argument(
        "--no-newer-check",
        action="store_true",
        help="skip asking the index whether a newer series of a package is out",
    )
    return parser.parse_args(argv)


def find_uv() -> str | None:
    """The uv installed beside this interpreter (as nox's session does), else uv on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return find_uv_bin()


def select_cells(args: argparse.Namespace) -> list[Cell]:
    if args.cell:
        return [custom_cell(spec.split()) for spec in args.cell]
    cells = all_cells()
    if args.only:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.name, g) for g in args.only)]
    return cells


def run_matrix(
    cells: list[Cell], args: argparse.Namespace, *, uv: str, redis_url: str, redis_origin: str
) -> int:
    """Run ``cells`` one after another (they would compete for the CPU the load smoke
    measures), rewriting the report after each; 0 when every cell passed."""
    narrowed = bool(args.only or args.cell)
    out_dir = args.out or ROOT / "results" / ("compat-selected" if narrowed else "compat")
    log_root = out_dir / "cells"
    pytest_args = tuple(shlex.split(args.pytest_args))
    capacity_args = tuple(shlex.split(args.capacity_args)) if args.capacity else None
    started = time.monotonic()
    meta: dict[str, Any] = {
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": subprocess.run(
            [args.python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip(),
        "platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "uv": subprocess.run(
            [uv, "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip(),
        "pytest_args": list(pytest_args),
        "capacity_args": list(capacity_args) if capacity_args is not None else None,
        "redis": redis_origin,
        "cells_planned": len(cells),
        "wall_s": 0.0,
        "log_root": os.path.relpath(log_root, ROOT),
        "notes": ([] if args.cell else matrix_notes())
        + ([] if args.no_newer_check else newer_releases(args.python)),
    }
    for note in meta["notes"]:
        print(f"note: {note}", flush=True)

    results = []
    for number, cell in enumerate(cells, 1):
        print(f"[{number}/{len(cells)}] {cell.name} ...", end=" ", flush=True)
        result = run_cell(
            cell,
            uv=uv,
            python=args.python,
            redis_url=redis_url,
            venv_root=ROOT / ".nox" / "compat-cells",
            log_root=log_root,
            pytest_args=pytest_args,
            test_timeout_s=args.timeout,
            capacity_args=capacity_args,
        )
        results.append(result)
        print(
            f"{report.MARK[result.outcome]} in {result.install_s + result.test_s:.0f} s"
            + (f": {result.reason}" if result.reason else f"; {report.delivery_text(result)}")
            + (f"; capacity {report.capacity_text(result)}" if capacity_args is not None else ""),
            flush=True,
        )
        meta["wall_s"] = round(time.monotonic() - started, 1)
        # Rewritten after every cell, so an interrupted run still leaves a true partial table.
        report.write(results, meta, out_dir)

    failed = sum(not r.passed for r in results)
    print(
        f"{len(results) - failed} of {len(results)} cells passed in {meta['wall_s'] / 60:.1f} min; "
        f"table: {os.path.relpath(out_dir / 'compat.md')}",
        flush=True,
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cells = select_cells(args)
    except ValueError as error:  # a --cell that no one can install
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(cell.name for cell in cells))
        return 0
    if not cells:
        print(f"error: no cell matches {args.only}; see --list", file=sys.stderr)
        return 2
    uv = find_uv()
    if uv is None:
        print("error: uv not found: run `nox -s compat`, or `pip install uv`", file=sys.stderr)
        return 2
    # One Redis for the whole matrix: $REDIS_URL (CI's service container) or a throw-away
    # redis-server. Each cell's REDIS_URL is this one plus the cell's URL parameters.
    existing = os.environ.get("REDIS_URL")
    if existing:
        return run_matrix(cells, args, uv=uv, redis_url=existing, redis_origin="$REDIS_URL")
    try:
        redis = RedisServer.start()
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with redis:
        origin = "a redis-server started for the run (services.RedisServer)"
        return run_matrix(cells, args, uv=uv, redis_url=redis.url, redis_origin=origin)


if __name__ == "__main__":
    sys.exit(main())
