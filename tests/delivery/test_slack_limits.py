"""Slack's limits, met over real HTTP against the stand-in enforcing them: the workspace budget
(all posts and updates of the app together, spread evenly), `chat.update` under Tier 3, a rate
limit answer pausing its method for the whole app, links that never unfurl, and a crashed
worker's rows taken over within one short lease."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from bot.delivery.budget import CHAT_UPDATE_PER_MINUTE, earliest_slot, windows_for
from bot.settings import load_settings
from storage.repositories import claims, threads
from storage.repositories import outbox as repo
from storage.tables import OUTBOX_SENT
from tests.delivery.outbox_support import (
    EXCEPTIONS_CHANNEL,
    delivery,
    drain,
    follow,
    make_runtime,
    make_worker,
    produce,
    record,
    shipment,
)
from tests.servers import wait_for

if TYPE_CHECKING:
    from bot.dev.localslack import LocalSlack
    from bot.runtime import Runtime


def _most_in_any_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_budget_slots_keep_every_window() -> None:
    """1,000 slots asked for at once: at most the rate in any minute, rate/12 + 3 in any 5 s,
    and no slot later than the windows require (the budget is used, not wasted)."""
    for rate in (240, 600):
        slots: deque[float] = deque(maxlen=rate)
        given = []
        for _ in range(1000):
            at = earliest_slot(slots, windows_for(rate), 0.0)
            slots.append(at)
            given.append(at)
        assert _most_in_any_window(given, 60.0) == rate
        assert _most_in_any_window(given, 5.0) == rate // 12 + 3
        assert given[-1] <= 1000 / rate * 60 + 5  # drained at the budget's pace
    updates: deque[float] = deque(maxlen=CHAT_UPDATE_PER_MINUTE)
    spaced = []
    for _ in range(200):
        spaced.append(earliest_slot(updates, ((60.0, CHAT_UPDATE_PER_MINUTE),), 0.0))
        updates.append(spaced[-1])
    assert _most_in_any_window(spaced, 60.0) == CHAT_UPDATE_PER_MINUTE < 50


async def test_workspace_budget_spreads_posts_of_all_channels_without_a_429(
    engine: Engine,
) -> None:
    channels = [f"C{i:02d}" for i in range(6)]
    for channel in channels:
        follow(engine, channel, "card-1")
    # 36 a minute: at most 6 in any 5 s, across all channels together.
    async with delivery(engine, d1bot_workspace_rate_per_minute=36) as (slack, _rt, worker):
        slack.enforce_rate_limit(per_channel_per_second=1.0, workspace_per_minute=36)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine, timeout=30)
        posts = [c for c in slack.calls_to("chat.postMessage")]
        assert len(posts) == 12 and all(c.ok for c in posts)
        assert slack.rate_limited == 0 and slack.early_calls == []
        # The stand-in's clock: arrivals, with a little loopback jitter allowed for.
        assert _most_in_any_window([c.at for c in posts], 5.0 - 0.05) <= 36 // 12 + 3


async def test_when_the_budget_is_short_alerts_then_first_posts_go_first(
    any_engine: Engine,
) -> None:
    """The worker claims no more than the budget lets go soon; what it claims first is the
    exception alert, then a card's first post in a channel, then routine thread updates."""
    engine = any_engine
    channels = [f"C{i}" for i in range(8)]
    for channel in channels:
        follow(engine, channel, "card-1")
    async with delivery(engine) as (slack, runtime, worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)  # every channel has the card's thread
        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))  # 8 routine replies
        follow(engine, "CNEW", "card-3")
        record(engine, produce("card-3", "CARD_PROD_REQUESTED", 0))  # a first post
        record(engine, produce("card-2", "CARD_PROD_ONHOLD", 0))  # an unrelated alert
        now = runtime.clock()
        first = claims.claim_due(engine, worker="w", now=now, lease_until=now, limit=2)
        assert {(r.kind, r.channel_id) for r in first} == {
            (repo.KIND_EXCEPTION_ALERT, EXCEPTIONS_CHANNEL),
            (repo.KIND_CARD_EVENT, "CNEW"),
        }
        # Short of budget: 12 a minute lets 4 go in the next 5 s, so 4 are claimed at most.
        short = make_worker(make_runtime(engine, slack, d1bot_workspace_rate_per_minute=12), slack)
        assert short.slack.budget.room(5.0) == 4


async def test_a_rate_limit_answer_pauses_the_method_for_the_whole_app(engine: Engine) -> None:
    for channel in ("C1", "C2", "C3"):
        follow(engine, channel, "card-1")
    async with delivery(engine) as (slack, runtime, _worker):
        worker = make_worker(runtime, slack, concurrency=1)  # one request at a time
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        slack.fail_next("chat.postMessage", error="ratelimited", skip=2)  # ok:false, no header
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        posts = slack.calls_to("chat.postMessage")
        limited = [i for i, c in enumerate(posts) if c.response.get("error") == "ratelimited"]
        assert len(limited) == 2
        for i in limited:  # nothing to any channel before Retry-After (1 s) had passed
            later = posts[i + 1 :]
            assert later and min(c.at for c in later) >= posts[i].at + 1.0 - 0.05
        for channel in ("C1", "C2", "C3"):  # nothing lost
            assert len(slack.messages(channel=channel)) == 2
    rows = [r for c in ("C1", "C2", "C3") for r in repo.rows_of_channel(engine, channel_id=c)]
    assert {(r.state, r.attempts) for r in rows} == {(OUTBOX_SENT, 0)}


async def test_chat_update_stays_under_tier_3_and_postponed_updates_coalesce(
    engine: Engine,
) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, runtime, _worker):
        slack.enforce_rate_limit(per_channel_per_second=None)  # Tier 3 on chat.update
        worker = make_worker(runtime, slack, max_pacing_wait=0.2)
        # A tight Tier 3 for the test: two updates a minute (whatever the machine's speed, the
        # third and fourth re-renders below fall in the window).
        worker.slack.budget.update_windows = ((60.0, 2),)
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(worker, engine)
        for update in (
            produce("card-1", "CARD_PROD_ONGOING", 1, op_id="op-2"),
            produce("card-1", "CARD_SHIPPED", 2, op_id="op-3"),
            shipment("card-1", "IN_TRANSIT", 3),
            shipment("card-1", "DELIVERED", 4),
        ):
            record(engine, update)
            await drain(worker, engine)
        parent = slack.messages(channel="C1")[0]
        assert len(slack.thread("C1", parent["ts"])) == 5
        assert len(slack.calls_to("chat.update")) == 2  # two in the window, two postponed
        # The window passes: the two postponed re-renders go as one, with the last state.
        worker.slack.budget.update_windows = ((0.5, 2),)
        await worker.start()
        try:
            await wait_for(lambda: len(slack.calls_to("chat.update")) == 3, timeout=10)
        finally:
            await worker.stop()
        assert "Delivered" in slack.messages(channel="C1")[0]["text"]
        assert slack.rate_limited == 0


async def _owe_a_parent_update(engine: Engine, slack: LocalSlack, runtime: Runtime) -> None:
    """card-1 followed in C1 by a worker allowed one update a minute: its parent is posted,
    updated once, and its second update (to Delivered) is postponed, owed."""
    follow(engine, "C1", "card-1")
    first = make_worker(runtime, slack, max_pacing_wait=0.2)
    first.slack.budget.update_windows = ((60.0, 1),)  # one update a minute
    record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
    await drain(first, engine)
    for update in (
        produce("card-1", "CARD_SHIPPED", 1, op_id="op-2"),
        shipment("card-1", "DELIVERED", 2),
    ):
        record(engine, update)
        await drain(first, engine)
    assert len(slack.calls_to("chat.update")) == 1  # the second was postponed
    assert "Delivered" not in slack.messages(channel="C1")[0]["text"]


async def test_a_postponed_parent_update_survives_a_restart(any_engine: Engine) -> None:
    """The budget postpones the parent's update, the worker stops (a deploy): the next worker
    brings the parent to the card's last state, once, though no new event comes."""
    engine = any_engine
    async with delivery(engine) as (slack, runtime, _worker):
        await _owe_a_parent_update(engine, slack, runtime)
        restarted = make_worker(make_runtime(engine, slack), slack)
        await restarted.start()
        try:
            await wait_for(lambda: len(slack.calls_to("chat.update")) == 2, timeout=10)
        finally:
            await restarted.stop()
        assert "Delivered" in slack.messages(channel="C1")[0]["text"]
        assert len(slack.calls_to("chat.update")) == 2 and slack.rate_limited == 0


async def test_a_parent_update_cut_short_by_a_stop_is_made_after_its_lease(
    any_engine: Engine,
) -> None:
    """A worker takes the owed update, waits for its slot and is stopped: the update stays
    owed, and another worker makes it once the first one's lease has run out."""
    engine = any_engine
    async with delivery(engine) as (slack, runtime, _worker):
        await _owe_a_parent_update(engine, slack, runtime)
        updates = len(slack.calls_to("chat.update"))  # one made, one owed

        def due() -> datetime | None:
            thread = threads.get_thread(
                engine, workspace_id="T1", channel_id="C1", card_id="card-1"
            )
            assert thread is not None
            return thread.parent_update_due_at

        stopped = make_worker(
            make_runtime(engine, slack), slack, max_pacing_wait=5.0, lease_seconds=0.5
        )
        stopped.slack.budget.update_windows = ((3.0, 1),)
        await stopped.slack.budget.acquire("chat.update")  # a slot just used: the next in 3 s
        await stopped.start()
        await wait_for(lambda: (at := due()) is not None and at > runtime.clock(), timeout=10)
        await stopped.stop()  # while the taken update waits for its slot
        assert due() is not None and len(slack.calls_to("chat.update")) == updates

        later = make_worker(make_runtime(engine, slack), slack)
        await later.start()
        try:
            await wait_for(lambda: due() is None, timeout=10)
        finally:
            await later.stop()
        assert len(slack.calls_to("chat.update")) == updates + 1
        assert "Delivered" in slack.messages(channel="C1")[0]["text"]


async def test_posts_never_unfurl_links(engine: Engine) -> None:
    follow(engine, "C1", "card-1")
    async with delivery(engine) as (slack, _runtime, worker):
        record(engine, shipment("card-1", "IN_TRANSIT", 0))
        await drain(worker, engine)
        posts = slack.calls_to("chat.postMessage")
        assert len(posts) == 2  # the parent and its reply
        assert "ups.com/track" in str(posts[0].body["blocks"])
        assert all(
            p.body["unfurl_links"] is False and p.body["unfurl_media"] is False for p in posts
        )


def test_the_default_lease_lets_a_restart_resume_within_ten_seconds() -> None:
    assert load_settings(_env_file=None).d1bot_outbox_lease_seconds <= 8.0


# A worker in a process of its own, to be killed with SIGKILL (as `kill -9` would).
WORKER_PROCESS = """
import asyncio, sys
from bot.delivery.worker import OutboxWorker
from bot.runtime import Runtime
from bot.settings import load_settings
from storage.db import make_engine

async def main():
    url, slack_url = sys.argv[1], sys.argv[2]
    settings = load_settings(
        _env_file=None, database_url=url, slack_bot_token="xoxb-test", slack_api_url=slack_url,
        d1bot_exceptions_channel="CEXC", d1bot_workspace_id="T1",
        d1bot_channel_rate_per_second=100.0,
    )
    runtime = Runtime(settings=settings, engine=make_engine(url))
    await OutboxWorker(runtime, lease_seconds=0.6, poll_seconds=0.05, name="doomed").start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_worker_s_rows_are_taken_over_after_one_short_lease(
    any_engine: Engine,
) -> None:
    engine = any_engine
    follow(engine, "C1", "card-1")
    follow(engine, "C2", "card-1")
    async with delivery(engine) as (slack, runtime, _worker):
        record(engine, produce("card-1", "CARD_PROD_REQUESTED", 0))
        await drain(make_worker(runtime, slack), engine)  # settled before the crash
        record(engine, produce("card-1", "CARD_PROD_ONGOING", 10))
        slack.delay_answers(5.0)  # the next posts hang in Slack
        url = engine.url.render_as_string(hide_password=False)
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER_PROCESS, url, slack.base_url
        )
        try:
            await wait_for(lambda: len(slack.calls_to("chat.postMessage")) == 6, timeout=20)
            # Held past its lease while Slack is slow: the heartbeat renews it.
            (held,) = [r for r in repo.rows_of_channel(engine, channel_id="C1") if r.claimed_by]
            assert held.claimed_by == "doomed" and held.claimed_until is not None
            until = held.claimed_until
            await wait_for(lambda: runtime.clock() > until + timedelta(seconds=0.3), timeout=5)
            now = runtime.clock()
            assert claims.claim_due(engine, worker="other", now=now, lease_until=now, limit=9) == []
        finally:
            doomed.kill()  # SIGKILL: nothing settled, nothing renewed
            await doomed.wait()
        slack.delay_answers(0.0)

        await drain(make_worker(runtime, slack, lease_seconds=0.6), engine, timeout=10)
        # Only the posts in flight at the kill repeat; nothing settled is posted again.
        for channel in ("C1", "C2"):
            _parent, *replies = [m["text"] for m in slack.messages(channel=channel)]
            assert len(replies) == 3 and replies[1] == replies[2] != replies[0]
    assert {r.state for r in repo.rows_of_channel(engine, channel_id="C1")} == {OUTBOX_SENT}
