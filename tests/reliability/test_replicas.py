"""Two `d1bot serve` processes on one PostgreSQL database, D1's notifications spread across
both: every Slack message is posted exactly once, the digest once, a stuck-card alert once.
Needs TEST_DATABASE_URL (skips with the reason otherwise)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from storage.repositories import schedules
from tests.reliability.pg import fresh_postgres
from tests.reliability.processes import WORKSPACE, BotProcess, BotStack, bot_stack
from tests.servers import wait_for

pytestmark = pytest.mark.slow

CARDS = [f"rep-{i:02d}" for i in range(10)]
STUCK_CARD = "rep-stuck"
# Each card is followed by two channels, half the cards by one pair and half by the other: a
# channel has one message in flight at a time, so four channels deliver twice as fast as two
# (and give the replicas twice as many rows to compete for at once).
FOLLOWERS = {
    card: ("CREP1", "CREP2") if i % 2 == 0 else ("CREP3", "CREP4") for i, card in enumerate(CARDS)
}
STUCK_FOLLOWER = "CREP1"
DIGEST_CHANNEL = "CDIGEST"
EXCEPTIONS_CHANNEL = "CEXC"
STUCK_FIRST_CHECK = 5.0  # bot.scheduled.scheduler: the first stuck-card check runs 5 s after start
REPLICA_ENV = {
    "D1BOT_EXCEPTIONS_CHANNEL": EXCEPTIONS_CHANNEL,
    # A card still "requested" after ~2 s is stuck (the production default is 24 h).
    "D1BOT_STUCK_REQUESTED_HOURS": "0.0006",
    "D1BOT_STUCK_CHECK_INTERVAL_MINUTES": "60",
    "MIGRATE_ON_START": "false",
}


def settled(stack: BotStack) -> bool:
    return stack.outbox_settled()


async def metric(bot: BotProcess, name: str) -> float:
    """A counter's value from the replica's own /metrics."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{bot.url}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def identity(body: dict) -> str:
    return json.dumps(
        {k: body.get(k) for k in ("channel", "thread_ts", "text", "blocks")}, sort_keys=True
    )


async def spread(stack: BotStack, bots: list[BotProcess], rng: random.Random) -> None:
    """Advance every card a step per round, pointing D1 at one replica or the other before
    each round (a round is delivered before the next one is pointed elsewhere)."""
    moving = list(CARDS)
    while moving:
        stack.point_d1_at(rng.choice(bots))
        for card in list(moving):
            if not stack.sandbox.advance(card):
                moving.remove(card)
        await stack.sandbox.flush(timeout=30)


def stuck_alert_sent(stack: BotStack) -> bool:
    return any(
        c.ok for c in stack.slack.calls_to("chat.postMessage") if c.channel == EXCEPTIONS_CHANNEL
    )


async def test_two_replicas_post_everything_once(tmp_path: Path) -> None:
    rng = random.Random(11)
    with fresh_postgres() as url:
        async with bot_stack(tmp_path, database_url=url) as stack:
            for card in CARDS:
                stack.sandbox.create_card(card, scenario="happy")
                for channel in FOLLOWERS[card]:
                    stack.subscribe(channel, card)
            stack.sandbox.create_card(STUCK_CARD, scenario="happy")
            stack.subscribe(STUCK_FOLLOWER, STUCK_CARD)
            # A digest schedule whose time passed today, set two days ago: owed at start.
            now = datetime.now(timezone.utc)
            schedules.set_schedule(
                stack.engine,
                workspace_id=WORKSPACE,
                channel_id=DIGEST_CHANNEL,
                time_of_day=(now - timedelta(minutes=5)).strftime("%H:%M"),
                timezone="UTC",
                updated_by="U1",
                now=now - timedelta(days=2),
            )
            bots = list(
                await asyncio.gather(stack.start_bot(**REPLICA_ENV), stack.start_bot(**REPLICA_ENV))
            )
            started = time.monotonic()
            stack.point_d1_at(bots[0])
            stack.sandbox.advance(STUCK_CARD)  # requested, then nothing more
            await spread(stack, bots, rng)

            # Both replicas' first stuck checks were due by `started` + STUCK_FIRST_CHECK (their
            # schedulers started before they answered /healthz); the one that claims the check
            # sends the alert, the other finds the check claimed (allowed a second for that).
            await wait_for(
                lambda: (
                    time.monotonic() - started > STUCK_FIRST_CHECK + 1
                    and stuck_alert_sent(stack)
                    and settled(stack)
                ),
                timeout=60,
                message="both replicas past their first stuck check, alert sent, outbox drained",
            )
            for bot in bots:  # the stream really was spread over both replicas
                assert await metric(bot, "d1bot_notifications_received_total") > 0

            posts = [c for c in stack.slack.calls_to("chat.postMessage") if c.ok]
            copies = Counter(identity(c.body) for c in posts)
            assert max(copies.values()) == 1, "a message was posted twice"
            assert stack.scalar("SELECT count(*) FROM outbox WHERE state = 'dead'") == 0
            sent_by = {
                who.rsplit(":", 2)[-2] if who else None
                for (who,) in stack.rows("SELECT claimed_by FROM outbox")
            }
            assert sent_by == {None}  # every claim was settled

            digests = [c for c in posts if c.channel == DIGEST_CHANNEL]
            assert len(digests) == 1
            alerts = [c for c in posts if c.channel == EXCEPTIONS_CHANNEL]
            assert len(alerts) == 1 and STUCK_CARD in json.dumps(alerts[0].body)
            assert (
                stack.scalar("SELECT count(*) FROM stuck_alerts WHERE card_id = :c", c=STUCK_CARD)
                == 1
            )
            for channel in sorted({ch for pair in FOLLOWERS.values() for ch in pair}):
                parents = [c for c in posts if c.channel == channel and not c.body.get("thread_ts")]
                followed = [card for card, pair in FOLLOWERS.items() if channel in pair]
                if channel == STUCK_FOLLOWER:
                    followed.append(STUCK_CARD)
                assert len(parents) == len(followed), channel
            announced = stack.scalar(
                "SELECT count(*) FROM outbox WHERE state = 'sent' AND kind <> 'message'"
            )
            replies = [c for c in posts if c.body.get("thread_ts")]
            assert len(replies) == announced
