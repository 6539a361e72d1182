"""Parse the text of `/card ...` into typed commands: pure, no Slack and no I/O.

The parser refuses a PAN-like string anywhere in the text before looking at anything else, and
its error messages never repeat what was typed (a typo could be card data). Subcommands are
matched longest first, so `digest schedule 08:00` is never read as `digest` with arguments.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass
from datetime import time
from typing import Any

from bot.scheduled.schedules import check_timezone, parse_time_of_day
from bot.slack.command_errors import HELP_POINTER as HELP_POINTER
from bot.slack.command_errors import CommandError
from bot.slack.track_arguments import TRACKING_TYPES, parse_track_arguments
from d1.carddata import contains_pan
from d1.models import CARD_ID_PATTERN
from storage.repositories.channel_settings import THREAD_MODES
from storage.tables import FILTER_ALL, FILTER_EXCEPTIONS

PAN_WARNING = (
    ":warning: That looks like a full card number. Never type card numbers into Slack: "
    "use the D1 card id instead. Nothing was sent to D1."
)
FIND_PAN_WARNING = (
    ":warning: That looks like a full card number. Anything that looks like one is stored "
    "masked, so it cannot be searched: search by the issuerRequestId, the carrier's tracking "
    "number or the D1 card id. Nothing was searched."
)
MAX_TEXT_LENGTH = 1000
# What `/card find` and `/card status` accept besides a card id: an issuerRequestId or a
# carrier tracking number (D1's patterns for both fit in this).
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9 _\-./]{1,64}$")

# --------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class StatusCommand:
    """`status <id>`: a card id, or an issuerRequestId or tracking number (`by_identifier`:
    it does not look like a card id, so only a stored card can answer it)."""

    card_id: str
    by_identifier: bool = False


@dataclass(frozen=True)
class FindCommand:
    """`find <text>`: stored cards by issuerRequestId, tracking number or card id prefix."""

    text: str


@dataclass(frozen=True)
class TrackCommand:
    card_id: str
    tracking_type: str  # PRODUCTION | SHIPMENT | RETURN
    request: Any  # a d1.models Production/Shipment/ReturnTrackingRequest


@dataclass(frozen=True)
class HistoryCommand:
    """`history <cardId>`: the card's story in a modal."""

    card_id: str


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
class ExceptionsCommand:
    """`exceptions [open|mine]`: the open exceptions, or those the asker owns."""

    mine: bool = False


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


@dataclass(frozen=True)
class SettingsCommand:
    """`settings` shows the channel's settings; `settings threads on|off|quiet` sets its mode."""

    thread_mode: str | None = None


DigestCommand = DigestShowCommand | DigestPostCommand | DigestScheduleCommand | DigestOffCommand


Command = (
    StatusCommand
    | FindCommand
    | HistoryCommand
    | TrackCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | ListCommand
    | ExceptionsCommand
    | HelpCommand
    | SettingsCommand
    | DigestCommand
)


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
    if words and not CARD_ID_PATTERN.match(words[0]) and IDENTIFIER_PATTERN.match(words[0]):
        _no_more(words[1:], "status")
        return StatusCommand(words[0], by_identifier=True)
    card_id = _card_id(words, "status")
    _no_more(words[1:], "status")
    return StatusCommand(card_id)


def _history(words: list[str]) -> Command:
    card_id = _card_id(words, "history")
    _no_more(words[1:], "history")
    return HistoryCommand(card_id)


def _find(words: list[str]) -> Command:
    text = " ".join(words)
    if not text:
        raise CommandError(
            "`find` needs something to look for: an issuerRequestId, a tracking number or the "
            "start of a card id, like `/card find REQ-2024-0042`."
        )
    if not IDENTIFIER_PATTERN.match(text):
        raise CommandError(
            "`find` looks for up to 64 letters, digits, spaces or `_-./` (an issuerRequestId, "
            "a tracking number or the start of a card id)."
        )
    return FindCommand(text)


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


def _exceptions(words: list[str]) -> Command:
    rest = [w.lower() for w in words]
    if rest in ([], ["open"]):
        return ExceptionsCommand(mine=False)
    if rest == ["mine"]:
        return ExceptionsCommand(mine=True)
    raise CommandError("`exceptions` takes `open` (the default) or `mine`.")


def _help(words: list[str]) -> Command:
    return HelpCommand()


def _settings(words: list[str]) -> Command:
    _no_more(words, "settings")
    return SettingsCommand()


def _settings_threads(words: list[str]) -> Command:
    modes = ", ".join(f"`{mode}`" for mode in THREAD_MODES)
    if len(words) != 1 or words[0].lower() not in THREAD_MODES:
        raise CommandError(
            f"`settings threads` takes one of {modes}, like `/card settings threads quiet`."
        )
    return SettingsCommand(thread_mode=words[0].lower())


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
            (("find",), _find),
            (("history",), _history),
            (("track",), _track),
            (("subscribe",), _subscribe),
            (("unsubscribe",), _unsubscribe),
            (("list",), _list),
            (("exceptions",), _exceptions),
            (("help",), _help),
            (("settings",), _settings),
            (("settings", "threads"), _settings_threads),
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
        first = text.split(maxsplit=1)[0].lower() if text.strip() else ""
        warning = FIND_PAN_WARNING if first == "find" else PAN_WARNING
        raise CommandError(warning, pan_refused=True)
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandError("That command is too long.")
    words = _split(text.strip())
    if not words:
        return HelpCommand()
    lowered = [w.lower() for w in words]
    for names, parse in SUBCOMMANDS:
        if tuple(lowered[: len(names)]) == names:
            return parse(words[len(names) :])
    raise CommandError(_unknown(lowered[0]))


def _unknown(word: str) -> str:
    """ "I don't know that command", with the closest subcommand when one is close (the typed
    word is never repeated)."""
    names = sorted({" ".join(names[:1]) for names, _ in SUBCOMMANDS})
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if close:
        return f"I don't know that command. Did you mean `/card {close[0]}`?"
    return "I don't know that command."


def command_name(command: Command) -> str:
    """A short, bounded name for audit rows and metric labels."""
    if isinstance(command, SettingsCommand) and command.thread_mode is not None:
        return "settings_threads"
    return {
        StatusCommand: "status",
        FindCommand: "find",
        HistoryCommand: "history",
        TrackCommand: "track",
        SubscribeCommand: "subscribe",
        UnsubscribeCommand: "unsubscribe",
        ListCommand: "list",
        ExceptionsCommand: "exceptions",
        HelpCommand: "help",
        SettingsCommand: "settings",
        DigestShowCommand: "digest",
        DigestPostCommand: "digest_post",
        DigestScheduleCommand: "digest_schedule",
        DigestOffCommand: "digest_off",
    }[type(command)]


def command_card_id(command: Command) -> str | None:
    return getattr(command, "card_id", None)
