"""How `d1bot demo` builds its servers: the D1 sandbox's morning, the bot's settings pointing
at the sandbox and the Slack stand-in, serving an app on loopback in the demo's loop, and all
three started and wired to each other.

Kept apart from `bot.dev.demo`, which drives the running demo (the morning, the prompt,
Ctrl-C), so that the wiring reads as one piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from bot.dev.demo_morning import DEMO_TEAM, EXCEPTIONS_CHANNEL, MORNING
from bot.dev.localslack import LocalSlack
from bot.runtime import Runtime

NOTIFY_CLIENT_ID = "d1-demo"


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the demo owns Ctrl-C for all its servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    """Serve `app` on a bound socket in this loop; yields its base URL."""
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        sock.close()


def bound_socket() -> socket.socket:
    """A loopback socket on a free port, bound now so that its URL is known before serving
    (the sandbox needs the bot's callback URL before the bot starts)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _a_second_ahead() -> datetime:
    """The sandbox's clock. D1's event times are whole seconds: a second ahead, the morning's
    events come after the agent's subscriptions in each card's story, run after run."""
    return datetime.now(UTC) + timedelta(seconds=1)


def demo_sandbox(seed: int) -> Any:
    """The D1 sandbox with the morning's cards: duplicates, shuffling and batches included,
    as a real D1 delivers them."""
    from d1.sandbox import Sandbox, SandboxConfig

    sandbox = Sandbox(
        SandboxConfig(
            issuer_id="issuer-demo",
            key_id="demo-key-1",
            seed=seed,
            duplicate_rate=0.2,
            shuffle=True,
            batch_size=4,
            clock=_a_second_ahead,
        )
    )
    for card in MORNING:
        sandbox.create_card(
            card.card_id,
            scenario=card.scenario,
            masked_pan=None,
            name=card.name,
            address=card.address,
            carrier=card.carrier,
        )
    return sandbox


def demo_settings(
    *,
    data_dir: Path,
    sandbox: Any,
    sandbox_url: str,
    slack_api_url: str,
    signing_secret: str,
    notify_secret: str,
) -> Any:
    """The bot's settings for the demo, given explicitly and without a .env file, so that a
    developer's own configuration cannot point the demo at a real Slack or D1."""
    from bot.settings import load_settings

    return load_settings(
        _env_file=None,
        database_url=f"sqlite:///{data_dir / 'd1bot-demo.db'}",
        log_level="WARNING",
        slack_bot_token="xoxb-demo-" + secrets.token_hex(8),
        slack_signing_secret=signing_secret,
        slack_app_token=None,
        slack_api_url=slack_api_url,
        d1_api_url=f"{sandbox_url}/banking/v1",
        d1_auth_url=f"{sandbox_url}/authz/v1",
        d1_issuer_id=sandbox.config.issuer_id,
        d1_key_id=sandbox.config.key_id,
        d1_private_key=sandbox.issuer_private_key_pem,
        d1_private_key_file=None,
        d1_client_cert=None,
        d1_client_key=None,
        d1_notify_client_id=NOTIFY_CLIENT_ID,
        d1_notify_client_secret=notify_secret,
        d1_notify_token=None,
        d1bot_exceptions_channel=EXCEPTIONS_CHANNEL,
        d1bot_allowed_channels=None,
        d1bot_allowed_usergroups=None,
        d1bot_workspace_id=DEMO_TEAM,
        d1bot_channel_rate_per_second=20.0,
        d1bot_workspace_rate_per_minute=6000,  # the stand-in: a morning in seconds
        d1bot_update_rate_per_minute=6000,  # and every parent kept current as it happens
        d1bot_burst_threshold=50,
    )


@dataclass(frozen=True)
class Servers:
    """The running demo's D1 sandbox, the bot's runtime, and where the bot listens."""

    sandbox: Any
    runtime: Runtime
    bot_url: str


@contextlib.asynccontextmanager
async def all_servers(
    slack: LocalSlack, *, seed: int, data_dir: Path, signing_secret: str, notify_secret: str
) -> AsyncIterator[Servers]:
    """The Slack stand-in, the sandbox and the bot up and wired to each other; everything
    stopped (bot first) on exit."""
    from bot.logs import protect_handlers
    from bot.main import build_runtime
    from bot.server import create_app
    from storage.migrate import upgrade

    sandbox = demo_sandbox(seed)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(slack)
        sandbox_url = await stack.enter_async_context(serving(sandbox.app, bound_socket()))
        settings = demo_settings(
            data_dir=data_dir,
            sandbox=sandbox,
            sandbox_url=sandbox_url,
            slack_api_url=slack.base_url,
            signing_secret=signing_secret,
            notify_secret=notify_secret,
        )
        runtime = build_runtime(settings)
        await asyncio.to_thread(upgrade, runtime.engine)
        bot_socket = bound_socket()
        bot_url = f"http://127.0.0.1:{bot_socket.getsockname()[1]}"
        sandbox.set_callback(
            f"{bot_url}/notifications/d1/v2/issuers/{settings.d1_issuer_id}/cards",
            client_id=NOTIFY_CLIENT_ID,
            client_secret=notify_secret,
        )
        bot_url = await stack.enter_async_context(serving(create_app(runtime), bot_socket))
        stack.callback(runtime.engine.dispose)
        protect_handlers()  # LocalSlack's uvicorn configured handlers of its own
        yield Servers(sandbox=sandbox, runtime=runtime, bot_url=bot_url)
