"""Batched delivery: many heads claimed in one transaction, no redundant parent update; replicas
send each message exactly once. SQLite and PostgreSQL (any_engine) where the database matters."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine

from storage.repositories import claims
from storage.repositories import outbox as repo
from storage.tables import OUTBOX_SENT
from tests.delivery.outbox_support import (
    WORKSPACE,
    delivery,
    drain,
    follow,
    make_worker,
    produce,
    record,
)
from tests.servers import wait_for

STEPS = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"]


def _enqueue(engine: Engine, channels: list[str], now: datetime) -> list[int]:
    return [
        repo.enqueue_message(
            engine,
            workspace_id=WORKSPACE,
            channel_id=channel,
            kind=repo.KIND_MESSAGE,
            payload={"text": f"hello {channel}"},
            now=now,
        )
        for channel in channels
    ]


def test_concurrent_batch_claims_never_overlap(any_engine: Engine) -> None:
    """Several replicas claiming at the same moment (threads, real connections): every head is
    claimed by exactly one of them, and no channel has two rows in hand."""
    engine = any_engine
    now = datetime.now(timezone.utc)
    channels = [f"C{i:03d}" for i in range(120)]
    _enqueue(engine, channels, now)
    _enqueue(engine, channels, now)  # a second row per channel: never claimable yet
    start = threading.Barrier(4)
    by_replica: dict[str, list[int]] = {}

    def replica(name: str) -> None:
        start.wait()
        got = claims.claim_due(
            engine, worker=name, now=now, lease_until=now + timedelta(minutes=2), limit=50
        )
        by_replica[name] = [r.id for r in got if r.id is not None]

    workers = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    claimed = [row_id for ids in by_replica.values() for row_id in ids]
    assert len(claimed) == len(set(claimed)) == len(channels)  # 4 x 50 asked, 120 heads
    per_channel = Counter(
        r.channel_id
        for c in channels
        for r in repo.rows_of_channel(engine, channel_id=c)
        if r.claimed_by
    )
    assert set(per_channel.values()) == {1}


async def test_replicas_fan_out_each_message_once(any_engine: Engine) -> None:
    engine = any_engine
    channels = [f"CF{i:02d}" for i in range(40)]
    for channel in channels:
        follow(engine, channel, "card-1")
    async with delivery(engine) as (slack, runtime, first):
        replicas = [
            first,
            make_worker(runtime, slack, name="r2"),
            make_worker(runtime, slack, name="r3"),
        ]
        for minute, status in enumerate(STEPS):
            record(engine, produce("card-1", status, minute))
        await asyncio.gather(*(w.start() for w in replicas))
        try:
            await wait_for(lambda: repo.pending_count(engine) == 0, timeout=60)
        finally:
            await asyncio.gather(*(w.stop() for w in replicas))

    posts = [c for c in slack.calls_to("chat.postMessage") if c.ok]
    assert Counter(c.channel for c in posts) == dict.fromkeys(channels, 1 + len(STEPS))
    assert (
        max(Counter((c.channel, c.body.get("thread_ts"), c.body["text"]) for c in posts).values())
        == 1
    )
    for channel in channels:
        (parent,) = [m for m in slack.messages(channel=channel) if m["thread_ts"] is None]
        words = [m["text"].split(": ", 1)[1] for m in slack.thread(channel, parent["ts"])]
        assert words == ["Production requested", "Data prepared", "Ready for production"]
    rows = [r for c in channels for r in repo.rows_of_channel(engine, channel_id=c)]
    assert {r.state for r in rows} == {OUTBOX_SENT} and all(r.slack_ts for r in rows)


async def test_parent_posted_from_the_final_state_is_not_updated_again(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        for minute, status in enumerate(STEPS):  # all pending before the first delivery
            record(engine, produce("card-1", status, minute))
        await drain(worker, engine)
        parent, *replies = slack.messages(channel="C1")
        assert "Ready for production" in parent["text"] and len(replies) == 3
        assert parent["updates"] == 0 and slack.calls_to("chat.update") == []

        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))  # a change: updated
        await drain(worker, engine)
        parent = slack.messages(channel="C1")[0]
        assert parent["updates"] == 1 and "In production" in parent["text"]
