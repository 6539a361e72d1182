"""The OpenAPI document of the D1-facing endpoints: valid, served, kept in `docs/`, and held to
by the real server under a schema-driven fuzzer (Schemathesis, seeded and bounded: positive and
negative examples, every check). Valid against the document means accepted; refused means
invalid against it; never a 5xx; every answer as the document says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from bot.dev.localslack import LocalSlack
from bot.intake.openapi import openapi_document
from bot.main import wire_clients
from bot.server import create_app
from storage.db import make_engine
from storage.migrate import upgrade
from tests.d1_fixtures import TEST_KEYS
from tests.intake_support import ISSUER, PATH, STATIC_TOKEN, basic, make_runtime
from tests.reliability.threaded import served_in_thread

DOCS_COPY = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
FUZZ_CONFIG = {
    "seed": int(os.environ.get("D1BOT_FUZZ_SEED", "20261207")),
    "suppress-health-check": ["all"],
    "generation": {
        "mode": "all",
        "max-examples": int(os.environ.get("D1BOT_FUZZ_EXAMPLES", "150")),
        "no-shrink": True,
    },
    "checks": {"enabled": True},
}


def test_the_document_is_valid_openapi_and_docs_holds_it() -> None:
    validate(openapi_document(ISSUER))  # type: ignore[arg-type]
    assert json.loads(DOCS_COPY.read_text()) == openapi_document(), (
        "docs/openapi.json is stale: python -m bot.intake.openapi > docs/openapi.json"
    )


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real server (uvicorn over loopback, a SQLite file) for every generated example."""
    engine: Engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'd1bot.db'}")
    upgrade(engine)

    def ready_app(slack: LocalSlack) -> Starlette:
        """A server whose readiness checks pass (a 503 from /readyz is not what is fuzzed)."""
        runtime = make_runtime(
            engine,
            slack_bot_token="xoxb-test",
            slack_api_url=slack.base_url,
            d1_key_id=TEST_KEYS.key_id,
            d1_private_key=TEST_KEYS.private_key_pem,
        )
        wire_clients(runtime)
        return create_app(runtime)

    with served_in_thread(ready_app) as (url, _slack):
        yield url
    engine.dispose()


def test_the_server_serves_the_document_for_its_issuer(server_url: str) -> None:
    served = httpx.get(f"{server_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == openapi_document(ISSUER)
    assert served.json()["paths"][PATH.replace(ISSUER, "{issuerId}")]


@pytest.fixture(scope="module")
def api_schema(server_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(
        f"{server_url}/openapi.json", config=SchemathesisConfig.from_dict(FUZZ_CONFIG)
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_answer_conforms_and_nothing_fails(case: schemathesis.Case, server_url: str) -> None:
    credentials = basic() if case.path == "/oauth2/token" else f"Bearer {STATIC_TOKEN}"
    case.call_and_validate(base_url=server_url, headers={"Authorization": credentials})
