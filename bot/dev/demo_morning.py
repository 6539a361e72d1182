"""The pure parts of `d1bot demo`: the morning's cards, Slack-signed slash-command requests, and
what the terminal shows for each Slack call (channel, thread, header, fields, buttons as text).

Kept apart from `bot.dev.demo` (which starts servers and drives the sandbox) so that it can be read,
and tested, without any I/O.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.dev.localslack import Call, render_message_text

DEMO_TEAM = "T0LOCAL"
OPS_CHANNEL = "C0CARDOPS"
EXCEPTIONS_CHANNEL = "C0EXCEPT"
CHANNEL_NAMES: dict[str, str] = {OPS_CHANNEL: "card-ops", EXCEPTIONS_CHANNEL: "card-exceptions"}
AGENT_ID = "U0AGENT"
AGENT_NAME = "support.agent"


@dataclass(frozen=True)
class DemoCard:
    """A card of the scripted morning; name and address exist only inside the sandbox (D1),
    as they do in real life, and must never reach a channel."""

    card_id: str
    scenario: str
    carrier: str
    name: str
    address: dict[str, str]
    start_round: int  # the sandbox round at which its order arrives (a staggered morning)


def _address(line: str, city: str, postal: str, country: str) -> dict[str, str]:
    return {"line1": line, "city": city, "postalCode": postal, "countryCode": country}


# A dozen cards: eight uneventful, one data exception, one on hold that resumes, one failed
# delivery attempt, one returned to sender.
MORNING: tuple[DemoCard, ...] = (
    DemoCard("crd-a1f3", "happy", "fedex", "Amelie Durand",
             _address("12 Rue des Lilas", "Lyon", "69003", "FR"), 0),
    DemoCard("crd-b7k2", "data_exception", "dhl", "Bartholomew Okafor",
             _address("48 Elm Street", "Leeds", "LS1 4DY", "GB"), 0),
    DemoCard("crd-c9m4", "happy", "la-poste-colissimo", "Chiara Benedetti",
             _address("3 Via Garibaldi", "Torino", "10122", "IT"), 1),
    DemoCard("crd-d2p8", "onhold", "ups", "Dmitri Volkonsky",
             _address("77 Harbour Road", "Dublin", "D02 X285", "IE"), 1),
    DemoCard("crd-e5q1", "happy", "chronopost-france", "Elodie Marchand",
             _address("9 Avenue Foch", "Paris", "75116", "FR"), 2),
    DemoCard("crd-f8r6", "failed_attempt", "dhl", "Farida Haddad",
             _address("221 Kingsway", "Manchester", "M19 2LP", "GB"), 2),
    DemoCard("crd-g3s9", "happy", "usps", "Gustavo Lindqvist",
             _address("1450 Pine Avenue", "Portland", "97205", "US"), 3),
    DemoCard("crd-h6t2", "return", "fedex", "Hannelore Weiss",
             _address("5 Schillerstrasse", "Berlin", "10625", "DE"), 3),
    DemoCard("crd-j4u7", "happy", "spanish-seur", "Javier Montoya",
             _address("18 Calle Mayor", "Madrid", "28013", "ES"), 4),
    DemoCard("crd-k1v5", "happy", "dhl", "Katarzyna Nowicka",
             _address("31 Ulica Dluga", "Gdansk", "80-827", "PL"), 4),
    DemoCard("crd-l8w3", "happy", "ups", "Lorenzo Castellani",
             _address("60 Corso Buenos Aires", "Milano", "20124", "IT"), 5),
    DemoCard("crd-m2x6", "happy", "la-poste-colissimo", "Margaux Lefebvre",
             _address("2 Quai de la Fosse", "Nantes", "44000", "FR"), 5),
)  # fmt: skip


def sensitive_strings(cards: tuple[DemoCard, ...] = MORNING) -> list[str]:
    """Cardholder names and address parts: what the terminal must never show from a channel."""
    found: list[str] = []
    for card in cards:
        found.append(card.name)
        found.extend(v for k, v in card.address.items() if k in {"line1", "postalCode"})
    return found


# --------------------------------------------------------------------------- slash commands


@dataclass(frozen=True)
class TypedCommand:
    """A line typed at the demo prompt: `[#channel] /card <text>`."""

    channel_id: str
    text: str


def parse_prompt_line(line: str, *, default_channel: str = OPS_CHANNEL) -> TypedCommand | None:
    """None when the line is not a `/card` command (the prompt then prints its help)."""
    words = line.strip().split(maxsplit=1)
    channel = default_channel
    if words and words[0].startswith("#"):
        wanted = words[0][1:]
        matches = [cid for cid, name in CHANNEL_NAMES.items() if wanted in (name, cid)]
        if not matches:
            return None
        channel = matches[0]
        words = words[1].split(maxsplit=1) if len(words) > 1 else []
    if not words or words[0] != "/card":
        return None
    return TypedCommand(channel_id=channel, text=words[1].strip() if len(words) > 1 else "")


def command_request(
    command: TypedCommand, *, response_url: str, signing_secret: str, now: float | None = None
) -> tuple[str, dict[str, str]]:
    """The form body and headers Slack would send for the command, signed with v0 HMAC."""
    body = urlencode(
        {
            "token": "demo-verification-token",
            "team_id": DEMO_TEAM,
            "team_domain": "demo",
            "channel_id": command.channel_id,
            "channel_name": CHANNEL_NAMES.get(command.channel_id, command.channel_id),
            "user_id": AGENT_ID,
            "user_name": AGENT_NAME,
            "command": "/card",
            "text": command.text,
            "api_app_id": "A0D1DEMO",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": "demo.trigger",
        }
    )
    return body, signed_headers(body, signing_secret=signing_secret, now=now)


def signed_headers(body: str, *, signing_secret: str, now: float | None = None) -> dict[str, str]:
    """The headers of a form request signed as Slack signs them (v0 HMAC of the body)."""
    stamp = str(int(time.time() if now is None else now))
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    if signature is None:  # slack_sdk returns None only for a missing timestamp
        raise ValueError("the request could not be signed")
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


# --------------------------------------------------------------------------- terminal output

SHOWN_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "ack"}
)
# Modals: only the agent who typed or pressed sees them.
MODAL_HEADS = {
    "views.open": 'modal "{title}" opened, only visible to you',
    "views.push": 'modal "{title}" opened over the previous one, only visible to you',
    "views.update": 'modal "{title}" updated in place',
}


@dataclass
class TerminalView:
    """Turns Slack calls into terminal text, naming threads by their parent's first line."""

    thread_titles: dict[str, str] = field(default_factory=dict)

    def channel_name(self, channel_id: str | None) -> str:
        if channel_id is None:
            return "?"
        return "#" + CHANNEL_NAMES.get(channel_id, channel_id)

    def render(self, call: Call) -> str | None:
        """The text for `call`, or None for calls Slack users would not see."""
        if call.method not in SHOWN_METHODS and call.method not in MODAL_HEADS:
            return None
        body_lines = [terminal_text(line) for line in render_message_text(call).splitlines()[1:]]
        title = _first_text(body_lines)
        if call.method == "chat.postMessage":
            where = self.channel_name(call.channel)
            thread = body.get("thread_ts") if (body := call.body) else None
            if thread:
                parent = self.thread_titles.get(str(thread), str(thread))
                broadcast = (
                    " (also sent to the channel)"
                    if str(body.get("reply_broadcast")).lower() in {"true", "1"}
                    else ""
                )
                head = f'{where} > thread of "{parent}"{broadcast}'
            else:
                head = f"{where} > new message"
                ts = call.response.get("ts")
                if ts:
                    self.thread_titles[str(ts)] = title
        elif call.method == "chat.update":
            parent = self.thread_titles.get(str(call.body.get("ts")), "a message")
            head = f'{self.channel_name(call.channel)} > "{parent}" updated in place'
            if title:
                self.thread_titles[str(call.body.get("ts"))] = title
        elif call.method in MODAL_HEADS:
            view = call.body.get("view")
            named = view.get("title") if isinstance(view, dict) else None
            title = (named.get("text") if isinstance(named, dict) else None) or "modal"
            head = MODAL_HEADS[call.method].format(title=terminal_text(str(title)))
        elif call.method == "chat.postEphemeral":
            head = f"{self.channel_name(call.channel)} > only visible to you"
        else:  # a slash command's reply (ack body or response_url)
            if call.body.get("response_type") == "in_channel":
                head = "reply to your command, posted in the channel"
            else:
                head = "reply to your command, only visible to you"
        if not call.ok:
            head += f"  [Slack answered {call.status} {call.response.get('error', '')}]".rstrip()
        rule = "─" * max(8, 72 - len(head))
        return "\n".join([f"── {head} {rule}", *body_lines, ""])


_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(?:https?|mailto):[^|>]*\|([^>]*)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^|>]*)>")
_USER = re.compile(r"<@(\w+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_EMOJI = {
    ":warning:": "(!)",
    ":rotating_light:": "(!!)",
    ":white_check_mark:": "(ok)",
    ":grey_question:": "(?)",
    ":bust_in_silhouette: ": "",
    ":mag: ": "",
    ":lock: ": "",
    ":book: ": "",
    ":eyes: ": "",
    " :thread:": "",
    ":thread:": "",
}


def terminal_text(line: str) -> str:
    """Slack mrkdwn as plain terminal text: dates and links show their fallback text, bold
    and italics lose their marks, a few emoji become ASCII marks."""
    line = _DATE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _BARE_LINK.sub(r"\1", line)
    line = _USER.sub(lambda m: "@" + (AGENT_NAME if m.group(1) == AGENT_ID else m.group(1)), line)
    line = _BOLD.sub(r"\1", line)
    line = _ITALIC.sub(r"\1", line)
    for code, mark in _EMOJI.items():
        line = line.replace(code, mark)
    return line.rstrip()


def _first_text(lines: list[str]) -> str:
    for line in lines:
        text = line.strip().strip("=").strip()
        if text and not text.startswith(("[", "(", "-")):
            return text[:60]
    return "message"


def ack_call(payload: dict[str, Any]) -> Call:
    """A slash command's synchronous answer, as a call the view can render."""
    return Call(method="ack", body=payload, at=time.monotonic(), response={"ok": True})


PROMPT_HELP = """\
Type a slash command as you would in Slack, for example:
  /card status crd-d2p8          /card list
  /card subscribe crd-a1f3       /card unsubscribe crd-a1f3
  /card track crd-h6t2 return productionSite=PERSO-CENTER-FR-01
  /card find crd-f8              (or a tracking number from a card's thread)
  /card history crd-f8r6         /card exceptions mine
  /card settings threads quiet   /card settings
  /card help
Prefix with a channel to run it there: #card-exceptions /card exceptions open
Press a button with: click Assign to me crd-b7k2 (or Resolve, Reopen, Timeline ...)
Type quit (or press Ctrl-C) to stop."""
