"""The frames between the server and its intake writer process (`bot.intake_writer`).

Pure encoding and decoding, no I/O. Every frame is a 16-byte header (payload length, request
id, a time in microseconds since the epoch) and a payload: the server sends a request's raw
body with its arrival time; the writer answers with the request's outcome as JSON. Request id
0 carries the writer's configuration (server to writer) and its readiness and last figures
(writer to server).
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

from storage.repositories.intake import IntakeResult

HEADER = struct.Struct("!IIq")
CONTROL_ID = 0  # the configuration (to the writer), readiness and figures (from it)
MAX_PAYLOAD = 64 * 1024 * 1024  # far above any body the route lets through (1 MiB)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Outcome kinds in a reply.
STORED = "stored"
REJECTED = "rejected"  # the body does not parse: the route answers 400
UNAVAILABLE = "unavailable"  # the database is busy or unreachable: 503, D1 retries
FAILED = "failed"  # anything else: 500


class WireError(ValueError):
    """A frame that cannot be read: the stream is out of step and must be dropped."""


def to_micros(moment: datetime) -> int:
    """A datetime as whole microseconds since the epoch (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def frame(request_id: int, micros: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), request_id, micros) + payload


def json_frame(request_id: int, value: Any) -> bytes:
    return frame(request_id, 0, json.dumps(value, separators=(",", ":")).encode())


class FrameReader:
    """Cuts a byte stream into frames, whatever the chunks it arrives in."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The frames completed by `data`, each as (request id, micros, payload)."""
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, int, bytes]] = []
        offset = 0
        end = len(buffer)
        size = HEADER.size
        while end - offset >= size:
            length, request_id, micros = HEADER.unpack_from(buffer, offset)
            if length > MAX_PAYLOAD:
                raise WireError(f"frame of {length} bytes")
            start = offset + size
            if end - start < length:
                break
            frames.append((request_id, micros, bytes(buffer[start : start + length])))
            offset = start + length
        if offset:
            del buffer[:offset]
        return frames


# --------------------------------------------------------------------------- outcomes


def stored(result: IntakeResult) -> dict[str, Any]:
    return {
        "kind": STORED,
        "new_event_ids": result.new_event_ids,
        "duplicates": result.duplicates,
        "enqueued": result.enqueued,
        "exception_event_ids": result.exception_event_ids,
        "gap_card_ids": result.gap_card_ids,
    }


def rejected(error_code: str, field: str) -> dict[str, Any]:
    return {"kind": REJECTED, "errorCode": error_code, "field": field}


def unavailable(reason: str) -> dict[str, Any]:
    return {"kind": UNAVAILABLE, "reason": reason}


def failed(reason: str) -> dict[str, Any]:
    return {"kind": FAILED, "reason": reason}


def result_of(outcome: dict[str, Any]) -> IntakeResult:
    """The IntakeResult of a STORED outcome."""
    return IntakeResult(
        new_event_ids=list(outcome["new_event_ids"]),
        duplicates=int(outcome["duplicates"]),
        enqueued=int(outcome["enqueued"]),
        exception_event_ids=list(outcome["exception_event_ids"]),
        gap_card_ids=list(outcome["gap_card_ids"]),
    )
