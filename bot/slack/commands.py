"""Parse the text of `/card ...` into typed commands: pure, no Slack and no I/O.

The parser refuses a PAN-like string anywhere in the text before looking at anything else, and
its error messages never repeat what was typed (a typo could be card data). Subcommands are
matched longest first, so `digest schedule 08:00` is never read as `digest` with arguments.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

from pydantic import ValidationError

from bot.scheduled.schedules import check_timezone, parse_time_of_day
from d1.carddata import contains_pan
from d1.models import CARD_ID_PATTERN, track_request_adapter
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS

HELP_POINTER = "Type `/card help` to see every command with an example."
PAN_WARNING = (
    ":warning: That looks like a full card number. Never type card numbers into Slack: "
    "use the D1 card id instead. Nothing was sent to D1."
)
MAX_TEXT_LENGTH = 1000

# --------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class StatusCommand:
    card_id: str


@dataclass(frozen=True)
class TrackCommand:
    card_id: str
    tracking_type: str  # PRODUCTION | SHIPMENT | RETURN
    request: Any  # a d1.models Production/Shipment/ReturnTrackingRequest


@dataclass(frozen=True)
class SubscribeCommand:
    card_id: str
    filter: str = FILTER_ALL


@dataclass(frozen=True)
class UnsubscribeCommand:
    card_id: str


@dataclass(frozen=True)
class ListCommand:
    pass


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class DigestShowCommand:
    """`digest`: show the digest now, to the agent who asked."""


@dataclass(frozen=True)
class DigestPostCommand:
    """`digest post`: post the digest to the channel now."""


@dataclass(frozen=True)
class DigestScheduleCommand:
    """`digest schedule HH:MM [Area/City]`: both checked by the parser."""

    time_of_day: str  # HH:MM, zero-padded
    timezone: str | None = None  # IANA name; None = the channel's current zone

    @property
    def at(self) -> time:
        return time.fromisoformat(self.time_of_day)


@dataclass(frozen=True)
class DigestOffCommand:
    pass


DigestCommand = DigestShowCommand | DigestPostCommand | DigestScheduleCommand | DigestOffCommand


Command = (
    StatusCommand
    | TrackCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | ListCommand
    | HelpCommand
    | DigestCommand
)


class CommandError(ValueError):
    """Text that is not a valid command. `message` is safe to show: it never echoes input."""

    def __init__(self, message: str, *, pan_refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.pan_refused = pan_refused

    @property
    def reply(self) -> str:
        """The one-line answer for the agent, with the pointer to help."""
        if self.pan_refused:
            return self.message
        return f"{self.message} {HELP_POINTER}"


# --------------------------------------------------------------------------- track arguments

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


# --------------------------------------------------------------------------- the parser


def _card_id(words: list[str], subcommand: str) -> str:
    if not words:
        raise CommandError(f"`{subcommand}` needs a card id, like `/card {subcommand} card-1`.")
    card_id = words[0]
    if not CARD_ID_PATTERN.match(card_id):
        raise CommandError(
            "That is not a valid D1 card id: it must be 1 to 64 letters, digits, `_` or `-`."
        )
    return card_id


def _no_more(words: list[str], subcommand: str) -> None:
    if words:
        raise CommandError(f"`{subcommand}` takes nothing more here.")


def _split(text: str) -> list[str]:
    # Slack sends typographic quotes when the client "smartens" them.
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'")
    text = text.replace("\u2019", "'")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CommandError("A quote is not closed.") from exc


def _status(words: list[str]) -> Command:
    card_id = _card_id(words, "status")
    _no_more(words[1:], "status")
    return StatusCommand(card_id)


def _track(words: list[str]) -> Command:
    card_id = _card_id(words, "track")
    if len(words) < 2 or words[1].lower() not in TRACKING_TYPES:
        raise CommandError(
            "`track` needs a kind of tracking: `production`, `shipment` or `return`."
        )
    tracking_type = TRACKING_TYPES[words[1].lower()]
    request = parse_track_arguments(tracking_type, words[2:])
    return TrackCommand(card_id=card_id, tracking_type=tracking_type, request=request)


def _subscribe(words: list[str]) -> Command:
    card_id = _card_id(words, "subscribe")
    rest = [w.lower() for w in words[1:]]
    if not rest:
        return SubscribeCommand(card_id, FILTER_ALL)
    if rest in (["exceptions"], ["exception"]):
        return SubscribeCommand(card_id, FILTER_EXCEPTIONS)
    if rest == ["all"]:
        return SubscribeCommand(card_id, FILTER_ALL)
    raise CommandError("`subscribe` takes a card id and optionally `exceptions`.")


def _unsubscribe(words: list[str]) -> Command:
    card_id = _card_id(words, "unsubscribe")
    _no_more(words[1:], "unsubscribe")
    return UnsubscribeCommand(card_id)


def _list(words: list[str]) -> Command:
    _no_more(words, "list")
    return ListCommand()


def _help(words: list[str]) -> Command:
    return HelpCommand()


def _digest(words: list[str]) -> Command:
    _no_more(words, "digest")
    return DigestShowCommand()


def _digest_post(words: list[str]) -> Command:
    _no_more(words, "digest post")
    return DigestPostCommand()


def _digest_off(words: list[str]) -> Command:
    _no_more(words, "digest off")
    return DigestOffCommand()


def _digest_schedule(words: list[str]) -> Command:
    if not words or len(words) > 2:
        raise CommandError("`digest schedule` takes a time and optionally a timezone.")
    try:
        at = parse_time_of_day(words[0])
    except ValueError as exc:
        raise CommandError(
            "The digest time must be `HH:MM` on a 24-hour clock, like `08:30`."
        ) from exc
    zone = None
    if len(words) == 2:
        zone = words[1]
        try:
            check_timezone(zone)
        except ValueError as exc:
            raise CommandError(
                "That timezone is unknown: use an IANA name like `Europe/Paris`."
            ) from exc
    return DigestScheduleCommand(time_of_day=at.strftime("%H:%M"), timezone=zone)


# Longest first: a multi-word subcommand wins over its prefix.
SUBCOMMANDS: tuple[tuple[tuple[str, ...], Any], ...] = tuple(
    sorted(
        (
            (("status",), _status),
            (("track",), _track),
            (("subscribe",), _subscribe),
            (("unsubscribe",), _unsubscribe),
            (("list",), _list),
            (("help",), _help),
            (("digest",), _digest),
            (("digest", "post"), _digest_post),
            (("digest", "schedule"), _digest_schedule),
            (("digest", "off"), _digest_off),
        ),
        key=lambda item: -len(item[0]),
    )
)


def parse_command(text: str) -> Command:
    """The typed command for the text after `/card`; raises CommandError with a safe message."""
    if contains_pan(text):
        raise CommandError(PAN_WARNING, pan_refused=True)
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandError("That command is too long.")
    words = _split(text.strip())
    if not words:
        return HelpCommand()
    lowered = [w.lower() for w in words]
    for names, parse in SUBCOMMANDS:
        if tuple(lowered[: len(names)]) == names:
            return parse(words[len(names) :])
    raise CommandError("I don't know that command.")


def command_name(command: Command) -> str:
    """A short, bounded name for audit rows and metric labels."""
    return {
        StatusCommand: "status",
        TrackCommand: "track",
        SubscribeCommand: "subscribe",
        UnsubscribeCommand: "unsubscribe",
        ListCommand: "list",
        HelpCommand: "help",
        DigestShowCommand: "digest",
        DigestPostCommand: "digest_post",
        DigestScheduleCommand: "digest_schedule",
        DigestOffCommand: "digest_off",
    }[type(command)]


def command_card_id(command: Command) -> str | None:
    return getattr(command, "card_id", None)
