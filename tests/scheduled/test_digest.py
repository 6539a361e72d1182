"""Digest content from a database prepared through intake, with a fixed clock: counts and
changes against the day before, exceptions and their reasons, stuck cards, dead letters, the
Block Kit limits, and the local day across daylight-saving changes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.scheduled.digest import compute_digest, render_digest
from bot.scheduled.schedules import digest_windows, latest_occurrence, parse_time_of_day
from bot.scheduled.stuck import criteria, default_rules, rule_titles
from storage.repositories.digest import digest_data
from storage.repositories.intake import record_operations
from storage.tables import OutboxRecord, ThreadRecord
from tests.scheduled_support import FixedClock, make_runtime, op, record

UTC = timezone.utc
NOW = datetime(2025, 6, 10, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _prepare(engine) -> None:
    prev, cur = NOW - 2 * DAY, NOW - DAY  # starts of the day before and of the last day
    # A: requested the day before, data prepared in the last day.
    record(engine, op("card-A", "CARD_PROD_REQUESTED", prev + timedelta(hours=2)))
    record(engine, op("card-A", "DATA_PREPARED", cur + timedelta(hours=1)))
    # B: requested in the last day.
    record(engine, op("card-B", "CARD_PROD_REQUESTED", cur + timedelta(hours=2)))
    # C: shipped the day before, delivered in the last day.
    record(
        engine,
        op("card-C", "CARD_SHIPPED", prev + timedelta(hours=4), shipment_status="IN_TRANSIT"),
    )
    record(
        engine,
        op(
            "card-C",
            "CARD_SHIPPED",
            cur + timedelta(hours=4),
            shipment_status="DELIVERED",
            message="Delivered",
        ),
    )
    # D: data rejected in the last day; E: carrier exception in the last day.
    record(
        engine,
        op("card-D", "DATA_EXCEPTION", cur + timedelta(hours=5), reason="Invalid address format"),
    )
    record(
        engine,
        op(
            "card-E",
            "CARD_SHIPPED",
            cur + timedelta(hours=6),
            shipment_status="EXCEPTION",
            message="Customs <hold>",
        ),
    )
    record(
        engine,
        op(
            "card-H",
            "CARD_SHIPPED",
            cur + timedelta(hours=7),
            shipment_status="EXCEPTION",
            message="Customs <hold>",
        ),
    )
    # F: requested three days ago and silent since (stuck); G: on hold for three days (stuck).
    record(engine, op("card-F", "CARD_PROD_REQUESTED", NOW - 3 * DAY))
    record(engine, op("card-G", "CARD_PROD_ONHOLD", NOW - 3 * DAY - timedelta(hours=2)))
    # A thread for E in the digest channel, one for H elsewhere.
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ThreadRecord.__table__),  # type: ignore[attr-defined]
            [
                {
                    "workspace_id": "T1",
                    "channel_id": "COPS",
                    "card_id": "card-H",
                    "parent_ts": "1700000000.000100",
                    "created_at": NOW,
                    "updated_at": NOW,
                },
                {
                    "workspace_id": "T1",
                    "channel_id": "CDIGEST",
                    "card_id": "card-E",
                    "parent_ts": "1700000001.000200",
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            ],
        )
        conn.execute(
            sa.insert(OutboxRecord.__table__),  # type: ignore[attr-defined]
            [
                {
                    "channel_id": "CX",
                    "kind": "message",
                    "state": "dead",
                    "payload": {},
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                }
            ],
        )


def _data(engine):
    rules = default_rules(make_runtime(engine, FixedClock(NOW)).settings)
    previous_start, start, end = digest_windows(NOW, ZoneInfo("UTC"))
    return digest_data(
        engine,
        previous_start=previous_start,
        window_start=start,
        window_end=end,
        stuck_criteria=criteria(rules, NOW),
        channel_id="CDIGEST",
    )


def test_counts_and_changes_against_the_day_before(any_engine) -> None:
    _prepare(any_engine)
    data = _data(any_engine)
    production = {c.status: (c.current, c.previous) for c in data.production}
    assert production == {
        "CARD_PROD_REQUESTED": (1, 1),
        "DATA_PREPARED": (1, 0),
        "DATA_EXCEPTION": (1, 0),
        "CARD_SHIPPED": (3, 1),
    }
    shipment = {c.status: (c.current, c.previous) for c in data.shipment}
    assert shipment == {"DELIVERED": (1, 0), "EXCEPTION": (2, 0), "IN_TRANSIT": (0, 1)}
    assert data.delivered.current == 1 and data.delivered.change == 1
    assert data.dead_letters == 1


def test_exceptions_reasons_and_threads(any_engine) -> None:
    _prepare(any_engine)
    data = _data(any_engine)
    assert data.exceptions_total == 3
    assert [e.card_id for e in data.exceptions] == ["card-H", "card-E", "card-D"]  # newest first
    by_card = {e.card_id: e for e in data.exceptions}
    assert by_card["card-D"].reason == "Invalid address format"
    assert (by_card["card-E"].thread_channel_id, by_card["card-E"].thread_ts) == (
        "CDIGEST",
        "1700000001.000200",
    )
    assert by_card["card-H"].thread_channel_id == "COPS"
    assert [(r.reason, r.count) for r in data.top_reasons] == [
        ("Customs <hold>", 2),
        ("Invalid address format", 1),
    ]


def test_stuck_cards_oldest_first(any_engine) -> None:
    _prepare(any_engine)
    data = _data(any_engine)
    # G has waited longest; B (requested 22 h ago) is not stuck yet; A moved on.
    assert [(c.card_id, c.rule) for c in data.stuck] == [
        ("card-G", "on_hold"),
        ("card-F", "not_started"),
    ]
    assert data.stuck_total == 2


def test_rendered_digest_fits_slack_and_says_what_happened(engine) -> None:
    _prepare(engine)
    runtime = make_runtime(engine, FixedClock(NOW))
    payload = compute_digest(runtime, end=NOW, zone=ZoneInfo("UTC"), channel_id="CDIGEST")
    assert payload["thread"] == []
    blocks = payload["blocks"]
    assert len(blocks) <= 50
    text = json.dumps(blocks)
    assert "Daily card digest" in text
    assert "Customs &lt;hold&gt;" in text and "<hold>" not in text  # carrier text made inert
    assert "https://slack.com/archives/CDIGEST/p1700000001000200|thread" in text
    assert "`card-G` on hold for 3 days 2 h" in text
    assert "undelivered" in text
    assert payload["text"].startswith("Daily card digest: 1 delivered, 3 new exceptions, 2 stuck")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    table = next(s for s in sections if "Production" in s)
    assert "Production requested" in table and "+1" in table


def test_long_digest_is_paginated_into_the_thread(engine) -> None:
    start = NOW - timedelta(hours=20)
    operations = [
        op(
            f"card-{i:04d}",
            "CARD_SHIPPED",
            start + timedelta(seconds=i),
            shipment_status="EXCEPTION",
            message=f"Returned to sender, reason number {i} " + "x" * 150,
        )
        for i in range(1000)
    ]
    record_operations(
        engine, operations, received_at=start, workspace_id="T1", exceptions_channel=None
    )
    runtime = make_runtime(engine, FixedClock(NOW))
    payload = compute_digest(
        runtime, end=NOW, zone=ZoneInfo("UTC"), channel_id=None, exceptions_shown=1000
    )
    pages = [payload, *payload["thread"]]
    assert len(pages) >= 2
    shown = 0
    for page in pages:
        assert len(page["blocks"]) <= 50
        for block in page["blocks"]:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
                shown += block["text"]["text"].count("• `card-")
    assert shown == 1000  # nothing dropped by pagination


def test_dst_spring_forward_day_is_23_hours_in_paris() -> None:
    paris = ZoneInfo("Europe/Paris")
    at = parse_time_of_day("08:00")
    # Sunday 30 March 2025: clocks go from 02:00 to 03:00.
    run = latest_occurrence(datetime(2025, 3, 30, 6, 30, tzinfo=UTC), at, paris)
    assert run == datetime(2025, 3, 30, 6, 0, tzinfo=UTC)  # 08:00 CEST
    day_before = latest_occurrence(datetime(2025, 3, 29, 12, 0, tzinfo=UTC), at, paris)
    assert day_before == datetime(2025, 3, 29, 7, 0, tzinfo=UTC)  # 08:00 CET
    previous_start, start, end = digest_windows(run, paris)
    assert end - start == timedelta(hours=23)
    assert start - previous_start == timedelta(hours=24)


def test_dst_fall_back_day_is_25_hours_in_paris() -> None:
    paris = ZoneInfo("Europe/Paris")
    at = parse_time_of_day("08:00")
    # Sunday 26 October 2025: clocks go from 03:00 back to 02:00.
    run = latest_occurrence(datetime(2025, 10, 26, 8, 0, tzinfo=UTC), at, paris)
    assert run == datetime(2025, 10, 26, 7, 0, tzinfo=UTC)  # 08:00 CET
    _previous_start, start, end = digest_windows(run, paris)
    assert end - start == timedelta(hours=25)
    assert start == datetime(2025, 10, 25, 6, 0, tzinfo=UTC)  # 08:00 CEST


def test_events_across_the_dst_change_land_in_the_right_local_day(engine) -> None:
    paris = ZoneInfo("Europe/Paris")
    run = datetime(2025, 3, 30, 6, 0, tzinfo=UTC)  # 08:00 CEST on the short day
    # 07:30 UTC on the 29th is 08:30 CET: inside the short day. 06:30 UTC is before it.
    record(engine, op("card-in", "CARD_PROD_REQUESTED", datetime(2025, 3, 29, 7, 30, tzinfo=UTC)))
    record(engine, op("card-out", "CARD_PROD_REQUESTED", datetime(2025, 3, 29, 6, 30, tzinfo=UTC)))
    runtime = make_runtime(engine, FixedClock(run))
    previous_start, start, end = digest_windows(run, paris)
    data = digest_data(
        engine,
        previous_start=previous_start,
        window_start=start,
        window_end=end,
        stuck_criteria=[],
    )
    assert [(c.status, c.current, c.previous) for c in data.production] == [
        ("CARD_PROD_REQUESTED", 1, 1)
    ]
    payload = render_digest(data, zone=paris, titles=rule_titles(default_rules(runtime.settings)))
    assert "Sat 29 Mar 08:00 → Sun 30 Mar 08:00 (Europe/Paris)" in json.dumps(
        payload["blocks"], ensure_ascii=False
    )
