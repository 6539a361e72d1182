"""Column types of the tables: timestamps that are always UTC, and JSON that may arrive
serialised already.

Every timestamp is timezone-aware UTC in Python (`UTCDateTime` stores it naive-UTC on SQLite and
as `timestamptz` on PostgreSQL).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime column that always gives back aware UTC datetimes, on SQLite too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        """On SQLite, straight to the text SQLAlchemy's `DateTime` stores there, in one step
        (intake binds a dozen timestamps a notification)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            return _utc(value).isoformat(sep=" ", timespec="microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is taken as UTC. (Most values are UTC already.)"""
    if value.tzinfo is timezone.utc:
        return value
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def ts_field(*, nullable: bool = False, index: bool = False) -> Any:
    column: sa.Column[datetime] = sa.Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


class JSONText(str):
    """JSON already serialised (a payload as pydantic wrote it): a JSON column stores it as it
    is, instead of it being parsed and serialised again (intake writes two a notification)."""


def json_for_column(value: Any) -> str:
    """The engines' JSON serializer (`storage.db.make_engine`): `JSONText` as it is."""
    return str(value) if isinstance(value, JSONText) else json.dumps(value)


def json_field(*, nullable: bool = True) -> Any:
    # None is SQL NULL, not the JSON text 'null' (intake writes every column of a card back).
    return Field(default=None, sa_column=sa.Column(sa.JSON(none_as_null=True), nullable=nullable))


__all__ = ["JSONText", "UTCDateTime", "json_field", "json_for_column", "ts_field", "utcnow"]
