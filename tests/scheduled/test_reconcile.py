"""Reconciliation against the D1 sandbox over real HTTP: notifications deliberately dropped,
the card's state catches up from productionStatus and its channel hears about it once; no
difference, no message; D1 down: the client's backoff (the one retry policy), and the card is
tried again later; gaps on demand."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from bot.runtime import Runtime
from bot.scheduled.jobs import reconcile_quiet
from bot.scheduled.reconcile import Reconciler, differs, synthetic_operation
from bot.server import create_app
from d1.models import ProductionStatus
from storage.repositories.cards import events_of_card, get_card
from tests.d1_fixtures import make_client, running_sandbox
from tests.scheduled_support import FixedClock, make_runtime, outbox_rows, subscribe
from tests.servers import serve_asgi, wait_for

TOKEN = "static-token-for-reconcile-tests"
CARD = "card-rec-1"


async def _no_sleep(_seconds: float) -> None:
    return None


@contextlib.asynccontextmanager
async def _world(engine, **client: Any) -> AsyncIterator[tuple[Runtime, object, FixedClock]]:
    """The bot's intake on loopback, the D1 sandbox calling it, and a client for the sandbox
    (`client`: D1Client options)."""
    clock = FixedClock(datetime.now(timezone.utc))
    runtime = make_runtime(
        engine,
        clock,
        d1_issuer_id="issuer-001",
        d1_notify_token=TOKEN,
        d1bot_exceptions_channel=None,
        d1bot_reconcile_rate_per_second=100.0,
    )
    async with serve_asgi(create_app(runtime, run_background=False)) as bot_url:
        callback = f"{bot_url}/notifications/d1/v2/issuers/issuer-001/cards"
        async with running_sandbox(callback_url=callback, callback_static_token=TOKEN) as (
            sandbox,
            base_url,
        ):
            runtime.d1_client = make_client(base_url, sandbox, **client)
            try:
                yield runtime, sandbox, clock
            finally:
                await runtime.d1_client.aclose()


def _notices(engine) -> list[dict]:
    return outbox_rows(engine, channel_id="CTEAM", card_id=CARD)


async def test_dropped_notifications_are_caught_up_once(engine) -> None:
    async with _world(engine) as (runtime, sandbox, clock):
        sandbox.create_card(CARD, scenario="happy")
        subscribe(engine, CARD, "CTEAM", at=clock.now)
        sandbox.advance(CARD)  # CARD_PROD_REQUESTED, delivered
        await sandbox.flush(timeout=10)
        assert get_card(engine, card_id=CARD).status == "CARD_PROD_REQUESTED"
        assert len(_notices(engine)) == 1

        sandbox.faults.drop_next_notifications(2)
        sandbox.advance(CARD)
        sandbox.advance(CARD)
        await sandbox.flush(timeout=10)
        truth = sandbox.status_of(CARD)["status"]
        assert truth != "CARD_PROD_REQUESTED"
        assert get_card(engine, card_id=CARD).status == "CARD_PROD_REQUESTED"  # we missed it

        reconciler = Reconciler(runtime, sleep=_no_sleep)
        clock.advance(hours=5)  # quiet for longer than the quiet period (4 h)
        report = await reconcile_quiet(runtime, reconciler)
        assert report is not None and report.changed == [CARD]
        card = get_card(engine, card_id=CARD)
        assert card.status == truth
        [synthetic] = [e for e in events_of_card(engine, card_id=CARD) if e.source != "d1"]
        assert synthetic.source == "reconciliation" and synthetic.became_current
        assert len(_notices(engine)) == 2  # the channel hears about the catch-up once

        # Same interval: another replica's run does nothing.
        assert await reconcile_quiet(runtime, reconciler) is None
        # Next interval and period: D1 agrees with us now, so no event and no message.
        clock.advance(hours=5)
        report = await reconcile_quiet(runtime, reconciler)
        assert report is not None and report.asked == 1 and report.changed == []
        assert len(_notices(engine)) == 2


async def test_d1_down_backs_off_and_gives_the_card_back(engine) -> None:
    client_sleeps: list[float] = []

    async def client_sleep(seconds: float) -> None:
        client_sleeps.append(seconds)

    async with _world(engine, max_retries=3, sleep=client_sleep) as (runtime, sandbox, clock):
        sandbox.create_card(CARD, scenario="happy")
        subscribe(engine, CARD, "CTEAM", at=clock.now)
        sandbox.advance(CARD)
        await sandbox.flush(timeout=10)
        sandbox.faults.drop_next_notifications(1)
        sandbox.advance(CARD)
        await sandbox.flush(timeout=10)

        sleeps: list[float] = []

        async def record_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        reconciler = Reconciler(runtime, sleep=record_sleep)
        sandbox.faults.fail_next("productionStatus", status=503, count=100)
        clock.advance(hours=5)
        report = await reconcile_quiet(runtime, reconciler)
        assert report is not None and report.given_back == 1 and report.changed == []
        # One retry policy, the client's: 1 + max_retries calls with growing backoff between
        # them (not the client's retries again inside retries of our own).
        calls = [r for r in sandbox.requests if r.path.endswith("/productionStatus")]
        assert len(calls) == 1 + 3
        assert len(client_sleeps) == 3 and client_sleeps == sorted(client_sleeps)
        assert [s for s in sleeps if s >= 1] == []  # the reconciler only paces its calls
        assert get_card(engine, card_id=CARD).status == "CARD_PROD_REQUESTED"

        sandbox.faults.clear()
        clock.advance(minutes=31)  # next interval, same quiet period: the card was given back
        report = await reconcile_quiet(runtime, reconciler)
        assert report is not None and report.changed == [CARD]
        assert get_card(engine, card_id=CARD).status == sandbox.status_of(CARD)["status"]


async def test_a_gap_is_reconciled_on_demand(engine) -> None:
    async with _world(engine) as (runtime, sandbox, clock):
        sandbox.create_card(CARD, scenario="happy")
        subscribe(engine, CARD, "CTEAM", at=clock.now)
        sandbox.advance(CARD)
        await sandbox.flush(timeout=10)
        sandbox.faults.drop_next_notifications(1)
        sandbox.advance(CARD)
        await sandbox.flush(timeout=10)
        reconciler = Reconciler(runtime, sleep=_no_sleep)
        runtime.gap_listeners.append(reconciler.request)
        # The finding is timed "now": the test's frozen clock must not lag behind the events
        # the sandbox (on the real clock) already delivered, as a live clock never does.
        clock.advance(minutes=1)
        await reconciler.start()
        try:
            runtime.report_gap(CARD)  # no quiet period needed
            truth = sandbox.status_of(CARD)["status"]
            await wait_for(
                lambda: get_card(engine, card_id=CARD).status == truth,
                message="the gap card to catch up",
            )
        finally:
            await reconciler.stop()
        assert len(_notices(engine)) == 2


def test_difference_and_synthetic_operation_are_stable() -> None:
    now = datetime(2025, 6, 10, 8, 0, tzinfo=timezone.utc)
    answer = ProductionStatus.model_validate(
        {
            "status": "CARD_SHIPPED",
            "shipment": {
                "carrier": "ups",
                "status": "IN_TRANSIT",
                "lastUpdatedAt": "2025-06-09T10:00:00Z",
            },
            "name": "JANE DOE",
        }
    )
    assert differs(answer, "CARD_PROD_ONGOING", None)
    assert differs(answer, "CARD_SHIPPED", "INFO_RECEIVED")
    assert not differs(answer, "CARD_SHIPPED", "IN_TRANSIT")
    first = synthetic_operation("card-1", answer, now)
    again = synthetic_operation("card-1", answer, now.replace(hour=9))
    assert first.operation_id == again.operation_id  # the same finding is a duplicate
    assert first.operation_id.startswith("reconcile-card-1-")
    assert first.end_time == datetime(2025, 6, 9, 10, 0, tzinfo=timezone.utc)
    assert "JANE" not in first.model_dump_json()  # the cardholder's name is not carried over
