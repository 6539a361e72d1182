"""The intake writer process, driven directly: it answers everything it was sent before a
stop, and a writer that dies costs a 503 for what it held, never a lost or doubled event."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import Engine

from bot.intake_writer import IntakeWriter, WriterUnavailable
from d1.notifications import NotificationRejected
from tests.intake_support import ISSUER, count
from tests.servers import process_alive, wait_for

AT = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)


def _writer(engine: Engine) -> IntakeWriter:
    return IntakeWriter(
        engine,
        workspace_id="T1",
        exceptions_channel=None,
        extra_exception_statuses=[],
        issuer_id=ISSUER,
        gather_seconds=0.0,
        gather_target=32,
        log_level="WARNING",
    )


def _body(n: int) -> bytes:
    return json.dumps(
        {
            "operationId": f"op-{n}",
            "operation": "PRODUCE",
            "status": "SUCCESSFUL",
            "cardId": f"card-{n % 7}",
            "endTime": f"2026-05-01T08:{n % 60:02d}:00Z",
            "details": {"status": "CARD_PROD_ONGOING"},
        }
    ).encode()


async def test_stop_answers_everything_sent_then_the_writer_exits(any_engine: Engine) -> None:
    writer = _writer(any_engine)
    await writer.start()
    pid = writer.pid
    assert pid is not None and writer.is_healthy()
    records = [asyncio.ensure_future(writer.record(_body(n), received_at=AT)) for n in range(60)]
    await asyncio.sleep(0)  # every record() has sent its frame
    await writer.stop()
    results = await asyncio.gather(*records)
    assert sum(len(r.new_event_ids) for r in results) == 60
    assert count(any_engine, "events") == 60
    assert writer.stats.requests == 60  # the writer's figures came back with its last frame
    assert writer.pid is None


async def test_a_bad_body_is_refused_by_the_writer_naming_the_field(engine: Engine) -> None:
    writer = _writer(engine)
    try:
        with pytest.raises(NotificationRejected) as refused:
            await writer.record(b'{"operations": [{"operationId": 5}]}', received_at=AT)
        assert refused.value.error_code == "FIELD_INVALID_FORMAT"
        assert refused.value.field.startswith("operations[0]")
        result = await writer.record(_body(1), received_at=AT)  # and it goes on
        assert len(result.new_event_ids) == 1
    finally:
        await writer.stop()
    assert count(engine, "events") == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
async def test_a_dead_writer_costs_a_503_and_the_next_request_gets_a_new_one(
    engine: Engine,
) -> None:
    writer = _writer(engine)
    await writer.start()
    try:
        first = writer.pid
        assert first is not None
        await writer.record(_body(1), received_at=AT)
        os.kill(first, signal.SIGSTOP)  # it holds the next request without answering
        held = asyncio.ensure_future(writer.record(_body(2), received_at=AT))
        await asyncio.sleep(0.05)
        assert not held.done()
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WriterUnavailable):
            await asyncio.wait_for(held, 10)
        await wait_for(lambda: not process_alive(first), message="the old writer to be gone")
        retried = await writer.record(_body(2), received_at=AT)  # D1's retry
        assert len(retried.new_event_ids) == 1
        assert writer.pid not in (None, first)
    finally:
        await writer.stop()
    assert count(engine, "events") == 2
