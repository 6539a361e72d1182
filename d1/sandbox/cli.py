"""`d1bot sandbox` (or `python -m d1.sandbox.cli`): run the D1 sandbox on a port and print the
settings a bot needs to use it.

It reads the `.env` of the folder it runs in, as `d1bot serve` does; given a `--callback-url`
and no callback credentials, it writes new ones there for both sides (`d1.sandbox.envfile`), so
a bot started from the same folder accepts its notifications. A notification the bot refuses,
or a bot nobody answers for, is reported on stderr with the fix.

The issuer's private key, when the sandbox makes one, is written to a temporary file for the bot
to read; the file is removed however the sandbox stops: Ctrl-C, SIGTERM or a normal exit. With
`--strict`, every request is checked against D1's spec files; the sandbox then exits with status
1 if any request did not conform, after listing them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from d1.sandbox.envfile import CallbackCredentials, callback_credentials, merged_environment
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
        "--env-file",
        default=".env",
        help="the .env shared with `d1bot serve`: read, and given callback credentials when "
        "it has none (default: .env here)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="check every request against D1's spec files; refuse and report a mismatch",
    )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None else value.lower() in {"1", "true", "yes"}


def sandbox_config_from_env(
    args: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    credentials: CallbackCredentials | None = None,
) -> SandboxConfig:
    """The sandbox's config from the command line and the `SANDBOX_*` variables of `env` (the
    process environment by default); `credentials` when already settled (`run_sandbox`)."""
    env = os.environ if env is None else env
    auto = env.get("SANDBOX_AUTO_ADVANCE_SECONDS", "2")
    defaults = SandboxConfig()
    credentials = credentials or CallbackCredentials(
        client_id=env.get("SANDBOX_CALLBACK_CLIENT_ID") or None,
        client_secret=env.get("SANDBOX_CALLBACK_CLIENT_SECRET") or None,
        static_token=env.get("SANDBOX_CALLBACK_TOKEN") or None,
    )
    return SandboxConfig(
        issuer_id=env.get("D1_ISSUER_ID", "issuer-001"),
        key_id=env.get("D1_KEY_ID", "key-1"),
        public_key_pem=_read_optional(env.get("SANDBOX_PUBLIC_KEY_FILE")),
        callback_url=args.callback_url,
        callback_client_id=credentials.client_id,
        callback_client_secret=credentials.client_secret,
        callback_static_token=credentials.static_token,
        seed=args.seed,
        duplicate_rate=float(env.get("SANDBOX_DUPLICATE_RATE", str(defaults.duplicate_rate))),
        shuffle=_flag(env, "SANDBOX_SHUFFLE", defaults.shuffle),
        body_shape=env.get("SANDBOX_BODY_SHAPE", defaults.body_shape),
        auto_advance_seconds=float(auto) if auto and float(auto) > 0 else None,
        strict=bool(getattr(args, "strict", False)) or _flag(env, "SANDBOX_STRICT", False),
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


def _say_loudly() -> None:
    """The sandbox's warnings and errors (a refused or unreachable callback) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("SANDBOX %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    sandbox_log = logging.getLogger("d1.sandbox")
    sandbox_log.addHandler(handler)
    sandbox_log.propagate = False


def _settle_credentials(
    args: argparse.Namespace,
) -> tuple[dict[str, str], CallbackCredentials | None]:
    """The environment (the .env under the real one) and the callback credentials, written
    to the .env when a callback is given and there are none; what was done, printed."""
    env_file = Path(getattr(args, "env_file", None) or ".env")
    env = merged_environment(env_file)
    if not args.callback_url:
        return env, None
    credentials = callback_credentials(env_file, env)
    if credentials.written:
        print(
            f"Wrote {', '.join(credentials.written)} to {env_file.resolve()}: start (or "
            "restart) `d1bot serve` from this folder so that it reads them."
        )
    if credentials.mismatch:
        print(
            f"WARNING: {credentials.mismatch}: the bot will refuse the notifications. Make them "
            f"equal in {env_file} (or remove the SANDBOX_CALLBACK_* lines).",
            file=sys.stderr,
        )
    return env, credentials


def run_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    _say_loudly()
    env, credentials = _settle_credentials(args)
    sandbox = Sandbox(sandbox_config_from_env(args, env, credentials))
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
    parser = argparse.ArgumentParser(prog="d1-sandbox", description="Run the D1 sandbox.")
    add_sandbox_arguments(parser)
    return run_sandbox(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
