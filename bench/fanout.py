"""Fan-out benchmark: events about one card subscribed in many channels, delivered through the
Slack stand-in enforcing Slack's per-channel limit (1 message/second/channel).

Prints the machine, the time to enqueue (intake's transaction, outbox rows included), the
delivery rate as a fraction of the rate Slack allows, and how many 429s the stand-in answered
(target: >= 90% of the allowed rate, zero 429s).

    .venv/bin/python bench/fanout.py [--channels 1000] [--events 3] [--database-url URL]

"Allowed rate": each channel may take one post per second, so a channel that must receive N
posts needs at least (N - 1) seconds; the fraction is that ideal span over the measured span
from the first post to the last (all channels together), and per channel.

The overall figure includes the ramp: every channel's first post must go out before its pacing
clock starts, so with a peak rate of R posts/s the span is at least ideal + channels / R and the
overall fraction at most ideal / (ideal + channels / R) (at 1,000 channels and 3 events, 90%
needs R >= 3,000 posts/s). The bench prints the ramp and that bound, and the CPU time each
process spent per call (a figure that does not depend on how busy the shared machine is), so
that one can tell whether the bot or the stand-in was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bot.delivery.worker import OutboxWorker
from bot.dev.localslack import LocalSlack
from bot.runtime import Runtime
from bot.settings import load_settings
from d1.models import Operation
from storage.db import make_engine
from storage.migrate import upgrade
from storage.repositories import outbox as outbox_repo
from storage.repositories.fanout import expand_all
from storage.repositories.intake import record_operations
from storage.tables import SubscriptionRecord

CARD = "bench-card-1"
STEPS = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING"]
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kb = int(info.readline().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{memory}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def operation(step: int) -> Operation:
    at = (T0 + timedelta(minutes=step)).isoformat()
    return Operation.model_validate(
        {
            "operationId": "bench-op",
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": CARD,
            "startTime": at,
            "endTime": at,
            "details": {"status": STEPS[step % len(STEPS)]},
        }
    )


def subscribe_channels(engine: sa.Engine, channels: list[str]) -> None:
    table = SubscriptionRecord.__table__  # type: ignore[attr-defined]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {
                    "workspace_id": "T1",
                    "channel_id": c,
                    "card_id": CARD,
                    "filter": "all",
                    "created_by": "UBENCH",
                    "created_at": now,
                }
                for c in channels
            ],
        )


@dataclass(frozen=True)
class Seen:
    """What the bench needs from one recorded call (picklable across processes)."""

    method: str
    channel: str | None
    at: float
    status: int
    ok: bool


def _summarise(slack: LocalSlack) -> list[Seen]:
    return [Seen(c.method, c.channel, c.at, c.status, c.ok) for c in slack.calls]


def cpu_seconds() -> float:
    """CPU time (user + system) this process used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return loadavg.read().split()[0]
    except OSError:
        return "?"


def _stand_in_process(conn: Connection) -> None:
    """The Slack stand-in on its own core, as Slack would be: answers `base_url`, then the
    recorded calls when told to stop."""

    async def serve() -> None:
        async with LocalSlack() as slack:
            slack.enforce_rate_limit(per_channel_per_second=1.0)
            conn.send(slack.base_url)
            started = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send((_summarise(slack), cpu_seconds() - started))

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def stand_in(
    separate: bool,
) -> AsyncIterator[tuple[str, Callable[[], tuple[list[Seen], float | None]]]]:
    """The stand-in's base URL, and a function that returns the calls it saw and (in its own
    process) the CPU seconds it used while serving them."""
    if not separate:
        async with LocalSlack() as slack:
            slack.enforce_rate_limit(per_channel_per_second=1.0)
            yield slack.base_url, lambda: (_summarise(slack), None)
        return
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_stand_in_process, args=(theirs,), daemon=True
    )
    process.start()
    base_url = await asyncio.to_thread(ours.recv)
    collected: list[tuple[list[Seen], float | None]] = []

    def calls() -> tuple[list[Seen], float | None]:
        if not collected:
            ours.send("stop")
            collected.append(ours.recv())
        return collected[0]

    try:
        yield base_url, calls
    finally:
        calls()
        process.join(10)


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/fanout.db"
        engine = make_engine(url, synchronous=args.synchronous)
        upgrade(engine)
        with engine.connect() as conn:
            table = SubscriptionRecord.__table__  # type: ignore[attr-defined]
            if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                raise SystemExit("--database-url must name an empty database")
        channels = [f"C{i:05d}" for i in range(args.channels)]
        subscribe_channels(engine, channels)
        print(
            f"database: {engine.dialect.name}; channels: {len(channels)}; events: {args.events}; "
            f"Slack stand-in: {'own process' if args.separate_slack else 'same process'}"
        )

        enqueue_times = []
        expand_times = []
        for step in range(args.events):
            started = time.perf_counter()
            result = record_operations(
                engine,
                [operation(step)],
                received_at=datetime.now(timezone.utc),
                workspace_id="T1",
                exceptions_channel=None,
            )
            recorded_at = time.perf_counter()
            # Intake writes one fan-out marker; the worker expands it into the outbox rows
            # (done here, timed apart, so that "enqueue" still means "rows in the outbox").
            expand_all(engine)
            enqueue_times.append(time.perf_counter() - started)
            expand_times.append(time.perf_counter() - recorded_at)
            assert result.enqueued == len(channels), result
        print(
            "enqueue: "
            + ", ".join(
                f"{t * 1000:.0f} ms (expansion {x * 1000:.0f} ms)"
                for t, x in zip(enqueue_times, expand_times, strict=True)
            )
            + f" for {len(channels)} outbox rows per event"
        )

        async with stand_in(args.separate_slack) as (base_url, recorded):
            settings = load_settings(
                slack_bot_token="xoxb-bench",
                slack_api_url=base_url,
                d1bot_channel_rate_per_second=1.0,
                d1bot_workspace_id="T1",
            )
            runtime = Runtime(settings=settings, engine=engine)
            # The worker builds its Slack client from the settings, as `d1bot serve` does.
            worker = OutboxWorker(
                runtime,
                concurrency=args.concurrency,
                batch_size=args.batch,
                poll_seconds=0.05,
            )
            print(f"load average before delivery: {load_average()}")
            cpu_started = cpu_seconds()
            loop_cpu_started = time.thread_time()  # this thread runs the event loop
            started = time.perf_counter()
            await worker.start()
            try:
                # A poll in a thread: a query on the loop would stall the worker's sends.
                while await asyncio.to_thread(outbox_repo.pending_count, engine) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            finally:
                await worker.stop()
            elapsed = time.perf_counter() - started
            bot_cpu = cpu_seconds() - cpu_started
            loop_cpu = time.thread_time() - loop_cpu_started

            seen, slack_cpu = recorded()

        posts = [c for c in seen if c.method == "chat.postMessage" and c.ok]
        updates = [c for c in seen if c.method == "chat.update" and c.ok]
        refused = [c for c in seen if c.status == 429]
        per_channel: dict[str, list[float]] = defaultdict(list)
        for call in posts:
            per_channel[call.channel or ""].append(call.at)
        expected = args.events + 1  # a parent, then one reply per event
        ideal = (expected - 1) / 1.0
        span = max(c.at for c in posts) - min(c.at for c in posts)
        channel_fractions = [
            (len(times) - 1) / (max(times) - min(times))
            for times in per_channel.values()
            if len(times) > 1
        ]
        print(
            f"delivered: {len(posts)} posts + {len(updates)} parent updates in {elapsed:.1f} s "
            f"({len(posts) / span:.0f} posts/s; Slack allows {len(channels)}/s over these "
            f"channels)"
        )
        print(f"channels complete: {sum(len(t) == expected for t in per_channel.values())}")
        print(
            f"fraction of the allowed rate: {ideal / span:.0%} overall "
            f"(ideal span {ideal:.1f} s, measured {span:.1f} s); per channel median "
            f"{statistics.median(channel_fractions):.0%}, min {min(channel_fractions):.0%}"
        )
        print(f"429 answers: {len(refused)}")
        firsts = sorted(min(times) for times in per_channel.values())
        ramp = firsts[-1] - firsts[0]
        print(
            f"ramp (first post of the first channel to that of the last): {ramp:.2f} s; "
            f"bound on the overall fraction at that ramp: {ideal / (ideal + ramp):.0%}"
        )
        lasts = sorted(max(times) for times in per_channel.values())
        ramp_quantiles = _quantiles(firsts, firsts[0], (10, 25, 50, 75, 90, 100))
        print(f"first posts out after (ms): {ramp_quantiles}")
        print(f"last posts out after (ms, from the first post): {_quantiles(lasts, firsts[0])}")
        calls = len(seen)
        print(
            f"CPU per Slack call: bot {bot_cpu / calls * 1e6:.0f} us "
            f"(event loop {loop_cpu / calls * 1e6:.0f} us, worker threads "
            f"{(bot_cpu - loop_cpu) / calls * 1e6:.0f} us; {bot_cpu:.1f} s over {elapsed:.1f} s)"
            + (
                f", stand-in {slack_cpu / calls * 1e6:.0f} us ({slack_cpu:.1f} s)"
                if slack_cpu is not None
                else ", stand-in in this process"
            )
            + f"; load average after: {load_average()}"
        )
        engine.dispose()


def _quantiles(
    times: list[float], origin: float, percents: tuple[int, ...] = (10, 50, 90, 100)
) -> str:
    """`10%: 21, 50%: 131, ...`: milliseconds after `origin` by which that share of the sorted
    `times` had happened."""
    return ", ".join(
        f"{q}%: {(times[min(len(times) - 1, len(times) * q // 100)] - origin) * 1e3:.0f}"
        for q in percents
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--same-process",
        dest="separate_slack",
        action="store_false",
        help="run the Slack stand-in in the bot's process (default: its own process)",
    )
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous mode")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
