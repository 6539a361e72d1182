"""`d1bot demo`: the whole product on loopback, with no Slack workspace and no D1 tenant.

One event loop runs three real HTTP servers: the D1 sandbox (a scripted morning of a dozen
cards, with duplicate and out-of-order deliveries), the local Slack stand-in, and the bot
(`bot.server.create_app`, the same app `d1bot serve` runs) on a SQLite file. The terminal shows
every message and modal the bot sends, as Slack would show it, and a prompt sends what the user
types to the bot's `/slack/events` as Slack would: `/card status crd-d2p8` as a signed
slash-command request, `click Resolve crd-f8r6` as a signed button press (`block_actions`).
Once the morning is over, a short tour (`bot.dev.demo_tour`) finds a card by its tracking
number, opens its story, takes an exception and quiets a channel, as an agent would.
`--no-input` runs the morning and the tour, then exits 0; Ctrl-C stops everything cleanly.

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
import functools
import logging
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
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
)
from bot.dev.demo_prompt import Screen, prompt_loop
from bot.dev.demo_servers import all_servers
from bot.dev.demo_tour import (
    TOUR_CARD,
    Click,
    Shown,
    action_request,
    caption_line,
    find_button,
    tour_steps,
)
from bot.dev.localslack import Call, LocalSlack
from bot.runtime import Runtime

log = logging.getLogger("d1bot.demo")

ROUND_PAUSE_SECONDS = 1.0  # interactive, at --speed 1: a second between rounds
ROUND_TIMEOUT_SECONDS = 60.0  # one round's notifications delivered and messages posted
MORNING_TIMEOUT_SECONDS = 240.0
LOG_FILE = "d1bot-demo.log"
# What only the agent who typed or pressed sees: shown before a step's channel messages.
AGENT_ONLY = frozenset(
    {"ack", "response_url", "chat.postEphemeral", "views.open", "views.push", "views.update"}
)


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
        self.held: list[Call] | None = None  # a tour step's calls, shown once it is over
        self.bot_url = ""
        self.runtime: Runtime | None = None
        self.sandbox: Any = None

    # ------------------------------------------------------------------ output

    def _on_slack_call(self, call: Call) -> None:
        if call.method == "response_url":
            self.reply_arrived.set()
        if self.quiet and call.method in {"response_url", "ack"}:
            return
        if self.held is not None:
            self.held.append(call)
        else:
            self._show(call)

    def _show(self, call: Call) -> None:
        text = self.view.render(call)
        if text:
            self.out(text)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Show a step's calls once it is over, what only the agent sees first, each kind in
        arrival order: the bot answers the agent and rewrites the alert concurrently, and the
        same seed must print the same lines in the same order."""
        self.held = []
        try:
            yield
        finally:
            held, self.held = self.held, None
            for call in sorted(held, key=lambda c: c.method not in AGENT_ONLY):
                self._show(call)

    # ------------------------------------------------------------------ setup

    @contextlib.asynccontextmanager
    async def running(self, data_dir: Path) -> AsyncIterator[None]:
        """All three servers up and wired; everything stopped (bot first) on exit."""
        for channel_id, name in CHANNEL_NAMES.items():
            self.slack.add_channel(channel_id, name=name, members=["U0AGENT"])
        async with all_servers(
            self.slack,
            seed=self.args.seed,
            data_dir=data_dir,
            signing_secret=self.signing_secret,
            notify_secret=self.notify_secret,
        ) as servers:
            self.sandbox, self.runtime = servers.sandbox, servers.runtime
            self.bot_url = servers.bot_url
            yield

    # ------------------------------------------------------------------ commands

    async def send(self, typed: TypedCommand | Click, http: httpx.AsyncClient) -> str:
        """A typed `/card` command, or a button press, sent to the bot as Slack sends it."""
        if isinstance(typed, Click):
            return await self.press(typed, http)
        return await self.send_command(typed, http)

    async def send_command(self, command: TypedCommand, http: httpx.AsyncClient) -> str:
        """Send a signed `/card` request to the bot; see `_post` for what it returns."""
        body, headers = command_request(
            command, response_url=self.slack.response_url(), signing_secret=self.signing_secret
        )
        return await self._post(body, headers, http)

    def shown(self) -> list[Shown]:
        """What the agent has seen, oldest first: the replies, then the channels' messages."""
        replies = [Shown(OPS_CHANNEL, r.get("blocks") or []) for r in self.slack.responses]
        posted = sorted(self.slack.messages(), key=lambda m: float(m["ts"]))
        return replies + [
            Shown(m["channel"], m.get("blocks") or [], m["ts"], m.get("text") or "") for m in posted
        ]

    async def press(self, click: Click, http: httpx.AsyncClient) -> str:
        """Press a button the agent sees (a signed `block_actions` payload, as Slack sends)."""
        found = find_button(self.shown(), click)
        if found is None:
            self.out(f"(no [{click.label}] button for {click.card_id} on the screen)")
            return "failed"
        body, headers = action_request(
            found, response_url=self.slack.response_url(), signing_secret=self.signing_secret
        )
        return await self._post(body, headers, http)

    async def _post(self, body: str, headers: dict[str, str], http: httpx.AsyncClient) -> str:
        """POST a signed request to the bot's `/slack/events` and show a synchronous answer; a
        deferred one arrives through LocalSlack's response_url (shown by `on_call`). Returns
        "ack" (answered at once), "deferred" (answer to come) or "failed"."""
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
            await self.wait_replies(before + deferred, timeout=10)
        finally:
            self.quiet = False
        self.out(
            f"#card-ops follows the {len(MORNING)} cards of the morning; exception alerts also go"
            " to #card-exceptions.\n"
        )

    async def wait_replies(self, count: int, *, timeout: float) -> bool:
        """Until `count` replies arrived through response_urls in all (False: timed out)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.slack.responses) < count:
                    self.reply_arrived.clear()
                    await self.reply_arrived.wait()
                return True
        return False

    # ------------------------------------------------------------------ the tour

    async def tour(self, http: httpx.AsyncClient) -> bool:
        """Each step's caption, then what Slack shows once the bot answered and its messages
        went out (False: a step failed or was not answered in time)."""
        tracking = self.sandbox.cards[TOUR_CARD].tracking_number
        self.out("\nWhat an agent does next, as Slack would show it:\n")
        for step in tour_steps(tracking):
            self.out(caption_line(step))
            with self.holding():
                before = len(self.slack.responses)
                sent = await self.send(step.action, http)
                answered = sent == "ack" or (
                    sent == "deferred"
                    and await self.wait_replies(before + 1, timeout=ROUND_TIMEOUT_SECONDS)
                )
                settled = await self.wait_settled(ROUND_TIMEOUT_SECONDS, quiet=0.0)
            if not (answered and settled):
                return False
        return True

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
                send = functools.partial(demo.send, http=http)
                tasks.append(asyncio.create_task(prompt_loop(screen, send, stop)))
                tasks.append(asyncio.create_task(screen.keep_prompt_visible()))
            await asyncio.wait({morning, tasks[1]}, return_when=asyncio.FIRST_COMPLETED)
            code = 0
            if morning.done() and not stop.is_set():
                if morning.exception() is None and await demo.wait_settled(MORNING_TIMEOUT_SECONDS):
                    out(demo.summary())
                    if not await demo.tour(http):
                        out(f"The tour stopped early (see {data_dir / LOG_FILE}).")
                        code = 1
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


__all__ = ["Demo", "round_pause", "run_demo"]
