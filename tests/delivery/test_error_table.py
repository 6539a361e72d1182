"""Every class of the Slack error table, met over real HTTP from the Slack stand-in: transient
errors back off, a channel that refuses the bot is paused (one notice, nothing lost) until it is
back, a message Slack refuses is a dead letter at once, a refused token pauses all delivery
until `auth.test` succeeds, an unknown error is retried three times, a deleted parent is
replaced, and a row that waits never holds back another card of its channel."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.engine import Engine

from bot.delivery.channel_access import resume_channel
from storage.repositories import outbox as repo
from storage.repositories import pauses
from storage.repositories import threads as threads_repo
from storage.tables import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT
from tests.delivery.outbox_support import (
    EXCEPTIONS_CHANNEL,
    T0,
    WORKSPACE,
    delivery,
    drain,
    follow,
    make_worker,
    produce,
    record,
)
from tests.servers import wait_for


def _states(engine: Engine, channel: str) -> list[str]:
    return [r.state for r in repo.rows_of_channel(engine, channel_id=channel)]


async def test_transient_slack_errors_are_retried_and_delivered(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        slack.fail_next("chat.postMessage", error="service_unavailable")
        slack.fail_next("chat.postMessage", error="request_timeout")
        slack.fail_next("chat.postMessage", status=503)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        parent, reply = slack.messages(channel="C1")
        assert reply["thread_ts"] == parent["ts"]
    (row,) = repo.rows_of_channel(engine, channel_id="C1")
    assert row.state == OUTBOX_SENT and row.attempts == 3


@pytest.mark.parametrize(
    ("declare", "error"),
    [
        ({"bot_is_member": False}, "not_in_channel"),
        ({"is_archived": True}, "is_archived"),
        ({"bot_is_member": False, "is_private": True}, "channel_not_found"),
    ],
)
async def test_a_channel_that_refuses_the_bot_is_paused_with_one_notice_until_it_is_back(
    engine: Engine, declare: dict[str, bool], error: str
) -> None:
    follow(engine, "C9", "card-1")
    follow(engine, "C9", "card-2")
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, runtime, worker):
        slack.add_channel("C9", **declare)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        record(engine, produce("card-2", "CARD_PROD_REQUESTED", 0))
        await worker.start()
        try:
            await wait_for(lambda: len(slack.messages(channel=EXCEPTIONS_CHANNEL)) == 1)
            await wait_for(lambda: len(slack.messages(channel="C1")) == 2)  # others go on
            (notice,) = slack.messages(channel=EXCEPTIONS_CHANNEL)
            assert "<#C9>" in notice["text"] and "paused" in notice["text"]
            refused = [c for c in slack.calls_to("chat.postMessage") if c.channel == "C9"]
            assert [c.response["error"] for c in refused] == [error]  # no retry while paused
            # Waiting, not lost, and no attempt burned.
            assert _states(engine, "C9") == [OUTBOX_PENDING] * 2
            assert {r.attempts for r in repo.rows_of_channel(engine, channel_id="C9")} == {0}
            pause = pauses.channel_pause(engine, workspace_id=WORKSPACE, channel_id="C9")
            assert pause is not None and pause.reason == error

            # Invited back (or unarchived): the pause ends and the waiting posts go out.
            slack.add_channel("C9")
            assert await resume_channel(runtime, workspace_id=WORKSPACE, channel_id="C9")
            await wait_for(lambda: _states(engine, "C9") == [OUTBOX_SENT] * 2)
        finally:
            await worker.stop()
        assert len(slack.messages(channel="C9")) == 4  # two parents, two replies
        assert len(slack.messages(channel=EXCEPTIONS_CHANNEL)) == 1  # still one notice
    assert repo.count_dead_letters(engine) == 0


async def test_a_broken_exceptions_channel_is_paused_and_said_in_the_log(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async with delivery(engine) as (slack, _runtime, worker):
        slack.add_channel(EXCEPTIONS_CHANNEL, is_archived=True)
        record(engine, produce("card-1", "CARD_PROD_ONHOLD", 0))
        with caplog.at_level(logging.WARNING, logger="bot.delivery"):
            await worker.start()
            try:
                await wait_for(
                    lambda: pauses.channel_pause(
                        engine, workspace_id=WORKSPACE, channel_id=EXCEPTIONS_CHANNEL
                    )
                )
            finally:
                await worker.stop()
        assert len(slack.calls_to("chat.postMessage")) == 1  # the refused alert, no notice
    lines = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert len(lines) == 1 and EXCEPTIONS_CHANNEL in lines[0]


async def test_a_message_slack_refuses_is_a_dead_letter_at_once_and_holds_nothing_back(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, runtime, worker):
        slack.fail_next("chat.postMessage", error="invalid_blocks")
        slack.fail_next("chat.postMessage", error="msg_too_long")
        for text in ("first", "second"):
            repo.enqueue_message(
                engine,
                workspace_id=WORKSPACE,
                channel_id="C1",
                kind=repo.KIND_MESSAGE,
                payload={"text": text},
                now=runtime.clock(),
            )
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        assert len(slack.messages(channel="C1")) == 2  # the card's parent and reply
        assert len(slack.calls_to("chat.postMessage")) == 4  # each refusal asked once
    dead = repo.dead_letters(engine, channel_id="C1")
    assert sorted((d.last_error, d.attempts) for d in dead) == [
        ("invalid_blocks", 1),
        ("msg_too_long", 1),
    ]


async def test_a_message_over_slacks_limits_is_fitted_not_refused(engine: Engine) -> None:
    """Even a row rendered by an older version passes the Slack text boundary when sent."""
    too_many_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 51
    async with delivery(engine) as (slack, runtime, worker):
        for payload in ({"text": "x" * 40_001}, {"text": "digest", "blocks": too_many_blocks}):
            repo.enqueue_message(
                engine,
                workspace_id=WORKSPACE,
                channel_id="C1",
                kind=repo.KIND_MESSAGE,
                payload=payload,
                now=runtime.clock(),
            )
        await drain(worker, engine)
        long_text, digest = slack.messages(channel="C1")
        assert len(long_text["text"]) <= 40_000 and long_text["text"].endswith("…")
        assert len(digest["blocks"]) == 50 and "more not shown" in str(digest["blocks"][-1])
    assert repo.dead_letters(engine, channel_id="C1") == []


async def test_a_refused_token_pauses_all_delivery_until_auth_test_succeeds(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    follow(engine, "C1", "card-1")
    follow(engine, "C2", "card-1")
    async with delivery(engine) as (slack, runtime, _worker):
        worker = make_worker(runtime, slack, auth_check_seconds=0.2)
        slack.fail_next("chat.postMessage", error="token_revoked", count=2)
        slack.fail_next("auth.test", error="token_revoked", count=2)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        with caplog.at_level(logging.ERROR, logger="bot.delivery"):
            await worker.start()
            try:
                await wait_for(lambda: worker.pause_reason(), message="readiness red")
                assert worker.is_healthy()  # alive: a restart would not bring the token back
                await wait_for(lambda: len(slack.calls_to("auth.test")) >= 3)
                await wait_for(lambda: worker.pause_reason() is None, message="readiness green")
                await wait_for(lambda: repo.pending_count(engine) == 0)
            finally:
                await worker.stop()
        assert len(slack.messages(channel="C1")) == 2 and len(slack.messages(channel="C2")) == 2
        answers = [c.response.get("error") for c in slack.calls_to("auth.test")]
        assert answers[:2] == ["token_revoked", "token_revoked"] and answers[2] is None
    rows = repo.rows_of_channel(engine, channel_id="C1") + repo.rows_of_channel(
        engine, channel_id="C2"
    )
    assert {(r.state, r.attempts) for r in rows} == {(OUTBOX_SENT, 0)}  # no attempt burned
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3 and all("token_revoked" in e for e in errors)


async def test_an_unknown_error_is_retried_three_times_then_kept_as_a_dead_letter(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        slack.fail_next("chat.postMessage", error="brand_new_error", count=10)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        assert len(slack.calls_to("chat.postMessage")) == 4
    (row,) = repo.rows_of_channel(engine, channel_id="C1")
    assert row.state == OUTBOX_DEAD and row.attempts == 4
    assert row.last_error == "brand_new_error"


async def test_a_deleted_parent_is_replaced_and_the_thread_continues_under_it(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        old_parent, _reply = slack.messages(channel="C1")
        slack.delete_message("C1", old_parent["ts"])  # an agent deletes the card's parent

        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))
        await drain(worker, engine)
        refused = slack.calls_to("chat.postMessage")[2]
        assert refused.response["error"] == "thread_not_found"
        parent, reply = [m for m in slack.messages(channel="C1") if m["ts"] > old_parent["ts"]][1:]
        assert parent["thread_ts"] is None and "In production" in parent["text"]
        assert reply["thread_ts"] == parent["ts"] and "In production" in reply["text"]
    thread = threads_repo.get_thread(
        engine, workspace_id=WORKSPACE, channel_id="C1", card_id="card-1"
    )
    assert thread is not None and thread.parent_ts == parent["ts"]
    rows = repo.rows_of_channel(engine, channel_id="C1")
    assert [(r.state, r.attempts) for r in rows] == [(OUTBOX_SENT, 0)] * 2


@pytest.mark.parametrize("error", ["message_not_found", "cant_update_message"])
async def test_a_parent_update_that_finds_it_gone_posts_a_new_parent(
    engine: Engine, error: str
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        slack.fail_next("chat.update", error=error)
        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))
        await drain(worker, engine)
        await wait_for(lambda: len(slack.messages(channel="C1")) == 4)
        first, _r1, _r2, renewed = slack.messages(channel="C1")
        assert renewed["thread_ts"] is None and "In production" in renewed["text"]
    thread = threads_repo.get_thread(
        engine, workspace_id=WORKSPACE, channel_id="C1", card_id="card-1"
    )
    assert thread is not None and thread.parent_ts == renewed["ts"] != first["ts"]
    assert repo.count_dead_letters(engine) == 0


async def test_a_waiting_row_never_holds_back_another_card_of_its_channel(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    follow(engine, "C1", "card-2")
    async with delivery(engine) as (slack, runtime, _worker):
        worker = make_worker(runtime, slack, backoff_base=600.0, backoff_cap=600.0)
        slack.fail_next("chat.postMessage", status=500)  # card-1's parent: back off 5-10 min
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await worker.start()
        try:
            await wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 1)
            record(engine, produce("card-2", "CARD_PROD_REQUESTED", 0))
            runtime.wake_outbox()
            await wait_for(lambda: len(slack.messages(channel="C1")) == 2)
        finally:
            await worker.stop()
    card_1, card_2 = repo.rows_of_channel(engine, channel_id="C1")
    assert (card_1.card_id, card_1.state, card_1.attempts) == ("card-1", OUTBOX_PENDING, 1)
    assert (card_2.card_id, card_2.state) == ("card-2", OUTBOX_SENT)
    assert card_1.next_attempt_at > T0
