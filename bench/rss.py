"""Server memory: RSS of a `d1bot serve` process (with its intake writer) after 1M events.

    .venv/bin/python bench/rss.py [--events 1000000] [--per-request 200] [--repeat 1]

Starts the real `d1bot serve` (SQLite file, synchronous=NORMAL to keep the load short) and sends
the events through its notification endpoint (bodies of `--per-request` distinct shipment
updates over 100k cards), reading VmRSS from /proc at 0, 25, 50, 75 and 100%; then asks for
`/metrics` and `/healthz` and reads VmRSS and VmHWM (peak) once more: the server's and its
intake writer process's, summed. Target: <= 200 MB.
Prints the machine, the figures, and a last line of JSON for bench/run_all.py.
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

ISSUER = "bench-issuer"
TOKEN = "bench-token"
PATH = f"/notifications/d1/v2/issuers/{ISSUER}/cards"
SIGNING_SECRET = "bench-signing-secret-0123456789"
CARDS = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_d1bot(workdir: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`d1bot serve` on a fresh SQLite file in `workdir`; returns (process, base URL)."""
    port = free_port()
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
        **extra_env,
    }
    binary = Path(sys.executable).parent / "d1bot"
    log = (workdir / f"serve-{port}.log").open("ab")
    proc = subprocess.Popen(
        [str(binary), "serve"],
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


def children_of(pid: int) -> list[int]:
    """The processes `pid` started (the intake writer)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_memory_mb(pid: int) -> dict[str, float]:
    values: dict[str, float] = {"VmRSS": 0.0, "VmHWM": 0.0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024
    return values


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of `pid` and the processes it started (the intake writer),
    summed, in MB (the sum of the peaks: an upper bound of the peak of the sum)."""
    total = {"VmRSS": 0.0, "VmHWM": 0.0}
    for one in (pid, *children_of(pid)):
        for key, mb in process_memory_mb(one).items():
            total[key] += mb
    return total


def operation(n: int) -> dict:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + n))
    return {
        "operationId": f"rss-{n}",
        "operation": "STANDALONE_TRACKING",
        "status": "SUCCESSFUL",
        "cardId": f"rss-card-{n % CARDS}",
        "timestamp": at,
        "details": {
            "trackingType": "SHIPMENT",
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "fedex",
                "trackingNumber": f"1Z{n:010d}",
                "status": "IN_TRANSIT",
                "message": "In transit",
                "lastUpdatedAt": at,
            },
        },
    }


async def load(url: str, pid: int, events: int, per_request: int) -> list[tuple[int, float]]:
    """Send `events` operations; RSS samples (events stored, MB) at each quarter."""
    samples = [(0, memory_mb(pid)["VmRSS"])]
    marks = {events * q // 4 for q in (1, 2, 3, 4)}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in range(0, events, per_request):
        queue.put_nowait(start)
    sent = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while not queue.empty():
            start = queue.get_nowait()
            ops = [operation(n) for n in range(start, min(events, start + per_request))]
            for _attempt in range(20):
                r = await http.post(url + PATH, json={"operations": ops}, headers=headers)
                if r.status_code == 204:
                    break
                await asyncio.sleep(0.5)  # 503: the database was busy, retry like D1
            else:
                raise SystemExit(f"request refused: {r.status_code} {r.text}")
            before = sent
            sent += len(ops)
            for mark in marks:
                if before < mark <= sent:
                    samples.append((mark, memory_mb(pid)["VmRSS"]))

    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(worker(http) for _ in range(8)))
    return sorted(samples)


def run_once(events: int, per_request: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="d1bot-rss-"))
    proc, url = start_d1bot(workdir, SQLITE_SYNCHRONOUS="NORMAL")
    try:
        started = time.monotonic()
        samples = asyncio.run(load(url, proc.pid, events, per_request))
        seconds = time.monotonic() - started
        httpx.get(f"{url}/metrics", timeout=30)
        httpx.get(f"{url}/healthz", timeout=30)
        final = memory_mb(proc.pid)
        parts = [
            (one, process_memory_mb(one)["VmRSS"]) for one in (proc.pid, *children_of(proc.pid))
        ]
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    for mark, mb in samples:
        print(f"  {mark:>9} events stored: RSS {mb:6.1f} MB")
    print(
        f"  after /metrics and /healthz: RSS {final['VmRSS']:.1f} MB, peak {final['VmHWM']:.1f} MB"
        " (the server and its intake writer: " + " + ".join(f"{mb:.1f}" for _, mb in parts) + " MB)"
    )
    print(f"  load: {events} events in {seconds:.0f} s ({events / seconds:.0f} events/s)")
    return {"rss_mb": final["VmRSS"], "peak_mb": final["VmHWM"], "start_mb": samples[0][1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print_machine()
    print(f"\nd1bot serve, SQLite, {args.events} events in bodies of {args.per_request}")
    runs = []
    for i in range(args.repeat):
        print(f"run {i + 1}:")
        runs.append(run_once(args.events, args.per_request))
    result = {
        "events": args.events,
        "runs": len(runs),
        "rss_mb": statistics.median(r["rss_mb"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "start_mb": statistics.median(r["start_mb"] for r in runs),
    }
    print(
        f"median RSS after {args.events} events: {result['rss_mb']:.1f} MB "
        f"(peak {result['peak_mb']:.1f} MB; target <= 200 MB)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
