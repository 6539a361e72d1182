"""Batched delivery: many heads claimed in one transaction, settlements written in group
commits, and no redundant parent update; replicas still send each message exactly once.
SQLite and PostgreSQL (any_engine) where the database matters."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from bot import outbox_commits
from bot.outbox_commits import SettleQueue
from storage.repositories import outbox as repo
from storage.repositories import outbox_settle
from storage.repositories import threads as threads_repo
from storage.repositories.outbox_settle import Dead, Parent, Progress, Retry, Sent, settle_many
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT
from tests.servers import wait_for
from tests.test_outbox_support import (
    WORKSPACE,
    delivery,
    drain,
    follow,
    make_worker,
    produce,
    record,
)

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


def test_settle_many_writes_every_kind_in_one_transaction(any_engine: Engine) -> None:
    engine = any_engine
    now = datetime.now(timezone.utc)
    ids = _enqueue(engine, ["C1", "C2", "C3", "C4", "C5"], now)
    mine = repo.claim_due(
        engine, worker="A", now=now, lease_until=now + timedelta(minutes=2), limit=4
    )
    assert [r.id for r in mine] == ids[:4]
    theirs = repo.claim_due(
        engine, worker="B", now=now, lease_until=now + timedelta(minutes=2), limit=10
    )
    assert [r.id for r in theirs] == ids[4:]  # one transaction claimed many heads; no overlap

    later = now + timedelta(seconds=30)
    results = settle_many(
        engine,
        worker="A",
        now=now,
        items=[
            Sent(ids[0], "111.1"),
            Retry(ids[1], later, "http_503"),
            Dead(ids[2], "channel_not_found"),
            Progress(ids[3], slack_ts="444.4"),
            Parent(WORKSPACE, "C1", "card-1", "999.9"),
            Sent(ids[4], "555.5"),  # B's row: refused
        ],
    )
    assert results == [True, True, True, True, True, False]
    rows = {
        r.id: r
        for c in ["C1", "C2", "C3", "C4", "C5"]
        for r in repo.rows_of_channel(engine, channel_id=c)
    }
    assert rows[ids[0]].state == OUTBOX_SENT and rows[ids[0]].slack_ts == "111.1"
    assert rows[ids[0]].claimed_by is None
    sent_at = rows[ids[0]].sent_at
    assert sent_at is not None and sent_at.replace(tzinfo=timezone.utc) == now
    assert rows[ids[1]].state == OUTBOX_PENDING and rows[ids[1]].attempts == 1
    assert rows[ids[1]].last_error == "http_503" and rows[ids[1]].claimed_by is None
    assert rows[ids[2]].state == OUTBOX_DEAD and rows[ids[2]].last_error == "channel_not_found"
    assert rows[ids[3]].slack_ts == "444.4" and rows[ids[3]].claimed_by == "A"  # still held
    assert rows[ids[4]].state == OUTBOX_PENDING and rows[ids[4]].claimed_by == "B"
    thread = threads_repo.get_thread(
        engine, workspace_id=WORKSPACE, channel_id="C1", card_id="card-1"
    )
    assert thread is not None and thread.parent_ts == "999.9"

    # A second settle of a row already sent is refused; a parent replaced keeps one thread.
    again = settle_many(
        engine,
        worker="A",
        now=now,
        items=[Sent(ids[0], "x"), Parent(WORKSPACE, "C1", "card-1", "1000.1")],
    )
    assert again == [False, True]
    assert repo.get_row(engine, row_id=ids[0]).slack_ts == "111.1"  # type: ignore[union-attr]
    threads = threads_repo.threads_of_card(engine, card_id="card-1")
    assert [t.parent_ts for t in threads] == ["1000.1"]


def test_many_sent_rows_settle_by_primary_key_and_only_the_claimed_ones(
    any_engine: Engine,
) -> None:
    engine = any_engine
    now = datetime.now(timezone.utc)
    channels = [f"C{i:03d}" for i in range(300)]
    ids = _enqueue(engine, channels, now)
    lease = now + timedelta(minutes=2)
    mine = {r.id for r in repo.claim_due(engine, worker="A", now=now, lease_until=lease, limit=200)}
    repo.claim_due(engine, worker="B", now=now, lease_until=lease, limit=100)
    results = settle_many(
        engine, worker="A", now=now, items=[Sent(i, f"{i}.000100") for i in reversed(ids)]
    )
    assert results == [i in mine for i in reversed(ids)]
    rows = [r for c in channels for r in repo.rows_of_channel(engine, channel_id=c)]
    assert {r.id for r in rows if r.state == OUTBOX_SENT} == mine
    assert all(r.slack_ts == f"{r.id}.000100" for r in rows if r.id in mine)
    assert all(r.claimed_by == "B" for r in rows if r.id not in mine)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            plan = " ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + outbox_settle.SENT_SQLITE, ("s", "t", "[]", "w", "p")
                )
            )
        assert "INTEGER PRIMARY KEY" in plan and "ix_outbox" not in plan, plan


def test_the_sqlite_claim_looks_rows_up_by_primary_key(engine: Engine) -> None:
    """A claim names up to a thousand heads among every pending row: by primary key, not by
    reading the pending rows through the state index."""
    statement = repo._CLAIM_SQLITE.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", ("w", "t", "[1]", "n")
            )
        )
    assert "INTEGER PRIMARY KEY" in plan and "ix_outbox" not in plan, plan


def test_concurrent_batch_claims_never_overlap(any_engine: Engine) -> None:
    """Several replicas claiming at the same moment (threads, real connections): every head is
    claimed by exactly one of them, and no channel has two rows in hand."""
    engine = any_engine
    now = datetime.now(timezone.utc)
    channels = [f"C{i:03d}" for i in range(120)]
    _enqueue(engine, channels, now)
    _enqueue(engine, channels, now)  # a second row per channel: never claimable yet
    start = threading.Barrier(4)
    claims: dict[str, list[int]] = {}

    def replica(name: str) -> None:
        start.wait()
        got = repo.claim_due(
            engine, worker=name, now=now, lease_until=now + timedelta(minutes=2), limit=50
        )
        claims[name] = [r.id for r in got if r.id is not None]

    workers = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    claimed = [row_id for ids in claims.values() for row_id in ids]
    assert len(claimed) == len(set(claimed)) == len(channels)  # 4 x 50 asked, 120 heads
    per_channel = Counter(
        r.channel_id
        for c in channels
        for r in repo.rows_of_channel(engine, channel_id=c)
        if r.claimed_by
    )
    assert set(per_channel.values()) == {1}


async def test_replicas_fan_out_each_message_once_with_group_commits(any_engine: Engine) -> None:
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
    settled = sum(w.settler.items for w in replicas)
    commits = sum(w.settler.commits for w in replicas)
    assert settled >= len(rows) + len(channels)  # every row, and every parent's ts
    assert commits < settled  # answers that arrived together were committed together


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


async def test_group_commit_batches_waiters_and_retries_a_failed_commit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(timezone.utc)
    ids = _enqueue(engine, [f"C{i}" for i in range(30)], now)
    repo.claim_due(engine, worker="A", now=now, lease_until=now + timedelta(minutes=2), limit=30)
    queue = SettleQueue(engine, worker="A", clock=lambda: now)
    real = outbox_settle.settle_many
    failures = iter([RuntimeError("database is locked")])

    def flaky(*args: object, **kwargs: object) -> list[bool]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox_commits, "settle_many", flaky)
    monkeypatch.setattr(outbox_commits, "COMMIT_RETRY_SECONDS", 0.01)
    results = await asyncio.gather(*(queue.settle(Sent(i, f"{i}.0")) for i in ids))
    assert results == [True] * len(ids)
    assert queue.items == len(ids) and queue.commits < len(ids)
    assert {
        r.state for i in range(30) for r in repo.rows_of_channel(engine, channel_id=f"C{i}")
    } == {OUTBOX_SENT}

    def broken(*args: object, **kwargs: object) -> list[bool]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox_commits, "settle_many", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        await queue.settle(Sent(ids[0], "x"))
