"""Intake throughput of this checkout beside an earlier revision's, in the same run.

    .venv/bin/python bench/revisions.py [--base bf90345^] [--rounds 5] [--seconds 5]

The ratio to a bare endpoint (`bench/intake.py`) moves with the bare endpoint as much as with
intake: when the middleware gets cheaper, the ratio falls although intake is as fast as it was.
This compares intake itself across revisions. The base revision is checked out in a temporary
git worktree and run with this checkout's virtual environment, its code first on the path (the
same packages for both: an old install may lack `httptools` and parse HTTP with h11);
the default base is the last revision before the intake machinery was deleted, with its
in-process intake (`D1BOT_INTAKE_WRITER=inline`). Each server is the revision's own
composition (`bot.main.build_runtime`, `bot.server.create_app`) plus `POST /bare`, on SQLite
with `synchronous=FULL`, logging configured as `d1bot serve` does (INFO: `/bare` writes an
access line; a notification answered 204 writes none here, and one in `bf90345^`). Rounds
alternate between the servers: wrk, 32 connections, to `/bare` then to the notification
endpoint (`bench.intake.run_wrk`, distinct new events). Prints each round, the medians and
the per-round ratio of the two intakes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402
from bench.intake import ISSUER, PATH, TOKEN, run_wrk  # noqa: E402

# The last revision with the writer process, the raw-DBAPI projection and group commits.
DEFAULT_BASE = "bf90345^"


def serve(root: str, db: str, port: int) -> None:
    """The revision at `root`, as its `d1bot serve` composes it, plus `POST /bare`."""
    sys.path.insert(0, root)
    os.environ.update(
        DATABASE_URL=f"sqlite:///{db}",
        D1_ISSUER_ID=ISSUER,
        D1_NOTIFY_TOKEN=TOKEN,
        LOG_LEVEL="INFO",  # the production default
        D1BOT_SCHEDULER_ENABLED="false",
        D1BOT_INTAKE_WRITER="inline",  # read by the base revision only
    )
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response

    import bot.main
    from bot.logs import configure_logging
    from bot.server import create_app
    from bot.settings import load_settings
    from storage.migrate import upgrade

    settings = load_settings(_env_file=None)
    configure_logging(level=settings.log_level, fmt=settings.log_format)  # as serve does
    runtime = bot.main.build_runtime(settings)
    upgrade(runtime.engine)
    app = create_app(runtime)

    async def bare(_request: Request) -> Response:
        return Response(status_code=204)

    app.add_route("/bare", bare, methods=["POST"])
    if hasattr(bot.main, "GIL_SWITCH_INTERVAL_SECONDS"):  # as the revision's serve sets it
        sys.setswitchinterval(bot.main.GIL_SWITCH_INTERVAL_SECONDS)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def _start(root: Path, db: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), "--db", str(db), "--port", str(port)],
        stderr=subprocess.DEVNULL,  # the log lines: formatted and written, not kept
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server of {root} exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server of {root} did not start")


def measure(base_root: Path, rounds: int, seconds: int, workdir: Path) -> dict[str, list[float]]:
    from bench.intake import _free_port

    roots = {"base": base_root, "this": ROOT}
    servers = {name: (_start(root, workdir / f"{name}.db", port := _free_port()), port)
               for name, root in roots.items()}  # fmt: skip
    figures: dict[str, list[float]] = {}
    events = 1_790_000_000
    try:
        time.sleep(2)  # startup settles
        for n in range(rounds):
            for name, (_, port) in servers.items():
                for path, what in (("/bare", "bare"), (PATH, "intake")):
                    events += 10_000_000
                    rps = run_wrk(port, path, seconds, events, workdir)
                    figures.setdefault(f"{name}_{what}", []).append(rps)
            this, base = figures["this_intake"][-1], figures["base_intake"][-1]
            figures.setdefault("intake_this_vs_base", []).append(this / base)
            print(
                f"round {n}: base bare {figures['base_bare'][-1]:.0f}, intake {base:.0f} | "
                f"this bare {figures['this_bare'][-1]:.0f}, intake {this:.0f} req/s | "
                f"intake this/base {this / base:.2f}",
                flush=True,
            )
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(30)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.db, args.port)
        return 0
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(worktree), args.base],
                       check=True, capture_output=True)  # fmt: skip
        try:
            figures = measure(worktree, args.rounds, args.seconds, Path(tmp))
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(worktree)], check=False)
    medians = {key: statistics.median(values) for key, values in figures.items()}
    print(
        f"medians of {args.rounds}: base ({args.base}) bare {medians['base_bare']:.0f}, "
        f"intake {medians['base_intake']:.0f} | this bare {medians['this_bare']:.0f}, "
        f"intake {medians['this_intake']:.0f} req/s | intake this/base "
        f"{medians['intake_this_vs_base']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
