"""Intake benchmark: notifications/s and latency against the same server's bare 204 route.

    .venv/bin/python bench/intake.py [--duration 10] [--repeat 3] [--connections 32] [--rate 1000]

For each SQLite `synchronous` mode (FULL, NORMAL) and each fan-out (0 and 100 channels
subscribed to every card), one server process (uvicorn, one worker, the real app plus a bare
`POST /bare` answering 204 through the same middleware) is started. With FULL, an open-loop
generator (a separate process) first sends a fixed 1,000 req/s to the bare route and then to
the notification endpoint, and reports p50/p99 measured from each request's scheduled time (no
coordinated omission). Then wrk drives the bare route (the ceiling) and the notification
endpoint with realistic, distinct shipment updates at a fixed concurrency, `--repeat` times
(each pair printed, then the medians; the ratio is the median of the per-pair ratios), and
with each pair the server's event-loop thread CPU time per request on both routes (on Linux):
the loop is what saturates, and its CPU per request moves less than req/s when a shared
machine's speed changes during a run. Every
load phase sends bodies no earlier phase sent, dated after every earlier phase's (`run_base`):
each notification is a new event that becomes its card's current state, as in production, not a
duplicate that the dedup key turns away at a fraction of the cost. The
server prints its group-commit figures (batch sizes, commit times) when it stops. Every server
first takes `--warmup` seconds of intake load, unmeasured: on a fresh database file the first
seconds are several times slower (the WAL and the database file grow, so every fsync also
flushes file-size metadata); a long-lived database is past that. Needs `wrk`
(apt-get install wrk). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402

ISSUER = "bench-issuer"
TOKEN = "bench-token"
PATH = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
CARDS = 200

# A realistic shipment update; %d/%s are filled in by the wrk script for each request.
BODY_TEMPLATE = json.dumps(
    {
        "operationId": "op-%d-%d",
        "operation": "STANDALONE_TRACKING",
        "status": "SUCCESSFUL",
        "issuerId": ISSUER,
        "cardId": "bench-card-%d",
        "timestamp": "%s",
        "details": {
            "trackingType": "SHIPMENT",
            "productionSite": "PERSO-CENTER-FR-01",
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "fedex",
                "trackingNumber": "1234567890",
                "status": "IN_TRANSIT",
                "message": "In transit",
                "trackingUrl": "https://www.fedex.com/track?trk=1234567890",
                "estimatedDeliveryDate": "2026-05-24T00:00:00Z",
                "lastUpdatedAt": "%s",
                "lastCheckpoint": {
                    "checkpointTime": "%s",
                    "city": "Paris",
                    "countryName": "France",
                    "message": "Arrived at facility",
                },
            },
        },
    },
    separators=(",", ":"),
)

# Every load phase (the warm-up, the fixed rate, each closed-loop run) is a "run" with its own
# operation ids and a time slot later than every earlier run's: each body is a new event that
# becomes its card's current state (and fans out), never a duplicate of an earlier run's body
# (wrk starts its counter from 0 on every invocation) nor a late, older event.
FIRST_SECOND = 1779457200  # 2026-05-22T13:40:00Z
RUN_SECONDS = 1 << 22  # ~48 days per run: a run sends far fewer than RUN_SECONDS / 8 bodies


def run_base(run: int) -> int:
    """The first timestamp (unix seconds) of run `run`'s bodies."""
    return FIRST_SECOND + run * RUN_SECONDS


WRK_SCRIPT = r"""
local counter = 0
local threads = 0
local base = RUN_BASE
local run = RUN_NUMBER
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local template = [[BODY_TEMPLATE]]
request = function()
  counter = counter + 1
  local at = os.date("!%Y-%m-%dT%H:%M:%SZ", base + counter * 8 + (tid or 0))
  local body = string.format(template, run * 100 + (tid or 0), counter, counter % CARDS, at, at, at)
  return wrk.format("POST", nil, {["Content-Type"]="application/json",
    ["Authorization"]="Bearer TOKEN"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


# --------------------------------------------------------------------------- the server side


def serve(db: str, port: int, sync: str, subscriptions: int) -> None:
    """Run the app (plus a bare 204 route) with `subscriptions` channels on every card."""
    import uvicorn
    from sqlmodel import Session
    from starlette.requests import Request
    from starlette.responses import Response

    from bot.runtime import BackgroundTask, Runtime
    from bot.server import create_app
    from bot.settings import load_settings
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.tables import SubscriptionRecord

    engine = make_engine(f"sqlite:///{db}", synchronous=sync)
    upgrade(engine)
    with Session(engine) as s, s.begin():
        for card in range(CARDS):
            for channel in range(subscriptions):
                s.add(
                    SubscriptionRecord(
                        workspace_id="T1",
                        channel_id=f"C{channel:05d}",
                        card_id=f"bench-card-{card}",
                        created_by="U1",
                    )
                )
    settings = load_settings(
        _env_file=None, d1_issuer_id=ISSUER, d1_notify_token=TOKEN, log_level="WARNING"
    )
    runtime = Runtime(settings=settings, engine=engine)
    app = create_app(runtime)

    async def bare(_request: Request) -> Response:
        return Response(status_code=204)

    app.add_route("/bare", bare, methods=["POST"])

    async def nothing() -> None:
        return None

    async def print_stats() -> None:  # runs at shutdown (uvicorn re-raises SIGTERM after it)
        committer = runtime.extras.get("intake_committer")
        if committer is not None:
            stats = committer.stats
            commits = sorted(stats.commit_ms) or [0.0]
            print(
                f"  commit (fan-out markers + COMMIT) ms: p50 {commits[len(commits) // 2]:.1f}, "
                f"p99 {commits[int(len(commits) * 0.99)]:.1f}, max {commits[-1]:.1f}",
                file=sys.stderr,
                flush=True,
            )
            print(
                f"  group commit: {stats.requests} requests in {stats.batches} batches (mean "
                f"{stats.mean_batch:.1f}, largest {stats.largest}, fallbacks {stats.fallbacks})",
                file=sys.stderr,
                flush=True,
            )

    import os as _os

    if _os.environ.get("SWITCH"):
        sys.setswitchinterval(float(_os.environ["SWITCH"]))
    # First in the list, so stopped last: after the intake writer has reported its figures.
    runtime.background.insert(
        0, BackgroundTask(name="bench stats", start=nothing, stop=print_stats)
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- load generators


def main_thread_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of process `pid`'s main thread, the event loop: steadier on
    a shared machine than req/s, and the server's bottleneck. None where /proc is not."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, *, duration: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


async def _open_loop(
    port: int, rate: float, seconds: float, connections: int, path: str = PATH, run: int = 1
) -> dict:
    """Send `rate` req/s for `seconds`; latency counted from each request's scheduled time."""
    conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        conns.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()

    def body(n: int) -> bytes:
        # The closed-loop runs' body, in this run's own ids and time slot (see `run_base`).
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run_base(run) + n * 8))
        return (BODY_TEMPLATE % (run * 100, n, n % CARDS, at, at, at)).encode()

    async def one(n: int, due: float) -> None:
        nonlocal failures
        payload = body(n)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        reader, writer = await conns.get()
        try:
            writer.write(head + payload)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if b" 204 " not in status:
                failures += 1
            latencies.append(loop.time() - due)
        finally:
            conns.put_nowait((reader, writer))

    start = loop.time() + 0.2
    total = int(rate * seconds)
    tasks = []
    for n in range(total):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    latencies.sort()
    return {
        "sent": total,
        "achieved_rps": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "failures": failures,
    }


# --------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited early")
        try:
            httpx.post(f"http://127.0.0.1:{port}/bare", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _start_server(workdir: Path, sync: str, subscriptions: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    db = workdir / f"bench-{sync}-{subscriptions}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--serve", str(db), "--port", str(port), "--sync", sync]
    cmd += ["--subscriptions", str(subscriptions)]
    proc = subprocess.Popen(cmd, cwd=workdir, start_new_session=True)
    _wait_ready(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _pair_row(bare: dict[str, float], intake: dict[str, float]) -> str:
    return (
        f"{bare['rps']:>10.0f} {bare['p50_us'] / 1000:>5.1f}ms {bare['p99_us'] / 1000:>5.1f}ms | "
        f"{intake['rps']:>12.0f} {intake['p50_us'] / 1000:>5.1f}ms "
        f"{intake['p99_us'] / 1000:>5.1f}ms | {intake['rps'] / bare['rps']:>5.2f} | "
        f"{int(intake['status_errors'] + intake['socket_errors'])}"
    )


def _median_row(pairs: list[tuple[dict[str, float], dict[str, float]]]) -> str:
    """Medians of each figure over the repeats (the ratio: median of the per-pair ratios)."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    bare = {k: med([b[k] for b, _ in pairs]) for k in ("rps", "p50_us", "p99_us")}
    intake = {
        k: med([i[k] for _, i in pairs])
        for k in ("rps", "p50_us", "p99_us", "status_errors", "socket_errors")
    }
    ratio = med([i["rps"] / b["rps"] for b, i in pairs])
    row = _pair_row(bare, intake)
    head, _, tail = row.rpartition(" | ")
    head = head[: head.rindex("|")] + f"| {ratio:>5.2f}"
    return f"{head} | {tail}"


def _fixed_rate(port: int, path: str, rate: float, seconds: float, run: int) -> dict[str, float]:
    """The open-loop generator in its own process (so that it does not share our GIL)."""
    load = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load-rate",
            "--port",
            str(port),
            "--path",
            path,
            "--rate",
            str(rate),
            "--rate-seconds",
            str(seconds),
            "--run",
            str(run),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(load.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="FULL,NORMAL")
    parser.add_argument("--fanouts", default="0,100")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sync", default="FULL", help=argparse.SUPPRESS)
    parser.add_argument("--subscriptions", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--load-rate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=PATH, help=argparse.SUPPRESS)
    parser.add_argument(
        "--warmup", type=int, default=5, help="seconds of intake load before measuring (0: none)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="closed-loop bare/intake pairs per server (medians)"
    )
    args = parser.parse_args()

    if args.serve:
        serve(args.serve, args.port, args.sync, args.subscriptions)
        return 0
    if args.load_rate:
        figures = asyncio.run(
            _open_loop(args.port, args.rate, args.rate_seconds, 64, args.path, args.run)
        )
        print(json.dumps(figures))
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install -y wrk")

    print_machine()
    print(f"wrk: 2 threads, {args.connections} connections, {args.duration}s per run\n")
    workdir = Path(tempfile.mkdtemp(prefix="d1bot-bench-"))

    def script(run: int) -> Path:
        """The wrk script of run `run` (its own ids and time slot)."""
        path = workdir / f"intake-{run}.lua"
        path.write_text(
            WRK_SCRIPT.replace("BODY_TEMPLATE", BODY_TEMPLATE)
            .replace("ISSUER", ISSUER)
            .replace("TOKEN", TOKEN)
            .replace("CARDS", str(CARDS))
            .replace("RUN_BASE", str(run_base(run)))
            .replace("RUN_NUMBER", str(run))
        )
        return path

    header = f"{'sync':7} {'fanout':>6} | {'bare req/s':>10} {'p50':>7} {'p99':>7} | "
    header += f"{'intake req/s':>12} {'p50':>7} {'p99':>7} | {'ratio':>5} | errors"
    rows = [header, "-" * len(header)]
    rate_rows = []
    for sync in args.modes.split(","):
        for fanout in (int(f) for f in args.fanouts.split(",")):
            proc, port = _start_server(workdir, sync, fanout)
            runs = itertools.count()  # run 0 is the warm-up's, 1 the fixed rate's (`run_base`)
            try:
                if args.warmup:  # a fresh database file: let its WAL grow to its working size
                    run_wrk(
                        f"http://127.0.0.1:{port}{PATH}",
                        duration=args.warmup,
                        connections=args.connections,
                        script=script(next(runs)),
                    )
                # The fixed rate first, on the fresh server: its latency is not to depend on
                # the backlog (WAL, checkpoints) the saturating runs leave behind.
                if sync == "FULL":
                    rate_run = next(runs)
                    for target, path in (("bare", "/bare"), ("intake", PATH)):
                        fixed = _fixed_rate(port, path, args.rate, args.rate_seconds, rate_run)
                        rate_rows.append(
                            f"FULL fanout {fanout:>3} {target:>6}: {args.rate:.0f} req/s offered, "
                            f"{fixed['achieved_rps']:.0f} completed, p50 {fixed['p50_ms']:.1f} "
                            f"ms, p99 {fixed['p99_ms']:.1f} ms, max {fixed['max_ms']:.1f} ms, "
                            f"non-204 {fixed['failures']}"
                        )
                        print(rate_rows[-1], flush=True)
                pairs = []
                for _ in range(args.repeat):
                    measured = []
                    pair_script = script(next(runs))  # new events: none seen in earlier runs
                    for path in ("/bare", PATH):
                        cpu_before = main_thread_cpu(proc.pid)
                        figures = run_wrk(
                            f"http://127.0.0.1:{port}{path}",
                            duration=args.duration,
                            connections=args.connections,
                            script=pair_script,
                        )
                        cpu_after = main_thread_cpu(proc.pid)
                        if cpu_before is not None and cpu_after is not None:
                            figures["cpu_us"] = (cpu_after - cpu_before) / figures["requests"] * 1e6
                        measured.append(figures)
                    bare, intake = measured
                    pairs.append((bare, intake))
                    print(f"  {sync} fanout {fanout}: {_pair_row(bare, intake)}", flush=True)
                    if "cpu_us" in bare and "cpu_us" in intake:
                        print(
                            f"  {sync} fanout {fanout}: event-loop CPU per request: bare "
                            f"{bare['cpu_us']:.0f} us, intake {intake['cpu_us']:.0f} us, ratio "
                            f"{bare['cpu_us'] / intake['cpu_us']:.2f}",
                            flush=True,
                        )
                rows.append(f"{sync:7} {fanout:>6} | {_median_row(pairs)}")
                print(rows[-1], flush=True)
            finally:
                _stop(proc)
                for leftover in workdir.glob("bench-*.db*"):  # its GBs of WAL and pages
                    leftover.unlink()
    print()
    print("\n".join(rows))
    print()
    print("\n".join(rate_rows))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
