"""The rendering boundary plays the attacker's data back: whatever D1 sends as free text, codes,
ids and URLs, every payload the renderers build holds no raw `<` from data (no mention, no
special token, no injected link), no PAN, nothing over Slack's limits, and parses as Block Kit.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.render import messages, slacktext, triage, views
from bot.scheduled import digest, stuck
from d1.carddata import contains_pan
from d1.models import ProductionStatus
from storage.repositories.digest import DigestData, ExceptionEvent, ReasonCount, StatusCount
from storage.repositories.stuck import StuckCard
from storage.tables import CardRecord, EventRecord

AT = datetime(2026, 11, 22, 7, 26, tzinfo=timezone.utc)
PAN = "4111 1111 1111 1111"

# The only `<…>` tokens the bot writes itself: dates, links it built, mentions of Slack ids.
_OWN_TOKENS = re.compile(
    r"<!date\^\d+\^[^|<>]*\|[^<>]*>"
    r"|<https?://[^|<>\s]+\|[^<>]*>"
    r"|<@[UWB][A-Z0-9]+>"
    r"|<#[CGD][A-Z0-9]+>"
)

HOSTILE = [
    "<!here>",
    "<!channel>",
    "<!everyone>",
    "<@U0ADMIN>",
    "<#C0SECRET|secret>",
    "<!subteam^S0TEAM>",
    "<!date^1^{date}|x>",
    "<https://evil.example|https://ups.com>",
    "a|b>c<d",
    "&amp;&lt;",
    "*bold* _it_ ```code``` `x`",
    PAN,
    "4111\u00a01111\u00a01111\u00a01111",
    "4111+1111+1111+1111",
    "\u202eevil",
    ":rotating_light:",
]
TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=4).map(" ".join),
    # huge fields: up to ~7,000 characters
    st.tuples(st.sampled_from(HOSTILE), st.integers(1, 400)).map(lambda t: t[0] * t[1]),
)
URL = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "https://www.ups.com/track?tracknum=1Z999&lang=en",
            "https://evil.example/x|Click here>",
            "javascript:alert(1)",
            "https://track.example/" + PAN.replace(" ", "%20"),
            "https://track.example/?pan=4111111111111111",
            "http://h/<!here>",
            "ftp://files.example/x",
            "https://",
        ]
    ),
    st.text(max_size=30).map(lambda t: "https://track.example/" + t),
    st.text(max_size=60),
)


@st.composite
def shipments(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "carrier": draw(st.one_of(st.sampled_from(["ups", "fedex", "dhl"]), TEXT)),
        "trackingNumber": draw(TEXT),
        "status": draw(st.one_of(st.sampled_from(["IN_TRANSIT", "FAILED_ATTEMPT"]), TEXT)),
        "message": draw(TEXT),
        "trackingUrl": draw(URL),
        "redirectUrl": draw(URL),
        "signedBy": "Ada Lovelace",
        "failedDeliveryAttempts": draw(TEXT),
        "lastCheckpoint": {"city": draw(TEXT), "countryName": draw(TEXT), "message": draw(TEXT)},
    }


@st.composite
def cards_and_events(draw: st.DrawFn) -> tuple[CardRecord, EventRecord]:
    card_id = draw(TEXT) or "c"
    shipment = draw(shipments())
    status = draw(st.one_of(st.just("CARD_SHIPPED"), TEXT))
    card = CardRecord(
        card_id=card_id,
        status=status,
        shipment_status=shipment["status"],
        shipment=shipment,
        state_event_time=AT,
        is_exception=True,
        production_site=draw(TEXT),
        reason=draw(TEXT),
    )
    event = EventRecord(
        id=7,
        dedup_key="k",
        card_id=card_id,
        operation_id=draw(TEXT),
        operation=draw(TEXT) or "PRODUCE",
        operation_status=draw(TEXT),
        details_status=status,
        shipment_status=shipment["status"],
        shipment_message=draw(TEXT),
        event_time=AT,
        is_exception=True,
        payload={
            "details": {"reason": draw(TEXT), "shipment": shipment},
            "errorCode": draw(TEXT),
        },
    )
    return card, event


# Routing data Slack hands back to the bot and never shows (a button's card id).
_NOT_SHOWN = frozenset({"value", "action_id", "block_id"})


def _strings(value: Any, *, shown_only: bool = False) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            s
            for k, v in value.items()
            if not (shown_only and k in _NOT_SHOWN)
            for s in (k, *_strings(v, shown_only=shown_only))
        ]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v, shown_only=shown_only)]
    return []


def _text_of(obj: Any) -> str:
    return obj["text"] if isinstance(obj, dict) else ""


def assert_safe(payload: dict[str, Any], *, max_blocks: int = slacktext.MESSAGE_BLOCKS) -> None:
    """The attacker's checklist for one payload `{"text", "blocks"}`."""
    for string in _strings(payload, shown_only=True):
        leftover = _OWN_TOKENS.sub("", string)
        assert "<" not in leftover and ">" not in leftover, string[:300]
    for string in _strings(payload):
        assert not contains_pan(string), string[:300]
    assert 0 < len(payload["text"]) <= slacktext.FALLBACK_TEXT
    blocks = payload.get("blocks") or []
    assert len(blocks) <= max_blocks
    for block in blocks:
        kind = block["type"]
        if kind == "section":
            if "text" in block:
                assert 0 < len(_text_of(block["text"])) <= slacktext.SECTION_TEXT
            fields = block.get("fields") or []
            assert len(fields) <= slacktext.SECTION_FIELDS
            assert all(0 < len(_text_of(f)) <= slacktext.SECTION_FIELD for f in fields)
            assert "text" in block or fields
        elif kind == "header":
            assert 0 < len(_text_of(block["text"])) <= slacktext.HEADER_TEXT
        elif kind == "context":
            assert 0 < len(block["elements"]) <= slacktext.CONTEXT_ELEMENTS
            assert all(0 < len(_text_of(e)) <= slacktext.CONTEXT_ELEMENT for e in block["elements"])
        elif kind == "actions":
            for element in block["elements"]:
                assert 0 < len(_text_of(element["text"])) <= slacktext.BUTTON_TEXT
        parsed = Block.parse(block)
        assert parsed is not None and parsed.to_dict()  # slack_sdk's own validation passes


PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(pair=cards_and_events(), who=TEXT, link=URL)
def test_channel_messages_are_safe_whatever_d1_sends(
    pair: tuple[CardRecord, EventRecord], who: str, link: str | None
) -> None:
    card, event = pair
    built = [
        messages.card_parent_message(card),
        messages.event_reply_message(event),
        messages.exception_alert_message(card, event, thread_link=link),
        messages.exception_alert_message(
            card, event, state=triage.AlertState(owner=who, opened_at=AT), now=AT
        ),
        messages.exception_alert_message(
            card, event, state=triage.AlertState(open=False, resolved_by=who, resolved_at=AT)
        ),
        messages.burst_summary_message([card, card]),
        messages.card_notice_message(card.card_id, event.shipment_message or "x"),
        messages.stuck_card_message(card, stuck_for=timedelta(days=3), expected=event.operation),
        messages.not_in_channel_notice(who),
    ]
    for message in built:
        payload = message.as_payload()
        assert_safe(payload)
        assert "Ada Lovelace" not in json.dumps(payload)  # channel messages: no signer


@PROPERTY
@given(pair=cards_and_events(), who=TEXT)
def test_status_views_are_safe_and_the_shared_one_is_impersonal(
    pair: tuple[CardRecord, EventRecord], who: str
) -> None:
    card, event = pair
    status = ProductionStatus.model_validate(
        {
            "status": card.status,
            "reason": card.reason,
            "productionSite": card.production_site,
            "shipment": card.shipment,
            "name": "Ada Lovelace",
            "deliveryAddress": {"line1": "12 Analytical Street", "city": event.operation_id},
        }
    )
    personal = views.status_reply(card.card_id, status, fetched_at=AT)
    shared = views.shared_status_reply(card.card_id, status, fetched_at=AT, shared_by=who)
    for reply in (personal, shared):
        assert_safe(reply.respond_kwargs())
    shared_text = json.dumps(shared.respond_kwargs())
    assert "Ada Lovelace" not in shared_text and "Analytical" not in shared_text


@PROPERTY
@given(
    codes=st.lists(TEXT, min_size=1, max_size=5),
    reasons=st.lists(TEXT, min_size=1, max_size=5),
    card_id=TEXT,
    channel=TEXT,
    ts=TEXT,
)
def test_the_digest_and_stuck_notices_are_safe(
    codes: list[str], reasons: list[str], card_id: str, channel: str, ts: str
) -> None:
    stuck_cards = [
        StuckCard(
            card_id=card_id,
            rule=code,
            status=code,
            shipment_status=code,
            since=AT - timedelta(days=2),
            state_event_time=AT,
            carrier=code,
            shipment_message=code,
        )
        for code in codes
    ]
    data = DigestData(
        window_start=AT - timedelta(days=1),
        window_end=AT,
        previous_start=AT - timedelta(days=2),
        production=[StatusCount(status=c, current=1, previous=2) for c in codes],
        shipment=[StatusCount(status=c, current=3, previous=1) for c in codes],
        exceptions_total=len(reasons) * 40,
        exceptions=[
            ExceptionEvent(
                event_id=i,
                card_id=card_id,
                status=r,
                shipment_status=r,
                shipment_message=r,
                operation_status="FAILED",
                reason=r,
                received_at=AT,
                thread_channel_id=channel,
                thread_ts=ts,
            )
            for i, r in enumerate(reasons * 40)
        ],
        top_reasons=[ReasonCount(reason=r, count=2) for r in reasons],
        stuck_total=len(stuck_cards),
        stuck=stuck_cards,
    )
    rendered = digest.render_digest(data, zone=ZoneInfo("UTC"), titles={})
    for page in [rendered, *rendered["thread"]]:
        assert_safe(page)
    for card in stuck_cards:
        assert_safe(stuck.notice_payload(card, {}, AT))


@PROPERTY
@given(rows=st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=60))
def test_list_replies_and_app_home_are_safe(rows: list[tuple[str, str, str]]) -> None:
    listed = views.list_reply(
        [views.ChannelSubscriptionRow(c, "all", who, AT, status) for c, who, status in rows]
    )
    assert_safe(listed.respond_kwargs())
    home = views.home_view()
    assert len(home["blocks"]) <= slacktext.VIEW_BLOCKS
    assert_safe({"text": "home", "blocks": home["blocks"]}, max_blocks=slacktext.VIEW_BLOCKS)


# --------------------------------------------------------------------------- the pieces


def test_mentions_and_special_tokens_from_data_are_shown_not_obeyed() -> None:
    for token in ("<!here>", "<!channel>", "<@U1>", "<#C1>", "<!subteam^S1>", "<!date^1^x|y>"):
        assert slacktext.escape(token).startswith("&lt;")
    assert slacktext.user("U123") == "<@U123>"
    assert slacktext.user("U1> <!here") == "U1&gt; &lt;!here"
    assert slacktext.channel("C9") == "<#C9>" and slacktext.channel("<!here>") == "&lt;!here&gt;"


def test_an_unknown_status_code_does_not_ping_the_channel() -> None:
    card = CardRecord(card_id="card-1", status="<!here>", state_event_time=AT)
    message = messages.card_parent_message(card)
    assert "<!here>" not in json.dumps(message.as_payload())
    assert "&lt;!here&gt;" in message.text


def test_tracking_links_are_http_encoded_pan_free_and_labelled_by_carrier() -> None:
    link = slacktext.tracking_link("https://ups.example/t?n=1Z|x>y&l=en", "ups")
    assert link == "<https://ups.example/t?n=1Z%7Cx%3Ey&amp;l=en|Track on UPS>"
    assert slacktext.tracking_link("javascript:alert(1)", "ups") is None
    assert slacktext.tracking_link("https://t.example/4111111111111111", "ups") is None
    assert slacktext.tracking_link("https://t.example/4111%201111%201111%201111", "ups") is None
    unknown = slacktext.tracking_link("https://t.example/x", "<!here> evil.com")
    assert unknown == "<https://t.example/x|Track on &lt;!here&gt; evil.com>"


def test_text_is_cut_with_a_visible_ellipsis_never_inside_a_token() -> None:
    assert slacktext.clip("x" * 10, 5) == "xxxx…"
    assert slacktext.clip("ab <https://x.example/long|label> cd", 10) == "ab …"
    assert slacktext.clip("ab &amp; cd", 6) == "ab …"
    huge = messages.card_notice_message("card-1", "y" * 10_000).as_payload()
    assert huge["blocks"][0]["text"]["text"].endswith("…")
    assert len(huge["blocks"][0]["text"]["text"]) == slacktext.SECTION_TEXT


def test_too_many_blocks_are_cut_and_said_so() -> None:
    blocks = [slacktext.section(str(i)) for i in range(120)]
    fitted = slacktext.fit_blocks(blocks)
    assert len(fitted) == slacktext.MESSAGE_BLOCKS
    assert "71 more not shown" in fitted[-1]["elements"][0]["text"]
    view = slacktext.view_payload(
        {"type": "modal", "title": {"type": "plain_text", "text": "t" * 40}, "blocks": blocks}
    )
    assert len(view["blocks"]) == slacktext.VIEW_BLOCKS
    assert len(view["title"]["text"]) == slacktext.MODAL_TITLE
