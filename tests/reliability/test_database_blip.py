"""Database blip: the network between `d1bot serve` (a real process) and PostgreSQL is cut for
10 s (a TCP proxy drops every connection and refuses new ones) while a card update is in flight
to Slack and the card's next update waits behind it. Intake answers 503 during the cut; the
outbox and the scheduler keep running; the update Slack took during the cut is recorded once
the database is back (not posted again), and the next one goes out without waiting for a lease
or a restart; the server then stops cleanly. Needs TEST_DATABASE_URL (skips otherwise)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.reliability.db_proxy import TcpProxy
from tests.reliability.pg import fresh_postgres
from tests.reliability.processes import BotStack, bot_stack, notifications_path
from tests.reliability.test_database_busy import bearer_for
from tests.servers import wait_for

pytestmark = pytest.mark.slow

CARD = "blip-1"
CHANNEL = "CBLIP"
CUT_SECONDS = 10.0
# Slack holds its answer to the update in flight this long, so that it arrives during the cut.
ANSWER_DELAY = 3.0
# Far longer than the wait below: a row that waited out its lease would fail the test.
LEASE = "120"
# The goal is 10 s after the database's return; generous on a shared machine, far below LEASE.
RESUME_BOUND = 30.0


def replies(stack: BotStack) -> list[str]:
    """The thread replies the channel got, as their bodies (one per post Slack took)."""
    return [
        json.dumps(call.body.get("blocks"), sort_keys=True)
        for call in stack.slack.calls_to("chat.postMessage")
        if call.ok and call.channel == CHANNEL and call.body.get("thread_ts")
    ]


def acknowledged(stack: BotStack) -> int:
    return sum(1 for _batch, status in stack.sandbox.delivered if 200 <= status < 300)


def stray_body() -> dict:
    return {
        "operationId": "blip-stray-1",
        "operation": "PRODUCE",
        "status": "SUCCESSFUL",
        "cardId": "blip-stray",
        "startTime": "2026-05-01T07:00:00Z",
        "endTime": "2026-05-01T07:00:00Z",
        "details": {"status": "CARD_PROD_REQUESTED"},
    }


async def health(bot_url: str, http: httpx.AsyncClient) -> tuple[int, dict]:
    answer = await http.get(f"{bot_url}/healthz")
    return answer.status_code, answer.json()


async def test_a_ten_second_database_cut_delays_delivery_and_loses_nothing(
    tmp_path: Path,
) -> None:
    with fresh_postgres() as url:
        target = make_url(url)
        async with (
            TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy,
            bot_stack(tmp_path, database_url=url, duplicate_rate=0.0, shuffle=False) as stack,
        ):
            stack.subscribe(CHANNEL, CARD)
            bot = await stack.start_bot(
                DATABASE_URL=proxy.url_for(url), D1BOT_OUTBOX_LEASE_SECONDS=LEASE
            )
            stack.point_d1_at(bot)
            stack.sandbox.create_card(CARD, scenario="happy")
            async with httpx.AsyncClient(timeout=30) as http:
                bearer = await bearer_for(bot, http)

                # The card's first update: parent and reply, all settled.
                stack.sandbox.advance(CARD)
                await wait_for(lambda: len(replies(stack)) == 1, timeout=30, message="reply 1")
                await wait_for(stack.outbox_settled, timeout=30, message="first update settled")

                # Update A is posted, its answer held by Slack; update B is stored behind it;
                # then the network to the database is cut.
                stack.slack.delay_answers(ANSWER_DELAY)
                posts_before = len(stack.slack.calls_to("chat.postMessage"))
                stack.sandbox.advance(CARD)
                await wait_for(
                    lambda: len(stack.slack.calls_to("chat.postMessage")) > posts_before,
                    timeout=30,
                    message="update A in flight to Slack",
                )
                acked = acknowledged(stack)
                stack.sandbox.advance(CARD)
                await wait_for(
                    lambda: acknowledged(stack) > acked, timeout=30, message="update B stored"
                )
                proxy.cut(CUT_SECONDS)
                stack.slack.delay_answers(0)

                # During the cut: intake says 503 (D1 retries), readiness is red (liveness is not:
                # the process and its tasks still run).
                answer = await http.post(
                    f"{bot.url}{notifications_path()}", json=stray_body(), headers=bearer
                )
                assert answer.status_code == 503, answer.text
                ready = await http.get(f"{bot.url}/readyz")
                assert ready.status_code == 503
                assert "database" in {f["check"] for f in ready.json()["failed"]}
                assert proxy.is_cut  # the checks above were answered during the cut
                await wait_for(lambda: len(replies(stack)) == 2, timeout=30, message="A in Slack")

                await wait_for(
                    lambda: not proxy.is_cut, timeout=CUT_SECONDS + 30, message="end of the cut"
                )
                # Without a restart, and without waiting out a lease: B goes out, and A (which
                # Slack took during the cut) is recorded as sent, not posted again.
                await wait_for(
                    lambda: len(replies(stack)) >= 3, timeout=RESUME_BOUND, message="update B"
                )
                await wait_for(stack.outbox_settled, timeout=RESUME_BOUND, message="settled")
                got = replies(stack)
                assert len(got) == 3 and len(set(got)) == 3, got
                assert stack.scalar("SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL") == 0
                assert stack.scalar("SELECT count(*) FROM outbox WHERE state = 'dead'") == 0

                # Every background task still runs (the outbox and the scheduler among them).
                async def ready() -> bool:
                    code, body = await health(bot.url, http)
                    return code == 200 and body["checks"].get("scheduler") == "ok"

                await wait_for(ready, timeout=RESUME_BOUND, message="healthy again")
                _code, body = await health(bot.url, http)
                assert body["checks"]["outbox"] == "ok"

                # What got 503 is stored when D1 sends it again.
                answer = await http.post(
                    f"{bot.url}{notifications_path()}", json=stray_body(), headers=bearer
                )
                assert answer.status_code == 204, answer.text

            # Shutdown: the outbox task (and every other) stops in time, without complaint.
            assert proxy.refused > 0  # the bot did try to reach the database during the cut
            # (off the loop: the proxy and the stand-in must answer while it stops). uvicorn
            # re-raises the SIGTERM it handled once it has shut down; SIGKILL means it hung.
            code = await asyncio.to_thread(bot.stop)
            assert code in (0, -signal.SIGTERM), (code, bot.tail())
            log = bot.log.read_text(errors="replace")
            assert "stopping outbox failed" not in log
            assert "Task exception was never retrieved" not in log
            assert "Task was destroyed but it is pending" not in log
