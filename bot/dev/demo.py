"""`d1bot demo`: the whole product on loopback, with no Slack workspace and no D1 tenant.

One event loop runs three real HTTP servers: the D1 sandbox (a scripted morning of a dozen
cards, with duplicate and out-of-order deliveries), the local Slack stand-in, and the bot
(`bot.server.create_app`, the same app `d1bot serve` runs) on a SQLite file. The terminal shows
every message the bot posts, as Slack would show it, and a prompt sends what the user types
(`/card status crd-d2p8`) as a signed slash-command request to the bot's `/slack/events`.
`--no-input` runs the morning to the end and exits 0; Ctrl-C stops everything cleanly.

The morning goes in rounds: every card takes one step, D1's notifications are delivered and the
bot's messages are posted before the next round starts, so a seed (`--seed`) always plays the
same morning with the same totals. `--speed` divides the pause between rounds. Log records go
to `d1bot-demo.log` in the data directory, never into the view, and the prompt is shown again
below each burst of messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from bot.dev.demo_morning import (
    CHANNEL_NAMES,
    MORNING,
    OPS_CHANNEL,
    PROMPT_HELP,
    TerminalView,
    TypedCommand,
    ack_call,
    command_request,
    parse_prompt_line,
)
from bot.dev.demo_servers import (
    NOTIFY_CLIENT_ID,
    bound_socket,
    demo_sandbox,
    demo_settings,
    serving,
)
from bot.dev.localslack import Call, LocalSlack
from bot.runtime import Runtime

log = logging.getLogger("d1bot.demo")

ROUND_PAUSE_SECONDS = 1.0  # interactive, at --speed 1: a second between rounds
ROUND_TIMEOUT_SECONDS = 60.0  # one round's notifications delivered and messages posted
MORNING_TIMEOUT_SECONDS = 240.0
PROMPT = "demo> "
PROMPT_QUIET_SECONDS = 0.3  # the prompt comes back once the screen is quiet this long
LOG_FILE = "d1bot-demo.log"


class Screen:
    """The terminal: whole lines of the view, and a prompt kept below the latest of them."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._at_prompt = False
        self.printed = asyncio.Event()

    def line(self, text: str) -> None:
        if self._at_prompt:  # the view continues below the prompt, not on its line
            self._write("\n")
            self._at_prompt = False
        self._write(text + "\n")
        self.printed.set()

    def prompt(self) -> None:
        if not self._at_prompt:
            self._write(PROMPT)
            self._at_prompt = True

    def typed(self) -> None:
        """The user pressed Enter: the terminal's cursor is on a fresh line."""
        self._at_prompt = False

    async def keep_prompt_visible(self) -> None:
        """Show the prompt again whenever output stopped for a moment."""
        while True:
            await self.printed.wait()
            while True:
                self.printed.clear()
                try:
                    await asyncio.wait_for(self.printed.wait(), PROMPT_QUIET_SECONDS)
                except TimeoutError:
                    break
            self.prompt()


class Demo:
    """The running demo: servers, the terminal view, and the morning's driver."""

    def __init__(self, args: argparse.Namespace, out: Callable[[str], None]) -> None:
        self.args = args
        self.out = out
        self.view = TerminalView()
        self.signing_secret = secrets.token_hex(16)
        self.notify_secret = secrets.token_hex(16)
        self.slack = LocalSlack(on_call=self._on_slack_call)
        self.quiet = False  # True while the demo itself subscribes the channels
        self.reply_arrived = asyncio.Event()
        self.bot_url = ""
        self.runtime: Runtime | None = None
        self.sandbox: Any = None

    # ------------------------------------------------------------------ output

    def _on_slack_call(self, call: Call) -> None:
        if call.method == "response_url":
            self.reply_arrived.set()
        if self.quiet and call.method in {"response_url", "ack"}:
            return
        text = self.view.render(call)
        if text:
            self.out(text)

    # ------------------------------------------------------------------ setup

    @contextlib.asynccontextmanager
    async def running(self, data_dir: Path) -> AsyncIterator[None]:
        """All three servers up and wired; everything stopped (bot first) on exit."""
        from bot.logs import protect_handlers
        from bot.main import build_runtime
        from bot.server import create_app
        from storage.migrate import upgrade

        self.sandbox = demo_sandbox(self.args.seed)
        for channel_id, name in CHANNEL_NAMES.items():
            self.slack.add_channel(channel_id, name=name, members=["U0AGENT"])
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.slack)
            sandbox_url = await stack.enter_async_context(serving(self.sandbox.app, bound_socket()))
            settings = demo_settings(
                data_dir=data_dir,
                sandbox=self.sandbox,
                sandbox_url=sandbox_url,
                slack_api_url=self.slack.base_url,
                signing_secret=self.signing_secret,
                notify_secret=self.notify_secret,
            )
            runtime = build_runtime(settings)
            await asyncio.to_thread(upgrade, runtime.engine)
            self.runtime = runtime
            bot_socket = bound_socket()
            bot_url = f"http://127.0.0.1:{bot_socket.getsockname()[1]}"
            self.sandbox.set_callback(
                f"{bot_url}/notifications/d1/v2/issuers/{settings.d1_issuer_id}/cards",
                client_id=NOTIFY_CLIENT_ID,
                client_secret=self.notify_secret,
            )
            self.bot_url = await stack.enter_async_context(serving(create_app(runtime), bot_socket))
            stack.callback(runtime.engine.dispose)
            protect_handlers()  # LocalSlack's uvicorn configured handlers of its own
            yield

    # ------------------------------------------------------------------ commands

    async def send_command(self, command: TypedCommand, http: httpx.AsyncClient) -> str:
        """Send a signed `/card` request to the bot and show its synchronous answer; a
        deferred answer arrives through LocalSlack's response_url (shown by `on_call`).
        Returns "ack" (answered at once), "deferred" (answer to come) or "failed"."""
        body, headers = command_request(
            command, response_url=self.slack.response_url(), signing_secret=self.signing_secret
        )
        try:
            response = await http.post(
                f"{self.bot_url}/slack/events", content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            self.out(f"(the bot did not answer: {type(exc).__name__})")
            return "failed"
        if response.status_code != 200:
            self.out(f"(the bot answered HTTP {response.status_code})")
            return "failed"
        payload: Any = None
        if response.content:
            with contextlib.suppress(ValueError):
                payload = response.json()
        if isinstance(payload, dict) and (payload.get("text") or payload.get("blocks")):
            self._on_slack_call(ack_call(payload))
            return "ack"
        return "deferred"

    async def subscribe_channels(self, http: httpx.AsyncClient) -> None:
        """#card-ops follows every card of the morning (as an agent would set it up), without
        printing the dozen confirmations."""
        self.quiet = True
        try:
            before = len(self.slack.responses)
            deferred = 0
            for card in MORNING:
                command = TypedCommand(OPS_CHANNEL, f"subscribe {card.card_id}")
                deferred += await self.send_command(command, http) == "deferred"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while len(self.slack.responses) - before < deferred:
                        self.reply_arrived.clear()
                        await self.reply_arrived.wait()
        finally:
            self.quiet = False
        self.out(
            f"#card-ops follows the {len(MORNING)} cards of the morning; exception alerts also go"
            " to #card-exceptions.\n"
        )

    # ------------------------------------------------------------------ the morning

    async def run_morning(self, pause: float) -> None:
        """Staggered orders, then one lifecycle step per card per round, until every card
        reached the end of its scenario. Each round settles (notifications delivered, messages
        posted) before the next one starts: the same seed gives the same morning."""
        round_no = 0
        while True:
            moving = False
            for card in MORNING:
                state = self.sandbox.cards[card.card_id]
                if card.start_round <= round_no and state.can_move:
                    self.sandbox.advance(card.card_id)
                moving = moving or state.can_move
            await self.sandbox.flush(timeout=ROUND_TIMEOUT_SECONDS)
            if not await self.wait_settled(ROUND_TIMEOUT_SECONDS, quiet=0.0):
                raise TimeoutError("a round of the morning did not settle")
            if not moving:
                return
            round_no += 1
            await asyncio.sleep(pause)

    async def settled(self) -> bool:
        """Every notification delivered and acknowledged, and the outbox empty."""
        from storage.repositories.health import outbox_backlog

        if self.sandbox.notifier.pending:
            return False
        assert self.runtime is not None
        backlog = await asyncio.to_thread(outbox_backlog, engine=self.runtime.engine)
        return backlog.pending == 0

    async def wait_settled(self, timeout: float, *, quiet: float = 1.0) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since: float | None = None
        while loop.time() < deadline:
            if await self.settled():
                quiet_since = quiet_since or loop.time()
                if loop.time() - quiet_since >= quiet:  # and nothing new for a while
                    return True
            else:
                quiet_since = None
            await asyncio.sleep(0.05)
        return False

    def summary(self) -> str:
        emitted = len(self.sandbox.emitted)
        attempts = len(self.sandbox.delivered)
        posts = len(self.slack.calls_to("chat.postMessage"))
        updates = len(self.slack.calls_to("chat.update"))
        return (
            f"Morning done: D1 emitted {emitted} operations in {attempts} deliveries "
            f"(duplicates and out-of-order included); the bot posted {posts} messages and "
            f"updated {updates} in place."
        )


# --------------------------------------------------------------------------- input


def _start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (it never blocks the exit), one line at a time."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="demo-stdin", daemon=True).start()


async def _prompt(demo: Demo, screen: Screen, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _start_stdin_reader(asyncio.get_running_loop(), lines)
    while not stop.is_set():
        line = await lines.get()
        screen.typed()
        if line is None or line.strip().lower() in {"quit", "exit", "q"}:
            stop.set()
            return
        if not line.strip():
            screen.prompt()
            continue
        command = parse_prompt_line(line)
        if command is None:
            demo.out(PROMPT_HELP)
            continue
        await demo.send_command(command, http)


# --------------------------------------------------------------------------- entry point


def round_pause(args: argparse.Namespace) -> float:
    """Seconds between rounds: a second at --speed 1 (the interactive default), none when
    --no-input runs without --speed; --speed 2 is twice as fast."""
    if args.speed is None:
        return 0.0 if args.no_input else ROUND_PAUSE_SECONDS
    return float(ROUND_PAUSE_SECONDS / args.speed)


async def _demo(args: argparse.Namespace, write: Callable[[str], None]) -> int:
    from bot.logs import configure_logging

    screen = Screen(write)
    out = screen.line
    if args.speed is not None and not args.speed > 0:
        out(f"--speed must be a number above 0 (2 is twice as fast), not {args.speed}.")
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else None
    with contextlib.ExitStack() as cleanup:
        if data_dir is None:
            data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="d1bot-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        log_file = cleanup.enter_context((data_dir / LOG_FILE).open("a", encoding="utf-8"))
        configure_logging(level="INFO", fmt="text", stream=log_file)
        cleanup.callback(configure_logging, level="WARNING", fmt="text")  # before it closes
        demo = Demo(args, out)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with demo.running(data_dir), httpx.AsyncClient(timeout=15) as http:
            # uvicorn gave its loggers handlers of their own: send them to the file too
            configure_logging(level="INFO", fmt="text", stream=log_file)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            out(
                f"d1bot demo: D1 sandbox, local Slack and the bot are running on 127.0.0.1 "
                f"(bot at {demo.bot_url}; database and log {LOG_FILE} in {data_dir})."
            )
            await demo.subscribe_channels(http)
            interactive = not args.no_input
            if interactive:
                out(PROMPT_HELP + "\n")
            morning = asyncio.create_task(demo.run_morning(round_pause(args)))
            tasks = [morning, asyncio.create_task(stop.wait())]
            if interactive:
                tasks.append(asyncio.create_task(_prompt(demo, screen, http, stop)))
                tasks.append(asyncio.create_task(screen.keep_prompt_visible()))
            await asyncio.wait({morning, tasks[1]}, return_when=asyncio.FIRST_COMPLETED)
            code = 0
            if morning.done() and not stop.is_set():
                if morning.exception() is None and await demo.wait_settled(
                    MORNING_TIMEOUT_SECONDS
                ):
                    out(demo.summary())
                else:
                    out(f"The morning did not settle in time (see {data_dir / LOG_FILE}).")
                    code = 1
                if interactive:
                    out("The morning is over; keep typing commands, or quit.")
                    await stop.wait()
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            out("Stopping ...")
        out("Stopped.")
        return code


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run_demo(args: argparse.Namespace) -> int:
    from bot.logs import configure_logging

    configure_logging(level="WARNING", fmt="text")
    try:
        return asyncio.run(_demo(args, _write))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


__all__ = ["Demo", "Screen", "round_pause", "run_demo"]
