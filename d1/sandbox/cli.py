"""`d1bot sandbox` (or `python -m d1.sandbox.cli`): run the D1 sandbox on a port and print the
settings a bot needs to use it.

The issuer's private key, when the sandbox makes one, is written to a temporary file for the bot
to read; the file is removed however the sandbox stops: Ctrl-C, SIGTERM or a normal exit. With
`--strict`, every request is checked against D1's spec files; the sandbox then exits with status
1 if any request did not conform, after listing them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from d1.sandbox.service import Sandbox, SandboxConfig

STRICT_FAILED_EXIT = 1


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's command-line options (shared by `d1bot sandbox` and this module)."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    parser.add_argument(
        "--callback-url", default=None, help="the bot's notification endpoint, where to send them"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="check every request against D1's spec files; refuse and report a mismatch",
    )


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in {"1", "true", "yes"}


def sandbox_config_from_env(args: argparse.Namespace) -> SandboxConfig:
    """The sandbox's config from the command line and `SANDBOX_*` environment variables."""
    auto = os.environ.get("SANDBOX_AUTO_ADVANCE_SECONDS", "2")
    defaults = SandboxConfig()
    return SandboxConfig(
        issuer_id=os.environ.get("D1_ISSUER_ID", "issuer-001"),
        key_id=os.environ.get("D1_KEY_ID", "key-1"),
        public_key_pem=_read_optional(os.environ.get("SANDBOX_PUBLIC_KEY_FILE")),
        callback_url=args.callback_url,
        callback_client_id=os.environ.get("SANDBOX_CALLBACK_CLIENT_ID") or None,
        callback_client_secret=os.environ.get("SANDBOX_CALLBACK_CLIENT_SECRET") or None,
        callback_static_token=os.environ.get("SANDBOX_CALLBACK_TOKEN") or None,
        seed=args.seed,
        duplicate_rate=float(
            os.environ.get("SANDBOX_DUPLICATE_RATE", str(defaults.duplicate_rate))
        ),
        shuffle=_flag("SANDBOX_SHUFFLE", defaults.shuffle),
        body_shape=os.environ.get("SANDBOX_BODY_SHAPE", defaults.body_shape),
        auto_advance_seconds=float(auto) if auto and float(auto) > 0 else None,
        strict=bool(getattr(args, "strict", False)) or _flag("SANDBOX_STRICT", False),
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


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # uvicorn handles SIGTERM while it serves, then raises it again once stopped: ending with
    # SystemExit (rather than the default, which kills at once) lets `finally` clean up.
    raise SystemExit(128 + signum)


def run_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    sandbox = Sandbox(sandbox_config_from_env(args))
    key_file: Path | None = None
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        if sandbox.issuer_private_key_pem is not None:
            handle, name = tempfile.mkstemp(prefix="d1-sandbox-key-", suffix=".pem")
            key_file = Path(name)
            with os.fdopen(handle, "w") as out:
                out.write(sandbox.issuer_private_key_pem)
        base_url = f"http://{args.host}:{args.port}"
        print("D1 sandbox: set these for the bot (e.g. in .env):")
        for line in env_lines(sandbox, base_url, key_file):
            print(f"  {line}")
        callback = sandbox.config.callback_url or "(none: pass --callback-url)"
        print(f"Notifications go to {callback}")
        print(
            f"Cards: GET {base_url}/sandbox/cards; "
            f"move one: POST {base_url}/sandbox/cards/ID/advance"
        )
        if sandbox.config.strict:
            print("Strict: every request is checked against D1's spec files (d1/spec)")
        sys.stdout.flush()
        try:
            uvicorn.run(sandbox.app, host=args.host, port=args.port, log_level="info")
        except SystemExit as stop:
            if stop.code not in (0, None, 128 + signal.SIGTERM):
                raise
    finally:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
        _report(sandbox)
    return STRICT_FAILED_EXIT if sandbox.violations else 0


def _report(sandbox: Sandbox) -> None:
    """Say, on the way out, what a person watching must not miss."""
    if sandbox.violations:
        print(
            f"STRICT: {len(sandbox.violations)} request(s) did not conform to D1's spec files:",
            file=sys.stderr,
        )
        for violation in sandbox.violations:
            print(f"  {violation}", file=sys.stderr)
    lost = sandbox.notifier.lost
    if lost:
        print(f"{lost} notification(s) were lost (refused with a 4xx or given up)", file=sys.stderr)
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="d1-sandbox", description="run the D1 sandbox")
    add_sandbox_arguments(parser)
    return run_sandbox(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
