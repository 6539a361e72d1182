"""Several workers (replicas) draining one database: each message is sent exactly once, and each
channel's messages stay in order. SQLite and PostgreSQL (any_engine)."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy.engine import Engine

from storage.repositories import outbox as repo
from tests.delivery.outbox_support import delivery, follow, make_worker, produce, record
from tests.servers import wait_for

CHANNELS = [f"C{i:02d}" for i in range(12)]
STEPS = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"]


async def test_two_workers_send_each_message_once(any_engine: Engine) -> None:
    engine = any_engine
    for channel in CHANNELS:
        follow(engine, channel, "card-1")
        follow(engine, channel, "card-2")
    async with delivery(engine) as (slack, runtime, first):
        second = make_worker(runtime, slack, name="replica-2")
        for minute, status in enumerate(STEPS):
            record(engine, produce("card-1", status, minute), produce("card-2", status, minute))
        await asyncio.gather(first.start(), second.start())
        try:
            await wait_for(lambda: repo.pending_count(engine) == 0, timeout=60)
        finally:
            await asyncio.gather(first.stop(), second.stop())

    posts = [c for c in slack.calls_to("chat.postMessage") if c.ok]
    # Each channel: two parents and three replies per card, no duplicates.
    per_channel = Counter(c.channel for c in posts)
    assert per_channel == dict.fromkeys(CHANNELS, 2 + 2 * len(STEPS))
    bodies = Counter((c.channel, c.body.get("thread_ts"), c.body["text"]) for c in posts)
    assert max(bodies.values()) == 1
    for channel in CHANNELS:
        for parent in (m for m in slack.messages(channel=channel) if m["thread_ts"] is None):
            words = [m["text"] for m in slack.thread(channel, parent["ts"])]
            assert [w.split(": ", 1)[1] for w in words] == [
                "Production requested",
                "Data prepared",
                "Ready for production",
            ]
    sent_by = {r.claimed_by for r in repo.rows_of_channel(engine, channel_id=CHANNELS[0])}
    assert sent_by == {None}  # claims are released once settled
