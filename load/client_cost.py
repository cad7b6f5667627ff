"""What the load client costs: its CPU µs per delivery at 3,000 deliveries/s (issue #8).

    flock /tmp/harness-heavy.lock python -m load.client_cost                 # this client, 3 runs
    flock /tmp/harness-heavy.lock python -m load.client_cost --compare main  # main's client too

One InMemory Daphne (``services.ChatServer``) serves every run. Each run is the fanout
plan (60 users in 6 rooms of 10, 5 msg/s each: 3,000 deliveries/s; 1 s settle, 10 s
measured) driven by headless Locust, with ``load.probe`` (10 sockets in a room of their
own, 1 msg/s) sending over the same seconds. Per run:

* ``client_us_per_delivery``: user + sys CPU of the Locust load process(es) over the
  measured window, divided by the deliveries of that window (the harness's own
  ``client_cpu_us_per_delivery``);
* ``p50_ratio``: the harness's median latency over the probe's, same server, same seconds.

``--compare REV`` exports that git revision of this repository to a temporary directory and
runs its client too, alternating (this, REV, this, REV, ...), so both see the same machine
state. Prints a table with medians, and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from harness import ChatServer
from load.commands.locust_run import KILL_AFTER_S, LOCUSTFILE, ROOT, locust_command
from load.core.plan import Plan, Shape, build_plan
from load.core.stats import Tally, median_of_known, summarize
from load.reporting.record import harness_info

SHAPE = Shape(users=60, rooms=6, rate=5.0)  # 6 rooms x 10 members x 10 msg/s x 5 = 3,000/s
PROBE_USERS = 10
# The probe starts sending this long after the harness's first send (Locust and the
# probe start together; the harness connects first) and stops this long before its end.
PROBE_MARGIN_S = 1.5


def export_revision(revision: str, into: Path) -> Path:
    """A copy of the repository at ``revision`` (``git archive``), to run its client."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _commit(revision: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", revision], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def run_client(plan: Plan, root: Path, run_dir: Path) -> dict[str, Any]:
    """Headless Locust on ``root``'s locustfile, the probe beside it; the run's figures."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "chatload-result.json"
    command = locust_command(plan, run_dir, results_file)
    command[command.index(str(LOCUSTFILE))] = str(root / "load" / "locustfile.py")
    probe_command = [
        sys.executable, "-m", "load.probe", "--target", plan.targets[0],
        "--users", str(PROBE_USERS), "--rate", "1",
        "--warmup", str(plan.connect_s + plan.settle_s + PROBE_MARGIN_S),
        "--duration", str(plan.duration_s - 2 * PROBE_MARGIN_S),
    ]  # fmt: skip
    with (run_dir / "locust.log").open("wb") as log:
        locust = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            probe = subprocess.run(
                probe_command, cwd=ROOT, capture_output=True, text=True, check=True,
                timeout=plan.total_s + 60,
            )  # fmt: skip
            locust.wait(timeout=plan.total_s + KILL_AFTER_S)
        finally:
            if locust.poll() is None:
                locust.kill()
                locust.wait(timeout=10)
    if not results_file.exists():
        raise RuntimeError(f"Locust ended without a result: see {run_dir / 'locust.log'}")
    summary = summarize(Tally.from_dict(json.loads(results_file.read_text())["tally"]))
    independent = json.loads(probe.stdout)
    ours, theirs = summary["latency_ms"]["p50"], independent["latency_ms"]["p50"]
    return {
        "delivered_per_s": summary["delivered_per_s"],
        "client_us_per_delivery": summary["client_cpu_us_per_delivery"],
        "client_cpu_share": summary["client_cpu_share_max"],
        "p50_ms": ours,
        "p99_ms": summary["latency_ms"]["p99"],
        "probe_p50_ms": theirs,
        "p50_ratio": round(ours / theirs, 3) if ours and theirs else None,
        "lost": summary["lost"],
        "errors": summary["errors"],
        "probe_lost": independent["lost"],
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    result = {}
    for key in ("delivered_per_s", "client_us_per_delivery", "p50_ms", "probe_p50_ms",
                "p50_ratio"):  # fmt: skip
        result[key] = median_of_known((run[key] for run in runs), 3)
    return result


def print_table(runs: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> None:
    columns = ("client", "run", "delivered_per_s", "client_us_per_delivery", "p50_ms",
               "probe_p50_ms", "p50_ratio", "lost", "errors")  # fmt: skip
    print(" | ".join(columns))
    for run in runs:
        print(" | ".join(str(run.get(column, "")) for column in columns))
    print("medians:")
    for client, values in summary.items():
        print(f"  {client}: " + ", ".join(f"{key} {value}" for key, value in values.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load.client_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per client (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--compare", metavar="REV", help="also run the client of git REV")
    parser.add_argument("--out", type=Path, default=Path("results/client-cost.json"))
    args = parser.parse_args(argv)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="client-cost-") as scratch:
        clients = {"this": ROOT}
        if args.compare:
            clients[args.compare] = export_revision(args.compare, Path(scratch) / "baseline")
        with ChatServer.start(layer="inmemory", log_dir=Path(scratch) / "daphne") as server:
            for number in range(1, args.repeat + 1):
                for client, root in clients.items():
                    plan = build_plan("fanout", SHAPE, [server.ws_url],
                                      duration_s=args.duration, settle_s=1.0)  # fmt: skip
                    started = time.time()
                    run = run_client(plan, root, Path(scratch) / f"{client}-{number}")
                    run = {"client": client, "run": number, **run,
                           "wall_s": round(time.time() - started, 1)}  # fmt: skip
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    summary = {client: medians([r for r in runs if r["client"] == client]) for client in clients}
    print_table(runs, summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    revisions = {client: _commit("HEAD" if client == "this" else client) for client in clients}
    result = {
        "machine": harness_info(),
        "shape": {"users": SHAPE.users, "rooms": SHAPE.rooms, "rate_per_user": SHAPE.rate,
                  "deliveries_per_s": SHAPE.deliveries_per_s, "duration_s": args.duration},
        "revisions": revisions,
        "runs": runs,
        "medians": summary,
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
