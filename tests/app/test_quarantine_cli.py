"""`d1bot quarantine list|show` as an operator runs it, after D1 sent operations the intake
refused: what was refused, where, and the operation as received (PANs masked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from d1.notifications import parse_body
from storage.repositories.intake import QuarantinedOperation, record_operations

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "D1", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "quarantine", *args],
        cwd=tmp_path,  # no .env here
        env={**env, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_and_show_what_intake_refused(tmp_path: Path, engine: Engine) -> None:
    empty = _cli(tmp_path, str(engine.url), "list")
    assert empty.returncode == 0 and "The quarantine is empty." in empty.stdout
    body = {
        "operations": [
            {"operationId": "op-ok", "operation": "PRODUCE", "status": "PENDING", "cardId": "c1"},
            {
                "operationId": "op-bad",
                "operation": "PRODUCE",
                "status": "PENDING",
                "cardId": "c2",
                "startTime": "123",
                "error": "card 4111 1111 1111 1111",
            },
        ]
    }
    parsed = parse_body(json.dumps(body).encode())
    record_operations(
        engine,
        parsed.operations,
        received_at=datetime.now(timezone.utc),
        workspace_id="T1",
        exceptions_channel=None,
        quarantined=[QuarantinedOperation(**vars(r)) for r in parsed.rejected],
    )
    listed = _cli(tmp_path, str(engine.url), "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert "op-bad" in line and "FIELD_INVALID_FORMAT at operations[1].startTime" in line
    quarantine_id = line.split()[0].lstrip("#")
    shown = _cli(tmp_path, str(engine.url), "show", quarantine_id)
    assert shown.returncode == 0, shown.stderr
    assert '"startTime": "123"' in shown.stdout and "4111 1111 1111 1111" not in shown.stdout
    assert "1111" in shown.stdout  # masked to the last four
    missing = _cli(tmp_path, str(engine.url), "show", "999999")
    assert missing.returncode == 1 and "No quarantined operation 999999." in missing.stderr
