"""`d1bot demo` as a user runs it (a subprocess, bounded in time), and its pure parts."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.dev.demo import PROMPT, round_pause
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
from bot.dev.localslack import Call
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
    _assert_nothing_sensitive(out)
    # the same seed plays the same morning: the same totals, run after run
    again = _run_no_input(tmp_path / "second", "--seed", "7")
    assert _summary(again) == _summary(out)
    assert again.count("── ") == out.count("── ")


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
    """Every command the demo's help suggests, as typed at the prompt."""
    return [
        found
        for line in PROMPT_HELP.splitlines()
        for found in re.findall(r"(?:#[\w-]+ )?/card(?: [\w=.-]+)*", line)
    ]


@pytest.mark.slow
async def test_demo_prompt_answers_commands_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    suggested = _suggested_commands()
    assert "/card track crd-h6t2 return productionSite=PERSO-CENTER-FR-01" in suggested
    assert "#card-exceptions /card list" in suggested and len(suggested) == 7
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
    try:
        async with asyncio.timeout(180):
            await screen.until(lambda text: "Type quit" in text, "the prompt's help")
            assert "This channel follows 12 cards" in await screen.reply_to(proc, "/card list")
            pan = await screen.reply_to(proc, "/card subscribe 4111 1111 1111 1111")
            assert "full card number" in pan
            for command in suggested:  # every command the help suggests works
                reply = await screen.reply_to(proc, command)
                assert "(!)" not in reply and "did not answer" not in reply, (command, reply)
            # once the morning is over, the prompt is the last thing on the screen
            await screen.until(
                lambda text: "Morning done" in text and text.endswith(PROMPT), "the prompt"
            )
            assert screen.text.split("Morning done")[1].rstrip(" \n").endswith(PROMPT.strip())
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
    private = "── reply to your command, only visible to you"
    shared = [part.split("\n\n", 1)[-1] for part in out.split(private)]
    _assert_nothing_sensitive("\n".join(shared))


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
