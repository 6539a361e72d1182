"""Slash-command ack latency of `d1bot serve` while intake runs at a fixed 1,000 req/s.

    .venv/bin/python bench/ack_latency.py [--rate 1000] [--seconds 15] [--commands-per-second 10]

One `d1bot serve` process (SQLite, synchronous=FULL, Slack pointed at the LocalSlack stand-in
served by this script). First a baseline: signed `/card list` requests alone; then the same
while `bench/intake.py --load` (a separate process, open loop) sends notifications at
`--rate`. Latency is counted from each command's scheduled send time to the HTTP answer (the
ack Slack waits for, limit 3 s); the replies go to LocalSlack's response_url.
Target: ack p99 <= 300 ms under load. Prints the machine, the figures, and a last JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402
from bench.intake import FIRST_SECOND, ISSUER, PATH, TOKEN  # noqa: E402
from bot.dev.localslack import LocalSlack  # noqa: E402
from tests.slack_signing import TEAM_ID, command_body, signed_headers  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def commands(
    url: str, slack: LocalSlack, *, per_second: float, seconds: float
) -> dict[str, float]:
    """Signed `/card list` at a fixed rate; ack latencies from the scheduled send times."""
    loop = asyncio.get_running_loop()
    acks: list[float] = []
    failures = 0

    async def one(http: httpx.AsyncClient, due: float) -> None:
        nonlocal failures
        body = command_body("list", response_url=slack.response_url())
        r = await http.post(
            f"{url}/slack/events", content=body, headers=signed_headers(body, secret=SIGNING_SECRET)
        )
        acks.append(loop.time() - due)
        if r.status_code != 200:
            failures += 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        start = loop.time() + 0.1
        tasks = []
        for n in range(int(per_second * seconds)):
            due = start + n / per_second
            await asyncio.sleep(max(0.0, due - loop.time()))
            tasks.append(asyncio.create_task(one(http, due)))
        await asyncio.gather(*tasks)
    return {
        "commands": len(acks),
        "ack_p50_ms": percentile(acks, 0.5) * 1000,
        "ack_p99_ms": percentile(acks, 0.99) * 1000,
        "ack_max_ms": max(acks) * 1000,
        "failures": failures,
    }


SIGNING_SECRET = "bench-signing-secret-0123456789"


def start_d1bot(workdir: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`d1bot serve` on a fresh SQLite file in `workdir`; returns (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{workdir / 'd1bot.db'}",
        "D1_ISSUER_ID": ISSUER,
        "D1_NOTIFY_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "D1BOT_SCHEDULER_ENABLED": "false",
        "D1BOT_WORKSPACE_ID": TEAM_ID,  # the commands come from this team
        **extra_env,
    }
    log = (workdir / "serve.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "d1bot"), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"d1bot serve exited early, see {log.name}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("d1bot serve did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    async with LocalSlack(token_prefix="xoxb") as slack:
        workdir = Path(tempfile.mkdtemp(prefix="d1bot-ack-"))
        proc, url = start_d1bot(
            workdir,
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_API_URL=slack.base_url,
            SQLITE_SYNCHRONOUS="FULL",
        )
        try:
            await commands(url, slack, per_second=args.commands_per_second, seconds=2)  # warm
            idle = await commands(
                url, slack, per_second=args.commands_per_second, seconds=args.seconds
            )
            port = url.rsplit(":", 1)[1]
            load = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bench" / "intake.py"), "--load", PATH, "--port", port,
                "--rate", str(args.rate), "--seconds", str(args.seconds + 2),
                "--base", str(FIRST_SECOND),
                stdout=subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(1.0)  # let the load reach its rate first
            busy = await commands(
                url, slack, per_second=args.commands_per_second, seconds=args.seconds
            )
            out, _ = await load.communicate()
            intake = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            await asyncio.to_thread(stop, proc)
            shutil.rmtree(workdir, ignore_errors=True)
    return {"idle": idle, "under_load": busy, "intake": intake}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--commands-per-second", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    runs = []
    for i in range(args.repeat):
        run = asyncio.run(measure(args))
        runs.append(run)
        idle, busy, intake = run["idle"], run["under_load"], run["intake"]
        print(
            f"run {i + 1}: idle ack p50 {idle['ack_p50_ms']:.1f} ms p99 {idle['ack_p99_ms']:.1f}"
            f" ms | under {args.rate:.0f} req/s intake (achieved {intake['achieved']:.0f},"
            f" intake p99 {intake['p99_ms']:.1f} ms, non-204 {intake['non_204']}): ack p50 "
            f"{busy['ack_p50_ms']:.1f} ms p99 {busy['ack_p99_ms']:.1f} ms max "
            f"{busy['ack_max_ms']:.1f} ms, "
            f"failures {busy['failures']}",
            flush=True,
        )
    result = {
        "runs": len(runs),
        "idle_ack_p50_ms": statistics.median(r["idle"]["ack_p50_ms"] for r in runs),
        "idle_ack_p99_ms": statistics.median(r["idle"]["ack_p99_ms"] for r in runs),
        "ack_p50_ms": statistics.median(r["under_load"]["ack_p50_ms"] for r in runs),
        "ack_p99_ms": statistics.median(r["under_load"]["ack_p99_ms"] for r in runs),
        "intake_achieved_rps": statistics.median(r["intake"]["achieved"] for r in runs),
    }
    print(
        f"median of {len(runs)}: ack under load p50 {result['ack_p50_ms']:.1f} ms, p99 "
        f"{result['ack_p99_ms']:.1f} ms (target p99 <= 300 ms)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
