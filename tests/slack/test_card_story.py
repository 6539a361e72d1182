"""The card's story end to end: notifications through D1's door over real HTTP, `/card history`
and the Timeline button as signed requests, the modal as the Slack stand-in received it
(`views.open`, `views.update`, within modal limits)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from bot.render import actions, story
from tests.servers import wait_for
from tests.slack.test_card_find_support import find_stack, notify
from tests.slack.test_slack_app import audit_rows
from tests.slack_signing import post_signed

PAN = "4111111111111111"


def _modal_text(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False)


async def test_history_opens_the_story_with_events_looks_and_marks(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        await notify(stack, "card-s", status="CARD_PROD_REQUESTED", tracking=None)
        await notify(stack, "card-s", status="CARD_SHIPPED", tracking="1Z-S")
        # An older event arriving after a newer one: kept, marked late.
        await notify(stack, "card-s", status="DATA_PREPARED", op_id="op-late")
        await stack.ask("find card-s", user_id="U7")  # not a look at one card
        await stack.ask("track card-s production productionSite=PARIS", user_id="U8")
        reply = await stack.ask("history card-s", user_id="U9")
        assert "story of *card-s* is open" in reply["text"]
        (opened,) = stack.slack.calls_to("views.open")
        view = opened.body["view"]
        if isinstance(view, str):
            view = json.loads(view)
        text = _modal_text(view)
        assert view["type"] == "modal" and len(view["title"]["text"]) <= 24
        assert len(view["blocks"]) <= 100
        assert "Card card-s" in text and "Shipped" in text and "Data prepared" in text
        assert "arrived late" in text
        assert "<@U8> asked D1 to track" in text
        assert "1 entries" not in text
        assert json.loads(view["private_metadata"])["card"] == "card-s"
    actions_ = [(a.action, a.card_id, a.outcome) for a in audit_rows(engine)]
    assert ("history", "card-s", "ok") in actions_


async def test_history_of_an_unknown_card_names_it_and_pan_is_refused(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        reply = await stack.ask("history card-404")
        assert "Nothing is stored about *card-404*" in reply["text"]
        refused = await stack.ask(f"history {PAN}")
        assert "card number" in refused["text"]
        assert not stack.slack.calls_to("views.open")


async def test_timeline_button_and_pages_stay_within_modal_limits(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        for n in range(story.PAGE_LINES + 5):
            await notify(stack, "card-p", status="CARD_PROD_ONGOING", tracking=f"T{n}")
        response = await stack.press(actions.TIMELINE, "card-p", user_id="U3")
        assert response.status_code == 200
        await wait_for(lambda: stack.slack.calls_to("views.open"), message="views.open")
        opened = stack.slack.calls_to("views.open")[0].body
        view = opened["view"] if isinstance(opened["view"], dict) else json.loads(opened["view"])
        assert "page 2 of 2" in _modal_text(view)  # opens on the newest page
        (view_id,) = stack.slack.modals
        older = next(
            e
            for b in view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == actions.TIMELINE_PAGE
        )
        metadata = view["private_metadata"]
        payload = _modal_press(older["value"], {"id": view_id, "private_metadata": metadata})
        sent = await post_signed(stack.http, stack.url, payload)
        assert sent.status_code == 200
        await wait_for(lambda: stack.slack.calls_to("views.update"), message="views.update")
        updated = stack.slack.modals[view_id]
        assert "page 1 of 2" in _modal_text(updated) and len(updated["blocks"]) <= 100
    looked = [a for a in audit_rows(engine) if a.card_id == "card-p"]
    assert [(a.action, a.outcome, a.channel_id) for a in looked] == [
        ("button_timeline", "ok", "C1"),
        ("timeline_page", "ok", "C1"),  # the channel comes from the modal's metadata
    ]


def _modal_press(value: str, view: dict[str, Any]) -> str:
    """A `block_actions` payload from inside a modal (no channel: it is in the metadata)."""
    import time
    from urllib.parse import urlencode

    from tests.slack_signing import TEAM_ID

    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "test"},
        "user": {"id": "U3", "username": "u3", "team_id": TEAM_ID},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": view["id"]},
        "trigger_id": "1.2.4",
        "view": {"type": "modal", **view},
        "actions": [
            {
                "type": "button",
                "action_id": actions.TIMELINE_PAGE,
                "block_id": "b1",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})
