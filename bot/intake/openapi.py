"""The OpenAPI 3.1 document of what D1 (and an operator's probes) call on this bot: the
notification callback, our token endpoint, `/healthz`, `/readyz` and `/metrics`.

The request schemas follow D1's published component schemas (`d1/spec/`: the operation object
of `card-order-tracking.txt` and `tracking-hub.md`, `shipment-2` and `lastCheckpoint` of
`production-status.openapi.json`), loosened where intake is lenient on purpose (D1 adds fields
and values without notice) and bounded where intake refuses (times, identifiers, integers).
So a body valid against this document is accepted, and one the intake refuses is invalid here.
Served at `GET /openapi.json`; `docs/openapi.json` is this document for the issuer id
`ISSUER_PLACEHOLDER` (`python -m bot.intake.openapi > docs/openapi.json`).
"""

from __future__ import annotations

import json
from typing import Any

from d1.models import OPERATION_ID_PATTERN, PRODUCTION_STATUSES, SHIPMENT_STATUSES
from d1.notifications import MAX_DEPTH

ISSUER_PLACEHOLDER = "your-issuer-id"
NOTIFICATIONS_PATH = "/notifications/d1/v2/issuers/{issuerId}/cards"

# A date, or a date-time with an optional fraction and offset (none means UTC), as intake reads
# them. Years 1000-9998 and days 1-28 here: every such time converts to UTC within years
# 1-9999 and is a real date (intake reads the rest of the calendar too, and refuses times that
# leave years 1-9999 in UTC).
_YEAR = r"(?:1\d{3}|[2-8]\d{3}|9[0-8]\d{2}|99[0-8]\d)"
_DATE = _YEAR + r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-3]):[0-5]\d)?"
TIME_PATTERN = f"^{_DATE}(?:{_TIME})?$"

# NUL characters are removed before validation: a required text needs another character.
_NOT_ONLY_NUL = "[^\\u0000]"
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}


def _text(description: str | None = None, **bounds: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"], **bounds}
    if description:
        schema["description"] = description
    return schema


def _time(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "pattern": TIME_PATTERN, "description": description}


def _object(properties: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    """An object of D1's: its known fields, and any other field (D1 adds some without notice)
    holding any JSON value intake can store."""
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        **extra,
    }


def _schemas(issuer_id: str) -> dict[str, Any]:
    identifier = {"type": "string", "pattern": OPERATION_ID_PATTERN.pattern}
    return {
        "JsonValue": {
            "description": "Any JSON value without integers beyond 64 bits or non-finite "
            "numbers, nested at most "
            f"{MAX_DEPTH} levels from the body (the depth is not expressible here).",
            "anyOf": [
                {"type": ["string", "boolean", "null", "number"]},
                _INT64,
                {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
                {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
                },
            ],
        },
        "LastCheckpoint": _object(
            {
                "checkpointTime": _time("Local time of the place it describes."),
                "city": _text(),
                "countryName": _text(),
                "message": _text(),
            },
            "D1 `lastCheckpoint` (production-status.openapi.json).",
        ),
        "Shipment": _object(
            {
                "carrier": _text("D1 carrier code, e.g. `dhl`, `ups`, `la-poste-colissimo`."),
                "trackingNumber": _text(),
                "status": _text("Known values: " + ", ".join(SHIPMENT_STATUSES) + "."),
                "message": _text("D1's normalised tracking message."),
                "trackingUrl": _text(),
                "redirectUrl": _text(),
                "estimatedDeliveryDate": _time("Local time of the recipient."),
                "lastUpdatedAt": _time("An instant."),
                "deliveryDate": _time("Local time of the recipient."),
                "signedBy": _text("Never shown in channels."),
                "failedDeliveryAttempts": {
                    "anyOf": [{"type": ["string", "null"]}, _INT64],
                    "description": "A string in D1's schema; a number is accepted too.",
                },
                "pickupDate": _time("Local time of the pickup place."),
                "lastCheckpoint": {
                    "anyOf": [{"$ref": "#/components/schemas/LastCheckpoint"}, {"type": "null"}]
                },
            },
            "D1 `shipment` (production-status.openapi.json `shipment-2`).",
        ),
        "Details": _object(
            {
                "status": _text("Known values: " + ", ".join(PRODUCTION_STATUSES) + "."),
                "trackingType": _text("PRODUCTION, SHIPMENT or RETURN."),
                "productionSite": _text(),
                "reason": _text(),
                "dueDate": _time("A date (a time after it is ignored)."),
                "shipment": {
                    "anyOf": [{"$ref": "#/components/schemas/Shipment"}, {"type": "null"}]
                },
                "inputFileName": _text(),
                "issuerRequestId": _text(),
            },
            "The operation's `details`.",
        ),
        "Operation": _object(
            {
                "operationId": identifier,
                "operation": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "pattern": _NOT_ONLY_NUL,
                    "description": "PRODUCE, STANDALONE_TRACKING, UPDATE_ORDER, or a new one.",
                },
                "status": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 32,
                    "pattern": _NOT_ONLY_NUL,
                    "description": "PENDING, SUCCESSFUL or FAILED (or a new value).",
                },
                "cardId": identifier,
                "issuerId": {"type": ["string", "null"], "enum": [issuer_id, None]},
                "startTime": _time("An instant: when the operation started."),
                "endTime": _time("An instant: when it ended."),
                "timestamp": _time("An instant (tracking notifications)."),
                "details": {"anyOf": [{"$ref": "#/components/schemas/Details"}, {"type": "null"}]},
                "errorCode": _text(),
                "error": _text("Never stored: it may hold card data."),
                "inputFileName": _text(),
                "issuerRequestId": _text(),
            },
            "One notification operation (card-order-tracking.txt, tracking-hub.md).",
            required=["operationId", "operation", "status", "cardId"],
        ),
        "Operations": {
            "type": "object",
            "properties": {
                "operations": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/components/schemas/Operation"},
                }
            },
            "required": ["operations"],
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
        "D1Error": {
            "type": "object",
            "properties": {
                "errorCode": {"type": "string"},
                "error": {"type": "string"},
                "rejectedOperations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "operationId": {"type": ["string", "null"]},
                            "field": {"type": "string"},
                        },
                        "required": ["index", "operationId", "field"],
                    },
                },
            },
            "required": ["errorCode", "error"],
        },
        "OAuthError": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
            "required": ["error"],
        },
        "Token": {
            "type": "object",
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"},
                "expires_at": {"type": "string", "format": "date-time"},
                "scope": {"type": "string"},
            },
            "required": ["access_token", "token_type", "expires_in", "expires_at"],
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                "reasons": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["status", "checks"],
        },
        "Readiness": {
            "type": "object",
            "properties": {
                "status": {"enum": ["ready", "unready"]},
                "checks": {
                    "type": "object",
                    "additionalProperties": {"enum": ["ok", "failing"]},
                },
                "failed": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "check": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                        "required": ["check", "reason"],
                    },
                },
            },
            "required": ["status", "checks"],
        },
    }


def _error(description: str, schema: str = "D1Error") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def openapi_document(issuer_id: str = ISSUER_PLACEHOLDER) -> dict[str, Any]:
    """The document for a bot that serves `issuer_id`."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "d1-slack: the endpoints D1 calls",
            "version": "1",
            "description": __doc__.split("\n\n")[0],
        },
        "paths": {
            NOTIFICATIONS_PATH: {
                "post": {
                    "operationId": "receiveNotification",
                    "summary": "D1 card production and shipment notifications",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "issuerId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": [issuer_id]},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "allOf": [
                                                {"$ref": "#/components/schemas/Operation"},
                                                # a member `operations` makes a body bulk
                                                {"propertyNames": {"not": {"const": "operations"}}},
                                            ]
                                        },
                                        {"$ref": "#/components/schemas/Operations"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "204": {"description": "Every operation is stored (durably)."},
                        "400": _error(
                            "The body cannot be read, or some operations are refused: those are "
                            "named in `rejectedOperations` and quarantined, the others stored."
                        ),
                        "401": _error("Missing or invalid Bearer token."),
                        "404": _error("Another issuer's path."),
                        "413": _error("The body is over the configured size."),
                        "415": _error("Not a JSON content type."),
                        "503": _error("The database is unavailable: retry later."),
                    },
                }
            },
            "/oauth2/token": {
                "post": {
                    "operationId": "issueToken",
                    "summary": "OAuth 2.0 client credentials: the Bearer token for notifications",
                    "security": [{"basic": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "grant_type": {"const": "client_credentials"},
                                        "scope": {"type": "string"},
                                    },
                                    "required": ["grant_type"],
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "A token",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Token"}
                                }
                            },
                        },
                        "400": _error("Not a client-credentials request.", "OAuthError"),
                        "401": _error("Unknown client.", "OAuthError"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: whether the process and its background tasks run",
                    "responses": {
                        "200": _error("Alive.", "Health"),
                        "503": _error("A task stopped: `reasons` says which.", "Health"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readiness",
                    "summary": "Readiness: database migrated, Slack token accepted, D1 "
                    "configured, delivery not paused",
                    "responses": {
                        "200": _error("Ready.", "Readiness"),
                        "503": _error("Not ready: `failed` lists the checks and why.", "Readiness"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(issuer_id),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))
