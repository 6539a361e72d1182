"""`python -m bot.ops.probe [PATH]`: the container's health check. GET `PATH` (default
`/readyz`) on this server over loopback; exit 0 on a 200, 1 otherwise.

It honours the same settings as `d1bot serve`: `PORT`, and TLS when `SSL_CERTFILE` is set
(HTTPS; the server's own certificate is not checked against a host name, since the probe talks
to 127.0.0.1). With `SSL_REQUIRE_CLIENT_CERT`, it presents `SSL_CERTFILE`/`SSL_KEYFILE` as its
client certificate, which the server then accepts when a CA of `SSL_CA_CERTS` signed it.
Standard library only, and no settings validation: a probe must be cheap and never crash.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def probe_url_and_context(path: str, env: dict[str, str]) -> tuple[str, ssl.SSLContext | None]:
    """Where to probe, and the TLS context for it (None for plain HTTP)."""
    port = env.get("PORT", "3000")
    certfile = env.get("SSL_CERTFILE")
    if not certfile:
        return f"http://127.0.0.1:{port}{path}", None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # loopback: liveness, not the server's identity
    if _flag(env.get("SSL_REQUIRE_CLIENT_CERT")):
        context.load_cert_chain(certfile, env.get("SSL_KEYFILE") or None)
    return f"https://127.0.0.1:{port}{path}", context


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = {k.upper(): v for k, v in os.environ.items()}
    try:
        url, context = probe_url_and_context(args[0] if args else "/readyz", env)
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as answer:
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as refused:
        print(f"{refused.code} {refused.read(2000).decode(errors='replace')}", file=sys.stderr)
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"no answer: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
