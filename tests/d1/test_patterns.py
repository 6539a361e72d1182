"""D1's formats for what we send (d1.patterns): fixed when they can be, refused naming the field
when they cannot; the patterns are the spec files' own; and the client applies them before any
request leaves (over real HTTP to the sandbox)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from d1.errors import D1BadRequest, D1InvalidField
from d1.patterns import (
    CARD_ID,
    COUNTRY_CODE,
    FIELD_RULES,
    POSTAL_CODE,
    TRACKING_NUMBER,
    check_card_id,
    format_d1_datetime,
    normalise_country_code,
    normalise_postal_code,
    normalise_production_site,
    normalise_shipment_date,
    normalise_track_request,
    normalise_tracking_number,
)
from d1.spec import spec_json
from tests.d1_fixtures import make_client, running_sandbox
from tests.spec_examples import track_request_examples

ORDER = spec_json("order-card.openapi.json")["components"]["schemas"]
STATUS = spec_json("production-status.openapi.json")["components"]["schemas"]


def test_the_patterns_are_the_spec_files_own() -> None:
    assert CARD_ID.pattern == ORDER["cardRequestThales"]["properties"]["oldCardId"]["pattern"]
    assert CARD_ID.pattern == ORDER["cardCarrierConfig"]["properties"]["multiCardId"]["pattern"]
    assert (
        TRACKING_NUMBER.pattern == STATUS["shipment-2"]["properties"]["trackingNumber"]["pattern"]
    )
    assert POSTAL_CODE.pattern == ORDER["address"]["properties"]["zipCode"]["pattern"]
    assert COUNTRY_CODE.pattern == ORDER["address"]["properties"]["countryCode"]["pattern"]


@pytest.mark.parametrize(
    ("function", "given_value", "expected"),
    [
        (check_card_id, " card-1 ", "card-1"),
        (check_card_id, "c" * 48, "c" * 48),
        (normalise_tracking_number, " 1Z 999\tAA1  01 ", "1Z 999 AA1 01"),
        (normalise_tracking_number, "JD014600006281/2.A-B_C", "JD014600006281/2.A-B_C"),
        (normalise_postal_code, "wc2n  5du", "WC2N 5DU"),
        (normalise_postal_code, "80-827", "80-827"),
        (normalise_country_code, " gb ", "GB"),
        (normalise_production_site, " PERSO-CENTER-FR-01 ", "PERSO-CENTER-FR-01"),
    ],
)
def test_what_can_be_fixed_is_fixed(function, given_value: str, expected: str) -> None:
    assert function(given_value) == expected


@pytest.mark.parametrize(
    ("function", "value", "field"),
    [
        (check_card_id, "c" * 49, "cardId"),
        (check_card_id, "card/1", "cardId"),
        (check_card_id, "", "cardId"),
        (check_card_id, None, "cardId"),
        (normalise_tracking_number, "1Z#999", "trackingNumber"),
        (normalise_tracking_number, "9" * 65, "trackingNumber"),
        (normalise_postal_code, "SW1A 1AA 123", "postalCode"),
        (normalise_postal_code, "75002!", "postalCode"),
        (normalise_country_code, "GBR", "countryCode"),
        (normalise_country_code, "F1", "countryCode"),
        (normalise_production_site, "P" * 51, "productionSite"),
        (normalise_shipment_date, "31/05/2024", "shipmentDate"),
        (normalise_shipment_date, "2024-02-30", "shipmentDate"),
        (normalise_shipment_date, 1717000000, "shipmentDate"),
    ],
)
def test_what_cannot_be_fixed_is_refused_naming_the_field(function, value, field: str) -> None:
    with pytest.raises(D1InvalidField) as caught:
        function(value)
    error = caught.value
    assert isinstance(error, D1BadRequest) and isinstance(error, ValueError)
    assert error.field == field and error.rule == FIELD_RULES[field]
    assert f"`{field}`" in error.user_message and FIELD_RULES[field] in error.user_message
    assert error.error_code == "FIELD_INVALID_FORMAT"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-31", "2024-05-31T00:00:00Z"),
        ("2024-05-31T14:00:00Z", "2024-05-31T14:00:00Z"),
        ("2024-05-31t14:00:00z", "2024-05-31T14:00:00Z"),
        ("2024-05-31T14:00:00", "2024-05-31T14:00:00Z"),  # no offset: UTC
        ("2024-05-31T16:00:00.987+02:00", "2024-05-31T14:00:00Z"),
        ("2024-05-31T23:30:00-05:00", "2024-06-01T04:30:00Z"),
        (date(2024, 5, 31), "2024-05-31T00:00:00Z"),
        (datetime(2024, 5, 31, 14, 0, 0, 500), "2024-05-31T14:00:00Z"),
    ],
)
def test_shipment_dates_become_d1s_utc_format(value: object, expected: str) -> None:
    assert format_d1_datetime(normalise_shipment_date(value)) == expected


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [timezone.utc, timezone(timedelta(hours=-11)), timezone(timedelta(hours=5, minutes=30))]
        ),
    )
)
def test_any_instant_keeps_its_moment_to_the_second(moment: datetime) -> None:
    text = format_d1_datetime(normalise_shipment_date(moment.isoformat()))
    assert regex.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert timedelta(0) <= moment - back < timedelta(seconds=1)


@given(st.text(alphabet="abcXYZ0189 -\t", min_size=1, max_size=14))
def test_a_fixed_postal_code_matches_d1s_pattern_and_stays_fixed(raw: str) -> None:
    try:
        fixed = normalise_postal_code(raw)
    except D1InvalidField:
        return
    assert POSTAL_CODE.fullmatch(fixed) and normalise_postal_code(fixed) == fixed


def test_track_requests_take_d1s_fields_and_formats() -> None:
    for example in track_request_examples():  # D1's examples come out unchanged
        assert normalise_track_request(example) == example
    typed = normalise_track_request(
        {
            "trackingType": "shipment",
            "trackingNumber": "61293150000079650811",
            "shipmentDate": "2023-01-21",
            "postalCode": "wc2n5du",
            "countryCode": "gb",
            "productionSite": None,
            "note": "dropped: D1 documents no such field",
        }
    )
    assert typed == {
        "trackingType": "SHIPMENT",
        "trackingNumber": "61293150000079650811",
        "shipmentDate": "2023-01-21T00:00:00Z",
        "postalCode": "WC2N5DU",
        "countryCode": "GB",
    }
    with pytest.raises(D1InvalidField) as missing:
        normalise_track_request({"trackingType": "SHIPMENT", "trackingNumber": "1"})
    assert missing.value.field == "shipmentDate" and "is missing" in missing.value.user_message
    with pytest.raises(D1InvalidField) as kind:
        normalise_track_request({"trackingType": "TELEPORT"})
    assert kind.value.field == "trackingType"


async def test_the_client_refuses_before_sending_and_names_the_field() -> None:
    async with running_sandbox() as (sb, url), make_client(url, sb) as client:
        with pytest.raises(D1InvalidField) as caught:
            await client.track(
                "card-1",
                {
                    "trackingType": "SHIPMENT",
                    "trackingNumber": "1Z999",
                    "shipmentDate": "2024-05-31",
                    "postalCode": "75002",
                    "countryCode": "France",
                },
            )
    assert caught.value.field == "countryCode"
    assert caught.value.user_message == (
        "`countryCode` is not valid: D1 needs a two-letter country code like `FR`."
    )
    assert sb.requests == []  # nothing left: not even a token request
