"""The `key=value` arguments of `/card track`, checked and turned into D1's tracking request
before any call: pure, no Slack and no I/O (part of the parser, bot/slack/commands.py)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from typing import Any

from pydantic import ValidationError

from bot.slack.command_errors import CommandError
from d1.models import track_request_adapter

TRACKING_TYPES = {"production": "PRODUCTION", "shipment": "SHIPMENT", "return": "RETURN"}
# Accepted spellings of each argument (compared lower-case, without `_` and `-`).
TRACK_FIELDS = {
    "trackingnumber": "trackingNumber",
    "shipmentdate": "shipmentDate",
    "postalcode": "postalCode",
    "countrycode": "countryCode",
    "productionsite": "productionSite",
}
REQUIRED_FIELDS = {
    "PRODUCTION": ("productionSite",),
    "RETURN": ("productionSite",),
    "SHIPMENT": ("trackingNumber", "shipmentDate", "postalCode", "countryCode"),
}
ALLOWED_FIELDS = {
    "PRODUCTION": ("productionSite",),
    "RETURN": ("productionSite",),
    "SHIPMENT": ("trackingNumber", "shipmentDate", "postalCode", "countryCode", "productionSite"),
}
FIELD_HINTS = {
    "trackingNumber": "up to 64 letters, digits, spaces or `_-./`",
    "shipmentDate": "a date like `2024-05-31` or `2024-05-31T14:00:00Z`",
    "postalCode": "up to 10 letters, digits, spaces or `-`",
    "countryCode": "two capital letters like `FR`",
    "productionSite": "1 to 50 characters",
}


def _field_error(field: str, problem: str) -> CommandError:
    return CommandError(f"`{field}` {problem}: it must be {FIELD_HINTS[field]}.")


def parse_shipment_date(raw: str) -> datetime:
    """A date (midnight UTC) or an ISO datetime (UTC when no offset is given)."""
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(0), tzinfo=timezone.utc)
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError as exc:
        raise _field_error("shipmentDate", "is not a valid date") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def parse_track_arguments(tracking_type: str, args: list[str]) -> Any:
    """`key=value` words into the d1.models tracking request, validated before any D1 call."""
    values: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise CommandError(
                "Tracking arguments are written `key=value` (for example `productionSite=PARIS`)."
            )
        field = TRACK_FIELDS.get(key.lower().replace("_", "").replace("-", ""))
        if field is None:
            known = ", ".join(f"`{f}`" for f in ALLOWED_FIELDS[tracking_type])
            raise CommandError(
                f"Unknown tracking argument for {tracking_type.lower()}; use {known}."
            )
        if field not in ALLOWED_FIELDS[tracking_type]:
            raise CommandError(f"`{field}` does not apply to {tracking_type.lower()} tracking.")
        if field in values:
            raise CommandError(f"`{field}` is given twice.")
        if not value:
            raise _field_error(field, "is empty")
        values[field] = value
    missing = [f for f in REQUIRED_FIELDS[tracking_type] if f not in values]
    if missing:
        names = ", ".join(f"`{f}`" for f in missing)
        word = "is" if len(missing) == 1 else "are"
        raise CommandError(f"{names} {word} missing for {tracking_type.lower()} tracking.")
    if "shipmentDate" in values:
        values["shipmentDate"] = parse_shipment_date(values["shipmentDate"])
    if "countryCode" in values:
        values["countryCode"] = values["countryCode"].upper()
    try:
        return track_request_adapter.validate_python({"trackingType": tracking_type, **values})
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        bad = next((str(p) for p in loc if str(p) in FIELD_HINTS), None)
        bad = bad or next(
            (f for f in FIELD_HINTS if any(_snake(f) == str(p) for p in loc)), "productionSite"
        )
        raise _field_error(bad, "is not valid") from exc


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


__all__ = ["TRACKING_TYPES", "parse_shipment_date", "parse_track_arguments"]
