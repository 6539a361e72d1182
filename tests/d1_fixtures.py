"""Test helpers: a running D1 sandbox on loopback and a `D1Client` configured for it.

    from tests.d1_fixtures import running_sandbox, make_client

    async with running_sandbox(callback_url=url) as (sb, base_url):
        client = make_client(base_url, sb)
        try:
            status = await client.production_status("card-1")
        finally:
            await client.aclose()

`running_sandbox(**overrides)` takes any `SandboxConfig` field; without `public_key_pem` it
uses the session's test key pair (`TEST_KEYS`). `make_client(base_url, keys_or_sandbox, **kw)`
passes `kw` to `D1Client` (e.g. `max_retries`, `clock`); retries back off in milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from d1.client import D1Client
from d1.sandbox import Sandbox, SandboxConfig, generate_es256_keypair
from tests.servers import serve_asgi


@dataclass(frozen=True)
class SandboxKeys:
    """The issuer's side of the sandbox's trust: who we are and the key we sign with."""

    issuer_id: str
    key_id: str
    private_key_pem: str
    public_key_pem: str


def _test_keys() -> SandboxKeys:
    private_pem, public_pem = generate_es256_keypair()
    return SandboxKeys("issuer-001", "key-1", private_pem, public_pem)


TEST_KEYS = _test_keys()


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A SandboxConfig trusting TEST_KEYS, with `overrides` applied."""
    options: dict[str, Any] = {
        "issuer_id": TEST_KEYS.issuer_id,
        "key_id": TEST_KEYS.key_id,
        "public_key_pem": TEST_KEYS.public_key_pem,
        "delivery_backoff_seconds": 0.01,
        "delivery_backoff_max_seconds": 0.1,
    }
    options.update(overrides)
    return SandboxConfig(**options)


def keys_of(sandbox: Sandbox) -> SandboxKeys:
    """The key pair a sandbox trusts (TEST_KEYS, or the pair it generated itself)."""
    config = sandbox.config
    if sandbox.issuer_private_key_pem is not None:
        private_pem = sandbox.issuer_private_key_pem
    elif config.public_key_pem == TEST_KEYS.public_key_pem:
        private_pem = TEST_KEYS.private_key_pem
    else:
        raise ValueError("this sandbox trusts a key the fixtures do not hold: pass SandboxKeys")
    return SandboxKeys(config.issuer_id, config.key_id, private_pem, config.public_key_pem or "")


@contextlib.asynccontextmanager
async def running_sandbox(**config_overrides: Any) -> AsyncIterator[tuple[Sandbox, str]]:
    """A sandbox served on 127.0.0.1 (port 0); yields (sandbox, base URL without slash)."""
    sandbox = Sandbox(sandbox_config(**config_overrides))
    async with serve_asgi(sandbox.app) as base_url:
        yield sandbox, base_url


def make_client(
    base_url: str, sandbox_keys: SandboxKeys | Sandbox = TEST_KEYS, **kw: Any
) -> D1Client:
    """A D1Client pointed at a sandbox served at `base_url`."""
    keys = keys_of(sandbox_keys) if isinstance(sandbox_keys, Sandbox) else sandbox_keys
    options: dict[str, Any] = {
        "api_url": f"{base_url}/banking/v1",
        "auth_url": f"{base_url}/authz/v1",
        "issuer_id": keys.issuer_id,
        "key_id": keys.key_id,
        "private_key_pem": keys.private_key_pem,
        "timeout": 5.0,
        "backoff_base": 0.005,
        "backoff_max": 0.05,
    }
    options.update(kw)
    return D1Client(**options)


class CallbackReceiver:
    """A small issuer-side callback for sandbox tests: `/oauth2/token` with Basic client
    credentials, and the notification endpoint, recording every operation it accepts."""

    def __init__(
        self,
        *,
        client_id: str | None = "d1",
        client_secret: str | None = "s3cret",
        static_token: str | None = None,
        fail_first: int = 0,
    ) -> None:
        self.client_id, self.client_secret, self.static_token = (
            client_id,
            client_secret,
            static_token,
        )
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []  # bodies of accepted notification requests
        self.refused: list[int] = []  # statuses of refused notification requests
        self.token_grants = 0
        self._issued: set[str] = set()

    @property
    def operations(self) -> list[dict[str, Any]]:
        return [op for body in self.requests for op in body.get("operations", [body])]

    def path_for(self, issuer_id: str = "issuer-001") -> str:
        return f"/notifications/d1/v2/issuers/{issuer_id}/cards"

    def app(self) -> Any:
        import base64
        import secrets

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def token(request: Request) -> Response:
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            body = (await request.body()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if "grant_type=client_credentials" not in body:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            value = secrets.token_urlsafe(16)
            self._issued.add(value)
            self.token_grants += 1
            return JSONResponse({"access_token": value, "token_type": "Bearer", "expires_in": 900})

        async def notify(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            bearer = auth.removeprefix("Bearer ")
            allowed = (self.static_token and bearer == self.static_token) or bearer in self._issued
            if not auth.startswith("Bearer ") or not allowed:
                self.refused.append(401)
                return Response(status_code=401)
            if self.fail_first > 0:
                self.fail_first -= 1
                self.refused.append(503)
                return Response(status_code=503)
            self.requests.append(await request.json())
            return Response(status_code=204)

        return Starlette(
            routes=[
                Route("/oauth2/token", token, methods=["POST"]),
                Route("/notifications/d1/v2/issuers/{issuer_id}/cards", notify, methods=["POST"]),
            ]
        )


def sandbox_env(base_url: str, keys: SandboxKeys = TEST_KEYS) -> dict[str, str]:
    """Settings overrides (lower-case field names) for a bot talking to the sandbox."""
    return {
        "d1_api_url": f"{base_url}/banking/v1",
        "d1_auth_url": f"{base_url}/authz/v1",
        "d1_issuer_id": keys.issuer_id,
        "d1_key_id": keys.key_id,
        "d1_private_key": keys.private_key_pem,
    }


__all__ = [
    "TEST_KEYS",
    "CallbackReceiver",
    "SandboxKeys",
    "keys_of",
    "make_client",
    "running_sandbox",
    "sandbox_config",
    "sandbox_env",
]
