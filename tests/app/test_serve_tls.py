"""`d1bot serve` terminating mTLS itself: D1's callbacks need a client certificate signed by
the configured CA; a client without one never reaches the app."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.pki import write_pki
from tests.servers import free_port, wait_for

pytestmark = pytest.mark.slow

PATH = "/notifications/d1/v2/issuers/issuer-001/cards"


def _start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with (cwd / "serve.log").open("wb") as log:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


async def test_serve_requires_a_client_certificate(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd1bot.db'}",
        "D1_ISSUER_ID": "issuer-001",
        "D1_NOTIFY_TOKEN": "static-notify-token",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).parent / "d1bot"), "serve", "--port", str(port),
        "--ssl-certfile", str(pki["server_cert"]), "--ssl-keyfile", str(pki["server_key"]),
        "--ssl-ca-certs", str(pki["ca"]), "--require-client-cert",
    ]  # fmt: skip
    proc = _start(command, env, tmp_path)
    try:
        url = f"https://127.0.0.1:{port}{PATH}"
        trusted = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
        body = {"operationId": "op-1", "operation": "PRODUCE", "status": "SUCCESSFUL",
                "cardId": "card-1", "startTime": "2026-05-01T08:00:00Z",
                "details": {"status": "CARD_PROD_READY"}}  # fmt: skip
        headers = {"Authorization": "Bearer static-notify-token"}

        async with httpx.AsyncClient(verify=with_cert, timeout=5) as client:

            async def answered() -> httpx.Response | None:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return await client.post(url, json=body, headers=headers)
                except httpx.TransportError:
                    return None

            response = await wait_for(answered, timeout=30, message="d1bot serve over TLS")
            assert response.status_code == 204

        async with httpx.AsyncClient(verify=trusted, timeout=5) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.post(url, json=body, headers=headers)
    finally:
        _stop(proc)


def test_require_client_cert_needs_a_ca() -> None:
    from bot.cli import main

    assert main(["serve", "--ssl-certfile", "a", "--ssl-keyfile", "b",
                 "--require-client-cert"]) == 2  # fmt: skip


def _probe(path: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The container's HEALTHCHECK command, as the Dockerfile runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.probe", path],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_tls_from_the_environment_and_the_probe_that_honours_it(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd1bot.db'}",
        "LOG_LEVEL": "WARNING",
        "SSL_CERTFILE": str(pki["server_cert"]),
        "SSL_KEYFILE": str(pki["server_key"]),
        "SSL_CA_CERTS": str(pki["ca"]),
        "SSL_REQUIRE_CLIENT_CERT": "true",
    }
    proc = _start([str(Path(sys.executable).parent / "d1bot"), "serve"], env, tmp_path)
    try:
        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
        async with httpx.AsyncClient(verify=with_cert, timeout=5) as client:

            async def answered() -> httpx.Response | None:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return await client.get(f"https://127.0.0.1:{port}/healthz")
                except httpx.TransportError:
                    return None

            live = await wait_for(answered, timeout=30, message="serve over TLS from SSL_*")
        assert live.status_code == 200
        alive = _probe("/healthz", env)
        assert alive.returncode == 0, alive.stderr
        unready = _probe("/readyz", env)  # no Slack token: alive but not ready
        assert unready.returncode == 1
        assert unready.stderr.startswith("503 ") and '"check":"slack"' in unready.stderr
        plain = _probe("/healthz", {k: v for k, v in env.items() if not k.startswith("SSL_")})
        assert plain.returncode == 1  # plain HTTP to a TLS server: no answer
    finally:
        _stop(proc)
