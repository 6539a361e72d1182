"""The quarantine: operations D1 sent that intake could not accept, for operators to read.

Written by intake (`intake.record_batch`, in the transaction of the request's valid operations),
read by `d1bot quarantine list|show`, pruned with the rest at the retention period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage.tables import QuarantineRecord

QUARANTINE = QuarantineRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Quarantined:
    id: int
    received_at: datetime
    operation_index: int
    operation_id: str | None
    field: str
    error_code: str
    payload: Any


def list_quarantined(engine: Engine, *, limit: int = 50) -> list[Quarantined]:
    """The newest quarantined operations first."""
    query = sa.select(QUARANTINE).order_by(QUARANTINE.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [Quarantined(**row._mapping) for row in conn.execute(query)]


def get_quarantined(engine: Engine, quarantine_id: int) -> Quarantined | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(QUARANTINE).where(QUARANTINE.c.id == quarantine_id)).first()
    return None if row is None else Quarantined(**row._mapping)


__all__ = ["QUARANTINE", "Quarantined", "get_quarantined", "list_quarantined"]
