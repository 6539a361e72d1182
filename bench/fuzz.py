"""The long schema-fuzzer run: Schemathesis against a real `d1bot serve`, from its own
`/openapi.json`, positive and negative examples for every operation, every check.

    .venv/bin/python bench/fuzz.py [--examples 2000] [--seed 7]

The suite runs the same fuzzer briefly (tests/intake/test_openapi.py); this one runs long and
reports: requests sent, failures by check, status codes, answer latency p50/p99 (client side,
over loopback) and the server's RSS before and after. Prints the machine; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402

ISSUER = "fuzz-issuer"
TOKEN = "fuzz-static-token"
CLIENT_ID, CLIENT_SECRET = "fuzz-client", "fuzz-client-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serve(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{workdir / 'd1bot.db'}",
        "D1_ISSUER_ID": ISSUER,
        "D1_NOTIFY_TOKEN": TOKEN,
        "D1_NOTIFY_CLIENT_ID": CLIENT_ID,
        "D1_NOTIFY_CLIENT_SECRET": CLIENT_SECRET,
        "D1BOT_SCHEDULER_ENABLED": "false",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "d1bot"), "serve"],
        env=env,
        stdout=(workdir / "serve.log").open("ab"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("d1bot serve did not start (see serve.log)")


class Tally:
    """What the run saw: latencies, status codes, failures by operation, mode and check."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}  # the first answer of each kind of failure

    def fail(self, key: str, case: Any, response: Any) -> None:
        self.failures[key] += 1
        body = json.dumps(case.body, default=repr)[:300]
        self.examples.setdefault(key, f"{response.status_code} {response.text[:300]} <- {body}")


def _fuzz_operation(
    operation: Any, mode: Any, *, url: str, auth: str, examples: int, session: Any, tally: Tally
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.failures import FailureGroup

    headers = {"Authorization": auth}
    where = f"{operation.label} {mode.value}"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        started = time.perf_counter()
        response = case.call(base_url=url, session=session, headers=headers)
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[str(response.status_code)] += 1
        try:
            case.validate_response(response, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.fail(f"{where}: {failure.title}", case, response)
        except AssertionError as exc:
            tally.fail(f"{where}: {str(exc).splitlines()[0]}", case, response)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (a GET without parameters)
        pass


def fuzz(url: str, examples: int, seed: int) -> dict[str, Any]:
    import base64

    import requests
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=SchemathesisConfig.from_dict({"seed": seed})
    )
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    tally = Tally()
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        auth = basic if operation.path == "/oauth2/token" else f"Bearer {TOKEN}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(
                operation, mode, url=url, auth=auth, examples=examples, session=session,
                tally=tally,
            )  # fmt: skip
    latencies = sorted(tally.latencies)
    return {
        "requests": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "statuses": dict(sorted(tally.statuses.items())),
        "failures": dict(tally.failures),
        "failure_examples": tally.examples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = _serve(Path(tmp))
        try:
            before = _rss_mb(server.pid)
            started = time.monotonic()
            figures = fuzz(url, args.examples, args.seed)
            figures["seconds"] = round(time.monotonic() - started, 1)
            figures["rss_before_mb"] = round(before, 1)
            figures["rss_after_mb"] = round(_rss_mb(server.pid), 1)
            figures["server_alive"] = server.poll() is None
        finally:
            server.terminate()
            server.wait(30)
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
