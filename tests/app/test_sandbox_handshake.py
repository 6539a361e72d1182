"""`d1bot sandbox` and `d1bot serve` started from one folder, as a newcomer does, over real
HTTP: the sandbox writes generated callback credentials into the shared `.env`, a bot started
before that refuses the notifications and the sandbox says so with the fix, and the restarted
bot accepts them. No secret is fixed in the code."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from d1.client import D1Client
from d1.sandbox.envfile import read_env_file
from storage.db import make_engine
from storage.repositories.cards import get_card
from tests.servers import free_port, wait_for

ISSUER = "issuer-001"
SETTING_PREFIXES = ("SLACK_", "D1", "SANDBOX_", "LOG_", "DATABASE_", "PORT", "HOST")


class Process:
    """A child process whose output (stdout and stderr together) is collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def said(self, fragment: str) -> bool:
        return any(fragment in line for line in self.lines)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.wait_for(self._reader, 10)


@asynccontextmanager
async def started(folder: Path, *args: str, **env: str) -> AsyncIterator[Process]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args,
        cwd=folder, env={**base, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    child = Process(proc)
    try:
        yield child
    finally:
        await child.stop()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def bot(folder: Path, port: int) -> AsyncIterator[Process]:
    async with started(
        folder,
        "serve",
        "--port",
        str(port),
        DATABASE_URL=f"sqlite:///{folder / 'd1bot.db'}",
        SLACK_BOT_TOKEN="xoxb-1-2-handshake",
        LOG_LEVEL="WARNING",
    ) as serve:
        await wait_for(
            lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="serve up"
        )
        yield serve


def _order() -> dict:
    return {
        "distributionChannel": "THALES",
        "issuerRequestId": "req-1",
        "services": {"issuance": "CREATION", "delivery": "STANDARD"},
        "encryptedData": "eyJhbGciOiJFQ0RILUVTIn0..iv.cipher.tag",
        "paymentApplication": {"config": "VISA_CREDIT"},
        "shipment": {
            "type": "INDIVIDUAL",
            "deliveryAddress": {
                "lastName": "Doe",
                "line1": "1 Main Street",
                "zipCode": "WC2N 5DU",
                "city": "London",
                "countryCode": "GB",
            },
        },
    }


@pytest.mark.slow
async def test_sandbox_and_serve_share_generated_credentials(tmp_path: Path) -> None:
    bot_port, sandbox_port = free_port(), free_port()
    callback = f"http://127.0.0.1:{bot_port}/notifications/d1/v2/issuers/{ISSUER}/cards"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    engine = make_engine(f"sqlite:///{tmp_path / 'd1bot.db'}")
    first_bot = AsyncExitStack()
    try:
        # The bot first, with no callback credentials at all: it refuses every notification.
        await first_bot.enter_async_context(bot(tmp_path, bot_port))
        async with started(
            tmp_path, "sandbox", "--port", str(sandbox_port), "--callback-url", callback,
            SANDBOX_AUTO_ADVANCE_SECONDS="0", SANDBOX_DUPLICATE_RATE="0",
        ) as sandbox:  # fmt: skip
            await wait_for(lambda: sandbox.said("D1_PRIVATE_KEY_FILE="), message="sandbox env")
            await wait_for(lambda: answers(f"{sandbox_url}/healthz"), message="sandbox up")
            shared = read_env_file(tmp_path / ".env")
            secret = shared["D1_NOTIFY_CLIENT_SECRET"]
            assert shared["SANDBOX_CALLBACK_CLIENT_SECRET"] == secret and len(secret) >= 32
            assert shared["SANDBOX_CALLBACK_CLIENT_ID"] == shared["D1_NOTIFY_CLIENT_ID"]
            assert shared["D1_ISSUER_ID"] == ISSUER
            assert (tmp_path / ".env").stat().st_mode & 0o077 == 0  # the owner's only
            assert sandbox.said("start (or restart) `d1bot serve` from this folder")
            printed = dict(
                line.strip().split("=", 1) for line in sandbox.lines if line.startswith("  D1_")
            )
            key = await asyncio.to_thread(Path(printed["D1_PRIVATE_KEY_FILE"]).read_text)
            async with D1Client(
                api_url=printed["D1_API_URL"],
                auth_url=printed["D1_AUTH_URL"],
                issuer_id=printed["D1_ISSUER_ID"],
                key_id=printed["D1_KEY_ID"],
                private_key_pem=key,
            ) as d1:
                await d1.order_card("card-1", _order())
            await wait_for(
                lambda: sandbox.said("the bot refused the sandbox's credentials (401)"),
                timeout=20,
                message="the refusal reported by the sandbox",
            )
            refusal = next(line for line in sandbox.lines if "refused the sandbox's" in line)
            assert refusal.startswith("SANDBOX ERROR: ")
            assert "Fix: run `d1bot sandbox` and `d1bot serve` from the same folder" in refusal
            assert "restart `d1bot serve`" in refusal
            assert get_card(engine, card_id="card-1") is None

            # Restarted as the sandbox said: the bot reads the .env and accepts what follows.
            await first_bot.aclose()
            async with bot(tmp_path, bot_port):
                async with httpx.AsyncClient() as http:
                    moved = await http.post(f"{sandbox_url}/sandbox/cards/card-1/advance")
                assert moved.status_code == 200
                await wait_for(
                    lambda: get_card(engine, card_id="card-1") is not None,
                    timeout=20,
                    message="the notification stored by the bot",
                )
        assert secret not in "\n".join(sandbox.lines)  # written to the file, never printed
    finally:
        await first_bot.aclose()  # a no-op when it already stopped
        engine.dispose()


def test_existing_credentials_are_reused_not_rewritten(tmp_path: Path) -> None:
    from d1.sandbox.envfile import callback_credentials, merged_environment

    env_file = tmp_path / ".env"
    env_file.write_text("D1_NOTIFY_CLIENT_ID=d1\nD1_NOTIFY_CLIENT_SECRET='s3cret'\n")
    found = callback_credentials(env_file, merged_environment(env_file, {}))
    assert (found.client_id, found.client_secret, found.written) == ("d1", "s3cret", [])
    assert found.mismatch is None
    env_file.write_text("SANDBOX_CALLBACK_CLIENT_ID=d1\nSANDBOX_CALLBACK_CLIENT_SECRET=x\n"
                        "D1_NOTIFY_CLIENT_ID=d1\nD1_NOTIFY_CLIENT_SECRET=y\n")  # fmt: skip
    mismatch = callback_credentials(env_file, merged_environment(env_file, {}))
    assert mismatch.mismatch and "differ" in mismatch.mismatch
    env_file.write_text("# nothing yet\n")
    first = callback_credentials(env_file, merged_environment(env_file, {}))
    second = callback_credentials(env_file, merged_environment(env_file, {}))
    assert first.written and not second.written  # generated once, then read back
    assert (second.client_id, second.client_secret) == (first.client_id, first.client_secret)
    other = tmp_path / "other.env"
    assert callback_credentials(other, {}).client_secret != first.client_secret  # never fixed


async def test_a_callback_nobody_answers_is_said_once_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.d1_fixtures import running_sandbox

    port = free_port()  # nothing listens there
    callback = f"http://127.0.0.1:{port}/notifications/d1/v2/issuers/{ISSUER}/cards"
    async with running_sandbox(
        callback_url=callback, callback_static_token="t", duplicate_rate=0.0
    ) as (sb, _url):
        with caplog.at_level(logging.INFO, logger="d1.sandbox.delivery"):
            sb.create_card("card-1")
            sb.advance("card-1")
            await wait_for(
                lambda: (
                    sum("callback delivery attempt" in r.getMessage() for r in caplog.records) >= 3
                ),
                message="several attempts",
            )
    said = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1
    assert said[0].getMessage() == (
        f"cannot reach the callback {callback} (ConnectError): is `d1bot serve` running and "
        "listening there? The notifications wait and are retried"
    )


def test_the_server_knows_the_newest_schema_without_alembic() -> None:
    from storage.migrate import head_revision
    from storage.repositories.health import schema_head

    assert schema_head() == head_revision()
