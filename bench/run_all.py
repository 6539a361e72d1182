"""Run the intake benchmark `--runs` times and write bench/RESULTS.md: a short table of current
figures (medians over the runs), target beside measured, and the machine they come from.

    .venv/bin/python bench/run_all.py [--runs 3]

The other benchmarks (`digest.py`, `fanout.py`, `ack_latency.py`, `find.py`) print their own
figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
OTHERS = "## Other benchmarks\n"

Row = tuple[str, str, Callable[[list[dict]], str], Callable[[list[dict]], bool]]


def median(runs: list[dict], *path: str) -> float:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


ROWS: list[Row] = [
    (
        "Steady intake, open loop at a fixed 1,000 req/s (every 204 durable)",
        "all answered, p99 <= 25 ms",
        lambda r: (
            f"{median(r, 'open_intake', 'achieved'):.0f} req/s answered, "
            f"p50 {median(r, 'open_intake', 'p50_ms'):.0f} ms, "
            f"p99 {median(r, 'open_intake', 'p99_ms'):.0f} ms "
            f"(bare endpoint: {median(r, 'open_bare', 'achieved'):.0f} req/s, "
            f"p99 {median(r, 'open_bare', 'p99_ms'):.1f} ms)"
        ),
        lambda r: (
            median(r, "open_intake", "achieved") >= 990 and median(r, "open_intake", "p99_ms") <= 25
        ),
    ),
    (
        "D1 -> Slack for subscribed probe cards during that load",
        "p99 <= 2 s",
        lambda r: (
            f"p50 {median(r, 'busy_d1_to_slack', 'p50_ms'):.0f} ms, "
            f"p99 {median(r, 'busy_d1_to_slack', 'p99_ms'):.0f} ms"
        ),
        lambda r: median(r, "busy_d1_to_slack", "p99_ms") <= 2000,
    ),
    (
        "Closed loop (wrk, 32 connections): intake beside a bare 204 endpoint",
        ">= 0.25x",
        lambda r: (
            f"{median(r, 'closed_ratio'):.2f}x ({median(r, 'closed_intake_rps'):.0f} vs "
            f"{median(r, 'closed_bare_rps'):.0f} req/s; parsing a notification without "
            f"recording it: {median(r, 'closed_parse_ratio'):.2f}x)"
        ),
        lambda r: median(r, "closed_ratio") >= 0.25,
    ),
    (
        "D1 -> Slack, idle bot (204 -> first post at the Slack stand-in)",
        "p99 <= 250 ms",
        lambda r: (
            f"p50 {median(r, 'idle_d1_to_slack', 'p50_ms'):.0f} ms, "
            f"p99 {median(r, 'idle_d1_to_slack', 'p99_ms'):.0f} ms"
        ),
        lambda r: median(r, "idle_d1_to_slack", "p99_ms") <= 250,
    ),
    (
        "RSS of the server, idle / after the load",
        "<= 100 MB idle",
        lambda r: f"{median(r, 'rss_idle_mb'):.0f} MB / {median(r, 'rss_after_load_mb'):.0f} MB",
        lambda r: median(r, "rss_idle_mb") <= 100,
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    started = time.time()
    runs = []
    for n in range(args.runs):
        print(f"run {n + 1} of {args.runs}", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "intake.py")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    machine = ", ".join(f"{k} {v}" for k, v in machine_info().items())
    lines = [
        "# Benchmark results",
        "",
        f"`bench/run_all.py` on {time.strftime('%Y-%m-%d', time.gmtime())}, medians of "
        f"{args.runs} runs of `bench/intake.py` (which says what each figure measures), "
        f"{(time.time() - started) / 60:.0f} min.",
        f"Machine: {machine}.",
        "",
        "| Figure | Target | Measured | Met |",
        "|---|---|---|---|",
    ]
    for name, target, measured, met in ROWS:
        lines.append(f"| {name} | {target} | {measured(runs)} | {'yes' if met(runs) else 'no'} |")
    # The other benchmarks' figures, written by hand below the marker, are kept.
    kept = RESULTS.read_text().partition(OTHERS)[2] if RESULTS.exists() else ""
    RESULTS.write_text("\n".join(lines) + "\n\n" + OTHERS + kept)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
