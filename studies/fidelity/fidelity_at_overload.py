"""Does the harness see what an independent client sees at overload? (issue 15)

    flock /tmp/harness-heavy.lock python studies/fidelity/fidelity_at_overload.py --pairs 3

Every run gets a fresh InMemory Daphne (``services.ChatServer``). Each pair runs the same
shape (default 100 users in 10 rooms of 10 at 5 msg/s: 5,000 offered deliveries/s, far
past InMemory's capacity on a 2-core machine) with ``load.probe`` alone and with the harness
alone (headless Locust, the ``run`` plan), seconds apart, each on a server of its own: the
probe first in odd pairs, the harness first in even ones.
Per run it prints what each client counts over the same definition:

* ``delivered_per_s``: first copies of messages *sent* in the measured window that arrived
  before the drain ended, over the window's length (the contract's figure; the probe's
  ``delivered_per_s`` is the same definition);
* ``received_per_s``: first copies that *arrived* in the measured window, whenever they
  were sent, over its length: the rate the server delivered at (at overload a backlog
  makes the two differ);
* the messages each client sent against the plan, and its median and p99 latency.

Then the medians over the pairs and the ratio harness / probe of each, with the machine's
load (``/proc/loadavg``) before every run. Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from harness import ChatServer  # noqa: E402
from load.commands.locust_run import KILL_AFTER_S, locust_command  # noqa: E402
from load.core.plan import Plan, Shape, build_plan  # noqa: E402
from load.core.stats import Tally, median_of_known, summarize, timeline  # noqa: E402
from load.reporting.record import harness_info  # noqa: E402

FIGURES = ("delivered_per_s", "received_per_s", "sent_share", "p50_ms", "p99_ms")
# Each run gets a Daphne of its own. On one server every run slowed the next: 8 runs in a
# row read 1,252, 511, 482, 408, 378, 279, 244 and 196 received/s (InMemory keeps a
# closed socket's full channel until its messages expire, 60 s, and scans every channel
# on each receive), so whichever client ran second looked worse.


def load_average() -> str:
    return Path("/proc/loadavg").read_text().strip()


def run_harness(plan: Plan, run_dir: Path) -> dict[str, Any]:
    """Headless Locust with ``plan``; the figures of its measured window."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "chatload-result.json"
    with (run_dir / "locust.log").open("wb") as log:
        locust = subprocess.run(
            locust_command(plan, run_dir, results_file), cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, timeout=plan.total_s + KILL_AFTER_S + 30, check=False,
        )  # fmt: skip
    if not results_file.exists():
        raise RuntimeError(f"Locust exited {locust.returncode} without a result: {run_dir}")
    tally = Tally.from_dict(json.loads(results_file.read_text())["tally"])
    summary = summarize(tally)
    return {
        **comparable(summary, plan),
        "client_cpu_us_per_delivery": summary["client_cpu_us_per_delivery"],
        "timeline": [{k: row[k] for k in ("t_s", "sent", "delivered", "received", "p50_ms")}
                     for row in timeline(tally)],
    }  # fmt: skip


def run_probe(plan: Plan, *, warmup_s: float) -> dict[str, Any]:
    """``load.probe`` alone with the plan's shape, window and drain."""
    command = [
        sys.executable, "-m", "load.probe", "--target", plan.targets[0],
        "--users", str(plan.users), "--rooms", str(plan.rooms), "--rate", repr(plan.rate),
        "--warmup", str(warmup_s), *(["--settle", str(plan.settle_s)] if plan.settle_s else []),
        "--duration", str(plan.duration_s), "--drain", str(plan.drain_s),
    ]  # fmt: skip
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=plan.total_s + 60,
        check=True,
    )  # fmt: skip
    return comparable(json.loads(finished.stdout), plan)


def comparable(result: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The figures both clients report under the same definitions, from the harness's
    summary or load.probe's output (they share the field names)."""
    planned = plan.users * plan.rate * plan.duration_s
    return {
        "delivered_per_s": result["delivered_per_s"],
        "received_per_s": result.get("received_per_s"),
        "sent_share": round(result["sent"] / planned, 3),
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "lost": result["lost"],
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    return median_of_known((run.get(key) for run in runs), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3, help="probe + harness pairs (default 3)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per user per s")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--settle", type=float, default=0.0, help="sending before the window")
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("results/fidelity-at-overload.json"))
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.users < args.rooms or args.rate <= 0 or args.duration <= 0:
        parser.exit(2, "fidelity_at_overload: need --pairs >= 1, --users >= --rooms, "
                       "--rate > 0 and --duration > 0\n")  # fmt: skip

    shape = Shape(users=args.users, rooms=args.rooms, rate=args.rate)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fidelity-overload-") as scratch:
        for number in range(1, args.pairs + 1):
            # probe first in odd pairs, harness first in even ones: neither always meets
            # the machine the other left behind
            order = ("probe", "harness") if number % 2 else ("harness", "probe")
            for client in order:
                log_dir = Path(scratch) / f"daphne-{number}-{client}"
                with ChatServer.start(layer="inmemory", log_dir=log_dir) as server:
                    plan = build_plan("fanout", shape, [server.ws_url],
                                      duration_s=args.duration, settle_s=args.settle,
                                      drain_s=args.drain)  # fmt: skip
                    loadavg = load_average()
                    if client == "probe":
                        figures = run_probe(plan, warmup_s=1.0)
                    else:
                        figures = run_harness(plan, Path(scratch) / f"harness-{number}")
                run = {"client": client, "pair": number, "loadavg": loadavg, **figures}
                print(json.dumps({k: v for k, v in run.items() if k != "timeline"}), flush=True)
                runs.append(run)
    medians = {
        client: {key: median_of([r for r in runs if r["client"] == client], key)
                 for key in FIGURES}
        for client in ("probe", "harness")
    }  # fmt: skip
    ratios = {}
    for key in ("delivered_per_s", "received_per_s"):
        by_pair = {(r["pair"], r["client"]): r for r in runs}
        pairs = [
            (by_pair[n, "harness"][key], by_pair[n, "probe"][key])
            for n in range(1, args.pairs + 1)
            if by_pair[n, "harness"].get(key) and by_pair[n, "probe"].get(key)
        ]
        ratios[key] = round(statistics.median(h / p for h, p in pairs), 3) if pairs else None
    print("medians:", json.dumps(medians))
    print("harness / probe (median of the pairs' ratios):", json.dumps(ratios))
    print(f"machine: {os.cpu_count()} CPUs, shared; /proc/loadavg now {load_average()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": harness_info(), "shape": vars(args) | {"out": str(args.out)},
        "runs": runs, "medians": medians, "ratios": ratios,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
