"""`d1bot demo` as a user runs it (a subprocess, bounded in time), and its pure parts."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.dev.demo import round_pause
from bot.dev.demo_morning import (
    EXCEPTIONS_CHANNEL,
    MORNING,
    OPS_CHANNEL,
    PROMPT_HELP,
    TerminalView,
    TypedCommand,
    command_request,
    parse_prompt_line,
    sensitive_strings,
    terminal_text,
)
from bot.dev.demo_prompt import PROMPT
from bot.dev.demo_tour import (
    Click,
    Shown,
    TourStep,
    action_request,
    caption_line,
    find_button,
    parse_click_line,
)
from bot.dev.localslack import Call
from bot.render import actions
from d1.carddata import find_pans

DEMO = [sys.executable, "-m", "bot.cli", "demo"]


def _assert_nothing_sensitive(output: str) -> None:
    assert not find_pans(output), find_pans(output)
    leaked = [s for s in sensitive_strings() if s in output]
    assert not leaked, f"cardholder data on screen: {leaked}"


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ", re.M)


def _assert_no_log_lines(output: str, data_dir: Path) -> None:
    """Log records go to the data dir's log file, never into the view."""
    assert not LOG_LINE.search(output), LOG_LINE.search(output)
    log_file = data_dir / "d1bot-demo.log"
    assert LOG_LINE.search(log_file.read_text()), "nothing was logged to the file"


def _run_no_input(data_dir: Path, *extra: str) -> str:
    result = subprocess.run(
        [*DEMO, "--no-input", "--data-dir", str(data_dir), *extra],
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    return out


def _summary(out: str) -> str:
    found = re.search(r"^Morning done: .*$", out, re.M)
    assert found, out[-3000:]
    return found.group(0)


def _tour(out: str) -> dict[str, str]:
    """The tour's output, by step: each caption's first words, and what followed it."""
    tour = out.split("What an agent does next")[1].split("\nStopping ...")[0]
    steps = re.split(r"^» ", tour, flags=re.M)[1:]
    return {step.split(":")[0].split(".")[0]: step for step in steps}


PRIVATE_HEADS = ("── reply to your command, only visible to you", "── modal ")


def _not_private(out: str) -> str:
    """The output without what only the agent sees (its replies and modals: a `/card status`
    reply may name the cardholder, the story who signed for the card)."""
    blocks = re.split(r"^(?=── )", out, flags=re.M)
    return "".join(b.split("\n\n", 1)[-1] if b.startswith(PRIVATE_HEADS) else b for b in blocks)


def _without_times(text: str) -> str:
    return re.sub(r"\d", "0", text)


def _assert_the_tour(out: str) -> None:
    tour = _tour(out)
    found = tour["A cardholder calls with a tracking number"]
    number = re.search(r"/card find (\d{12})\n", found)
    assert number, found
    assert f"1 card found for `{number.group(1)}`" in found
    assert "crd-f8r6: Shipped" in found and "found by tracking number" in found
    story = tour["Read the card's story"]
    assert '── modal "Card story" opened, only visible to you' in story
    modal = story.split("── modal")[1].split("\n\n")[0]
    assert "== Card crd-f8r6 ==" in modal
    assert "Delivery attempt failed (`FAILED_ATTEMPT`)" in modal  # the card's events
    assert "Delivered (`DELIVERED`)" in modal and "@support.agent looked" in modal
    assert "The story of crd-f8r6 is open." in story
    listed = tour["The open exceptions, oldest first"]
    for card_id in ("crd-b7k2", "crd-f8r6", "crd-h6t2"):
        assert f"{card_id}:" in listed
    assert "No owner yet" in listed
    assigned = tour["Take the failed delivery"]
    assert "click [Assign to me] on the alert of crd-f8r6" in assigned
    assert "You own the exception of crd-f8r6 now." in assigned
    alert = assigned.split("── #card-exceptions > ")[1]
    assert alert.startswith('"Card exception: Shipped / Delivery attempt failed" updated in place')
    assert "Card `crd-f8r6`" in alert and "(Owner @support.agent · open for" in alert
    mine = tour["The exceptions you own"]
    assert "crd-f8r6:" in mine and "Owner @support.agent" in mine
    assert "crd-b7k2" not in mine and "crd-h6t2" not in mine
    assert "Threads in this channel are now quiet (they were on)" in tour["Keep #card-ops quiet"]
    assert "Threads in this channel: quiet" in tour["The channel's settings"]


@pytest.mark.slow
def test_demo_no_input_runs_the_morning_and_exits_0(tmp_path: Path) -> None:
    out = _run_no_input(tmp_path / "first")
    assert "Traceback" not in out
    # a parent message per card, in the subscribed channel
    for card in MORNING:
        assert f"== Card {card.card_id} ==" in out
    assert out.count("── #card-ops > new message") == len(MORNING)
    # updates go to each card's thread, and the parent is kept current
    assert '── #card-ops > thread of "Card crd-a1f3"' in out
    assert '── #card-ops > "Card crd-a1f3" updated in place' in out
    # every parent ends showing its card's last state (none left behind by the update budget)
    for card in MORNING:
        if card.scenario == "happy":
            head = f'── #card-ops > "Card {card.card_id}" updated in place'
            assert "Shipped / Delivered" in out.split(head)[-1].split("\n\n")[0], card
    # exception alerts: the data exception, the hold, the failed attempt, the return
    alerts = out.split("── #card-exceptions > new message")[1:]
    assert alerts, "no exception alert shown"
    alert_text = "\n".join(alerts)
    for card_id in ("crd-b7k2", "crd-d2p8", "crd-f8r6", "crd-h6t2"):
        assert f"`{card_id}`" in alert_text
    assert "Data rejected (`DATA_EXCEPTION`)" in alert_text
    assert "[Assign to me]" in alert_text  # buttons shown as text
    assert "(also sent to the channel)" in out  # exceptions are broadcast from the thread
    assert re.search(r"Morning done: D1 emitted \d+ operations", out)
    assert out.rstrip().endswith("Stopped.")
    assert (tmp_path / "first" / "d1bot-demo.db").is_file()
    _assert_no_log_lines(out, tmp_path / "first")
    # then the tour: find, the story, owners, thread mode
    _assert_the_tour(out)
    assert not find_pans(out)  # masked everywhere, modals included
    _assert_nothing_sensitive(_not_private(out))
    # the same seed plays the same morning: the same totals, run after run, and the same tour
    again = _run_no_input(tmp_path / "second", "--seed", "7")
    assert _summary(again) == _summary(out)
    assert again.count("── ") == out.count("── ")
    assert _without_times(str(_tour(again))) == _without_times(str(_tour(out)))


def test_demo_refuses_a_speed_that_is_not_above_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DEMO, "--no-input", "--speed", "0", "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--speed must be a number above 0" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "demo").exists()


def test_a_higher_speed_is_faster() -> None:
    def pause(speed: float | None, *, no_input: bool = False) -> float:
        return round_pause(argparse.Namespace(speed=speed, no_input=no_input))

    assert pause(None) == 1.0  # interactive: a round a second
    assert pause(2) == 0.5 and pause(10) == 0.1 and pause(0.5) == 2.0
    assert pause(None, no_input=True) == 0.0  # --no-input: as fast as it settles


class _Terminal:
    """The demo's stdout as a person sees it: everything printed so far, prompt included."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.text = ""

    async def until(self, done: Callable[[str], bool], what: str) -> None:
        while not done(self.text):
            chunk = await self.stream.read(65536)
            if not chunk:
                raise AssertionError(f"output ended before {what}:\n{self.text[-3000:]}")
            self.text += chunk.decode()

    async def reply_to(self, proc: asyncio.subprocess.Process, line: str) -> str:
        """Type a line; the reply the bot sent to it (only visible to the asker)."""
        marker = "── reply to your command"
        before = self.text.count(marker)
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()

        def complete(text: str) -> bool:
            tail = text.split(marker)
            return len(tail) > before + 1 and "\n\n" in tail[before + 1]

        await self.until(complete, f"the reply to {line!r}")
        return self.text.split(marker)[before + 1].split("\n\n")[0]


def _suggested_commands() -> list[str]:
    """Every command and button press the demo's help suggests, as typed at the prompt."""
    return [
        found
        for line in PROMPT_HELP.splitlines()
        for found in re.findall(r"(?:#[\w-]+ )?/card(?: [\w=.-]+)*|click [\w ]+? crd-\w+", line)
    ]


@pytest.mark.slow
async def test_demo_prompt_answers_commands_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    suggested = _suggested_commands()
    assert "/card track crd-h6t2 return productionSite=PERSO-CENTER-FR-01" in suggested
    assert "#card-exceptions /card exceptions open" in suggested
    assert {"/card find crd-f8", "/card history crd-f8r6", "/card settings"} <= set(suggested)
    assert "click Assign to me crd-b7k2" in suggested and len(suggested) == 13
    proc = await asyncio.create_subprocess_exec(
        *DEMO,
        "--data-dir",
        str(tmp_path),
        "--speed",
        "20",
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    screen = _Terminal(proc.stdout)
    over = "The morning is over"
    try:
        async with asyncio.timeout(180):
            await screen.until(lambda text: "Type quit" in text, "the prompt's help")
            assert "This channel follows 12 cards" in await screen.reply_to(proc, "/card list")
            pan = await screen.reply_to(proc, "/card subscribe 4111 1111 1111 1111")
            assert "full card number" in pan
            # the tour plays once the morning is over, before the prompt is left to the agent
            await screen.until(lambda text: over in text, "the end of the morning")
            assert screen.text.index("Morning done") < screen.text.index("What an agent does")
            assert screen.text.index("» The channel's settings") < screen.text.index(over)
            for command in suggested:  # every command the help suggests works
                reply = await screen.reply_to(proc, command)
                assert "(!)" not in reply and "did not answer" not in reply, (command, reply)
                assert "no [" not in reply, (command, reply)  # a click found its button
            resolved = await screen.reply_to(proc, "click Resolve crd-f8r6")
            assert "Resolved the exception of crd-f8r6" in resolved
            # the prompt is the last thing on the screen
            await screen.until(lambda text: text.endswith(PROMPT), "the prompt")
            assert screen.text.split(over)[1].rstrip(" \n").endswith(PROMPT.strip())
            proc.send_signal(signal.SIGINT)
            await screen.until(lambda text: text.rstrip().endswith("Stopped."), "Stopped.")
            stderr = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = screen.text
    assert code == 0, out[-3000:] + stderr[-3000:]
    assert stderr == ""
    assert "Traceback" not in out
    _assert_no_log_lines(out, tmp_path)
    # the asker's private `/card status` reply may name the cardholder; nothing else may
    _assert_nothing_sensitive(_not_private(out))


# --------------------------------------------------------------------------- pure parts


def test_prompt_lines_become_commands_in_a_channel() -> None:
    assert parse_prompt_line("/card status crd-a1f3") == TypedCommand(
        OPS_CHANNEL, "status crd-a1f3"
    )
    assert parse_prompt_line("  #card-exceptions /card list ") == TypedCommand(
        EXCEPTIONS_CHANNEL, "list"
    )
    assert parse_prompt_line("/card") == TypedCommand(OPS_CHANNEL, "")
    assert parse_prompt_line("status crd-a1f3") is None
    assert parse_prompt_line("#nowhere /card list") is None
    assert parse_prompt_line("") is None


def test_command_requests_carry_a_valid_slack_signature() -> None:
    body, headers = command_request(
        TypedCommand(OPS_CHANNEL, "status crd-a1f3"),
        response_url="http://127.0.0.1:1/response/abc",
        signing_secret="s3cret",
    )
    assert "text=status+crd-a1f3" in body and "command=%2Fcard" in body
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid(
        body=body,
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
    )
    assert not SignatureVerifier("other").is_valid(
        body=body,
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
    )


def test_terminal_text_shows_fallbacks_not_markup() -> None:
    line = (
        "*Delivered* <!date^1795331988^{date_short_pretty} {time}|2026-11-22 07:19 UTC> "
        "<https://carrier.example/t?n=1|1Z999> by <@U0AGENT> :warning:"
    )
    assert terminal_text(line) == "Delivered 2026-11-22 07:19 UTC 1Z999 by @support.agent (!)"


def test_terminal_view_names_threads_after_their_parent() -> None:
    view = TerminalView()
    parent = Call(
        method="chat.postMessage",
        body={"channel": OPS_CHANNEL, "blocks": [{"type": "header", "text": {"text": "Card X"}}]},
        at=0,
        response={"ok": True, "ts": "100.000001"},
    )
    reply = Call(
        method="chat.postMessage",
        body={"channel": OPS_CHANNEL, "thread_ts": "100.000001", "text": "In transit"},
        at=1,
        response={"ok": True, "ts": "100.000002"},
    )
    hidden = Call(method="auth.test", body={}, at=2, response={"ok": True})
    assert (view.render(parent) or "").startswith("── #card-ops > new message")
    rendered = view.render(reply) or ""
    assert rendered.startswith('── #card-ops > thread of "Card X"')
    assert "  In transit" in rendered
    assert view.render(hidden) is None


def test_terminal_view_shows_a_modal_only_to_the_agent() -> None:
    view = TerminalView()
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Card story"},
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Card crd-f8r6"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "• *Delivered* _signed_"}},
        ],
    }
    opened = Call(
        method="views.open",
        body={"trigger_id": "t", "view": modal},
        at=0,
        response={"ok": True, "view": {"id": "VM1"}},
    )
    rendered = view.render(opened) or ""
    assert rendered.startswith('── modal "Card story" opened, only visible to you')
    assert "  == Card crd-f8r6 ==\n  • Delivered signed\n" in rendered
    updated = Call(method="views.update", body={"view_id": "VM1", "view": modal}, at=1)
    assert (view.render(updated) or "").startswith('── modal "Card story" updated in place')
    assert view.render(Call(method="views.publish", body={"view": modal}, at=2)) is None


def _alert(card_id: str, ts: str, *labels: str) -> Shown:
    value = actions.encode_value(actions.ActionValue(card_id, 7))
    elements = [
        {"type": "button", "text": {"text": label}, "action_id": f"a_{label}", "value": value}
        for label in labels
    ]
    return Shown(EXCEPTIONS_CHANNEL, [{"type": "actions", "elements": elements}], ts, "alert")


def test_a_click_presses_the_newest_button_of_that_card() -> None:
    reply = Shown(OPS_CHANNEL, [_alert("crd-f8r6", "", "Timeline").blocks[0]])
    old = _alert("crd-f8r6", "100.1", "Assign to me", "Resolve")
    other = _alert("crd-b7k2", "100.2", "Assign to me")
    new = _alert("crd-f8r6", "100.3", "Reopen")
    shown = [reply, old, other, new]
    press = find_button(shown, Click("assign TO me", "crd-f8r6"))
    assert press is not None and press.on is old and press.value == "crd-f8r6|7"
    assert press.action_id == "a_Assign to me"
    reopen = find_button(shown, Click("Reopen", "crd-f8r6"))
    assert reopen is not None and reopen.on is new
    timeline = find_button(shown, Click("Timeline", "crd-f8r6"))
    assert timeline is not None and timeline.on.ts is None  # on a reply only the agent sees
    assert find_button(shown, Click("Resolve", "crd-b7k2")) is None
    assert parse_click_line("click Assign to me crd-f8r6") == Click("Assign to me", "crd-f8r6")
    assert parse_click_line("click crd-f8r6") is None
    assert parse_click_line("/card list") is None


def test_a_press_is_the_signed_block_actions_payload_slack_sends() -> None:
    alert = _alert("crd-f8r6", "100.1", "Assign to me")
    press = find_button([alert], Click("Assign to me", "crd-f8r6"))
    assert press is not None
    body, headers = action_request(press, response_url="http://127.0.0.1:1/r", signing_secret="s")
    assert SignatureVerifier("s").is_valid(
        body=body,
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
    )
    payload = json.loads(parse_qs(body)["payload"][0])
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0AGENT"
    assert payload["actions"][0]["value"] == "crd-f8r6|7"
    assert payload["container"] == {
        "type": "message",
        "channel_id": EXCEPTIONS_CHANNEL,
        "is_ephemeral": False,
        "message_ts": "100.1",
    }
    assert payload["message"]["ts"] == "100.1"


def test_tour_captions_say_what_is_typed_or_pressed() -> None:
    typed = TourStep("Read the card's story.", TypedCommand(OPS_CHANNEL, "history crd-f8r6"))
    assert caption_line(typed) == "» Read the card's story.  #card-ops /card history crd-f8r6"
    pressed = TourStep("Take it.", Click("Assign to me", "crd-f8r6"))
    assert caption_line(pressed) == "» Take it.  click [Assign to me] on the alert of crd-f8r6"
