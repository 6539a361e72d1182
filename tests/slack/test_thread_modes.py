"""Per-channel thread mode end to end: `/card settings` as signed slash commands, D1's
notifications through D1's door over real HTTP, and the outbox worker posting to the Slack
stand-in, whose recorded posts show each mode (thread_ts, reply_broadcast)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from bot.render import actions
from storage.repositories import channel_settings
from storage.repositories import outbox as repo
from storage.repositories import threads as threads_repo
from tests.delivery.outbox_support import drain, make_worker
from tests.slack.test_card_find_support import find_stack, notify
from tests.slack.test_slack_app import SlackStack, audit_rows
from tests.slack_signing import TEAM_ID

EXC = "CEXC"
FAST = {"d1bot_channel_rate_per_second": 100.0, "d1bot_workspace_rate_per_minute": 60_000}


async def _deliver(stack: SlackStack) -> None:
    await drain(make_worker(stack.runtime, stack.slack), stack.runtime.engine)


def _posts(stack: SlackStack, channel: str) -> list[dict[str, Any]]:
    """The bodies of every `chat.postMessage` to `channel`, as the bot sent them."""
    return [
        c.body for c in stack.slack.calls_to("chat.postMessage") if c.body["channel"] == channel
    ]


def _notice(stack: SlackStack, channel: str, text: str) -> None:
    """A card notice (as the stuck-card check writes them) for card-1 in `channel`."""
    repo.enqueue_message(
        stack.runtime.engine,
        workspace_id=TEAM_ID,
        channel_id=channel,
        kind=repo.KIND_CARD_NOTICE,
        card_id="card-1",
        thread_key=f"{TEAM_ID}:{channel}:card-1",
        payload={"text": text, "blocks": []},
        now=stack.runtime.clock(),
    )


async def test_settings_stores_and_shows_the_mode_and_refuses_a_bad_value(
    engine: Engine,
) -> None:
    async with find_stack(engine) as stack:
        shown = await stack.ask("settings")
        assert "Threads in this channel: *on*" in shown["text"]
        assert shown["response_type"] == "ephemeral"
        assert "`off`, `quiet`" in shown["text"]

        changed = await stack.ask("settings threads QUIET")
        assert "now *quiet* (they were *on*)" in changed["text"]
        assert "Threads in this channel: *quiet*" in (await stack.ask("settings"))["text"]
        again = await stack.ask("settings threads quiet")
        assert "already *quiet*" in again["text"]
        # Another channel keeps its own mode.
        assert "*on*" in (await stack.ask("settings", channel_id="C2"))["text"]
        assert "now *off*" in (await stack.ask("settings threads off", channel_id="C2"))["text"]
        modes = channel_settings.thread_modes(engine, keys=[(TEAM_ID, "C1"), (TEAM_ID, "C2")])
        assert modes == {(TEAM_ID, "C1"): "quiet", (TEAM_ID, "C2"): "off"}

        for bad in ("settings threads sideways", "settings threads", "settings threads on off"):
            refused = await stack.ask(bad)
            assert "`settings threads` takes one of `on`, `off`, `quiet`" in refused["text"]
            assert "sideways" not in refused["text"]  # the typed text is never repeated
        assert "takes nothing more" in (await stack.ask("settings colours"))["text"]
        assert "Threads in this channel: *quiet*" in (await stack.ask("settings"))["text"]

        audited = [(a.action, a.outcome) for a in audit_rows(engine) if "settings" in a.action]
        assert ("settings", "ok") in audited and ("settings_threads", "ok") in audited
        assert "/card settings threads on|off|quiet" in json.dumps(await stack.ask("help"))


async def test_each_mode_posts_updates_as_it_says(engine: Engine) -> None:
    async with find_stack(engine, **FAST) as stack:
        for channel, mode in (("CON", "on"), ("COFF", "off"), ("CQUIET", "quiet")):
            assert "Subscribed" in (await stack.ask("subscribe card-1", channel_id=channel))["text"]
            if mode != "on":
                await stack.ask(f"settings threads {mode}", channel_id=channel)
        await notify(stack, "card-1", status="CARD_PROD_REQUESTED")
        await _deliver(stack)
        await notify(stack, "card-1", status="DATA_EXCEPTION")
        await _deliver(stack)
        for channel in ("CON", "COFF", "CQUIET"):
            _notice(stack, channel, "Card card-1 has been waiting for 3 days")
        await _deliver(stack)

        # on: a parent, replies in its thread, the exception and the notice also in the channel.
        parent, first, failure, notice = _posts(stack, "CON")
        assert "thread_ts" not in parent
        assert [m["thread_ts"] for m in (first, failure, notice)] == [parent_ts(stack, "CON")] * 3
        assert not first.get("reply_broadcast")
        assert failure["reply_broadcast"] is True and notice["reply_broadcast"] is True
        assert "Data rejected" in failure["text"]

        # quiet: the same thread, nothing broadcast.
        parent, *replies = _posts(stack, "CQUIET")
        assert "thread_ts" not in parent and len(replies) == 3
        assert {m["thread_ts"] for m in replies} == {parent_ts(stack, "CQUIET")}
        assert not any(m.get("reply_broadcast") for m in replies)

        # off: one top-level message per update, each naming its card; no parent to update.
        flat = _posts(stack, "COFF")
        assert len(flat) == 3
        assert not any("thread_ts" in m or m.get("reply_broadcast") for m in flat)
        assert "Production requested" in flat[0]["text"] and "Data rejected" in flat[1]["text"]
        assert all("Card card-1" in json.dumps(m["blocks"]) for m in flat[:2])
        assert "waiting for 3 days" in flat[2]["text"]
        updates = stack.slack.calls_to("chat.update")
        assert not [c for c in updates if c.body["channel"] == "COFF"]
        assert (
            threads_repo.get_thread(
                engine, workspace_id=TEAM_ID, channel_id="COFF", card_id="card-1"
            )
            is None
        )

        # Turned on again, the channel's next update starts a thread.
        await stack.ask("settings threads on", channel_id="COFF")
        await notify(stack, "card-1", status="CARD_SHIPPED")
        await _deliver(stack)
        *_flat, new_parent, reply = _posts(stack, "COFF")
        assert "thread_ts" not in new_parent and reply["thread_ts"] == parent_ts(stack, "COFF")


async def test_a_reopened_note_stands_beside_the_alert_when_threads_are_off(
    engine: Engine,
) -> None:
    async with find_stack(engine, d1bot_exceptions_channel=EXC, **FAST) as stack:
        await stack.ask("settings threads off", channel_id=EXC)
        await notify(stack, "card-x", status="DATA_EXCEPTION")
        await _deliver(stack)
        (alert,) = stack.slack.messages(channel=EXC)
        buttons = [e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]]
        body_message = {"ts": alert["ts"], "text": alert["text"]}
        expected = len(stack.slack.responses) + 1
        response = await stack.press(
            actions.ALERT_RESOLVE, buttons[0]["value"], channel_id=EXC, message=body_message
        )
        assert response.status_code == 200
        assert "Resolved" in (await stack.reply(expected))["text"]
        await _deliver(stack)

        await notify(stack, "card-x", status="CARD_PROD_ONHOLD")
        await _deliver(stack)
        posts = _posts(stack, EXC)
        note = next(m for m in posts if "Reopened" in m["text"])
        assert "thread_ts" not in note and "card-x" in note["text"]
        assert stack.slack.thread(EXC, alert["ts"]) == []


def parent_ts(stack: SlackStack, channel: str) -> str:
    """The ts of card-1's parent in `channel`, as stored."""
    thread = threads_repo.get_thread(
        stack.runtime.engine, workspace_id=TEAM_ID, channel_id=channel, card_id="card-1"
    )
    assert thread is not None
    return thread.parent_ts
