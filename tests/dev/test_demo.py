"""`d1bot demo` as a user runs it (a subprocess, bounded in time), and its pure parts."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.dev.demo_morning import (
    EXCEPTIONS_CHANNEL,
    MORNING,
    OPS_CHANNEL,
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


@pytest.mark.slow
def test_demo_no_input_runs_the_morning_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DEMO, "--no-input", "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in out + result.stderr
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
    assert (tmp_path / "d1bot-demo.db").is_file()
    _assert_nothing_sensitive(out)


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while not any(marker in line for line in seen):
        line = await stream.readline()
        if not line:
            raise AssertionError(f"output ended before {marker!r}:\n{''.join(seen)}")
        seen.append(line.decode())


@pytest.mark.slow
async def test_demo_prompt_answers_commands_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *DEMO,
        "--data-dir",
        str(tmp_path),
        "--speed",
        "0.2",
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(120):
            await _read_until(proc.stdout, "Type quit", seen)
            proc.stdin.write(b"/card list\n")
            await proc.stdin.drain()
            await _read_until(proc.stdout, "This channel follows 12 cards", seen)
            proc.stdin.write(b"/card subscribe 4111 1111 1111 1111\n")
            await proc.stdin.drain()
            await _read_until(proc.stdout, "full card number", seen)
            proc.send_signal(signal.SIGINT)
            rest = await proc.stdout.read()
            stderr = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(seen) + rest.decode()
    assert code == 0, out[-3000:] + stderr[-3000:]
    assert out.rstrip().endswith("Stopped.")
    assert "Traceback" not in out + stderr
    _assert_nothing_sensitive(out)


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
