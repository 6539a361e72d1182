"""D1's notification callback, the pure part: parse a body into operations, each judged on its
own (naming the first bad field of each one refused). The credentials D1 presents are
`d1.callback_auth`.

No I/O here: `bot/intake/routes.py` reads the request and answers; this module decides.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from d1.carddata import contains_pan, mask_pans_in, redact_pans
from d1.models import OPERATION_ID_PATTERN, Operation, OperationsEnvelope

FIELD_INVALID_FORMAT = "FIELD_INVALID_FORMAT"
FIELD_INVALID_VALUE = "FIELD_INVALID_VALUE"


# --------------------------------------------------------------------------- parsing

# Deeper than this, a value is refused: no D1 payload nests beyond a handful of levels.
MAX_DEPTH = 32
# Beyond 64 bits, an integer is refused (and a literal of more digits than that is never parsed).
_INT64_MIN, _INT64_END, _INT64_DIGITS = -(2**63), 2**63, 19
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# pydantic's error types that say "wrong value" rather than "wrong shape".
_VALUE_ERRORS = frozenset({"time_out_of_range", "int_out_of_range"})


class NotificationRejected(ValueError):
    """A body that cannot be read at all: D1-style error code and what is wrong."""

    def __init__(self, error_code: str, field: str) -> None:
        super().__init__(f"{error_code}: {field}")
        self.error_code = error_code
        self.field = field

    def body(self) -> dict[str, str]:
        return {"errorCode": self.error_code, "error": self.field}


@dataclass(frozen=True)
class RejectedOperation:
    """One operation of a body that cannot be accepted, and what was received (made storable:
    NULs stripped, unpaired surrogates and oversize numbers replaced, PANs masked)."""

    index: int
    operation_id: str | None  # only when it follows D1's pattern: never arbitrary text
    field: str
    error_code: str
    payload: Any

    def answer(self) -> dict[str, Any]:
        return {"index": self.index, "operationId": self.operation_id, "field": self.field}


@dataclass(frozen=True)
class ParsedBody:
    """The operations that validate, each on its own, and the ones that do not."""

    operations: list[Operation]
    rejected: list[RejectedOperation]


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("operations", 0, "details", "lastUpdatedAt")` -> `operations[0].details.lastUpdatedAt`.
    Names and indexes only, never values; a name that is not a plain identifier is written as a
    JSON string (escaped: it cannot break a log line or forge one)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SAFE_NAME.match(part):
            out += ("." if out else "") + part
        else:
            out += "[" + json.dumps(part[:64]) + "]"
    return out or "body"


def parse_body(raw: bytes, *, issuer_id: str | None = None) -> ParsedBody:
    """The operations of a callback body (`{"operations": [...]}` or one operation object),
    each validated on its own so that one bad operation does not cost D1 the others, with every
    PAN-like number masked (identifiers included: an operation whose id is one is refused).

    Raises NotificationRejected when the body itself cannot be read (not JSON, not an object,
    `operations` not a non-empty list). When `issuer_id` is given, an operation naming another
    issuer is rejected."""
    # The one-step parse only for plain bodies: no escape can hide a NUL, a PAN or a key.
    if b"\\u" not in raw and not contains_pan(raw.decode("utf-8", "replace")):
        operations = _parse_valid(raw)
        if operations is not None and all(_same_issuer(op, issuer_id) for op in operations):
            return ParsedBody([op.mark_pans_masked() for op in operations], [])
    return _parse_each(raw, issuer_id)


def _same_issuer(op: Operation, issuer_id: str | None) -> bool:
    return issuer_id is None or op.issuer_id is None or op.issuer_id == issuer_id


def _parse_valid(raw: bytes) -> list[Operation] | None:
    """The common case in one step: pydantic parses and validates the bytes together (faster
    than `json.loads` then validating the objects). None unless every operation validates;
    `_parse_each` then judges each operation."""
    try:
        if b'"operations"' in raw:  # bulk, or a single operation with such a string value
            operations, depth = OperationsEnvelope.model_validate_json(raw).operations, 3
        else:  # no escapes: no key can spell "operations"
            operations, depth = [Operation.model_validate_json(raw)], 1
    except ValidationError:
        return None
    return operations if all(_unknown_fields_fit(op, depth) for op in operations) else None


def _unknown_fields_fit(op: Operation, depth: int) -> bool:
    """Whether the fields no model knows keep within the bounds `_storable` enforces (known
    fields do by their types)."""
    ship = op.details.shipment
    levels = [(op, depth), (op.details, depth + 1), (ship, depth + 2)]
    if ship is not None:
        levels.append((ship.last_checkpoint, depth + 3))
    return all(
        _storable(value, (), level + 1)[1] is None
        for model, level in levels
        if model is not None and model.__pydantic_extra__
        for value in model.__pydantic_extra__.values()
    )


def _parse_each(raw: bytes, issuer_id: str | None) -> ParsedBody:
    """`parse_body` step by step: `json.loads`, then each operation on its own."""
    try:
        body: Any = json.loads(
            raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise NotificationRejected(FIELD_INVALID_FORMAT, "body") from exc
    if not isinstance(body, dict):
        raise NotificationRejected(FIELD_INVALID_FORMAT, "body")
    if "operations" in body:
        items = body["operations"]
        if not isinstance(items, list) or not items:
            raise NotificationRejected(FIELD_INVALID_FORMAT, "operations")
        prefix: tuple[int | str, ...] = ("operations",)
    else:
        items, prefix = [body], ()
    parsed = ParsedBody([], [])
    for index, item in enumerate(items):
        where = (*prefix, index) if prefix else ()
        clean, problem = _storable(item, where, 1 + len(where))
        payload = mask_pans_in(clean)
        judged = problem or _validation_problem(payload, where, issuer_id)
        if isinstance(judged, Operation):
            parsed.operations.append(judged.mark_pans_masked())
            continue
        loc, code = judged
        op_id = payload.get("operationId") if isinstance(payload, dict) else None
        parsed.rejected.append(
            RejectedOperation(
                index=index,
                operation_id=op_id
                if isinstance(op_id, str) and OPERATION_ID_PATTERN.match(op_id)
                else None,
                # a key may hold a card number: masked before the path is written
                field=field_path(tuple(redact_pans(p) if isinstance(p, str) else p for p in loc)),
                error_code=code,
                payload=payload,
            )
        )
    return parsed


def _validation_problem(
    payload: Any, where: tuple[int | str, ...], issuer_id: str | None
) -> Operation | tuple[tuple[int | str, ...], str]:
    """The operation, or where it is wrong and D1's error code for it."""
    try:
        op = Operation.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        code = FIELD_INVALID_VALUE if first["type"] in _VALUE_ERRORS else FIELD_INVALID_FORMAT
        return (*where, *first["loc"]), code
    if not _same_issuer(op, issuer_id):
        return (*where, "issuerId"), FIELD_INVALID_VALUE
    return op


class _HugeInt(str):
    """A number literal beyond 64 bits (or beyond a float's range), kept as its text (never
    parsed into an int: 4,300 digits and more raise in Python, and any size costs time)."""


def _bounded_int(text: str) -> int | str:
    digits = len(text) - (text[0] == "-")
    if digits > _INT64_DIGITS or not _INT64_MIN <= (number := int(text)) < _INT64_END:
        return _HugeInt(text)
    return number


def _finite_float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else _HugeInt(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable(
    value: Any, loc: tuple[int | str, ...], depth: int
) -> tuple[Any, tuple[tuple[int | str, ...], str] | None]:
    """`value` made safe to store (NULs stripped: PostgreSQL text cannot hold them; unpaired
    surrogates replaced; huge integers kept as text), and the first place where it cannot be
    accepted as it is, if any."""
    if isinstance(value, _HugeInt) or _out_of_range(value):
        return str(value), (loc, FIELD_INVALID_VALUE)
    if isinstance(value, str):
        return _storable_text(value, loc)
    if isinstance(value, dict | list) and depth > MAX_DEPTH:
        return None, (loc, FIELD_INVALID_FORMAT)
    problem: tuple[tuple[int | str, ...], str] | None = None
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            clean, found = _storable(item, (*loc, index), depth + 1)
            items.append(clean)
            problem = problem or found
        return items, problem
    if isinstance(value, dict):
        members = {}
        for key, item in value.items():
            name, found = _storable_text(key, (*loc, key))
            clean, inner = _storable(item, (*loc, name), depth + 1)
            members[name] = clean
            problem = problem or found or inner
        return members, problem
    return value, None


def _out_of_range(value: Any) -> bool:
    """An integer beyond 64 bits or a non-finite number (a one-step parse may hold these)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and not _INT64_MIN <= value < _INT64_END


def _storable_text(
    value: str, loc: tuple[int | str, ...]
) -> tuple[str, tuple[tuple[int | str, ...], str] | None]:
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8"), (loc, FIELD_INVALID_FORMAT)
    return value, None


def is_json_content_type(value: str | None) -> bool:
    """`application/json` (any parameters) or a `+json` media type."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


__all__ = [
    "FIELD_INVALID_FORMAT",
    "FIELD_INVALID_VALUE",
    "MAX_DEPTH",
    "NotificationRejected",
    "ParsedBody",
    "RejectedOperation",
    "field_path",
    "is_json_content_type",
    "parse_body",
]
