"""The `.env` the sandbox shares with `d1bot serve`, so the two authenticate to each other with
no secret fixed in the code: the sandbox reads it (real environment variables win, as they do
for the bot) and, when no callback credentials exist yet, generates them and appends them under
both names: `D1_NOTIFY_CLIENT_ID`/`_SECRET` (what the bot accepts at its `/oauth2/token`) and
`SANDBOX_CALLBACK_CLIENT_ID`/`_SECRET` (what the sandbox presents there).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ISSUER_ID = "issuer-001"
GENERATED_CLIENT_ID = "d1-sandbox"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (comments, blank lines and `export ` ignored; quotes removed)."""
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name.strip().upper()] = value
    return found


def merged_environment(path: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The `.env` at `path` overlaid by the real environment (which wins, as for the bot)."""
    return {**read_env_file(path), **{k.upper(): v for k, v in environ.items()}}


@dataclass
class CallbackCredentials:
    """How the sandbox authenticates at the bot, and what was written to the `.env` for it."""

    client_id: str | None = None
    client_secret: str | None = None
    static_token: str | None = None
    written: list[str] = field(default_factory=list)  # names appended to the .env
    mismatch: str | None = None  # the sandbox's and the bot's credentials differ: why


def callback_credentials(path: Path, env: Mapping[str, str]) -> CallbackCredentials:
    """The sandbox's callback credentials, generating and writing them when there are none:
    SANDBOX_CALLBACK_TOKEN, else SANDBOX_CALLBACK_CLIENT_ID/SECRET, else the bot's own
    D1_NOTIFY_CLIENT_ID/SECRET or D1_NOTIFY_TOKEN (the same `.env`), else new ones."""
    if env.get("SANDBOX_CALLBACK_TOKEN"):
        found = CallbackCredentials(static_token=env["SANDBOX_CALLBACK_TOKEN"])
        if env.get("D1_NOTIFY_TOKEN") and env["D1_NOTIFY_TOKEN"] != found.static_token:
            found.mismatch = "SANDBOX_CALLBACK_TOKEN differs from D1_NOTIFY_TOKEN"
        return found
    client_id, secret = (
        env.get("SANDBOX_CALLBACK_CLIENT_ID"),
        env.get("SANDBOX_CALLBACK_CLIENT_SECRET"),
    )
    bot_id, bot_secret = env.get("D1_NOTIFY_CLIENT_ID"), env.get("D1_NOTIFY_CLIENT_SECRET")
    if client_id and secret:
        found = CallbackCredentials(client_id=client_id, client_secret=secret)
        if (bot_id, bot_secret) != (client_id, secret):
            found.mismatch = (
                "SANDBOX_CALLBACK_CLIENT_ID/SECRET differ from D1_NOTIFY_CLIENT_ID/SECRET"
            )
        return found
    if bot_id and bot_secret:
        return CallbackCredentials(client_id=bot_id, client_secret=bot_secret)
    if env.get("D1_NOTIFY_TOKEN"):
        return CallbackCredentials(static_token=env["D1_NOTIFY_TOKEN"])
    secret = secrets.token_urlsafe(32)
    lines = {
        "D1_NOTIFY_CLIENT_ID": GENERATED_CLIENT_ID,
        "D1_NOTIFY_CLIENT_SECRET": secret,
        "SANDBOX_CALLBACK_CLIENT_ID": GENERATED_CLIENT_ID,
        "SANDBOX_CALLBACK_CLIENT_SECRET": secret,
    }
    if not env.get("D1_ISSUER_ID"):  # the bot accepts notifications for its issuer only
        lines["D1_ISSUER_ID"] = DEFAULT_ISSUER_ID
    append_to_env_file(path, lines)
    return CallbackCredentials(GENERATED_CLIENT_ID, secret, written=list(lines))


def append_to_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Append `values` to the `.env` at `path` (created readable by its owner only)."""
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = "".join(f"{name}={value}\n" for name, value in values.items())
    separator = "" if not existing or existing.endswith("\n") else "\n"
    header = "# Written by `d1bot sandbox`: the sandbox's credentials at the bot's /oauth2/token\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(separator + header + block)


__all__ = [
    "CallbackCredentials",
    "append_to_env_file",
    "callback_credentials",
    "merged_environment",
    "read_env_file",
]
