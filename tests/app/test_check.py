"""`d1bot check` as an operator runs it: every problem at once, each naming the variable and
the fix, exit 1 on an error and 0 otherwise, never a traceback and never a secret value echoed;
`--online` asks the Slack stand-in and the D1 sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.dev.localslack import LocalSlack
from bot.ops import checks
from storage.db import make_engine
from storage.migrate import upgrade
from tests.d1_fixtures import TEST_KEYS, running_sandbox
from tests.pki import write_pki

SETTING_PREFIXES = ("SLACK_", "D1", "LOG_", "DATABASE_", "SQLITE_", "PORT", "HOST", "MIGRATE_")


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}


def _check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", *args],
        cwd=tmp_path,  # no .env here
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _complete_env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "d1-signing.pem"
    key_file.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    pki = write_pki(tmp_path)
    database = tmp_path / "d1bot.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    engine.dispose()
    return {
        "DATABASE_URL": f"sqlite:///{database}",
        "SLACK_BOT_TOKEN": "xoxb-1-2-checktoken",
        "SLACK_SIGNING_SECRET": "signing-secret-value",
        "D1_ISSUER_ID": "ISSUER1",
        "D1_KEY_ID": "key-1",
        "D1_PRIVATE_KEY_FILE": str(key_file),
        "D1_CLIENT_CERT": str(pki["client_cert"]),
        "D1_CLIENT_KEY": str(pki["client_key"]),
        "D1_NOTIFY_CLIENT_ID": "d1",
        "D1_NOTIFY_CLIENT_SECRET": "notify-secret-value",
        "D1BOT_EXCEPTIONS_CHANNEL": "C0EXCEPT",
    }


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The report lines for the complete configuration changed by `env` (None: unset), as
    `d1bot check` computes them, in this process (no .env in the working folder)."""
    complete = _complete_env(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in os.environ:
        if name.upper().startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)

    def run(**env: str | None) -> list[str]:
        for name, value in {**complete, **env}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        settings, problems = checks.load_checked()
        return [str(p) for p in problems + checks.database_problems(settings)]

    return run


# --------------------------------------------------------------------------- the rules


def test_a_complete_configuration_has_no_problem(report) -> None:  # type: ignore[no-untyped-def]
    assert report() == []


INVALID = [
    ("LOG_LEVEL", "LOUD", "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("LOG_FORMAT", "xml", "Input should be 'text' or 'json'"),
    ("SQLITE_SYNCHRONOUS", "SOMETIMES", "Input should be 'OFF', 'NORMAL', 'FULL' or 'EXTRA'"),
    ("PORT", "not-a-port", "Input should be a valid integer"),
    ("PORT", "70000", "Input should be less than or equal to 65535"),
    ("MIGRATE_ON_START", "perhaps", "Input should be a valid boolean"),
    ("DATABASE_URL", "mysql://db/d1bot", "must be sqlite:///PATH or postgresql://"),
    ("DATABASE_URL", "not a url", "must be sqlite:///PATH or postgresql://"),
    ("SLACK_BOT_TOKEN", "xoxp-user-token", "must be the bot token, which starts with xoxb-"),
    ("SLACK_APP_TOKEN", "xoxb-not-app", "must be an app-level token, which starts with xapp-"),
    ("SLACK_API_URL", "localhost:9/api", "must be an http(s) URL such as https://slack.com/api/"),
    ("D1_API_URL", "ftp://d1.example/banking", "must be an http(s) URL"),
    ("D1_AUTH_URL", "d1.example/authz", "must be an http(s) URL such as https://api.d1"),
    ("D1_TIMEOUT_SECONDS", "0", "Input should be greater than 0"),
    ("D1_MAX_RETRIES", "-1", "Input should be greater than or equal to 0"),
    ("D1_NOTIFY_TOKEN_TTL_SECONDS", "0", "Input should be greater than or equal to 1"),
    ("D1_NOTIFY_MAX_BODY_BYTES", "10", "Input should be greater than or equal to 1024"),
    ("D1BOT_EXCEPTIONS_CHANNEL", "#card-ops", "must be a channel id such as C0123ABCD"),
    ("D1BOT_DIGEST_CHANNEL", "c0123abcd", "must be a channel id such as C0123ABCD"),
    ("D1BOT_ALLOWED_CHANNELS", "C0123,card-ops", "not a channel name"),
    ("D1BOT_ALLOWED_USERGROUPS", "S0123,admins", "must be user group ids such as S0123ABCD"),
    ("D1BOT_WORKSPACE_ID", "acme", "must be a Slack team id such as T0123ABCD"),
    ("D1BOT_EXTRA_EXCEPTION_STATUSES", "pending", "must be D1 statuses such as PENDING"),
    ("D1BOT_DIGEST_TIME", "25:61", "must be HH:MM (24-hour clock)"),
    ("D1BOT_TIMEZONE", "Mars/Olympus", "must be an IANA time zone such as Europe/Paris"),
    ("D1BOT_CHANNEL_RATE_PER_SECOND", "-1", "Input should be greater than 0"),
    ("D1BOT_WORKSPACE_RATE_PER_MINUTE", "0", "Input should be greater than or equal to 1"),
    ("D1BOT_RECONCILE_RATE_PER_SECOND", "-0.5", "Input should be greater than 0"),
    ("D1BOT_OUTBOX_MAX_ATTEMPTS", "0", "Input should be greater than or equal to 1"),
    ("D1BOT_OUTBOX_LEASE_SECONDS", "-8", "Input should be greater than 0"),
    ("D1BOT_STUCK_ONHOLD_HOURS", "-1", "Input should be greater than 0"),
    ("D1BOT_RETENTION_DAYS", "0", "Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("name", "value", "fix"), INVALID, ids=[f"{n}={v}" for n, v, _ in INVALID])
def test_an_invalid_value_is_named_with_its_fix(report, name: str, value: str, fix: str) -> None:  # type: ignore[no-untyped-def]
    lines = report(**{name: value})
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ERROR: {name} is invalid: ")
    assert fix in lines[0]
    said = lines[0].removeprefix(f"ERROR: {name} is invalid: ")
    assert value not in said.replace(fix, "")  # the value is never echoed


def test_names_are_case_insensitive_where_slack_and_logs_are(report) -> None:  # type: ignore[no-untyped-def]
    assert report(LOG_LEVEL="debug", SQLITE_SYNCHRONOUS="normal", LOG_FORMAT="JSON") == []


def test_every_problem_is_reported_at_once(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(
        LOG_LEVEL="LOUD",
        SQLITE_SYNCHRONOUS="SOMETIMES",
        D1BOT_CHANNEL_RATE_PER_SECOND="-1",
        D1BOT_EXCEPTIONS_CHANNEL="#alerts",
        SLACK_BOT_TOKEN="xoxp-wrong",
        SLACK_SIGNING_SECRET=None,
        D1_KEY_ID=None,
    )
    named = {line.split(" ")[1] for line in lines}
    assert named == {
        "LOG_LEVEL",
        "SQLITE_SYNCHRONOUS",
        "D1BOT_CHANNEL_RATE_PER_SECOND",
        "D1BOT_EXCEPTIONS_CHANNEL",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "D1_KEY_ID",
    }
    # an invalid value is reported as invalid, not also as missing
    assert not any("SLACK_BOT_TOKEN is not set" in line for line in lines)
    assert not any("D1BOT_EXCEPTIONS_CHANNEL is not set" in line for line in lines)


def test_missing_slack_settings_are_errors(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(SLACK_BOT_TOKEN=None, SLACK_SIGNING_SECRET=None)
    assert lines == [
        "ERROR: SLACK_SIGNING_SECRET is not set: Slack requests cannot be verified "
        "(App Credentials > Signing Secret)",
        "ERROR: SLACK_BOT_TOKEN is not set: nothing can be posted to Slack "
        "(OAuth & Permissions > Bot User OAuth Token)",
    ]


def test_socket_mode_needs_no_signing_secret(report) -> None:  # type: ignore[no-untyped-def]
    assert report(SLACK_SIGNING_SECRET=None, SLACK_APP_TOKEN="xapp-1-socket") == []


def test_missing_optional_integrations_are_warnings(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(
        D1_ISSUER_ID=None,
        D1_KEY_ID=None,
        D1_PRIVATE_KEY_FILE=None,
        D1_CLIENT_CERT=None,
        D1_CLIENT_KEY=None,
        D1_NOTIFY_CLIENT_ID=None,
        D1_NOTIFY_CLIENT_SECRET=None,
        D1BOT_EXCEPTIONS_CHANNEL=None,
    )
    assert all(line.startswith("WARNING: ") for line in lines), lines
    assert [line.split(" ")[1] for line in lines] == [
        "D1_ISSUER_ID",
        "D1_KEY_ID",
        "D1_PRIVATE_KEY",
        "D1_NOTIFY_CLIENT_ID/D1_NOTIFY_CLIENT_SECRET",
        "D1_CLIENT_CERT",
        "D1BOT_EXCEPTIONS_CHANNEL",
    ]
    assert "openssl ecparam -name prime256v1" in lines[2]  # how to make the key


def test_pairs_go_together(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(D1_CLIENT_KEY=None, D1_NOTIFY_CLIENT_SECRET=None)
    assert (
        "ERROR: D1_CLIENT_CERT and D1_CLIENT_KEY go together: set both for mTLS, or neither"
        in lines
    )
    assert (
        "ERROR: D1_NOTIFY_CLIENT_ID and D1_NOTIFY_CLIENT_SECRET go together: set both, or neither"
        in lines
    )


def test_a_static_notify_token_is_enough(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(D1_NOTIFY_CLIENT_ID=None, D1_NOTIFY_CLIENT_SECRET=None, D1_NOTIFY_TOKEN="t")
    assert lines == []


def test_key_files_must_exist_and_parse(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(_pem(ec.generate_private_key(ec.SECP384R1())))
    missing = tmp_path / "nope.pem"

    def first(**env: str | None) -> str:
        (line,) = report(**env)
        return line

    assert first(D1_PRIVATE_KEY_FILE=str(missing)) == (
        f"ERROR: D1_PRIVATE_KEY_FILE is invalid: {missing} does not exist"
    )
    assert first(D1_PRIVATE_KEY_FILE=str(garbage)).startswith(
        "ERROR: D1_PRIVATE_KEY_FILE is invalid: not an unencrypted PEM private key: create one"
    )
    for wrong in (rsa_key, p384):
        assert first(D1_PRIVATE_KEY_FILE=str(wrong)).startswith(
            "ERROR: D1_PRIVATE_KEY_FILE is invalid: D1 needs an ES256 (P-256) key"
        )
    assert first(D1_PRIVATE_KEY_FILE=None, D1_PRIVATE_KEY="-----BEGIN nonsense").startswith(
        "ERROR: D1_PRIVATE_KEY is invalid: not an unencrypted PEM private key"
    )
    assert report(D1_PRIVATE_KEY_FILE=None, D1_PRIVATE_KEY=TEST_KEYS.private_key_pem) == []
    assert first(D1_CLIENT_CERT=str(garbage)) == (
        f"ERROR: D1_CLIENT_CERT is invalid: {garbage} does not hold a PEM certificate (unencrypted)"
    )
    assert first(D1_CLIENT_KEY=str(garbage)) == (
        f"ERROR: D1_CLIENT_KEY is invalid: {garbage} does not hold a PEM private key (unencrypted)"
    )
    assert first(D1_CLIENT_KEY=str(missing)) == (
        f"ERROR: D1_CLIENT_KEY is invalid: {missing} does not exist"
    )


def test_the_database_is_checked(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fresh = tmp_path / "fresh.db"
    assert report(DATABASE_URL=f"sqlite:///{fresh}") == [
        f"WARNING: DATABASE_URL: {fresh} does not exist yet; `d1bot migrate` (or `d1bot serve`) "
        "creates it"
    ]
    assert not fresh.exists()  # check creates nothing
    make_engine(f"sqlite:///{fresh}").dispose()
    import sqlite3

    sqlite3.connect(fresh).close()
    assert report(DATABASE_URL=f"sqlite:///{fresh}") == [
        "WARNING: DATABASE_URL's schema is not up to date: run `d1bot migrate` "
        "(or let `d1bot serve` do it at start)"
    ]
    nowhere = tmp_path / "no-such-folder" / "d1bot.db"
    assert report(DATABASE_URL=f"sqlite:///{nowhere}") == [
        f"ERROR: DATABASE_URL is invalid: the folder {nowhere.parent} does not exist"
    ]


def test_an_unreachable_database_is_an_error(report) -> None:  # type: ignore[no-untyped-def]
    lines = report(DATABASE_URL="postgresql://d1bot:db-password@127.0.0.1:1/d1bot")
    assert lines == [
        "ERROR: DATABASE_URL does not answer (OperationalError): check the host, port, "
        "credentials and that the database exists"
    ]


# --------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_check_reports_what_is_missing_and_fails(tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR: SLACK_SIGNING_SECRET is not set")
    assert lines[1].startswith("ERROR: SLACK_BOT_TOKEN is not set")
    assert all(line.startswith(("ERROR: ", "WARNING: ")) for line in lines)
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "d1bot.db").exists()


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
    env.update(
        D1BOT_DIGEST_TIME="25:61",
        PORT="not-a-port",
        SLACK_BOT_TOKEN="xoxp-user-secret-token",
        DATABASE_URL="mysql://user:db-secret-password@db/d1bot",
    )
    result = _check(tmp_path, **env)
    assert result.returncode == 1
    assert "ERROR: D1BOT_DIGEST_TIME is invalid: must be HH:MM (24-hour clock)" in result.stdout
    assert "ERROR: PORT is invalid:" in result.stdout
    assert "ERROR: SLACK_BOT_TOKEN is invalid:" in result.stdout
    assert "ERROR: DATABASE_URL is invalid:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    for secret in (
        "user-secret-token",
        "signing-secret-value",
        "notify-secret-value",
        "not-a-port",
        "db-secret-password",
    ):
        assert secret not in result.stdout + result.stderr


@pytest.mark.slow
async def test_check_online_asks_slack_and_d1(tmp_path: Path) -> None:
    env = _complete_env(tmp_path)
    env.update(D1_ISSUER_ID=TEST_KEYS.issuer_id, D1_KEY_ID=TEST_KEYS.key_id)
    del env["D1_CLIENT_CERT"], env["D1_CLIENT_KEY"]
    (tmp_path / "d1-signing.pem").write_text(TEST_KEYS.private_key_pem)

    async def check(**more: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "check", "--online",
            cwd=tmp_path, env={**_base_env(), **env, **more},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    async with LocalSlack(token_prefix="xoxb-good") as slack, running_sandbox() as (_sb, d1):
        urls = {
            "SLACK_API_URL": slack.base_url,
            "D1_API_URL": f"{d1}/banking/v1",
            "D1_AUTH_URL": f"{d1}/authz/v1",
        }
        good = await check(**urls, SLACK_BOT_TOKEN="xoxb-good-token")
        bad = await check(**urls, SLACK_BOT_TOKEN="xoxb-revoked-token", D1_KEY_ID="other-kid")
    assert good == (0, "Settings look complete.\n")
    code, out = bad
    assert code == 1
    assert (
        "ERROR: SLACK_BOT_TOKEN: Slack auth.test refused the token (invalid_auth)"
        in out.splitlines()
    )
    assert "ERROR: D1_AUTH_URL, D1_KEY_ID or the key: no token from" in out
    assert "revoked-token" not in out and "Traceback" not in out


def test_configuration_reference_documents_every_setting() -> None:
    from bot.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    reference = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    missing = [
        name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in reference
    ]
    assert not missing, f"README.md's configuration reference lacks {missing}"
