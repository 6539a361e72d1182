"""The `d1bot` command line: serve, demo, sandbox, quarantine, migrate, check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from d1.sandbox.cli import add_sandbox_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d1bot", description="Slack app for Thales D1 card production and shipping."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (Slack, D1 notifications, jobs)")
    serve.add_argument("--host", default=None, help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT or 3000)")
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not apply database migrations at start"
    )
    tls = serve.add_argument_group("TLS (when no proxy terminates it)")
    tls.add_argument("--ssl-certfile", default=None, help="server certificate (PEM)")
    tls.add_argument("--ssl-keyfile", default=None, help="server private key (PEM)")
    tls.add_argument("--ssl-ca-certs", default=None, help="CA bundle for client certificates")
    tls.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse clients without a certificate signed by --ssl-ca-certs (mTLS, as D1 does)",
    )

    demo = sub.add_parser("demo", help="run everything locally: D1 sandbox, Slack stand-in, bot")
    demo.add_argument("--no-input", action="store_true", help="run the scenario and exit")
    demo.add_argument("--data-dir", default=None, help="where the demo database goes")
    demo.add_argument("--seed", type=int, default=7, help="scenario seed")
    demo.add_argument("--speed", type=float, default=None, help="sandbox clock acceleration")

    sandbox = sub.add_parser("sandbox", help="run the D1 sandbox (a local D1)")
    add_sandbox_arguments(sandbox)

    quarantine = sub.add_parser(
        "quarantine", help="operations D1 sent that could not be accepted, and why"
    )
    what = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = what.add_parser("list", help="the newest first: when, which, the field at fault")
    listing.add_argument("--limit", type=int, default=50)
    show = what.add_parser("show", help="one quarantined operation as received (PANs masked)")
    show.add_argument("id", type=int)

    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)")
    sub.add_parser("check", help="validate the settings and print a report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from bot.main import TLSOptions, serve

        if args.require_client_cert and not args.ssl_ca_certs:
            print("--require-client-cert needs --ssl-ca-certs", file=sys.stderr)
            return 2
        if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
            print("--ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
            return 2
        tls = TLSOptions(
            certfile=args.ssl_certfile,
            keyfile=args.ssl_keyfile,
            ca_certs=args.ssl_ca_certs,
            require_client_cert=args.require_client_cert,
        )
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

        return migrate()
    if args.command == "check":
        from bot.main import check

        return check()
    return 2


if __name__ == "__main__":
    sys.exit(main())
