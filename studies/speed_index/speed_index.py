"""EXPERIMENT: does dividing a capacity by the machine speed index (``harness.machine``)
make figures from differently loaded or differently sized machines agree better?

There is no second machine here, so the script makes "other machines" out of this one:

- ``quiet``: nothing else started;
- ``quarter``: a process beside the search burning a quarter of one core (5 ms of every
  20 ms), the disturbance the contended threshold is set at;
- ``burner``: a process beside it burning a whole core, unpinned;
- ``one-core``: the search and a whole-core burner both pinned to CPU 0 with ``taskset``
  (a machine with one core, shared).

Each condition runs ``python -m load capacity --layers inmemory --repeat N`` (short
steps) and prints, per condition, the median capacity, the median speed index, their
ratio, the median other_cpu_cores of the steps and whether the searches were contended;
then the spread (max/min) of capacity and of capacity ÷ speed index across conditions.

    flock /tmp/harness-heavy.lock python studies/speed_index/speed_index.py --out /tmp/speed
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEARCH = ["--layers", "inmemory", "--users", "20", "--rooms", "4", "--rate", "4",
          "--settle", "1", "--duration", "2", "--drain", "1", "--ramp-steps", "5"]  # fmt: skip
BURN_FOR_S = 900  # a burner ends by itself after this, whatever happens to this script
FULL = f"import time\nend = time.monotonic() + {BURN_FOR_S}\nwhile time.monotonic() < end: pass"
QUARTER = (
    f"import time\nend = time.monotonic() + {BURN_FOR_S}\n"
    "while time.monotonic() < end:\n"
    "    busy_until = time.monotonic() + 0.005\n"
    "    while time.monotonic() < busy_until: pass\n"
    "    time.sleep(0.015)\n"
)
CONDITIONS = {
    "quiet": (None, []),
    "quarter": (QUARTER, []),
    "burner": (FULL, []),
    "one-core": (FULL, ["taskset", "-c", "0"]),
}


def run(name: str, out: Path, repeat: int) -> dict:
    burn, prefix = CONDITIONS[name]
    burner = subprocess.Popen([*prefix, sys.executable, "-c", burn]) if burn else None
    try:
        command = [*prefix, sys.executable, "-m", "load", "capacity", *SEARCH,
                   "--repeat", str(repeat), "--out", str(out / name)]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    summary = json.loads((out / name / "summary.json").read_text())
    capacities = [e["deliveries_per_s"] or 0.0 for e in summary["capacity_repeats"]]
    machine = summary["harness"]["machine"]
    speeds = [statistics.mean([r["before"], r["after"]]) for r in machine["runs"]]
    others = [r["other_cpu_cores"] for r in summary["runs"] if r["other_cpu_cores"] is not None]
    ratios = [c / s for c, s in zip(capacities, speeds, strict=True)]
    return {
        "condition": name,
        "capacities": capacities,
        "speed_indexes": [round(s) for s in speeds],
        "ratios": [round(r, 4) for r in ratios],
        "capacity": statistics.median(capacities),
        "speed_index": round(statistics.median(speeds)),
        "ratio": round(statistics.median(ratios), 4),
        "other_cpu_cores_median": round(statistics.median(others), 2) if others else None,
        "contended": [e["contended"] for e in summary["capacity_repeats"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    rows = [run(name, args.out, args.repeat) for name in args.conditions.split(",")]
    for row in rows:
        print(json.dumps(row))
    for key in ("capacity", "ratio"):
        values = [row[key] for row in rows if row[key]]
        print(f"spread of {key} across conditions (max/min): {max(values) / min(values):.2f}")
    (args.out / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
