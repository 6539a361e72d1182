"""Delivery benchmarks against the Slack stand-in enforcing Slack's limits (1 message per second
per channel, the app's workspace budget per minute, Tier 3 for `chat.update`), with the bot's
workspace budget (`D1BOT_WORKSPACE_RATE_PER_MINUTE`) raised to `--rate` (600 by default) so that
a run takes minutes, not a quarter of an hour:

(a) fan-out: one card event to a card subscribed in 1,000 channels (a parent and a reply each);
(b) exceptions: 10,000 exception events, one card each, the cards spread over 300 channels,
    every one also alerted in the exceptions channel. Bursts are coalesced into summaries
    (`D1BOT_BURST_THRESHOLD`); while the burst drains, a new exception about an unrelated card
    (its own channel) is recorded, and the time until Slack has it is measured (goal: 60 s).

For each it prints the 429s the stand-in answered (goal: zero), the calls actually made (after
coalescing), the drain time (first budgeted call to the last) against the minimum the budget
allows for that many calls (the windows of `bot.delivery.budget`: the rate in any 60 s, rate/12
+ 3 in any 5 s; `chat.update` also 45 a minute), and the ratio (goal: within 10%, i.e. <= 1.10),
and the CPU time per Slack call. It asserts nothing.

    .venv/bin/python bench/fanout.py [--scale 1.0] [--rate 600] [--scenario both]

`--scale 0.05` (50 channels; 500 exceptions over 15 channels) runs in well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bench.common import print_machine
from bot.delivery.budget import CHAT_UPDATE_PER_MINUTE, earliest_slot, windows_for
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
NEW_CARD = "bench-new-exception"  # (b): the unrelated exception posted during the burst
NEW_CHANNEL = "CNEWEXC"
EXCEPTIONS_CHANNEL = "CEXCEPTIONS"
WORKSPACE = "T1"
STEPS = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING"]
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
BUDGETED = ("chat.postMessage", "chat.update")
INTAKE_BATCH = 200  # exception events per intake transaction in (b)


def operation(
    card_id: str, step: int, status: str | None = None, op_id: str = "bench-op"
) -> Operation:
    at = (T0 + timedelta(minutes=step)).isoformat()
    return Operation.model_validate(
        {
            "operationId": op_id,
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": card_id,
            "startTime": at,
            "endTime": at,
            "details": {"status": status or STEPS[step % len(STEPS)]},
        }
    )


def exception_op(card_id: str) -> Operation:
    return operation(card_id, 1, "CARD_PROD_ONHOLD", op_id=f"exc-{card_id}")


def subscribe(engine: sa.Engine, pairs: list[tuple[str, str]]) -> None:
    """Subscribe each (channel, card) pair, in one transaction."""
    table = SubscriptionRecord.__table__  # type: ignore[attr-defined]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {
                    "workspace_id": WORKSPACE,
                    "channel_id": channel,
                    "card_id": card,
                    "filter": "all",
                    "created_by": "UBENCH",
                    "created_at": now,
                }
                for channel, card in pairs
            ],
        )


@dataclass(frozen=True)
class Seen:
    """What the bench needs from one recorded call (picklable across processes)."""

    method: str
    channel: str | None
    at: float  # time.monotonic(): one clock for every process of the machine
    status: int
    ok: bool
    new_card: bool  # the call is about NEW_CARD


def _summarise(slack: LocalSlack) -> list[Seen]:
    return [
        Seen(c.method, c.channel, c.at, c.status, c.ok, NEW_CARD in json.dumps(c.body))
        for c in slack.calls
    ]


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


def _stand_in_process(conn: Connection, rate: int) -> None:
    """The Slack stand-in on its own core, as Slack would be: answers `base_url`, then the
    recorded calls when told to stop."""

    async def serve() -> None:
        async with LocalSlack() as slack:
            slack.enforce_rate_limit(per_channel_per_second=1.0, workspace_per_minute=rate)
            conn.send(slack.base_url)
            started = cpu_seconds()
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send((_summarise(slack), cpu_seconds() - started))

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def stand_in(
    separate: bool, rate: int
) -> AsyncIterator[tuple[str, Callable[[], tuple[list[Seen], float | None]]]]:
    """The stand-in's base URL, and a function that returns the calls it saw and (in its own
    process) the CPU seconds it used while serving them."""
    if not separate:
        async with LocalSlack() as slack:
            slack.enforce_rate_limit(per_channel_per_second=1.0, workspace_per_minute=rate)
            yield slack.base_url, lambda: (_summarise(slack), None)
        return
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_stand_in_process, args=(theirs, rate), daemon=True
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


def minimum_span(calls: int, updates: int, rate: int) -> float:
    """The shortest time from the first to the last of `calls` budgeted calls (`updates` of
    them `chat.update`) that the budget's windows allow: each slot at the earliest moment."""
    slots: deque[float] = deque()
    windows = windows_for(rate)
    for _ in range(calls):
        slots.append(earliest_slot(slots, windows, 0.0))
    update_span = max(0, updates - 1) // CHAT_UPDATE_PER_MINUTE * 60.0
    return max(slots[-1] if slots else 0.0, update_span)


@dataclass
class Drained:
    seen: list[Seen]
    elapsed: float  # worker start to an empty outbox
    bot_cpu: float
    slack_cpu: float | None
    injected_at: float | None  # time.monotonic() when the new exception was recorded


async def drain(
    engine: sa.Engine,
    args: argparse.Namespace,
    *,
    burst_threshold: int = 10,
    during: Callable[[], float | None] | None = None,
) -> Drained:
    """Start a worker against the stand-in, wait for an empty outbox, stop. `during`, when
    given, is called (in a thread) every 0.1 s until it has recorded something: it returns the
    `time.monotonic()` at which it was stored."""
    async with stand_in(args.separate_slack, args.rate) as (base_url, recorded):
        settings = load_settings(
            slack_bot_token="xoxb-bench",
            slack_api_url=base_url,
            d1bot_channel_rate_per_second=1.0,
            d1bot_workspace_rate_per_minute=args.rate,
            d1bot_burst_threshold=burst_threshold,
            d1bot_exceptions_channel=EXCEPTIONS_CHANNEL,
            d1bot_workspace_id=WORKSPACE,
        )
        runtime = Runtime(settings=settings, engine=engine)
        # The worker builds its Slack client from the settings, as `d1bot serve` does.
        worker = OutboxWorker(
            runtime, concurrency=args.concurrency, batch_size=args.batch, poll_seconds=0.05
        )
        print(f"  load average before delivery: {load_average()}")
        cpu_started = cpu_seconds()
        started = time.perf_counter()
        injected_at: float | None = None
        await worker.start()
        try:
            # Polls in a thread: a query on the loop would stall the worker's sends.
            while True:
                if during is not None and injected_at is None:
                    injected_at = await asyncio.to_thread(during)
                pending = await asyncio.to_thread(outbox_repo.pending_count, engine)
                if pending == 0 and (during is None or injected_at is not None):
                    break
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
        elapsed = time.perf_counter() - started
        bot_cpu = cpu_seconds() - cpu_started
        seen, slack_cpu = recorded()
    return Drained(seen, elapsed, bot_cpu, slack_cpu, injected_at)


def report(drained: Drained, args: argparse.Namespace) -> None:
    """The figures every scenario prints."""
    seen = drained.seen
    budgeted = [c for c in seen if c.method in BUDGETED and c.ok]
    posts = [c for c in budgeted if c.method == "chat.postMessage"]
    updates = len(budgeted) - len(posts)
    refused = sum(1 for c in seen if c.status == 429)
    span = max(c.at for c in budgeted) - min(c.at for c in budgeted) if budgeted else 0.0
    minimum = minimum_span(len(budgeted), updates, args.rate)
    print(f"  429 answers: {refused}")
    print(
        f"  calls made: {len(posts)} chat.postMessage + {updates} chat.update "
        f"({len(budgeted)} against the budget of {args.rate}/min) in {drained.elapsed:.1f} s"
    )
    ratio = f"{span / minimum:.3f}" if minimum > 0 else "n/a (too few calls to be limited)"
    print(
        f"  drain: {span:.1f} s from the first budgeted call to the last; minimum the budget "
        f"allows for {len(budgeted)} calls: {minimum:.1f} s; ratio {ratio}"
    )
    if seen:
        print(
            f"  CPU per Slack call: bot {drained.bot_cpu / len(seen) * 1e6:.0f} us"
            + (
                f", stand-in {drained.slack_cpu / len(seen) * 1e6:.0f} us"
                if drained.slack_cpu is not None
                else " (stand-in in this process)"
            )
            + f"; load average after: {load_average()}"
        )


def fresh_engine(args: argparse.Namespace, tmp: str, name: str) -> sa.Engine:
    url = args.database_url or f"sqlite:///{tmp}/{name}.db"
    engine = make_engine(url, synchronous=args.synchronous)
    upgrade(engine)
    with engine.connect() as conn:
        table = SubscriptionRecord.__table__  # type: ignore[attr-defined]
        if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
            raise SystemExit("--database-url must name an empty database")
    return engine


async def fanout(args: argparse.Namespace, tmp: str) -> None:
    """(a) One card event to a card subscribed in many channels."""
    channels = [f"C{i:05d}" for i in range(max(1, round(1000 * args.scale)))]
    print(f"(a) one event fanned out to {len(channels)} channels")
    engine = fresh_engine(args, tmp, "fanout")
    subscribe(engine, [(c, CARD) for c in channels])
    started = time.perf_counter()
    result = record_operations(
        engine,
        [operation(CARD, 0)],
        received_at=datetime.now(timezone.utc),
        workspace_id=WORKSPACE,
        exceptions_channel=None,
    )
    expand_all(engine)  # the worker would; timed apart so that "enqueue" means outbox rows
    print(
        f"  enqueue: {(time.perf_counter() - started) * 1000:.0f} ms for {result.enqueued} "
        f"outbox rows"
    )
    drained = await drain(engine, args)
    report(drained, args)
    engine.dispose()


async def exceptions(args: argparse.Namespace, tmp: str) -> None:
    """(b) Many exceptions across many channels, and a new one during the burst."""
    channels = [f"X{i:04d}" for i in range(max(1, round(300 * args.scale)))]
    cards = [f"exc-card-{i:05d}" for i in range(max(1, round(10_000 * args.scale)))]
    print(
        f"(b) {len(cards)} exceptions across {len(channels)} channels (and each alerted in "
        f"{EXCEPTIONS_CHANNEL}), burst threshold {args.burst_threshold}"
    )
    engine = fresh_engine(args, tmp, "exceptions")
    pairs = [(channels[i % len(channels)], card) for i, card in enumerate(cards)]
    subscribe(engine, [*pairs, (NEW_CHANNEL, NEW_CARD)])
    started = time.perf_counter()
    for at in range(0, len(cards), INTAKE_BATCH):
        record_operations(
            engine,
            [exception_op(card) for card in cards[at : at + INTAKE_BATCH]],
            received_at=datetime.now(timezone.utc),
            workspace_id=WORKSPACE,
            exceptions_channel=EXCEPTIONS_CHANNEL,
        )
    print(
        f"  intake: {time.perf_counter() - started:.1f} s for {len(cards)} events "
        f"({INTAKE_BATCH} per transaction; the worker expands and coalesces them)"
    )
    # "During the burst": once a quarter of the channels got their message.
    under_way = max(1, len(channels) // 4)

    def inject_when_under_way() -> float | None:
        with engine.connect() as conn:
            sent = conn.execute(
                sa.text(
                    "SELECT count(*) FROM outbox WHERE state = 'sent'"
                    " AND (last_error IS NULL OR last_error <> 'coalesced')"
                )
            ).scalar_one()
        if sent < under_way:
            return None
        record_operations(
            engine,
            [exception_op(NEW_CARD)],
            received_at=datetime.now(timezone.utc),
            workspace_id=WORKSPACE,
            exceptions_channel=EXCEPTIONS_CHANNEL,
        )
        return time.monotonic()  # stored (the worker finds it within its 0.05 s poll)

    drained = await drain(
        engine, args, burst_threshold=args.burst_threshold, during=inject_when_under_way
    )
    report(drained, args)
    new = [c for c in drained.seen if c.ok and c.new_card and c.method == "chat.postMessage"]
    if drained.injected_at is None:
        print("  new exception: not injected (the burst was over first)")
    else:
        backlog_left = sum(
            1 for c in drained.seen if c.method in BUDGETED and c.ok and c.at > drained.injected_at
        )
        for label, mine in (
            (f"in its channel {NEW_CHANNEL}", [c for c in new if c.channel == NEW_CHANNEL]),
            (
                f"alert in {EXCEPTIONS_CHANNEL}",
                [c for c in new if c.channel == EXCEPTIONS_CHANNEL],
            ),
        ):
            when = (
                f"{min(c.at for c in mine) - drained.injected_at:.1f} s after it was recorded"
                if mine
                else "never"
            )
            print(f"  new unrelated exception, {label}: {when} (goal: 60 s)")
        print(f"  budgeted calls made after it was recorded: {backlog_left}")
    engine.dispose()


async def run(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"scale {args.scale}; workspace budget {args.rate}/min (bot and stand-in), 1 message "
        f"per second per channel, chat.update {CHAT_UPDATE_PER_MINUTE}/min (bot), 50/min "
        f"(stand-in); Slack stand-in: {'own process' if args.separate_slack else 'same process'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.scenario in ("fanout", "both"):
            await fanout(args, tmp)
        if args.scenario in ("exceptions", "both"):
            await exceptions(args, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size of both scenarios (1.0: 1,000 channels; 10,000 exceptions over 300 channels)",
    )
    parser.add_argument("--rate", type=int, default=600, help="workspace budget per minute")
    parser.add_argument("--scenario", choices=("fanout", "exceptions", "both"), default="both")
    parser.add_argument("--burst-threshold", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="an empty database (one scenario)")
    parser.add_argument(
        "--same-process",
        dest="separate_slack",
        action="store_false",
        help="run the Slack stand-in in the bot's process (default: its own process)",
    )
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous mode")
    args = parser.parse_args()
    if args.database_url and args.scenario == "both":
        parser.error("--database-url needs --scenario fanout or --scenario exceptions")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
