"""D1's published documents, shipped with the package: find and read them (pure).

The files are listed in `SPEC_FILES` and described in this folder's README.md. They are located
with `importlib.resources`, so they are found in a checkout, an editable install or a wheel.
"""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

SPEC_FILES: tuple[str, ...] = (
    "D1-FACTS.md",
    "card-data.schema.json",
    "card-order-tracking.txt",
    "card-order.txt",
    "order-card.openapi.json",
    "production-status.openapi.json",
    "tracking-hub.md",
)


def _resource(name: str) -> Traversable:
    if name not in SPEC_FILES:
        raise KeyError(f"not a D1 spec file: {name!r} (known: {', '.join(SPEC_FILES)})")
    return files(__name__).joinpath(name)


def spec_path(name: str) -> Path:
    """The file system path of spec file `name`; ValueError if the package is not on disk."""
    resource = _resource(name)
    if not isinstance(resource, Path):
        raise ValueError(f"{name!r} is not a file on disk (read it with spec_text)")
    return resource


def spec_text(name: str) -> str:
    """The text (UTF-8) of spec file `name`."""
    return _resource(name).read_text(encoding="utf-8")


def spec_json(name: str) -> Any:
    """Spec file `name` (a `.json` schema or OpenAPI document), parsed."""
    return json.loads(spec_text(name))
