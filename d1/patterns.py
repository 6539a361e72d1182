"""D1's formats for the values we send it, checked and normalised before any call (pure).

Each function takes what an agent or a caller typed and returns the value in the exact form D1
documents, or raises `D1InvalidField` naming the field and saying what D1 accepts. What can be
fixed without guessing is fixed (surrounding spaces, letter case, a date without a time, an
offset other than UTC); what cannot is refused before it reaches D1, whose 400s are final.

Sources (d1/spec): cardId `^[A-Za-z0-9_-]{1,48}$` (the card ids of order-card.openapi.json:
oldCardId, multiCardId); trackingNumber `^[A-Za-z0-9 _\\-\\.\\/]{1,64}$` (shipment-2 of
production-status.openapi.json); postalCode as the address `zipCode` `^[0-9A-Z- ]{1,10}$` and
countryCode `^[A-Z]{2}$` (address of order-card.openapi.json); shipmentDate as in
tracking-hub.md's example, `YYYY-MM-DDThh:mm:ssZ` in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timezone
from typing import Any

from d1.errors import D1InvalidField

CARD_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
TRACKING_NUMBER = re.compile(r"^[A-Za-z0-9 _\-\.\/]{1,64}$")
POSTAL_CODE = re.compile(r"^[0-9A-Z- ]{1,10}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
PRODUCTION_SITE_MAX = 50
D1_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# What D1 accepts, in words an agent reads (the bot's replies reuse them).
FIELD_RULES: dict[str, str] = {
    "cardId": "1 to 48 letters, digits, `_` or `-`",
    "trackingNumber": "1 to 64 letters, digits, spaces or `_-./`",
    "shipmentDate": "a date like `2024-05-31` or a date and time like `2024-05-31T14:00:00Z`",
    "postalCode": "1 to 10 letters, digits, spaces or `-`",
    "countryCode": "a two-letter country code like `FR`",
    "productionSite": "1 to 50 characters",
}


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise D1InvalidField(field, FIELD_RULES[field], problem="is missing")
    return " ".join(value.split())  # surrounding and repeated whitespace, tabs, NBSP


def _refuse(field: str) -> D1InvalidField:
    return D1InvalidField(field, FIELD_RULES[field])


def check_card_id(value: object) -> str:
    """A D1 card id (it goes into URL paths and D1's logs): spaces around it trimmed."""
    text = _text("cardId", value)
    if not CARD_ID.fullmatch(text):
        raise _refuse("cardId")
    return text


def normalise_tracking_number(value: object) -> str:
    """A carrier tracking number: trimmed, inner runs of spaces made single."""
    text = _text("trackingNumber", value)
    if not TRACKING_NUMBER.fullmatch(text):
        raise _refuse("trackingNumber")
    return text


def normalise_postal_code(value: object) -> str:
    """A postal code as D1 writes them: capitals, single spaces (`wc2n  5du` -> `WC2N 5DU`)."""
    text = _text("postalCode", value).upper()
    if not POSTAL_CODE.fullmatch(text):
        raise _refuse("postalCode")
    return text


def normalise_country_code(value: object) -> str:
    """An ISO 3166 alpha-2 country code in capitals (`gb` -> `GB`)."""
    text = _text("countryCode", value).upper()
    if not COUNTRY_CODE.fullmatch(text):
        raise _refuse("countryCode")
    return text


def normalise_production_site(value: object) -> str:
    """A production site identifier (at most 50 characters, as productionStatus reports it)."""
    text = _text("productionSite", value)
    if not 0 < len(text) <= PRODUCTION_SITE_MAX:
        raise _refuse("productionSite")
    return text


def normalise_shipment_date(value: object) -> datetime:
    """The shipment date as D1 wants it: a UTC instant to the second. A date alone is midnight
    UTC; a time without an offset is taken as UTC; an offset is converted; fractions dropped."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0))
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), time(0))
            else:
                moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise _refuse("shipmentDate") from None
    else:
        raise D1InvalidField("shipmentDate", FIELD_RULES["shipmentDate"], problem="is missing")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def format_d1_datetime(value: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ssZ` (UTC), the format of D1's examples and date-time fields."""
    return normalise_shipment_date(value).strftime(D1_DATETIME_FORMAT)


# A tracking-hub request's fields by trackingType (tracking-hub.md's examples): required, optional.
TRACK_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "PRODUCTION": (("productionSite",), ()),
    "RETURN": (("productionSite",), ()),
    "SHIPMENT": (
        ("trackingNumber", "shipmentDate", "postalCode", "countryCode"),
        ("productionSite",),
    ),
}
_TRACK_NORMALISERS: dict[str, Callable[[object], Any]] = {
    "productionSite": normalise_production_site,
    "trackingNumber": normalise_tracking_number,
    "shipmentDate": lambda value: format_d1_datetime(normalise_shipment_date(value)),
    "postalCode": normalise_postal_code,
    "countryCode": normalise_country_code,
}


def normalise_track_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A tracking-hub request (D1's field names) with every field in D1's format; the first
    field that is missing or cannot be fixed raises `D1InvalidField`. Unknown fields are
    dropped: D1 documents none."""
    tracking_type = str(body.get("trackingType") or "").strip().upper()
    if tracking_type not in TRACK_FIELDS:
        raise D1InvalidField("trackingType", "one of `production`, `shipment` or `return`")
    required, optional = TRACK_FIELDS[tracking_type]
    wire: dict[str, Any] = {"trackingType": tracking_type}
    for name in (*required, *optional):
        value = body.get(name)
        if value is None or value == "":
            if name in required:
                raise D1InvalidField(name, FIELD_RULES[name], problem="is missing")
            continue
        wire[name] = _TRACK_NORMALISERS[name](value)
    return wire


__all__ = [
    "CARD_ID",
    "COUNTRY_CODE",
    "FIELD_RULES",
    "POSTAL_CODE",
    "TRACKING_NUMBER",
    "TRACK_FIELDS",
    "D1InvalidField",
    "check_card_id",
    "format_d1_datetime",
    "normalise_country_code",
    "normalise_postal_code",
    "normalise_production_site",
    "normalise_shipment_date",
    "normalise_track_request",
    "normalise_tracking_number",
]
