"""What `/card help` and the App Home say: every subcommand, what it does, and an example of
each (a test checks that every subcommand the parser knows is here)."""

from __future__ import annotations

import itertools

from slack_sdk.models.blocks import Block

from bot.render.slacktext import context, escape, section

# (usage, what it does, an example), in the order an agent needs them.
HELP: tuple[tuple[str, str, str], ...] = (
    (
        "status <cardId|issuerRequestId|trackingNumber>",
        "Where a card is in production and shipping (only you see it).",
        "/card status card-7f3a9",
    ),
    (
        "find <issuerRequestId|trackingNumber|start of a cardId>",
        "Find stored cards by what you have; up to 10 matches, each with a Status button.",
        "/card find REQ-2024-0042",
    ),
    (
        "history <cardId>",
        "The card's story: every event, tracking request and look, oldest first (only you).",
        "/card history card-7f3a9",
    ),
    (
        "track <cardId> production [productionSite=...]",
        "Ask D1's tracking hub to follow a card's production; results land in this channel.",
        "/card track card-7f3a9 production productionSite=PARIS",
    ),
    (
        "track <cardId> shipment trackingNumber=... shipmentDate=... postalCode=... "
        "countryCode=...",
        "Ask D1's tracking hub to follow a shipment made outside D1.",
        "/card track card-7f3a9 shipment trackingNumber=1Z999AA10123456784 "
        "shipmentDate=2024-05-31 postalCode=75001 countryCode=FR",
    ),
    (
        "track <cardId> return productionSite=...",
        "Ask D1's tracking hub to follow a returned card.",
        "/card track card-7f3a9 return productionSite=PARIS",
    ),
    (
        "subscribe <cardId> [exceptions]",
        "Post this card's updates here (or only its problems).",
        "/card subscribe card-7f3a9 exceptions",
    ),
    (
        "unsubscribe <cardId>",
        "Stop posting this card's updates here.",
        "/card unsubscribe card-7f3a9",
    ),
    ("list", "The cards this channel follows, with their current status.", "/card list"),
    (
        "exceptions [open|mine]",
        "Open exceptions, oldest first, with their owner and age (or only yours), to triage.",
        "/card exceptions mine",
    ),
    ("digest", "The daily digest of cards that need attention (only you see it).", "/card digest"),
    ("digest post", "Post the digest to this channel now.", "/card digest post"),
    (
        "digest schedule HH:MM [Area/City]",
        "Post the digest here every day at that time.",
        "/card digest schedule 08:30 Europe/Paris",
    ),
    ("digest off", "Stop this channel's daily digest.", "/card digest off"),
    ("settings", "This channel's settings: how card updates are posted here.", "/card settings"),
    (
        "settings threads on|off|quiet",
        "Card updates here: in each card's thread with exceptions also shown in the channel "
        "(`on`), as separate messages without threads (`off`), or in threads only (`quiet`).",
        "/card settings threads quiet",
    ),
    ("help", "This help.", "/card help"),
)
HELP_ENTRIES: tuple[tuple[str, str], ...] = tuple((usage, what) for usage, what, _ in HELP)
HELP_EXAMPLES: tuple[str, ...] = tuple(example for _, _, example in HELP)


def _subcommand(usage: str) -> str:
    """The words of `usage` that name the subcommand (`digest schedule HH:MM` -> `digest
    schedule`)."""
    named = itertools.takewhile(lambda w: w.isalpha() and w.islower(), usage.split())
    return " ".join(named)


SUBCOMMANDS = tuple(dict.fromkeys(_subcommand(usage) for usage, _, _ in HELP))
HELP_FALLBACK = "/card commands: " + ", ".join(SUBCOMMANDS)


def help_blocks() -> list[Block]:
    """Every subcommand with what it does and its example."""
    lines = [
        f"• `/card {escape(usage)}`\n    {escape(what)} Example: `{escape(example)}`"
        for usage, what, example in HELP
    ]
    blocks: list[Block] = [section("*`/card` commands*")]
    for start in range(0, len(lines), 6):
        blocks.append(section("\n".join(lines[start : start + 6])))
    blocks.append(
        context(
            "Use the D1 card id, never a card number. Shipment tracking needs "
            "`trackingNumber`, `shipmentDate`, `postalCode` and `countryCode`."
        )
    )
    return blocks


__all__ = ["HELP", "HELP_ENTRIES", "HELP_EXAMPLES", "HELP_FALLBACK", "SUBCOMMANDS", "help_blocks"]
