"""Exceptions with owners, end to end: D1's exception notifications through D1's door over real
HTTP, the outbox worker posting and rewriting alerts in the Slack stand-in, signed button
presses and `/card exceptions`; the digest's unowned exceptions; the migrated acknowledgements."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine

from bot.render import actions
from bot.scheduled.digest import compute_digest
from storage.repositories import cases
from tests.delivery.outbox_support import drain, make_worker
from tests.slack.test_card_find_support import find_stack, notify
from tests.slack.test_slack_app import SlackStack, audit_rows

EXC = "CEXC"


def _alerts(stack: SlackStack) -> list[dict[str, Any]]:
    return [m for m in stack.slack.messages(channel=EXC) if not m.get("thread_ts")]


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def _deliver(stack: SlackStack) -> None:
    await drain(make_worker(stack.runtime, stack.slack), stack.runtime.engine)


async def _press(
    stack: SlackStack, action: str, alert: dict[str, Any] | None, *, user_id: str, card: str
) -> dict[str, Any]:
    expected = len(stack.slack.responses) + 1
    value = actions.encode_value(actions.ActionValue(card, None))
    if alert is not None:
        buttons = [e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]]
        value = buttons[0]["value"]
    message = None if alert is None else {"ts": alert["ts"], "text": alert["text"]}
    response = await stack.press(action, value, channel_id=EXC, user_id=user_id, message=message)
    assert response.status_code == 200
    return await stack.reply(expected)


async def test_assign_resolve_and_reopen_update_the_alert_in_place(engine: Engine) -> None:
    async with find_stack(engine, d1bot_exceptions_channel=EXC) as stack:
        await notify(stack, "card-x", status="DATA_EXCEPTION")
        await _deliver(stack)
        (alert,) = _alerts(stack)
        assert _buttons(alert)[:2] == [actions.ALERT_ASSIGN, actions.ALERT_RESOLVE]
        assert "No owner yet" in json.dumps(alert)

        listed = await stack.ask("exceptions", channel_id=EXC)
        assert "card-x" in json.dumps(listed) and listed["response_type"] == "ephemeral"
        assert actions.ALERT_ASSIGN in json.dumps(listed)

        mine = await _press(stack, actions.ALERT_ASSIGN, alert, user_id="U4", card="card-x")
        assert "You own the exception of *card-x*" in mine["text"]
        await _deliver(stack)
        (alert,) = _alerts(stack)
        assert "Owner <@U4>" in json.dumps(alert) and "open for" in json.dumps(alert)
        owned = await stack.ask("exceptions mine", user_id="U4")
        assert owned["text"] == "You own 1 open exception" and "card-x" in json.dumps(owned)
        assert (
            "You own no open exception"
            in (await stack.ask("exceptions mine", user_id="U5"))["text"]
        )

        taken = await _press(stack, actions.ALERT_ASSIGN, alert, user_id="U5", card="card-x")
        assert "taken over from <@U4>" in taken["text"]
        done = await _press(stack, actions.ALERT_RESOLVE, alert, user_id="U5", card="card-x")
        assert "Resolved" in done["text"]
        again = await _press(stack, actions.ALERT_RESOLVE, alert, user_id="U4", card="card-x")
        assert "already resolved (by <@U5>)" in again["text"]
        await _deliver(stack)
        (alert,) = _alerts(stack)
        assert "Resolved by <@U5>" in json.dumps(alert)
        assert _buttons(alert)[0] == actions.ALERT_REOPEN
        assert "No open exception" in (await stack.ask("exceptions"))["text"]

        # A new failure reopens the case: a new alert, the old one rewritten, a note in its thread.
        await notify(stack, "card-x", status="CARD_PROD_ONHOLD")
        await _deliver(stack)
        old, new = _alerts(stack)
        assert "No owner yet" in json.dumps(old) and "No owner yet" in json.dumps(new)
        (note,) = stack.slack.thread(EXC, old["ts"])[-1:]
        assert "Reopened" in note["text"] and "failed again" in note["text"]
        case = cases.get_case(engine, card_id="card-x")
        assert case is not None and case.state == "open" and case.reopened == 1
        assert case.alert_ts == new["ts"]

        already = await _press(stack, actions.ALERT_REOPEN, old, user_id="U4", card="card-x")
        assert "already open" in already["text"]
        await _press(stack, actions.ALERT_RESOLVE, None, user_id="U4", card="card-x")
        reopened = await _press(stack, actions.ALERT_REOPEN, None, user_id="U4", card="card-x")
        assert "Reopened the exception of *card-x*" in reopened["text"]
        legacy = await _press(stack, actions.ALERT_ACK, None, user_id="U6", card="card-x")
        assert "You own the exception" in legacy["text"]
        nothing = await _press(stack, actions.ALERT_ASSIGN, None, user_id="U6", card="card-none")
        assert "*card-none* has no exception" in nothing["text"]
        await _deliver(stack)
        latest = _alerts(stack)[-1]
        assert "Owner <@U6>" in json.dumps(latest)
    audited = [(a.action, a.outcome) for a in audit_rows(engine) if a.card_id == "card-x"]
    assert audited == [
        ("button_assign", "ok"),
        ("button_assign", "ok"),
        ("button_resolve", "ok"),
        ("button_resolve", "already_resolved"),
        ("button_reopen", "already_open"),
        ("button_resolve", "ok"),
        ("button_reopen", "ok"),
        ("button_ack", "ok"),
    ]
    assert ("exceptions", "ok") in [(a.action, a.outcome) for a in audit_rows(engine)]


async def test_digest_lists_open_exceptions_nobody_owns_past_the_stale_hours(
    engine: Engine,
) -> None:
    from zoneinfo import ZoneInfo

    async with find_stack(
        engine, d1bot_exceptions_channel=EXC, d1bot_triage_stale_hours=2
    ) as stack:
        await notify(stack, "card-old", status="DATA_EXCEPTION")
        await notify(stack, "card-owned", status="DATA_EXCEPTION")
        await _deliver(stack)
        await _press(stack, actions.ALERT_ASSIGN, None, user_id="U1", card="card-owned")
        opened = cases.get_case(engine, card_id="card-old")
        assert opened is not None
        zone = ZoneInfo("UTC")
        soon = compute_digest(
            stack.runtime, end=opened.opened_at + timedelta(hours=1), zone=zone, channel_id="C1"
        )
        late = compute_digest(
            stack.runtime, end=opened.opened_at + timedelta(hours=3), zone=zone, channel_id="C1"
        )
    assert "without an owner" not in json.dumps(soon)
    (section,) = [
        b["text"]["text"]
        for b in late["blocks"]
        if b["type"] == "section" and "without an owner" in b["text"]["text"]
    ]
    assert section.startswith("*Open exceptions without an owner (1)*")
    assert "card-old" in section and "no owner for 3 h" in section
    assert "card-owned" not in section


def test_acknowledgements_become_owned_cases(tmp_path: Any) -> None:
    import sqlalchemy as sa

    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    at = datetime(2024, 6, 1, 10, 0, tzinfo=timezone.utc).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (id, dedup_key, card_id, operation_id, operation,"
                " operation_status, event_time, received_at, is_exception, became_current,"
                " source) VALUES (7, 'k7', 'card-a', 'op', 'PRODUCE', 'SUCCESSFUL', :at, :at,"
                " 1, 1, 'd1')"
            ),
            {"at": at},
        )
        conn.execute(
            sa.text(
                "INSERT INTO alert_acks (event_id, card_id, acked_by, acked_at)"
                " VALUES (7, 'card-a', 'U4', :at)"
            ),
            {"at": at + timedelta(minutes=5)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (workspace_id, channel_id, kind, card_id, event_id, state,"
                " attempts, next_attempt_at, created_at, slack_ts) VALUES ('T1', 'CEXC',"
                " 'exception_alert', 'card-a', 7, 'sent', 1, :at, :at, '111.222')"
            ),
            {"at": at},
        )
    upgrade(engine)
    case = cases.get_case(engine, card_id="card-a")
    engine.dispose()
    assert case is not None
    assert (case.state, case.owner, case.alert_channel, case.alert_ts, case.alert_event_id) == (
        "open",
        "U4",
        "CEXC",
        "111.222",
        7,
    )
