"""`d1bot migrate` as an operator runs it: what it applied, one line when it fails (the
traceback only with --verbose), no library INFO lines in normal output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.migrate import head_revision

pytestmark = pytest.mark.slow


def _migrate(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "migrate", *args],
        cwd=tmp_path,
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_says_what_it_applied_then_that_nothing_was_left(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd1bot.db'}"
    first = _migrate(tmp_path, url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "applied 0001: initial tables"
    assert lines[-2].startswith(f"applied {head_revision()}: ")  # the newest, named
    assert lines[-1] == f"The database is now at {head_revision()}, the newest schema."
    assert all(line.startswith("applied ") for line in lines[:-1])
    assert first.stderr == ""  # no Alembic INFO lines
    again = _migrate(tmp_path, url)
    assert again.returncode == 0
    assert again.stdout == f"The database is already at {head_revision()}, the newest schema.\n"


def test_an_unreachable_database_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    failed = _migrate(tmp_path, "postgresql://d1bot:db-password@127.0.0.1:1/d1bot")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        "d1bot migrate failed: the database cannot be reached (OperationalError): check "
        "DATABASE_URL's host, port, user, password and database name, and that the server runs "
        "(--verbose for the details)"
    ]
    assert "db-password" not in failed.stderr


def test_verbose_shows_the_steps_and_the_traceback(tmp_path: Path) -> None:
    steps = _migrate(tmp_path, f"sqlite:///{tmp_path / 'd1bot.db'}", "--verbose")
    assert steps.returncode == 0
    assert "Running upgrade  -> 0001, initial tables" in steps.stderr
    failed = _migrate(tmp_path, "postgresql://d1bot:db-password@127.0.0.1:1/d1bot", "--verbose")
    assert failed.returncode == 1
    assert "Traceback" in failed.stderr
    assert failed.stderr.rstrip().splitlines()[-1].startswith("d1bot migrate failed: ")
    assert "db-password" not in failed.stderr  # the log's redaction still applies


def test_an_invalid_database_url_is_named(tmp_path: Path) -> None:
    failed = _migrate(tmp_path, "mysql://db/d1bot")
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == [
        "d1bot migrate: ERROR: DATABASE_URL is invalid: must be sqlite:///PATH or "
        "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    ]
