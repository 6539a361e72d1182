"""The group committer: concurrent requests share a commit; a bad one fails alone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from d1.models import Operation
from storage.db import make_engine
from storage.migrate import upgrade
from storage.repositories.cards import count_events
from storage.repositories.group_commit import GroupCommitter
from tests.servers import wait_for

NOW = datetime(2026, 5, 22, 12, 0, tzinfo=timezone.utc)


def _op(n: int) -> Operation:
    return Operation.model_validate(
        {
            "operationId": f"op-{n}",
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": f"card-{n % 3}",
            "endTime": f"2026-05-01T08:{n % 60:02d}:00Z",
            "details": {"status": "CARD_PROD_ONGOING"},
        }
    )


def _broken() -> Operation:
    # Bypasses validation: a NULL operation id violates NOT NULL inside the database.
    op = _op(59)
    return op.model_copy(update={"operation_id": None})


async def test_one_bad_request_in_a_batch_fails_alone(any_engine: Engine) -> None:
    committer = GroupCommitter(any_engine, workspace_id="T1", exceptions_channel=None)
    try:
        # Submitted in one tick: they queue together and form one batch.
        outcomes = await asyncio.gather(
            committer.submit([_op(1)], received_at=NOW),
            committer.submit([_op(2), _broken()], received_at=NOW),
            committer.submit([_op(3)], received_at=NOW),
            return_exceptions=True,
        )
    finally:
        await committer.stop()
    assert isinstance(outcomes[1], IntegrityError)
    assert [len(o.new_event_ids) for o in (outcomes[0], outcomes[2])] == [1, 1]
    # The bad request's good operation was rolled back with it: whole request or nothing.
    assert count_events(any_engine) == 2
    assert committer.stats.batches == 1 and committer.stats.largest == 3


async def test_many_concurrent_requests_share_few_commits(engine: Engine) -> None:
    committer = GroupCommitter(engine, workspace_id="T1", exceptions_channel=None)
    try:
        results = await asyncio.gather(
            *(committer.submit([_op(n)], received_at=NOW) for n in range(50))
        )
    finally:
        await committer.stop()
    assert sum(len(r.new_event_ids) for r in results) == 50
    assert count_events(engine) == 50
    assert committer.stats.batches < 50


async def test_stop_finishes_queued_work(engine: Engine) -> None:
    committer = GroupCommitter(engine, workspace_id="T1", exceptions_channel=None)
    pending = [asyncio.ensure_future(committer.submit([_op(n)], received_at=NOW)) for n in range(5)]
    await asyncio.sleep(0)
    await committer.stop()
    assert all(p.done() and not p.exception() for p in pending)
    assert count_events(engine) == 5


async def test_restarts_after_stop(engine: Engine) -> None:
    committer = GroupCommitter(engine, workspace_id="T1", exceptions_channel=None)
    await committer.submit([_op(1)], received_at=NOW)
    await committer.stop()
    await committer.submit([_op(2)], received_at=NOW)
    await committer.stop()
    assert count_events(engine) == 2


async def test_only_a_batch_with_a_bad_request_takes_the_savepoint_path(any_engine: Engine) -> None:
    committer = GroupCommitter(any_engine, workspace_id="T1", exceptions_channel=None)
    try:
        good = await asyncio.gather(
            *(committer.submit([_op(n)], received_at=NOW) for n in range(3))
        )
        assert committer.stats.fallbacks == 0
        outcomes = await asyncio.gather(
            committer.submit([_op(10)], received_at=NOW),
            committer.submit([_broken()], received_at=NOW),
            return_exceptions=True,
        )
    finally:
        await committer.stop()
    assert committer.stats.fallbacks == 1
    assert isinstance(outcomes[1], IntegrityError)
    assert sum(len(r.new_event_ids) for r in [*good, outcomes[0]]) == 4
    assert count_events(any_engine) == 4


async def test_sqlite_writer_leaves_checkpointing_to_its_checkpointer(engine: Engine) -> None:
    committer = GroupCommitter(
        engine, workspace_id="T1", exceptions_channel=None, checkpoint_interval_s=0.01
    )
    try:
        for n in range(3):
            await committer.submit([_op(n)], received_at=NOW)
        await wait_for(lambda: committer._commits_since_checkpoint == 0, timeout=10)
    finally:
        await committer.stop()
    assert count_events(engine) == 3
    # The writer's connection went back to the pool as it came: autocheckpoint on again.
    raws = [engine.raw_connection() for _ in range(3)]
    try:
        values = [
            r.dbapi_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] for r in raws
        ]
    finally:
        for r in raws:
            r.close()
    assert values == [1000, 1000, 1000]


async def test_sqlite_writer_waits_for_a_held_lock_in_its_thread_then_recovers(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'held.db'}"
    holder = make_engine(url)
    upgrade(holder)
    engine = make_engine(url, busy_timeout_ms=100)
    committer = GroupCommitter(engine, workspace_id="T1", exceptions_channel=None)
    try:
        await committer.submit([_op(1)], received_at=NOW)  # the writer's connection is made
        with holder.begin() as conn:  # BEGIN IMMEDIATE: another writer holds the lock
            conn.exec_driver_sql("SELECT 1")
            with pytest.raises(OperationalError):
                await committer.submit([_op(2)], received_at=NOW)
        await committer.submit([_op(3)], received_at=NOW)  # lock free again: on the loop
    finally:
        await committer.stop()
    assert count_events(engine) == 2
    raws = [engine.raw_connection() for _ in range(2)]
    try:
        timeouts = [r.dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0] for r in raws]
    finally:
        for r in raws:
            r.close()
    assert timeouts == [100, 100]  # the writer's patience restored when it gave its connection back
    engine.dispose()
    holder.dispose()


async def test_commit_delay_waits_for_siblings_and_begins_once_they_are_there(
    any_engine: Engine,
) -> None:
    """With fewer than `gather_target` requests waiting the writer waits (here up to 60 s);
    the request that completes the target starts the batch at once."""
    committer = GroupCommitter(
        any_engine,
        workspace_id="T1",
        exceptions_channel=None,
        gather_seconds=60.0,
        gather_target=4,
    )
    try:
        first = [asyncio.ensure_future(committer.submit([_op(n)], received_at=NOW)) for n in (1, 2)]
        await wait_for(lambda: committer._gathering is not None, timeout=10)
        third = asyncio.ensure_future(committer.submit([_op(3)], received_at=NOW))
        await asyncio.sleep(0)
        assert not any(f.done() for f in [*first, third])  # still gathering: 3 of 4
        fourth = asyncio.ensure_future(committer.submit([_op(4)], received_at=NOW))
        results = await asyncio.wait_for(asyncio.gather(*first, third, fourth), timeout=10)
    finally:
        await committer.stop()
    assert [len(r.new_event_ids) for r in results] == [1, 1, 1, 1]
    assert (committer.stats.batches, committer.stats.largest) == (1, 4)


async def test_commit_delay_is_bounded_for_a_lone_request(engine: Engine) -> None:
    committer = GroupCommitter(
        engine, workspace_id="T1", exceptions_channel=None, gather_seconds=0.05, gather_target=16
    )
    try:
        result = await asyncio.wait_for(committer.submit([_op(1)], received_at=NOW), timeout=10)
    finally:
        await committer.stop()
    assert len(result.new_event_ids) == 1 and committer.stats.batches == 1


def test_record_now_commits_in_the_call_it_returns_and_a_bad_request_fails_alone(
    any_engine: Engine,
) -> None:
    """The writer process's way: statements now, the COMMIT when the returned call runs."""
    committer = GroupCommitter(any_engine, workspace_id="T1", exceptions_channel=None)
    try:
        finish = committer.record_now(
            [committer.pending([_op(n)], received_at=NOW) for n in range(3)]
        )
        if any_engine.dialect.name == "sqlite":  # statements done, nothing visible yet
            reader = any_engine.raw_connection()  # autocommit: reads without the write lock
            try:
                seen = reader.dbapi_connection.execute("SELECT count(*) FROM events").fetchone()
            finally:
                reader.close()
            assert seen == (0,)
        good = finish()
        assert [len(r.new_event_ids) for r in good] == [1, 1, 1]
        assert committer.stats.fallbacks == 0
        outcomes = committer.record_now(
            [
                committer.pending([_op(10)], received_at=NOW),
                committer.pending([_op(11), _broken()], received_at=NOW),
            ]
        )()
    finally:
        committer.close()
    assert isinstance(outcomes[1], IntegrityError)
    assert len(outcomes[0].new_event_ids) == 1
    assert count_events(any_engine) == 4  # op-11 went back with its request
    assert committer.stats.batches == 2 and committer.stats.requests == 5
    assert committer.stats.fallbacks == 1
