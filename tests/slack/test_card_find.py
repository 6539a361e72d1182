"""`/card find` and `/card status` by what the agent has: notifications stored through D1's door
over real HTTP, signed `/card` requests, replies read from the Slack stand-in, D1 calls to the
sandbox over real HTTP; and the help, typo and not-found replies."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from bot.render import actions, help_text
from bot.slack import commands
from tests.slack.test_card_find_support import find_d1_stack, find_stack, notify
from tests.slack.test_slack_app import audit_rows, everything_sent, slack_stack

PAN = "4111111111111111"


def _buttons(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (b["accessory"]["action_id"], b["accessory"]["value"])
        for b in reply.get("blocks", [])
        if b.get("accessory")
    ]


async def test_find_by_request_id_tracking_number_and_card_id_prefix(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        await notify(stack, "crd-a1", request_id="REQ-1", tracking="1Z999AA1")
        await notify(stack, "crd-a2", request_id="REQ-2", tracking="TRK 22")
        await notify(stack, "crd-b3")

        by_request = await stack.ask("find REQ-1")
        assert by_request["response_type"] == "ephemeral"
        assert _buttons(by_request) == [(actions.STATUS, "crd-a1")]
        assert "issuerRequestId `REQ-1`" in json.dumps(by_request)
        assert "Shipped" in json.dumps(by_request) and "Last update" in json.dumps(by_request)

        by_tracking = await stack.ask('find "TRK 22"')
        assert _buttons(by_tracking) == [(actions.STATUS, "crd-a2")]
        spaced = await stack.ask("find TRK 22")  # the words are joined again
        assert _buttons(spaced) == [(actions.STATUS, "crd-a2")]

        by_prefix = await stack.ask("find crd-a")
        assert sorted(_buttons(by_prefix)) == [
            (actions.STATUS, "crd-a1"),
            (actions.STATUS, "crd-a2"),
        ]
        exact = await stack.ask("find crd-b3")
        assert _buttons(exact) == [(actions.STATUS, "crd-b3")]
        # `_` in a prefix is a character, not a wildcard
        assert _buttons(await stack.ask("find crd_a")) == []


async def test_find_caps_at_ten_matches_and_says_more_exist(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        for n in range(12):
            await notify(stack, f"batch-{n:02d}")
        reply = await stack.ask("find batch-")
        assert len(_buttons(reply)) == 10
        assert "10+ cards found" in reply["text"]
        assert "More cards match" in json.dumps(reply)


async def test_find_nothing_names_what_was_searched_escaped(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        reply = await stack.ask("find REQ-404")
        assert "`REQ-404`" in reply["text"] and "No stored card" in reply["text"]
        hostile = await stack.ask("find <!here>")
        assert "<!here>" not in json.dumps(hostile)
        assert "/card help" in hostile["text"]
    outcomes = [(a.action, a.outcome) for a in audit_rows(engine)]
    assert ("find", "not_found") in outcomes and ("command", "invalid") in outcomes


async def test_find_refuses_what_the_pan_rule_masks_and_never_echoes_it(engine: Engine) -> None:
    async with find_stack(engine) as stack:
        reply = await stack.ask(f"find {PAN}")
        assert "cannot be searched" in reply["text"]
        assert PAN not in everything_sent(stack.slack)
    assert [a.outcome for a in audit_rows(engine)] == ["refused_pan"]


async def test_status_by_request_id_or_tracking_number_asks_d1_for_that_card(
    engine: Engine,
) -> None:
    async with find_d1_stack(engine) as (sandbox, stack):
        sandbox.create_card("card-7", scenario="happy")
        sandbox.create_card("card-8", scenario="happy")
        sandbox.create_card("card-9", scenario="happy")
        await notify(stack, "card-7", request_id="REQ-7", tracking="1Z.777")
        await notify(stack, "card-8", tracking="SHARED-1")
        await notify(stack, "card-9", tracking="SHARED-1")

        by_request = await stack.ask("status REQ-7")
        assert "Card card-7" in json.dumps(by_request)
        by_tracking = await stack.ask("status 1Z.777")  # not a card id: stored cards only
        assert "Card card-7" in json.dumps(by_tracking)
        by_id = await stack.ask("status card-7")
        assert "Card card-7" in json.dumps(by_id)

        ambiguous = await stack.ask("status SHARED-1")
        assert "2 cards" in ambiguous["text"] and "pick one" in ambiguous["text"]
        assert sorted(_buttons(ambiguous)) == [
            (actions.STATUS, "card-8"),
            (actions.STATUS, "card-9"),
        ]
        unknown = await stack.ask("status 1Z.404")
        assert "`1Z.404`" in unknown["text"] and "No stored card" in unknown["text"]
        not_in_d1 = await stack.ask("status card-404")
        assert "D1 has no card *card-404*" in not_in_d1["text"]

        await stack.press(actions.STATUS, "card-9")
        pressed = await stack.reply(len(stack.slack.responses) + 1)
        assert "Card card-9" in json.dumps(pressed)
        assert pressed["replace_original"] is False
    audited = [(a.action, a.card_id, a.outcome) for a in audit_rows(engine)]
    assert audited[:3] == [("status", "card-7", "ok")] * 3
    assert ("status", None, "ambiguous") in audited
    assert ("status", "card-404", "d1_not_found") in audited
    assert ("button_status", "card-9", "ok") in audited


async def test_help_lists_every_subcommand_with_an_example_and_typos_get_a_suggestion(
    engine: Engine,
) -> None:
    parsed = {" ".join(names) for names, _ in commands.SUBCOMMANDS}
    assert parsed == set(help_text.SUBCOMMANDS)
    async with slack_stack(engine) as stack:
        reply = json.dumps(await stack.ask("help"))
        for usage, _what, example in help_text.HELP:
            assert f"/card {usage.split()[0]}" in reply
            assert json.dumps(example)[1:-1] in reply
            assert commands.parse_command(example.removeprefix("/card "))  # every example parses
        typo = await stack.ask("staus card-1")
        assert "Did you mean `/card status`?" in typo["text"]
        assert "staus" not in typo["text"]  # the typed word is never repeated
        far = await stack.ask("xyzzy")
        assert "Did you mean" not in far["text"] and "/card help" in far["text"]
        assert "Did you mean `/card find`?" in (await stack.ask("fnd REQ-1"))["text"]


async def test_intake_keeps_the_request_id_of_a_card(engine: Engine) -> None:
    from storage.repositories.cards import get_card

    async with find_stack(engine) as stack:
        await notify(stack, "crd-r", request_id="REQ-R")
        await notify(stack, "crd-r", status="CARD_PROD_ONGOING", op_id="op-r-2")  # no request id
    card = get_card(engine, card_id="crd-r")
    assert card is not None and card.issuer_request_id == "REQ-R"
