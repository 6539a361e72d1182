"""The container and CI install what the suite ran against: every dependency pinned in
requirements.lock, used by the Dockerfile and .ci/run; the image's health check is the probe
tests/app/test_serve_tls.py and test_ops.py run, as a non-root user."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_every_dependency_is_locked_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = _locked()
    for spec in map(Requirement, wanted):
        name = re.sub(r"[-_.]+", "-", spec.name).lower()
        assert name in pins, f"{spec.name} is not in requirements.lock"
        assert spec.specifier.contains(pins[name]), f"{name}=={pins[name]} is not {spec}"


def test_the_image_and_ci_install_the_locked_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --constraint requirements.lock ." in dockerfile
    assert "COPY pyproject.toml README.md requirements.lock ./" in dockerfile
    assert "pip install --quiet -c requirements.lock -e '.[test]'" in (ROOT / ".ci/run").read_text()


def test_the_image_runs_unprivileged_and_probes_readiness_with_the_probe() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime_stage = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER d1bot$", runtime_stage, re.MULTILINE)
    assert 'CMD ["python", "-m", "bot.ops.probe", "/readyz"]' in runtime_stage
