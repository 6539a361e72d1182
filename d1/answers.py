"""D1's on-demand status answer, read in every shape D1's documents show (pure).

production-status.openapi.json documents a `productionStatus` object; card-order-tracking.txt
says "notifications and on-demand responses use the same operation object", and some guide pages
show the answer as a notification body `{"operations": [op]}`. All three read as one
`ProductionStatus`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from d1.models import Operation, ProductionStatus
from d1.semantics import operation_event_time


def parse_production_status(body: Any) -> ProductionStatus:
    """The productionStatus answer, from D1's documented shape or a notification operation:
    bare, or in a notification's envelope `{"operations": [op]}` (the latest one counts)."""
    if isinstance(body, Mapping) and isinstance(body.get("operations"), list):
        operations = [Operation.model_validate(op) for op in body["operations"]]
        if not operations:
            raise ValueError("an operations envelope without operations")
        return _status_from_operation(max(operations, key=operation_event_time))
    if isinstance(body, Mapping) and "operation" in body and "details" in body:
        return _status_from_operation(Operation.model_validate(body))
    return ProductionStatus.model_validate(body)


def _status_from_operation(op: Operation) -> ProductionStatus:
    details = op.details
    if details.status is None:
        raise ValueError("operation-shaped answer without details.status")
    return ProductionStatus(
        status=details.status,
        reason=details.reason,
        due_date=details.due_date,
        production_site=details.production_site,
        shipment=details.shipment,
        input_file_name=details.input_file_name or op.input_file_name,
        issuer_request_id=details.issuer_request_id or op.issuer_request_id,
    )


__all__ = ["parse_production_status"]
