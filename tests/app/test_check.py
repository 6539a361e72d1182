"""`d1bot check` as an operator runs it: a readable report, exit 1 on errors, 0 otherwise,
never a traceback and never a secret value echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "D1", "LOG_", "DATABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"],
        cwd=tmp_path,  # no .env here
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _complete_env(tmp_path: Path) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file = tmp_path / "d1-signing.pem"
    key_file.write_bytes(key)
    cert, client_key = tmp_path / "client.crt", tmp_path / "client.key"
    cert.write_text("cert")
    client_key.write_text("key")
    return {
        "SLACK_BOT_TOKEN": "xoxb-1-2-checktoken",
        "SLACK_SIGNING_SECRET": "signing-secret-value",
        "D1_ISSUER_ID": "ISSUER1",
        "D1_KEY_ID": "key-1",
        "D1_PRIVATE_KEY_FILE": str(key_file),
        "D1_CLIENT_CERT": str(cert),
        "D1_CLIENT_KEY": str(client_key),
        "D1_NOTIFY_CLIENT_ID": "d1",
        "D1_NOTIFY_CLIENT_SECRET": "notify-secret-value",
        "D1BOT_EXCEPTIONS_CHANNEL": "C0EXCEPT",
    }


@pytest.mark.slow
def test_check_reports_what_is_missing_and_fails(tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "ERROR: SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified" in lines
    assert "ERROR: SLACK_BOT_TOKEN is not set: nothing can be posted to Slack" in lines
    assert any(line.startswith("ERROR: D1_PRIVATE_KEY") for line in lines)
    assert all(line.startswith(("ERROR: ", "WARNING: ")) for line in lines)
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_passes_a_complete_configuration(tmp_path: Path) -> None:
    result = _check(tmp_path, **_complete_env(tmp_path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "Settings look complete."


@pytest.mark.slow
def test_check_passes_with_warnings_only(tmp_path: Path) -> None:
    env = _complete_env(tmp_path)
    del env["D1_CLIENT_CERT"], env["D1_CLIENT_KEY"], env["D1BOT_EXCEPTIONS_CHANNEL"]
    result = _check(tmp_path, **env)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "WARNING: D1_CLIENT_CERT is not set: D1 requires mTLS in production",
        "WARNING: D1BOT_EXCEPTIONS_CHANNEL is not set: exceptions reach subscribed channels only",
    ]


@pytest.mark.slow
def test_check_explains_invalid_values_without_echoing_them(tmp_path: Path) -> None:
    env = _complete_env(tmp_path)
    env.update(D1BOT_DIGEST_TIME="25:61", PORT="not-a-port", D1_KEY_ID="key-1")
    result = _check(tmp_path, **env)
    assert result.returncode == 1
    assert "ERROR: D1BOT_DIGEST_TIME is invalid: must be HH:MM (24-hour clock)" in result.stdout
    assert "ERROR: PORT is invalid:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    for secret in ("checktoken", "signing-secret-value", "notify-secret-value", "not-a-port"):
        assert secret not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_flags_a_missing_key_file_and_half_mtls(tmp_path: Path) -> None:
    env = _complete_env(tmp_path)
    env["D1_PRIVATE_KEY_FILE"] = str(tmp_path / "nope.pem")
    del env["D1_CLIENT_KEY"]
    result = _check(tmp_path, **env)
    assert result.returncode == 1
    assert f"ERROR: D1_PRIVATE_KEY_FILE {tmp_path / 'nope.pem'} does not exist" in result.stdout
    assert (
        "ERROR: D1_CLIENT_CERT and D1_CLIENT_KEY go together: set both for mTLS, or neither"
        in result.stdout
    )


def test_configuration_reference_documents_every_setting() -> None:
    from bot.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    reference = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    missing = [
        name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in reference
    ]
    assert not missing, f"README.md's configuration reference lacks {missing}"
