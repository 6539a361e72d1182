"""Intake benchmark: what D1's traffic costs the bot, beside a bare endpoint in the same run.

    .venv/bin/python bench/intake.py [--rate 1000] [--seconds 10] [--wrk-seconds 8]

One `d1bot serve`-like server process (the real composition: intake, outbox worker, Slack
routes; SQLite with `synchronous=FULL`, so every 204 is durable) with two extra routes:
`POST /bare`, answering 204 through the same middleware, and `POST /parse`, which reads and
parses a notification as intake does and answers 204 without recording it. A Slack stand-in
(`LocalSlack`) in this process receives what the outbox posts. Measured, in order:
1. idle: D1 -> Slack latency, from a notification's 204 to its card's first post arriving at
   the stand-in, for `--probes` subscribed cards (each in a channel of its own, so that the
   one-post-a-second channel pacing never waits);
2. open loop: a fixed `--rate` req/s for `--seconds` (a separate generator process: latency
   counted from each request's scheduled time, so overload cannot hide) to `/bare`, then to the
   notification endpoint with distinct, unsubscribed cards, while probe notifications for
   subscribed cards measure D1 -> Slack under that load;
3. closed loop: wrk at a fixed concurrency against `/bare`, `/parse` (what the recording leaves
   of intake's cost: the rest is the recording), then the notification endpoint; the
   ratio of the two rates;
4. the server's RSS idle (after start) and after the load.
Prints the machine, the figures and a last JSON line; asserts nothing. Needs `wrk`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402

ISSUER = "bench-issuer"
TOKEN = "bench-token"
PATH = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
FIRST_SECOND = 1_780_000_000  # event times start here; each phase takes later ones


def op_id(base: int, n: int) -> str:
    """An operation id as D1 writes them (`op-` and a UUID), distinct for each (base, n)."""
    digest = hashlib.md5(f"{base}-{n}".encode()).digest()
    return f"op-{uuid.UUID(bytes=digest, version=4)}"


def notification(card: str, op: str, at: int) -> bytes:
    """A realistic shipment update for `card`, dated `at` (unix seconds)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return json.dumps(
        {
            "operationId": op,
            "operation": "STANDALONE_TRACKING",
            "status": "SUCCESSFUL",
            "issuerId": ISSUER,
            "cardId": card,
            "timestamp": stamp,
            "details": {
                "trackingType": "SHIPMENT",
                "productionSite": "PERSO-CENTER-FR-01",
                "status": "CARD_SHIPPED",
                "shipment": {
                    "carrier": "fedex",
                    "trackingNumber": "1234567890",
                    "status": "IN_TRANSIT",
                    "message": "In transit",
                    "estimatedDeliveryDate": "2026-05-24T00:00:00Z",
                    "lastUpdatedAt": stamp,
                },
            },
        }
    ).encode()


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------- the server


def serve(db: str, port: int, slack_url: str, probes: int) -> None:
    """The product's composition (bot.main.build_runtime) plus `POST /bare`."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response

    from bot.main import GIL_SWITCH_INTERVAL_SECONDS, build_runtime, migrate_in_child
    from bot.server import create_app
    from bot.settings import load_settings
    from d1.notifications import parse_body
    from storage.repositories.subscriptions import subscribe

    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite:///{db}",
        d1_issuer_id=ISSUER,
        d1_notify_token=TOKEN,
        slack_bot_token="xoxb-bench",
        slack_signing_secret="bench-signing-secret",
        slack_api_url=slack_url,
        d1bot_scheduler_enabled=False,
        # The production default, but no handler is configured here (`d1bot serve` calls
        # bot.logs.configure_logging): no access line is formatted or written, for `/bare` and
        # intake alike. With it, `/bare` writes one per request and serves about a third as many
        # (bench/revisions.py); a notification answered 204 writes none.
        log_level="INFO",
    )
    if not migrate_in_child(settings):
        raise SystemExit("migration failed")
    runtime = build_runtime(settings)
    for n in range(2 * probes):
        subscribe(
            runtime.engine,
            workspace_id=settings.d1bot_workspace_id,
            channel_id=f"CPROBE{n:03d}",
            card_id=f"probe-{n}",
            created_by="U1",
        )
    app = create_app(runtime)

    async def bare(_request: Request) -> Response:
        return Response(status_code=204)

    async def parse(request: Request) -> Response:
        parse_body(await request.body(), issuer_id=ISSUER)
        return Response(status_code=204)

    app.add_route("/bare", bare, methods=["POST"])
    app.add_route("/parse", parse, methods=["POST"])
    sys.setswitchinterval(float(os.environ.get("SWITCH", GIL_SWITCH_INTERVAL_SECONDS)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- load


async def open_loop(port: int, path: str, rate: float, seconds: float, base: int) -> dict:
    """Send `rate` req/s for `seconds` over 64 connections; latency from the schedule."""
    conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        conns.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()

    async def one(n: int, due: float) -> None:
        nonlocal failures
        payload = request_bytes(path, notification(f"load-{n % 5000}", op_id(base, n), base + n))
        reader, writer = await conns.get()
        try:
            writer.write(payload)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            failures += b" 204 " not in status
            latencies.append(loop.time() - due)
        finally:
            conns.put_nowait((reader, writer))

    start = loop.time() + 0.2
    total = int(rate * seconds)
    tasks = []
    for n in range(total):
        due = start + n / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    latencies.sort()
    return {
        "offered": rate,
        "achieved": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "non_204": failures,
    }


async def probe(http: object, slack: object, card: str, channel: str, at: int) -> float:
    """Seconds from the probe's 204 to its card's first post arriving at the stand-in."""
    import httpx

    from bot.dev.localslack import LocalSlack

    assert isinstance(http, httpx.AsyncClient) and isinstance(slack, LocalSlack)
    answer = await http.post(
        PATH,
        content=notification(card, op_id(at, zlib.crc32(card.encode())), at),
        headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
    )
    answered = time.monotonic()
    assert answer.status_code == 204, answer.status_code
    while True:
        posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.channel == channel]
        if posts:
            return posts[0].at - answered
        if time.monotonic() - answered > 30:
            return float("inf")
        await asyncio.sleep(0.002)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def run_wrk(port: int, path: str, seconds: int, base: int, workdir: Path) -> float:
    """Requests per second wrk reaches with 32 connections (distinct new events)."""
    template = notification("wrk-CARD", "OPID", 0).decode()
    script = workdir / f"wrk-{base}.lua"
    script.write_text(
        "local n = 0\n"
        f"local template = [[{template}]]\n"
        "request = function()\n"
        "  n = n + 1\n"
        f"  local at = os.date('!%Y-%m-%dT%H:%M:%SZ', {base} + n)\n"
        "  local body = template:gsub('wrk%-CARD', 'wrk-' .. (n % 5000))"
        ":gsub('OPID', string.format('op-%08x-%04x-4%03x-a%03x-%012x', n, math.random(0, 65535),"
        f" math.random(0, 4095), math.random(0, 4095), {base} + math.random(0, 2^40)))"
        ":gsub('1970%-01%-01T00:00:00Z', at)\n"
        "  return wrk.format('POST', nil, {['Content-Type']='application/json',"
        f" ['Authorization']='Bearer {TOKEN}'}}, body)\n"
        "end\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c32",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


# --------------------------------------------------------------------------- orchestration


async def measure(args: argparse.Namespace, workdir: Path) -> dict:
    import httpx

    from bot.dev.localslack import LocalSlack

    figures: dict = {}
    async with LocalSlack() as slack:
        port = _free_port()
        server = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            [sys.executable, __file__, "--serve", str(workdir / "bench.db"), "--port", str(port),
             "--slack-url", slack.base_url, "--probes", str(args.probes)],
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                await _ready(http, server)
                await asyncio.sleep(2)  # let startup settle before reading memory
                figures["rss_idle_mb"] = rss_mb(server.pid)
                base = FIRST_SECOND
                idle = []
                for n in range(args.probes):
                    idle.append(await probe(http, slack, f"probe-{n}", f"CPROBE{n:03d}", base + n))
                    # Idle: one notification at a time, well within the workspace budget
                    # (D1BOT_WORKSPACE_RATE_PER_MINUTE, 4 posts a second by default).
                    await asyncio.sleep(0.5)
                figures["idle_d1_to_slack"] = quantiles(idle)
                print(f"idle D1 -> Slack: {_fmt(figures['idle_d1_to_slack'])}", flush=True)

                for path, name in (("/bare", "bare"), (PATH, "intake")):
                    base += 10_000_000
                    load = subprocess.Popen(  # noqa: ASYNC220
                        [sys.executable, __file__, "--load", path, "--port", str(port),
                         "--rate", str(args.rate), "--seconds", str(args.seconds),
                         "--base", str(base)],
                        stdout=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    busy: list[float] = []
                    if name == "intake":  # probes while the load runs
                        await asyncio.sleep(1.0)
                        for n in range(args.probes, 2 * args.probes):
                            card, channel = f"probe-{n}", f"CPROBE{n:03d}"
                            busy.append(await probe(http, slack, card, channel, base + n))
                            await asyncio.sleep(max(0.0, (args.seconds - 2) / args.probes))
                    out, _ = await asyncio.to_thread(load.communicate)
                    figures[f"open_{name}"] = json.loads(out.strip().splitlines()[-1])
                    print(f"open loop {name}: {figures[f'open_{name}']}", flush=True)
                    if busy:
                        figures["busy_d1_to_slack"] = quantiles(busy)
                        print(f"D1 -> Slack under load: {_fmt(quantiles(busy))}", flush=True)
                figures["rss_after_load_mb"] = rss_mb(server.pid)
                for path, name in (("/bare", "bare"), ("/parse", "parse"), (PATH, "intake")):
                    base += 10_000_000
                    figures[f"closed_{name}_rps"] = await asyncio.to_thread(
                        run_wrk, port, path, args.wrk_seconds, base, workdir
                    )
                figures["closed_ratio"] = figures["closed_intake_rps"] / figures["closed_bare_rps"]
                figures["closed_parse_ratio"] = (
                    figures["closed_parse_rps"] / figures["closed_bare_rps"]
                )
                figures["rss_peak_mb"] = max(rss_mb(server.pid), figures["rss_after_load_mb"])
                print(
                    f"closed loop (wrk, 32 connections): bare {figures['closed_bare_rps']:.0f}, "
                    f"parsing alone {figures['closed_parse_rps']:.0f}, "
                    f"intake {figures['closed_intake_rps']:.0f} req/s, "
                    f"ratio {figures['closed_ratio']:.2f} (parsing alone "
                    f"{figures['closed_parse_ratio']:.2f})",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    return figures


def _fmt(q: dict[str, float]) -> str:
    return f"p50 {q['p50_ms']:.0f} ms, p99 {q['p99_ms']:.0f} ms, max {q['max_ms']:.0f} ms"


async def _ready(http: object, server: subprocess.Popen[bytes]) -> None:
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--wrk-seconds", type=int, default=8)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--slack-url", help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=FIRST_SECOND, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.slack_url, args.probes)
        return 0
    if args.load:
        result = asyncio.run(open_loop(args.port, args.load, args.rate, args.seconds, args.base))
        print(json.dumps(result))
        return 0
    if shutil.which("wrk") is None:
        print("needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(args, Path(tmp)))
    figures["machine_cores"] = os.cpu_count()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
