"""The demo's terminal: whole lines of the view with the prompt kept below the latest of them,
and the prompt's loop (a `/card` command, or a button press, sent to the bot per line).

Kept apart from `bot.dev.demo`, which runs the servers and the morning, so that what the person
at the keyboard sees reads as one piece.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable

from bot.dev.demo_morning import PROMPT_HELP, TypedCommand, parse_prompt_line
from bot.dev.demo_tour import Click, parse_click_line

PROMPT = "demo> "
PROMPT_QUIET_SECONDS = 0.3  # the prompt comes back once the screen is quiet this long

Send = Callable[[TypedCommand | Click], Awaitable[object]]


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


def _start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (it never blocks the exit), one line at a time."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="demo-stdin", daemon=True).start()


async def prompt_loop(screen: Screen, send: Send, stop: asyncio.Event) -> None:
    """Each typed line to the bot until quit, end of input or `stop`; help for anything else."""
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
        typed = parse_prompt_line(line) or parse_click_line(line)
        if typed is None:
            screen.line(PROMPT_HELP)
            continue
        await send(typed)


__all__ = ["PROMPT", "Screen", "prompt_loop"]
