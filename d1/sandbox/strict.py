"""The sandbox's `--strict` mode: every request it receives is checked against D1's spec files
(d1/spec), and a mismatch fails loudly: logged as an error, kept in `Sandbox.violations`, and
answered 400 with the mismatch named, so a client that drifts from D1's documents cannot pass.

Also the validator the conformance tests use for D1's schemas: the schemas' patterns use
`\\p{L}` and loosely written classes, so they are checked as published with the `regex`
package; an OpenAPI `discriminator` picks its `oneOf` branch, as D1 documents. Needs the
`jsonschema` and `regex` packages (the `test` extra), imported only when strict mode is on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs

try:
    import jsonschema
    import regex
    from jsonschema import Draft7Validator, FormatChecker, ValidationError, validators
except ImportError as exc:  # pragma: no cover - the test extra is installed where tests run
    raise RuntimeError(
        "the sandbox's strict mode needs the jsonschema and regex packages: "
        "pip install 'd1-slack[test]'"
    ) from exc

from d1.spec import spec_json, spec_text
from d1.tokens import JWT_BEARER_GRANT

STATUS_DOC = "production-status.openapi.json"
ORDER_DOC = "order-card.openapi.json"
# D1's date-time as its examples write it (tracking-hub.md: "2023-01-21T17:32:28Z").
D1_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
# x-correlation-id, as D1-FACTS.md quotes D1's API reference (checked there by a test).
CORRELATION_ID = r"^[A-Za-z0-9_-]{1,64}$"
TRACKING_TYPES = ["PRODUCTION", "SHIPMENT", "RETURN"]  # tracking-hub.md: "Supported values"
CARD_PATH = re.compile(r"^/banking/v1/issuers/(?P<issuer>[^/]+)/physicalCards/(?P<card>[^/]+)/")


def _matches(pattern: str, text: str) -> bool:
    """ECMA-262 semantics, as JSON Schema says: `$` is the end of the text, not the place
    before a final newline (where Python's `$` also matches)."""
    found = regex.search(pattern, text)
    if found is None:
        return False
    return not (pattern.endswith("$") and text.endswith("\n") and found.end() == len(text) - 1)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[Any]:
    if isinstance(instance, str) and not _matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _one_of(validator: Any, one_of: list, instance: Any, schema: dict) -> Iterator[Any]:
    discriminator = schema.get("discriminator")
    if discriminator and isinstance(instance, dict):
        tag = instance.get(discriminator["propertyName"])
        target = discriminator.get("mapping", {}).get(tag)
        if target is None:
            yield ValidationError(f"unknown {discriminator['propertyName']} {tag!r}")
            return
        yield from validator.descend(instance, {"$ref": target})
        return
    yield from jsonschema._keywords.oneOf(validator, one_of, instance, schema)


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@FORMATS.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    return isinstance(value, str) and date.fromisoformat(value) is not None


D1Validator = validators.extend(Draft7Validator, {"pattern": _pattern, "oneOf": _one_of})


def schema_errors(doc_name: str, schema_name: str, instance: Any) -> list[str]:
    """Every mismatch of `instance` with schema `schema_name` of spec file `doc_name`."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _doc(doc_name)}
    return _errors(schema, instance)


def validate(doc_name: str, schema_name: str, instance: Any) -> None:
    """Raise `jsonschema.ValidationError` (the first mismatch) unless `instance` conforms."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _doc(doc_name)}
    D1Validator(schema, format_checker=FORMATS).validate(instance)


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    found = D1Validator(schema, format_checker=FORMATS).iter_errors(instance)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or 'body'}: {e.message}" for e in found]


@cache
def _doc(name: str) -> dict[str, Any]:
    components: dict[str, Any] = spec_json(name)["components"]
    return components


@cache
def track_request_schema() -> dict[str, Any]:
    """The tracking-hub request, from the spec files: `trackingType` required (tracking-hub.md's
    "Required D1 API inputs"), each type allowing the fields of its request example, each
    field typed by the schema that defines it elsewhere in D1's documents."""
    examples = [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)```", spec_text("tracking-hub.md"), re.S)
    ]
    requests = {e["trackingType"]: sorted(e) for e in examples if "trackingType" in e}
    status = _doc(STATUS_DOC)["schemas"]
    address = _doc(ORDER_DOC)["schemas"]["address"]["properties"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["trackingType"],
        "properties": {
            "trackingType": {"type": "string", "enum": TRACKING_TYPES},
            "productionSite": {
                **status["productionStatus"]["allOf"][0]["properties"]["productionSite"],
                "minLength": 1,
            },
            "trackingNumber": status["shipment-2"]["properties"]["trackingNumber"],
            "shipmentDate": {"type": "string", "pattern": D1_DATETIME},
            "postalCode": address["zipCode"],
            "countryCode": address["countryCode"],
        },
        "allOf": [
            {
                "if": {"properties": {"trackingType": {"const": kind}}},
                "then": {"propertyNames": {"enum": fields}},
            }
            for kind, fields in sorted(requests.items())
        ],
    }


@cache
def notification_schema() -> dict[str, Any]:
    """A notification body D1 posts to the issuer, from the spec files: one operation (the
    tracking-hub examples) or `{"operations": [...]}`. The operation's fields and its required
    ones are card-order-tracking.txt's table (startTime aside: the tracking-hub examples carry
    `timestamp` instead); `details.status` is `productionStatusInNotification`, plus the
    tracking hub's CARD_RETURNED; `details.shipment` is `shipment-2`; ids follow `operationId`."""
    status = _doc(STATUS_DOC)["schemas"]
    order = _doc(ORDER_DOC)["schemas"]
    table = spec_text("card-order-tracking.txt")
    statuses = re.search(r"Operation status: ([A-Z_, or]+)\.", table)
    assert statuses is not None, "card-order-tracking.txt no longer lists the operation statuses"
    operation_statuses = re.findall(r"[A-Z_]{4,}", statuses.group(1))
    hub = spec_text("tracking-hub.md")
    tracking_statuses = sorted(set(re.findall(r"`details\.status = ([A-Z_]+)`", hub)))
    stamp = {"type": "string", "format": "date-time"}
    operation = {
        "type": "object",
        "required": ["operationId", "operation", "status", "cardId", "details"],
        "properties": {
            "operationId": order["operationId"],
            "operation": {"type": "string", "minLength": 1},
            "status": {"type": "string", "enum": operation_statuses},
            "issuerId": {"type": "string", "minLength": 1},
            "cardId": {
                **order["cardRequestThales"]["properties"]["oldCardId"],
                "deprecated": False,
            },
            "startTime": stamp,
            "endTime": stamp,
            "timestamp": stamp,
            "errorCode": {"type": "string"},
            "error": {"type": "string"},
            "inputFileName": status["productionStatus"]["allOf"][0]["properties"]["inputFileName"],
            "issuerRequestId": status["productionStatus"]["allOf"][0]["properties"][
                "issuerRequestId"
            ],
            "details": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": [
                            *status["productionStatusInNotification"]["enum"],
                            *(s for s in tracking_statuses if s != "CARD_SHIPPED"),
                        ],
                    },
                    "trackingType": {"type": "string", "enum": TRACKING_TYPES},
                    "productionSite": status["productionStatus"]["allOf"][0]["properties"][
                        "productionSite"
                    ],
                    "reason": {"type": "string"},
                    "dueDate": {"type": "string", "format": "date"},
                    "issuerRequestId": {"type": "string", "minLength": 1, "maxLength": 64},
                    "shipment": {"$ref": "#/components/schemas/shipment-2"},
                },
            },
        },
    }
    return {
        "components": _doc(STATUS_DOC),
        "oneOf": [
            {
                "type": "object",
                "required": ["operations"],
                "properties": {"operations": {"type": "array", "minItems": 1, "items": operation}},
            },
            {**operation, "not": {"required": ["operations"]}},
        ],
    }


def notification_problems(body: Any) -> list[str]:
    """What is wrong with a notification body D1 would send (empty: it conforms)."""
    return _errors(notification_schema(), body)


@dataclass
class Violation:
    """A request that does not conform to D1's documents."""

    method: str
    path: str
    problems: list[str]

    def __str__(self) -> str:
        return f"{self.method} {self.path}: " + "; ".join(self.problems)


def request_problems(method: str, path: str, headers: dict[str, str], raw: bytes) -> list[str]:
    """What is wrong with a request to D1, against the spec files (empty: it conforms).
    `headers` are lower-cased."""
    if path.endswith("/oauth2/token"):
        return _token_problems(headers, raw)
    problems: list[str] = []
    match = CARD_PATH.match(path)
    card_id_pattern = _doc(ORDER_DOC)["schemas"]["cardRequestThales"]["properties"]["oldCardId"][
        "pattern"
    ]
    if match is None:
        return [f"{path} is not one of D1's banking paths"]
    if not _matches(card_id_pattern, match["card"]):
        problems.append(f"cardId {match['card']!r} does not match {card_id_pattern}")
    if not headers.get("authorization", "").startswith("Bearer "):
        problems.append("no Bearer access token")
    correlation = headers.get("x-correlation-id")
    if correlation is not None and not re.match(CORRELATION_ID, correlation):
        problems.append(f"x-correlation-id does not match {CORRELATION_ID}")
    if method == "GET":
        if raw:
            problems.append("a GET with a body")
        return problems
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        problems.append("Content-Type is not application/json")
    try:
        body = json.loads(raw)
    except ValueError:
        return [*problems, "body is not JSON"]
    if path.endswith("/track"):
        problems.extend(_errors(track_request_schema(), body))
    elif path.endswith("/operations:production"):
        problems.extend(schema_errors(ORDER_DOC, "cardRequest", body))
    return problems


def _token_problems(headers: dict[str, str], raw: bytes) -> list[str]:
    problems: list[str] = []
    if headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        problems.append("Content-Type is not application/x-www-form-urlencoded")
    form = parse_qs(raw.decode("utf-8", "replace"))
    if form.get("grant_type") != [JWT_BEARER_GRANT]:
        problems.append(f"grant_type is not {JWT_BEARER_GRANT}")
    if len(form.get("assertion", [])) != 1:
        problems.append("not exactly one assertion")
    return problems


__all__ = [
    "FORMATS",
    "D1Validator",
    "Violation",
    "notification_problems",
    "notification_schema",
    "request_problems",
    "schema_errors",
    "track_request_schema",
    "validate",
]
