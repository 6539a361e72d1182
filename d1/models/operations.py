"""The notifications D1 posts to the issuer's callback: operations, one or many per request."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from d1.models.common import (
    CARD_ID_PATTERN,
    OPERATION_ID_PATTERN,
    CalendarDate,
    D1Model,
    Shipment,
    Timestamp,
)

# Notifications keep the fields this product does not know: D1 adds fields without notice, and
# the stored history is the operation as D1 sent it.
_KEEP_UNKNOWN = ConfigDict(extra="allow")

# --------------------------------------------------------------------------- notifications


class OperationDetails(D1Model):
    """`details` of a notification operation; PRODUCE and STANDALONE_TRACKING share this shape."""

    model_config = _KEEP_UNKNOWN

    status: str | None = None
    tracking_type: str | None = None
    production_site: str | None = None
    reason: str | None = None
    due_date: CalendarDate | None = None
    shipment: Shipment | None = None
    input_file_name: str | None = None
    issuer_request_id: str | None = None


class Operation(D1Model):
    """One notification operation, as D1 posts it to the issuer's callback."""

    model_config = _KEEP_UNKNOWN
    # Set by `d1.notifications.parse_body`, which masks every PAN of a body before validating
    # it: storage need not look for PANs again (it does for operations from anywhere else).
    _pans_masked: bool = PrivateAttr(default=False)
    operation_id: str = Field(pattern=OPERATION_ID_PATTERN.pattern)
    operation: str = Field(min_length=1, max_length=64)
    status: str = Field(min_length=1, max_length=32)
    card_id: str = Field(min_length=1, max_length=64, pattern=CARD_ID_PATTERN.pattern)
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    timestamp: Timestamp | None = None
    issuer_id: str | None = None
    details: OperationDetails = Field(default_factory=OperationDetails)
    error_code: str | None = None
    error: str | None = None
    input_file_name: str | None = None
    issuer_request_id: str | None = None

    @property
    def pans_masked(self) -> bool:
        return self._pans_masked

    def mark_pans_masked(self) -> Operation:
        self._pans_masked = True
        return self

    @field_validator("details", mode="before")
    @classmethod
    def _details_object(cls, value: Any) -> Any:
        return {} if value is None else value


class OperationsEnvelope(D1Model):
    """The bulk body D1 sends: `{"operations": [...]}`."""

    operations: list[Operation] = Field(min_length=1)


def parse_operations(body: Any) -> list[Operation]:
    """Parse a callback body: `{"operations": [...]}` or a single operation object.
    Raises pydantic.ValidationError on the first bad field."""
    if isinstance(body, dict) and "operations" in body:
        return OperationsEnvelope.model_validate(body).operations
    return [Operation.model_validate(body)]


__all__ = ["Operation", "OperationDetails", "OperationsEnvelope", "parse_operations"]
