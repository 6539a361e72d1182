"""D1's payloads as pydantic models, and the D1 vocabulary the rest of the product relies on.

Split by what they hold; every name stays importable from `d1.models`:

- `d1.models.common`: D1's known values (statuses, carriers, their words, id patterns), the base
  model (`D1Model`), `Timestamp`, the `Shipment` block both directions carry, `TokenResponse`;
- `d1.models.operations`: the notifications D1 posts to us (`Operation`, `parse_operations`);
- `d1.models.banking`: the calls we make to D1's banking API: `ProductionStatus` answers,
  tracking-hub requests, card orders and D1's error body.
"""

from __future__ import annotations

from d1.models.banking import (
    Address,
    CardOperationResponse,
    CardOrderRequest,
    CardPackageDetails,
    D1ErrorBody,
    OrderAddress,
    OrderServices,
    OrderShipment,
    ProductionStatus,
    ProductionTrackingRequest,
    ReturnTrackingRequest,
    Services,
    ShipmentTrackingRequest,
    TrackRequest,
    track_request_adapter,
)
from d1.models.common import (
    CARD_ID_PATTERN,
    CARRIER_NAMES,
    ISSUER_ID_PATTERN,
    OPERATION_ID_PATTERN,
    OPERATION_STATUSES,
    OPERATIONS,
    PRODUCTION_STATUS_WORDS,
    PRODUCTION_STATUSES,
    SHIPMENT_STATUS_WORDS,
    SHIPMENT_STATUSES,
    TRACKING_STATUSES,
    TRACKING_TYPES,
    D1Model,
    LastCheckpoint,
    Shipment,
    Timestamp,
    TokenResponse,
)
from d1.models.operations import Operation, OperationDetails, OperationsEnvelope, parse_operations

__all__ = [
    "CARD_ID_PATTERN",
    "CARRIER_NAMES",
    "ISSUER_ID_PATTERN",
    "OPERATIONS",
    "OPERATION_ID_PATTERN",
    "OPERATION_STATUSES",
    "PRODUCTION_STATUSES",
    "PRODUCTION_STATUS_WORDS",
    "SHIPMENT_STATUSES",
    "SHIPMENT_STATUS_WORDS",
    "TRACKING_STATUSES",
    "TRACKING_TYPES",
    "Address",
    "CardOperationResponse",
    "CardOrderRequest",
    "CardPackageDetails",
    "D1ErrorBody",
    "D1Model",
    "LastCheckpoint",
    "Operation",
    "OperationDetails",
    "OperationsEnvelope",
    "OrderAddress",
    "OrderServices",
    "OrderShipment",
    "ProductionStatus",
    "ProductionTrackingRequest",
    "ReturnTrackingRequest",
    "Services",
    "Shipment",
    "ShipmentTrackingRequest",
    "Timestamp",
    "TokenResponse",
    "TrackRequest",
    "parse_operations",
    "track_request_adapter",
]
