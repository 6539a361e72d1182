"""D1 outage, against `d1bot serve` (a real process) and the D1 sandbox: `/card status` is
acknowledged within Slack's 3-second deadline and then says "D1 is not answering" (D1 answering
503, or not answering at all); reconciliation of a gap backs off while D1 is down and records
D1's answer once it is back.

The bot runs with D1_MAX_RETRIES=0, so each reconciliation run asks D1 once (retrying a call is
the D1 client's job alone, and here it does not): the spacing of the calls below is the gap
runs' own backoff."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.processes import BotProcess, BotStack, bot_stack
from tests.servers import wait_for

pytestmark = pytest.mark.slow

SLACK_DEADLINE = 3.0
UNAVAILABLE = "D1 is not answering"
D1_TIMEOUT_SECONDS = 1.0
# "Not answering at all": D1 holds the call twice as long as the bot waits. Not longer: the
# sandbox finishes a held call before it can stop, so a longer hold only delays the test's end.
D1_SILENCE_SECONDS = 2 * D1_TIMEOUT_SECONDS
# Gap runs that find D1 down: each asks once, gives the card back and the next one comes 2 s,
# then 4 s, then 8 s later (bot.scheduled.reconcile). Three runs show the backoff growing.
RECONCILE_ATTEMPTS = 3


def status_calls(stack: BotStack) -> int:
    return sum(1 for r in stack.sandbox.requests if r.path.endswith("/productionStatus"))


async def ask_status(
    stack: BotStack, bot: BotProcess, http: httpx.AsyncClient, card: str
) -> tuple[float, str]:
    """(seconds until the slash command was acknowledged, the reply sent to response_url)."""
    before = len(stack.slack.responses)
    started = time.monotonic()
    ack = await stack.command(bot, f"status {card}", http)
    acked_in = time.monotonic() - started
    assert ack.status_code == 200
    await wait_for(lambda: len(stack.slack.responses) > before, timeout=30, message="reply")
    return acked_in, json.dumps(stack.slack.responses[before])


@contextlib.asynccontextmanager
async def d1_down_stack(tmp_path: Path) -> AsyncIterator[tuple[BotStack, BotProcess]]:
    async with bot_stack(tmp_path) as stack:
        bot = await stack.start_bot(D1_TIMEOUT_SECONDS=str(D1_TIMEOUT_SECONDS), D1_MAX_RETRIES="0")
        stack.point_d1_at(bot)
        yield stack, bot


async def test_card_status_says_d1_is_not_answering_in_time(tmp_path: Path) -> None:
    async with d1_down_stack(tmp_path) as (stack, bot), httpx.AsyncClient(timeout=10) as http:
        stack.sandbox.create_card("slow-1", scenario="happy")
        stack.sandbox.advance("slow-1")

        stack.sandbox.faults.fail_next("productionStatus", status=503, count=5)
        acked_in, reply = await ask_status(stack, bot, http, "slow-1")
        assert acked_in < SLACK_DEADLINE
        assert UNAVAILABLE in reply

        stack.sandbox.faults.clear()
        stack.sandbox.faults.delay_next("productionStatus", seconds=D1_SILENCE_SECONDS, count=5)
        acked_in, reply = await ask_status(stack, bot, http, "slow-1")
        assert acked_in < SLACK_DEADLINE
        assert UNAVAILABLE in reply

        stack.sandbox.faults.clear()
        _, reply = await ask_status(stack, bot, http, "slow-1")  # D1 is back
        assert UNAVAILABLE not in reply and "slow-1" in reply
        # nothing from the failed calls went to a channel
        assert stack.slack.calls_to("chat.postMessage") == []


def ship_with_a_gap(stack: BotStack, card: str) -> None:
    """D1 drops a card's production steps and delivers its shipment (a gap); then it moves on
    once more without telling us, so that asking D1 finds something new."""
    stack.sandbox.create_card(card, scenario="happy")
    stack.sandbox.faults.drop_next_notifications(4)  # REQUESTED .. ONGOING never arrive
    for _ in range(5):
        stack.sandbox.advance(card)  # the fifth step ships the card


async def gap_while_d1_is_down(
    stack: BotStack, card: str, attempts: int = RECONCILE_ATTEMPTS
) -> list[float]:
    """A gap with productionStatus answering 503 to the first `attempts` gap runs; returns
    when each of their productionStatus calls arrived."""
    arrivals: list[float] = []
    stack.sandbox.faults.fail_next("productionStatus", status=503, count=attempts)
    ship_with_a_gap(stack, card)
    await stack.sandbox.flush(timeout=30)
    stack.sandbox.faults.drop_next_notifications(1)
    stack.sandbox.advance(card)  # INFO_RECEIVED: only productionStatus will tell

    def seen() -> bool:
        while status_calls(stack) > len(arrivals):
            arrivals.append(time.monotonic())
        return len(arrivals) >= attempts

    await wait_for(seen, timeout=30, interval=0.01, message="reconciliation attempts")
    return arrivals


def reconciled(stack: BotStack, card: str) -> int:
    return stack.scalar(
        "SELECT count(*) FROM events WHERE card_id = :card AND source = 'reconciliation'",
        card=card,
    )


async def test_reconciliation_backs_off_while_d1_is_down(tmp_path: Path) -> None:
    async with d1_down_stack(tmp_path) as (stack, _bot):
        arrivals = await gap_while_d1_is_down(stack, "gap-1")
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert gaps[0] >= 1.5 and gaps[1] >= gaps[0]  # backing off, not hammering
        assert reconciled(stack, "gap-1") == 0
        # Another card's gap wakes reconciliation: D1 is back, the first card is caught up once.
        ship_with_a_gap(stack, "gap-2")
        await stack.sandbox.flush(timeout=30)
        stack.sandbox.faults.drop_next_notifications(1)
        stack.sandbox.advance("gap-2")
        await wait_for(
            lambda: reconciled(stack, "gap-1") == 1,
            timeout=30,
            message="the given-back gap card reconciled",
        )


async def test_reconciliation_of_a_gap_recovers_when_d1_comes_back(tmp_path: Path) -> None:
    """Nothing else wakes reconciliation here: the given-back card is asked about again on
    its own, and recorded once D1 answers. (One failed run is enough to show that; the test
    above shows the runs after further failures and their growing backoff.)"""
    async with d1_down_stack(tmp_path) as (stack, _bot):
        await gap_while_d1_is_down(stack, "gap-1", attempts=1)
        await wait_for(
            lambda: reconciled(stack, "gap-1") == 1,
            timeout=30,  # D1 answers again from the 2nd call: the first gap retry (2 s later)
            message="the gap card reconciled once D1 answers again",
        )
        assert status_calls(stack) == 2  # one refused, one answered: asked again, not hammered
