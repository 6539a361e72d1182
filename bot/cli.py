"""The `d1bot` command line: serve, demo, sandbox, quarantine, migrate, check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from d1.sandbox.cli import add_sandbox_arguments


def _version() -> str:
    try:
        return metadata.version("d1-slack")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub: Any, name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_examples(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d1bot",
        description="Slack app for Thales D1 card production and shipping.",
        epilog=_examples("d1bot demo", "d1bot check && d1bot serve")
        + "\n\n`d1bot COMMAND --help` shows each command's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        sub, "serve", "run the server (Slack, D1 notifications, jobs)",
        "d1bot serve --port 3000",
        "d1bot serve --ssl-certfile server.crt --ssl-keyfile server.key \\",
        "            --ssl-ca-certs thales-d1-ca.pem --require-client-cert",
    )  # fmt: skip
    serve.add_argument("--host", default=None, help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT or 3000)")
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not apply database migrations at start"
    )
    tls = serve.add_argument_group("TLS (when no proxy terminates it; default: the SSL_* settings)")
    tls.add_argument("--ssl-certfile", default=None, help="server certificate (PEM)")
    tls.add_argument("--ssl-keyfile", default=None, help="server private key (PEM)")
    tls.add_argument("--ssl-ca-certs", default=None, help="CA bundle for client certificates")
    tls.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse clients without a certificate signed by --ssl-ca-certs (mTLS, as D1 does)",
    )

    demo = _command(
        sub, "demo", "run everything locally: D1 sandbox, Slack stand-in, bot",
        "d1bot demo", "d1bot demo --no-input --seed 7",
    )  # fmt: skip
    demo.add_argument("--no-input", action="store_true", help="run the scenario and exit")
    demo.add_argument("--data-dir", default=None, help="where the demo database goes")
    demo.add_argument("--seed", type=int, default=7, help="scenario seed")
    demo.add_argument("--speed", type=float, default=None, help="sandbox clock acceleration")

    sandbox = _command(
        sub, "sandbox", "run the D1 sandbox (a local D1)",
        "d1bot sandbox --port 8700 \\",
        "  --callback-url http://127.0.0.1:3000/notifications/d1/v2/issuers/issuer-001/cards",
    )  # fmt: skip
    add_sandbox_arguments(sandbox)

    quarantine = _command(
        sub, "quarantine", "operations D1 sent that could not be accepted, and why",
        "d1bot quarantine list --limit 20", "d1bot quarantine show 3",
    )  # fmt: skip
    what = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _command(
        what, "list", "the newest first: when, which, the field at fault",
        "d1bot quarantine list --limit 20",
    )  # fmt: skip
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = _command(
        what, "show", "one quarantined operation as received (PANs masked)",
        "d1bot quarantine show 3",
    )  # fmt: skip
    show.add_argument("id", type=int, help="the number `d1bot quarantine list` shows")

    migrate = _command(
        sub, "migrate", "apply database migrations (DATABASE_URL) and say which",
        "d1bot migrate             # the database of DATABASE_URL, e.g. in .env",
        "d1bot migrate --verbose   # with Alembic's steps",
    )  # fmt: skip
    migrate.add_argument(
        "--verbose", action="store_true", help="show Alembic's steps and a failure's traceback"
    )
    check = _command(
        sub, "check", "validate every setting and the database; exit 1 on any error",
        "d1bot check", "d1bot check --online   # also Slack's auth.test and a D1 token",
    )  # fmt: skip
    check.add_argument(
        "--online", action="store_true", help="also call Slack (auth.test) and D1 (a token)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from bot.main import TLSOptions, serve

        tls = TLSOptions(
            certfile=args.ssl_certfile,
            keyfile=args.ssl_keyfile,
            ca_certs=args.ssl_ca_certs,
            require_client_cert=args.require_client_cert,
        )
        if tls.problem():
            print(tls.problem(), file=sys.stderr)
            return 2
        return serve(host=args.host, port=args.port, migrate=not args.no_migrate, tls=tls)
    if args.command == "demo":
        from bot.dev.demo import run_demo

        return run_demo(args)
    if args.command == "sandbox":
        from d1.sandbox.cli import run_sandbox

        return run_sandbox(args)
    if args.command == "quarantine":
        from bot.main import quarantine

        return quarantine(
            args.action, limit=getattr(args, "limit", 50), item=getattr(args, "id", 0)
        )
    if args.command == "migrate":
        from bot.main import migrate

        return migrate(verbose=args.verbose)
    if args.command == "check":
        from bot.main import check

        return check(online=args.online)
    return 2


if __name__ == "__main__":
    sys.exit(main())
