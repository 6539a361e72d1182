"""`d1bot sandbox`: run the D1 sandbox on a port and print the settings a bot needs to use it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from d1.sandbox.service import Sandbox, SandboxConfig


def sandbox_config_from_env(args: argparse.Namespace) -> SandboxConfig:
    """The sandbox's config from the command line and `SANDBOX_*` environment variables."""
    auto = os.environ.get("SANDBOX_AUTO_ADVANCE_SECONDS", "2")
    return SandboxConfig(
        issuer_id=os.environ.get("D1_ISSUER_ID", "issuer-001"),
        key_id=os.environ.get("D1_KEY_ID", "key-1"),
        public_key_pem=_read_optional(os.environ.get("SANDBOX_PUBLIC_KEY_FILE")),
        callback_url=args.callback_url,
        callback_client_id=os.environ.get("SANDBOX_CALLBACK_CLIENT_ID") or None,
        callback_client_secret=os.environ.get("SANDBOX_CALLBACK_CLIENT_SECRET") or None,
        callback_static_token=os.environ.get("SANDBOX_CALLBACK_TOKEN") or None,
        seed=args.seed,
        duplicate_rate=float(os.environ.get("SANDBOX_DUPLICATE_RATE", "0")),
        shuffle=os.environ.get("SANDBOX_SHUFFLE", "").lower() in {"1", "true", "yes"},
        auto_advance_seconds=float(auto) if auto and float(auto) > 0 else None,
    )


def _read_optional(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


def env_lines(sandbox: Sandbox, base_url: str, key_file: Path | None) -> list[str]:
    """The environment a bot needs to talk to this sandbox."""
    lines = [
        f"D1_API_URL={base_url}/banking/v1",
        f"D1_AUTH_URL={base_url}/authz/v1",
        f"D1_ISSUER_ID={sandbox.config.issuer_id}",
        f"D1_KEY_ID={sandbox.config.key_id}",
    ]
    if key_file is not None:
        lines.append(f"D1_PRIVATE_KEY_FILE={key_file}")
    return lines


def run_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    sandbox = Sandbox(sandbox_config_from_env(args))
    key_file: Path | None = None
    if sandbox.issuer_private_key_pem is not None:
        handle, name = tempfile.mkstemp(prefix="d1-sandbox-key-", suffix=".pem")
        with os.fdopen(handle, "w") as out:
            out.write(sandbox.issuer_private_key_pem)
        key_file = Path(name)
    base_url = f"http://{args.host}:{args.port}"
    print("D1 sandbox: set these for the bot (e.g. in .env):")
    for line in env_lines(sandbox, base_url, key_file):
        print(f"  {line}")
    callback = sandbox.config.callback_url or "(none: pass --callback-url)"
    print(f"Notifications go to {callback}")
    print(
        f"Cards: GET {base_url}/sandbox/cards; move one: POST {base_url}/sandbox/cards/ID/advance"
    )
    try:
        uvicorn.run(sandbox.app, host=args.host, port=args.port, log_level="info")
    finally:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
    return 0
