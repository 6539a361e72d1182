"""Slack outage: LocalSlack answers 503, then 429 with Retry-After, then recovers.
`d1bot serve` (a real process) loses nothing, posts nothing twice, and never calls again
before the Retry-After it was given."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.processes import bot_stack
from tests.servers import wait_for

pytestmark = pytest.mark.slow

CARDS = ["outage-1", "outage-2", "outage-3"]
STEPS = 3
# Each outage answer costs the test its wait: a 503 the worker's backoff (1 to 2 s for a row's
# first failure, twice that for its second), a 429 its Retry-After. One of each shows both.
UNAVAILABLE = 1
RETRY_AFTER = 1  # seconds (Slack gives whole seconds)


async def test_503_then_429_then_recovery_loses_and_repeats_nothing(tmp_path: Path) -> None:
    # D1 delivers these in order (duplicates still come), so that every step is announced: a
    # late, older step is stored but not announced, and the count of replies below is exact.
    async with bot_stack(tmp_path, shuffle=False) as stack:
        for card in CARDS:
            stack.sandbox.create_card(card, scenario="happy")
            stack.subscribe("COUT", card)
        stack.slack.fail_next("chat.postMessage", status=503, count=UNAVAILABLE)
        stack.slack.fail_next("chat.postMessage", status=429, retry_after=RETRY_AFTER)
        bot = await stack.start_bot()
        stack.point_d1_at(bot)
        for _ in range(STEPS):
            for card in CARDS:
                stack.sandbox.advance(card)
        await stack.sandbox.flush(timeout=30)

        await wait_for(stack.outbox_settled, timeout=60, message="outbox drained after the outage")

        calls = stack.slack.calls_to("chat.postMessage")
        statuses = Counter(c.status for c in calls)
        assert statuses[503] == UNAVAILABLE and statuses[429] == 1  # the outage was really met
        assert stack.slack.early_calls == []  # nothing before Retry-After elapsed
        limited = next(c for c in calls if c.status == 429)
        after = [c for c in calls if c.at > limited.at and c.channel == limited.channel]
        assert after and after[0].at - limited.at >= RETRY_AFTER
        assert stack.scalar("SELECT count(*) FROM outbox WHERE state = 'dead'") == 0

        ok = [c for c in calls if c.ok]
        parents = [c for c in ok if not c.body.get("thread_ts")]
        replies = [c for c in ok if c.body.get("thread_ts")]
        assert len(parents) == len(CARDS)
        sent_rows = stack.scalar(
            "SELECT count(*) FROM outbox WHERE kind = 'card_event' AND state = 'sent'"
        )
        assert len(replies) == sent_rows == len(CARDS) * STEPS  # in order: every step announced
        bodies = Counter((c.body["thread_ts"], str(c.body.get("blocks"))) for c in replies)
        assert max(bodies.values()) == 1
