"""Run every benchmark in bench/ and write the figures, target beside measured, into
bench/RESULTS.md (with the machine they come from).

    .venv/bin/python bench/run_all.py [--runs 3] [--quick] [--only intake,fanout,...]

Each benchmark runs as its own process, as documented in its module; this script only parses
what they print (a table row, a labelled line, or a last line of JSON) and takes the median over
`--runs` runs where a script measures once per run. `--quick` shortens the loads (a smoke run:
its figures are not the ones to quote). A benchmark that fails is reported as such in the table
and does not stop the others.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
RSS_RUNS = 1


@dataclass
class Figure:
    """One line of the results table."""

    name: str
    target: str
    measured: str
    met: bool | None  # None: no target, or not measured

    def row(self) -> str:
        verdict = {True: "yes", False: "**no**", None: "-"}[self.met]
        return f"| {self.name} | {self.target} | {self.measured} | {verdict} |"


def run(script: str, *args: str, timeout: float = 3600) -> str:
    """A benchmark's stdout (its stderr goes to ours, for progress)."""
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    print(f"$ {' '.join(command[1:])}", flush=True)
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=True
    )
    print(done.stdout, flush=True)
    return done.stdout


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- the benchmarks

_INTAKE_ROW = re.compile(
    r"^(?P<sync>\w+)\s+(?P<fanout>\d+) \|\s+(?P<bare>[\d.]+)\s+(?P<bp50>[\d.]+)ms\s+"
    r"(?P<bp99>[\d.]+)ms \|\s+(?P<rps>[\d.]+)\s+(?P<p50>[\d.]+)ms\s+(?P<p99>[\d.]+)ms \|"
    r"\s+(?P<ratio>[\d.]+) \|\s+(?P<errors>\d+)",
    re.M,
)
# "FULL fanout 100 intake: 1000 req/s offered, 996 completed, p50 .." (older: "... 0: ..
# offered, 995 sent, ..."); the "bare:" lines of the same run are the ceiling, not kept.
_INTAKE_RATE = re.compile(
    r"^FULL fanout\s+(?P<fanout>\d+)(?: intake)?: (?P<offered>\d+) req/s offered, "
    r"(?P<sent>\d+) (?:sent|completed), p50 (?P<p50>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms",
    re.M,
)


def intake(runs: int, quick: bool) -> list[Figure]:
    args = ["--modes", "FULL", "--fanouts", "0,100"]
    if quick:
        args += ["--duration", "3", "--rate-seconds", "3"]
    rows: dict[int, list[re.Match[str]]] = {}
    rates: dict[int, list[re.Match[str]]] = {}
    for _ in range(runs):
        out = run("intake.py", *args)
        # it prints each row as it goes and again in a table at the end: one per fanout
        for pattern, into in ((_INTAKE_ROW, rows), (_INTAKE_RATE, rates)):
            this_run = {int(m["fanout"]): m for m in pattern.finditer(out)}
            for fanout, m in this_run.items():
                into.setdefault(fanout, []).append(m)
    figures = []
    for fanout, found in sorted(rows.items()):
        ratio = median([float(m["ratio"]) for m in found])
        rps = median([float(m["rps"]) for m in found])
        bare = median([float(m["bare"]) for m in found])
        p50 = median([float(m["p50"]) for m in found])
        p99 = median([float(m["p99"]) for m in found])
        figures.append(
            Figure(
                f"Intake, {fanout} subscriptions, durable (SQLite FULL), closed loop",
                ">= 50% of bare ASGI",
                f"{rps:.0f} req/s vs bare {bare:.0f} = {ratio:.0%}; p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms",
                ratio >= 0.5,
            )
        )
    for fanout, found in sorted(rates.items()):
        p99 = median([float(m["p99"]) for m in found])
        p50 = median([float(m["p50"]) for m in found])
        offered = found[0]["offered"]
        completed = median([float(m["sent"]) for m in found])
        figures.append(
            Figure(
                f"Intake p99 at a fixed {offered} req/s, {fanout} subscriptions",
                "p99 <= 25 ms",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {completed} of {offered} req/s answered",
                p99 <= 25,
            )
        )
    return figures


_FANOUT_FRACTION = re.compile(r"fraction of the allowed rate: (\d+)% overall")
_FANOUT_429 = re.compile(r"429 answers: (\d+)")


def fanout(runs: int, quick: bool) -> list[Figure]:
    args = ["--channels", "200" if quick else "1000"]
    fractions, refusals = [], []
    for _ in range(runs):
        out = run("fanout.py", *args)
        fraction, refused = _FANOUT_FRACTION.search(out), _FANOUT_429.search(out)
        if fraction is None or refused is None:
            raise ValueError("fanout.py printed no figures")
        fractions.append(int(fraction[1]) / 100)
        refusals.append(int(refused[1]))
    fraction, refused = median(fractions), max(refusals)
    return [
        Figure(
            f"Fan-out and pacing ({args[1]} channels)",
            ">= 90% of Slack's allowed rate, zero 429s",
            f"{fraction:.0%} of the allowed rate; 429s: {refused} (worst run)",
            fraction >= 0.9 and refused == 0,
        )
    ]


_DIGEST_ROW = re.compile(
    r"^\s*(?P<cards>[\d,]+)\s+(?P<first>[\d.]+)\s+(?P<median>[\d.]+)\s+(?P<heap>[\d.]+)\s+"
    r"(?P<rss>[\d.]+)\s+(?P<base>[\d.]+)\s+(?P<db>[\d.]+)\s*$",
    re.M,
)


def digest(runs: int, quick: bool) -> list[Figure]:
    sizes = "10000,100000" if quick else "10000,100000,1000000"
    out = run("digest.py", "--sizes", sizes, "--repeat", str(max(3, runs)))
    figures = []
    for m in _DIGEST_ROW.finditer(out):
        seconds, rss = float(m["median"]), float(m["rss"])
        figures.append(
            Figure(
                f"Digest at {m['cards']} cards",
                "<= 2 s, <= 200 MB",
                f"{seconds:.2f} s (median; first {float(m['first']):.2f} s), peak RSS {rss:.0f} MB",
                seconds <= 2 and rss <= 200,
            )
        )
    return figures


def ack_latency(runs: int, quick: bool) -> list[Figure]:
    args = ["--repeat", str(runs)] + (["--seconds", "4"] if quick else [])
    r = last_json(run("ack_latency.py", *args))
    return [
        Figure(
            "Slash-command ack while intake runs at 1,000 req/s",
            "p99 <= 300 ms",
            f"p50 {r['ack_p50_ms']:.1f} ms, p99 {r['ack_p99_ms']:.1f} ms (idle p99 "
            f"{r['idle_ack_p99_ms']:.1f} ms; intake achieved {r['intake_achieved_rps']:.0f} "
            "req/s)",
            r["ack_p99_ms"] <= 300,
        )
    ]


def rss(runs: int, quick: bool) -> list[Figure]:
    events = 100_000 if quick else 1_000_000
    repeat = 1 if quick else RSS_RUNS  # a 1M-event load takes ~5 minutes
    r = last_json(run("rss.py", "--events", str(events), "--repeat", str(repeat)))
    return [
        Figure(
            f"Server + intake writer RSS after {events:,} stored events "
            f"({repeat} run{'s' if repeat > 1 else ''})",
            "<= 200 MB",
            f"{r['rss_mb']:.0f} MB (peak {r['peak_mb']:.0f} MB; at start {r['start_mb']:.0f} MB)",
            r["rss_mb"] <= 200,
        )
    ]


# What each benchmark's figure names start with: a run with --only keeps the other rows.
PREFIXES = {
    "intake": "Intake",
    "ack_latency": "Slash-command",
    "fanout": "Fan-out",
    "digest": "Digest",
    "rss": "Server + intake writer RSS",
}
BENCHMARKS: dict[str, Callable[[int, bool], list[Figure]]] = {
    "intake": intake,
    "ack_latency": ack_latency,
    "fanout": fanout,
    "digest": digest,
    "rss": rss,
}


# --------------------------------------------------------------------------- the report


def kept_rows(ran: list[str]) -> list[str]:
    """Rows of the current RESULTS.md from benchmarks not run this time."""
    if not RESULTS.exists():
        return []
    fresh = tuple(PREFIXES[name] for name in ran if name in PREFIXES)
    return [
        line
        for line in RESULTS.read_text().splitlines()
        if line.startswith("| ")
        and not line.startswith(("| Figure ", "|---"))
        and not line[2:].startswith(fresh)
    ]


def write_results(
    figures: list[Figure], *, ran: list[str], runs: int, quick: bool, minutes: float
) -> None:
    machine = machine_info()
    previous = kept_rows(ran)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `bench/run_all.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" in {minutes:.0f} min{' (--quick: a smoke run, not figures to quote)' if quick else ''}."
        " Each benchmark's own module says exactly what it measures.",
        f"Figures are medians of {runs} runs unless the line says otherwise"
        + (f"; {len(previous)} rows kept from an earlier run." if previous else "."),
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + ".",
        "",
        "| Figure | Target | Measured | Met |",
        "|---|---|---|---|",
        *previous,
        *(f.row() for f in figures),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    args = parser.parse_args()
    started = time.monotonic()
    figures: list[Figure] = []
    ran = args.only.split(",")
    for name in ran:
        try:
            figures += BENCHMARKS[name](args.runs, args.quick)
        except (subprocess.SubprocessError, ValueError, KeyError, json.JSONDecodeError) as exc:
            print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
            figures.append(Figure(name, "", f"failed: {type(exc).__name__}", None))
    write_results(
        figures,
        ran=ran,
        runs=args.runs,
        quick=args.quick,
        minutes=(time.monotonic() - started) / 60,
    )
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
