"""The outbox worker end to end: intake's outbox rows -> real HTTP -> the Slack stand-in, on a
real SQLite file (and PostgreSQL where marked)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from sqlalchemy.engine import Engine

from bot.render import actions
from storage.repositories import claims
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from storage.tables import OUTBOX_DEAD, OUTBOX_SENT
from tests.delivery.outbox_support import (
    EXCEPTIONS_CHANNEL,
    WORKSPACE,
    delivery,
    drain,
    follow,
    make_worker,
    produce,
    record,
    shipment,
)
from tests.servers import wait_for


def _texts(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages]


async def test_parent_on_first_event_then_thread_replies_and_parent_kept_current(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        parent, first = slack.messages(channel="C1")
        assert "Production requested" in parent["text"] and parent["thread_ts"] is None
        assert first["thread_ts"] == parent["ts"] and not first["reply_broadcast"]

        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))
        record(engine, shipment("card-1", "IN_TRANSIT", 20))
        await drain(worker, engine)

        parent, *replies = slack.messages(channel="C1")
        assert [r["thread_ts"] for r in replies] == [parent["ts"]] * 3
        assert "In production" in replies[1]["text"] and "In transit" in replies[2]["text"]
        # The parent shows the card's current state: shipped, in transit, with the carrier.
        assert parent["updates"] == 2 and "In transit" in parent["text"]
        parent_blocks = str(parent["blocks"])
        assert "UPS" in parent_blocks and "1Z999AA10123456784" in parent_blocks
        assert "Lyon, France" in parent_blocks

    rows = repo.rows_of_channel(engine, channel_id="C1")
    assert [r.state for r in rows] == [OUTBOX_SENT] * 3
    assert [r.slack_ts for r in rows] == [m["ts"] for m in replies]
    thread = threads_repo.get_thread(
        engine, workspace_id=WORKSPACE, channel_id="C1", card_id="card-1"
    )
    assert thread is not None and thread.parent_ts == parent["ts"]


async def test_exception_broadcast_alert_with_buttons_and_link_filtered_channel(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    follow(engine, "C2", "card-1", exceptions_only=True)
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        assert (
            slack.messages(channel="C2") == [] and slack.messages(channel=EXCEPTIONS_CHANNEL) == []
        )

        exception = record(engine, produce("card-1", "DATA_EXCEPTION", 5))
        await drain(worker, engine)

        c1_parent, _first, c1_alert = slack.messages(channel="C1")
        assert c1_alert["reply_broadcast"] is True and c1_alert["thread_ts"] == c1_parent["ts"]
        assert "Data rejected" in c1_alert["text"]
        # The exceptions-only channel gets the exception alone: a parent and the broadcast.
        c2 = slack.messages(channel="C2")
        assert len(c2) == 2 and c2[1]["reply_broadcast"] is True
        assert "Data rejected" in c2[0]["text"]

        (alert,) = slack.messages(channel=EXCEPTIONS_CHANNEL)
        buttons = next(b for b in alert["blocks"] if b["type"] == "actions")["elements"]
        assert [b["action_id"] for b in buttons] == [
            actions.ALERT_ASSIGN,
            actions.ALERT_RESOLVE,
            actions.ALERT_REFRESH,
            actions.ALERT_RETRACK,
        ]
        value = actions.decode_value(buttons[0]["value"])
        assert value == actions.ActionValue("card-1", exception.new_event_ids[0])
        assert "/archives/C" in str(alert["blocks"]) and "Card thread" in str(alert["blocks"])

        # A duplicate, and a late older event, post nothing.
        calls_before = len(slack.calls)
        record(engine, produce("card-1", "DATA_EXCEPTION", 5))
        record(engine, produce("card-1", "DATA_PREPARED", 2))
        await drain(worker, engine)
        assert len(slack.calls) == calls_before


async def test_alert_waits_for_the_thread_of_a_first_event(engine: Engine) -> None:
    follow(engine, "C1", "card-9")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-9", "CARD_PROD_EXCEPTION", 0))
        await worker.start()
        try:
            await wait_for(lambda: slack.messages(channel=EXCEPTIONS_CHANNEL), timeout=15)
        finally:
            await worker.stop()
        (alert,) = slack.messages(channel=EXCEPTIONS_CHANNEL)
        parent = slack.messages(channel="C1")[0]
        assert f"p{parent['ts'].replace('.', '')}" in str(alert["blocks"])


async def test_500s_then_429_then_ok_every_message_once_in_order(engine: Engine) -> None:
    for card in ("card-a", "card-b"):
        follow(engine, "C1", card)
        follow(engine, "C2", card)
    async with delivery(engine) as (slack, runtime, worker):
        slack.fail_next("chat.postMessage", status=500, count=4)
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        steps = ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY", "CARD_PROD_ONGOING"]
        for minute, status in enumerate(steps):
            record(engine, produce("card-a", status, minute), produce("card-b", status, minute))
        await worker.start()
        try:
            runtime.wake_outbox()
            await wait_for(lambda: repo.pending_count(engine) == 0, timeout=30)
        finally:
            await worker.stop()

    assert slack.early_calls == []  # nothing came sooner than a Retry-After allowed
    assert [c.status for c in slack.calls_to("chat.postMessage")][:5] == [500] * 4 + [429]
    for channel in ("C1", "C2"):
        messages = slack.messages(channel=channel)
        assert len(messages) == 2 * (1 + len(steps))  # a parent and 4 replies per card
        for card in ("card-a", "card-b"):
            parent = next(m for m in messages if m["thread_ts"] is None and card in m["text"])
            thread = slack.thread(channel, parent["ts"])
            words = [
                "Production requested",
                "Data prepared",
                "Ready for production",
                "In production",
            ]
            assert [next(w for w in words if w in m["text"]) for m in thread] == words
    assert all(r.state == OUTBOX_SENT for r in repo.rows_of_channel(engine, channel_id="C1"))


async def test_paced_to_the_channel_rate_without_429(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine, d1bot_channel_rate_per_second=4.0) as (slack, _runtime, worker):
        slack.enforce_rate_limit(per_channel_per_second=4.0, tolerance=0.02)
        for minute, status in enumerate(
            ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"]
        ):
            record(engine, produce("card-1", status, minute))
        await drain(worker, engine)
    posts = slack.calls_to("chat.postMessage")
    assert len(posts) == 4 and all(p.status == 200 for p in posts)
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.25 - 0.02


async def test_pacing_holds_the_channel_rate_when_answers_come_back_late(engine: Engine) -> None:
    """Answers that come back late (a slow way back, a busy event loop) never bring two posts
    closer together than the channel's interval on Slack's side."""
    follow(engine, "C1", "card-1")
    async with delivery(engine, d1bot_channel_rate_per_second=4.0) as (slack, _runtime, worker):
        slack.enforce_rate_limit(per_channel_per_second=4.0, tolerance=0.0)
        slack.delay_answers(0.4, after=1)  # the parent's answer is prompt, the rest are late
        for minute, status in enumerate(
            ["CARD_PROD_REQUESTED", "DATA_PREPARED", "CARD_PROD_READY"]
        ):
            record(engine, produce("card-1", status, minute))
        await drain(worker, engine)
    posts = slack.calls_to("chat.postMessage")
    assert [p.status for p in posts] == [200] * 4 and not slack.early_calls
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.25, gaps


async def test_transient_failures_end_as_dead_after_max_attempts(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine, d1bot_outbox_max_attempts=3) as (slack, _runtime, worker):
        slack.fail_next("chat.postMessage", status=503, count=10)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await worker.start()
        try:
            await wait_for(lambda: repo.count_dead_letters(engine) == 1, timeout=15)
        finally:
            await worker.stop()
    (row,) = repo.rows_of_channel(engine, channel_id="C1")
    assert row.state == OUTBOX_DEAD and row.attempts == 3
    assert row.last_error == "max_attempts: http_503"


async def test_parent_is_not_posted_twice_when_the_reply_fails(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        slack.fail_next("chat.postMessage", status=500, skip=1)  # the parent goes, the reply fails
        await drain(worker, engine)
        parent, reply = slack.messages(channel="C1")
        assert reply["thread_ts"] == parent["ts"]
        assert len(slack.calls_to("chat.postMessage")) == 3  # parent, failed reply, reply
        (row,) = repo.rows_of_channel(engine, channel_id="C1")
        assert row.state == OUTBOX_SENT and row.attempts == 1


async def test_restart_resumes_and_an_expired_lease_is_reclaimed(any_engine: Engine) -> None:
    engine = any_engine
    follow(engine, "C1", "card-1")
    follow(engine, "C2", "card-1")
    async with delivery(engine) as (slack, runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        now = runtime.clock()
        # A worker that claimed C1's row and died before sending it.
        claimed = claims.claim_due(
            engine, worker="dead-worker", now=now, lease_until=now + timedelta(seconds=0.5), limit=1
        )
        assert len(claimed) == 1 and claimed[0].channel_id == "C1"
        await worker.start()  # C2 goes; C1 is held by the dead worker's lease
        try:
            await wait_for(lambda: len(slack.messages(channel="C2")) == 2, timeout=10)
        finally:
            await worker.stop()
        assert slack.messages(channel="C1") == []

        restarted = make_worker(runtime, slack)
        await wait_for(lambda: runtime.clock() > now + timedelta(seconds=0.5), timeout=5)
        await drain(restarted, engine)
        assert len(slack.messages(channel="C1")) == 2
        # The dead worker's late settle is refused: the row stays sent once.
        assert not claims.mark_sent(
            engine, row_id=claimed[0].id, worker="dead-worker", now=now, slack_ts="x"
        )
    assert repo.pending_count(engine) == 0


async def test_burst_is_coalesced_into_one_summary(engine: Engine) -> None:
    cards = [f"batch-{i:02d}" for i in range(6)]
    for card in cards:
        follow(engine, "C1", card)
    follow(engine, "C2", cards[0])
    async with delivery(engine, d1bot_burst_threshold=3) as (slack, _runtime, worker):
        record(engine, *[produce(card, "CARD_PROD_REQUESTED", 0) for card in cards[:5]])
        record(engine, produce(cards[5], "DATA_EXCEPTION", 0))
        await drain(worker, engine)
        (summary,) = slack.messages(channel="C1")
        assert summary["text"].startswith("6 cards changed at once, 1 with exceptions")
        assert all(card in str(summary["blocks"]) for card in cards)
        assert len(slack.messages(channel="C2")) == 2  # under the threshold: parent + reply
        assert len(slack.messages(channel=EXCEPTIONS_CHANNEL)) == 1  # alerts are never folded
    rows = repo.rows_of_channel(engine, channel_id="C1")
    assert sorted(r.last_error or "" for r in rows if r.kind == "card_event") == ["coalesced"] * 6
    assert [r.kind for r in rows if r.slack_ts] == ["card_burst"]


async def test_a_burst_of_exceptions_is_one_summary_and_a_later_one_is_its_own_alert(
    engine: Engine,
) -> None:
    """A batch of failures must not queue an unrelated new exception behind a hundred alerts
    (one message a second per channel): the burst is one summary, counted by status."""
    failed = [f"fail-{i:02d}" for i in range(8)]
    async with delivery(engine, d1bot_burst_threshold=3) as (slack, _runtime, worker):
        record(engine, *[produce(card, "DATA_EXCEPTION", i) for i, card in enumerate(failed)])
        await drain(worker, engine)
        (summary,) = slack.messages(channel=EXCEPTIONS_CHANNEL)
        assert summary["text"].startswith("8 cards changed at once, 8 with exceptions")
        shown = str(summary["blocks"])
        assert "Data rejected: 8" in shown
        assert shown.index("fail-07") < shown.index("fail-00")  # the newest first
        record(engine, produce("other-card", "CARD_PROD_EXCEPTION", 30))
        await drain(worker, engine)
        alerts = slack.messages(channel=EXCEPTIONS_CHANNEL)
        assert len(alerts) == 2 and "other-card" in str(alerts[1]["blocks"])


async def test_message_with_thread_and_card_notice(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        repo.enqueue_message(
            engine,
            workspace_id=WORKSPACE,
            channel_id="C1",
            kind=repo.KIND_CARD_NOTICE,
            card_id="card-1",
            thread_key=f"{WORKSPACE}:C1:card-1",
            payload={"text": "Card card-1 is stuck", "blocks": []},
            now=runtime.clock(),
        )
        repo.enqueue_message(
            engine,
            workspace_id=WORKSPACE,
            channel_id="CDIGEST",
            kind=repo.KIND_MESSAGE,
            payload={
                "text": "Daily digest",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Digest*"}}],
                "thread": [{"text": "part 1"}, {"text": "part 2"}],
            },
            now=runtime.clock(),
        )
        await drain(worker, engine)
        parent, _reply, notice = slack.messages(channel="C1")
        assert notice["thread_ts"] == parent["ts"] and notice["reply_broadcast"] is True
        digest, part1, part2 = slack.messages(channel="CDIGEST")
        assert digest["blocks"][0]["text"]["text"] == "*Digest*"
        assert [part1["text"], part2["text"]] == ["part 1", "part 2"]
        assert part1["thread_ts"] == part2["thread_ts"] == digest["ts"]


async def test_install_runs_with_the_server_lifecycle_and_wakes(engine: Engine) -> None:
    from bot.delivery.worker import install

    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, runtime, _worker):
        worker = install(runtime, poll_seconds=30.0)  # only the wakeup can make it quick
        (task,) = runtime.background
        await task.start()
        try:
            assert task.is_healthy()
            await asyncio.sleep(0)
            record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
            runtime.wake_outbox()
            await wait_for(lambda: len(slack.messages(channel="C1")) == 2, timeout=10)
        finally:
            await task.stop()
        assert not task.is_healthy() and worker.name
