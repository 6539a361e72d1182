"""SQLModel tables: the product's whole persistent state.

Every timestamp is timezone-aware UTC in Python (`storage.columns`). JSON columns hold D1
payloads with nothing sensitive in them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.columns import json_field, ts_field

# Filters a subscription may have.
FILTER_ALL = "all"
FILTER_EXCEPTIONS = "exceptions"

# Outbox states.
OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_DEAD = "dead"

# Event sources.
SOURCE_D1 = "d1"
SOURCE_RECONCILIATION = "reconciliation"


class CardRecord(SQLModel, table=True):
    """A card's current state: the projection of its latest event by event time."""

    __tablename__ = "cards"
    __table_args__ = (
        sa.Index("ix_cards_status", "status"),
        sa.Index("ix_cards_shipment_status", "shipment_status"),
        sa.Index("ix_cards_state_event_time", "state_event_time"),
        # `/card find` and `/card status` by what the agent has (storage/repositories/search.py)
        sa.Index("ix_cards_issuer_request_id", "issuer_request_id"),
        sa.Index("ix_cards_tracking_number", "tracking_number"),
        # A card id prefix (`LIKE 'abc%'`) whatever PostgreSQL's collation (on SQLite the
        # prefix is a range, which this index and the primary key serve alike).
        sa.Index(
            "ix_cards_card_id_prefix", "card_id", postgresql_ops={"card_id": "text_pattern_ops"}
        ),
    )

    card_id: str = Field(primary_key=True, max_length=64)
    issuer_id: str | None = Field(default=None, max_length=64)
    issuer_request_id: str | None = Field(default=None, max_length=64)  # the issuer's order ref
    status: str | None = Field(default=None, max_length=64)  # details.status of the winner
    operation: str | None = Field(default=None, max_length=64)
    operation_status: str | None = Field(default=None, max_length=32)
    shipment_status: str | None = Field(default=None, max_length=64)
    shipment_message: str | None = Field(default=None, max_length=255)
    carrier: str | None = Field(default=None, max_length=64)
    tracking_number: str | None = Field(default=None, max_length=64)
    estimated_delivery_at: datetime | None = ts_field(nullable=True)
    delivered_at: datetime | None = ts_field(nullable=True)
    shipment: dict[str, Any] | None = json_field()  # last shipment snapshot, wire names
    production_site: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=255)
    state_rank: int = 0  # d1.semantics.lifecycle_rank of the current state
    state_event_time: datetime | None = ts_field(nullable=True)  # event time of the current state
    state_since: datetime | None = ts_field(nullable=True)  # when the card entered this status
    last_shipment_update_at: datetime | None = ts_field(nullable=True)
    last_event_id: int | None = None
    is_exception: bool = False
    first_seen_at: datetime = ts_field()
    last_seen_at: datetime = ts_field()  # received time of the latest event, in or out of order


class EventRecord(SQLModel, table=True):
    """Every distinct notification operation received (and every reconciliation finding)."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_card_time", "card_id", "event_time"),
        sa.Index("ix_events_received_at", "received_at"),
        sa.Index("ix_events_exception_received", "is_exception", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    card_id: str = Field(max_length=64)
    operation_id: str = Field(max_length=128)
    operation: str = Field(max_length=64)
    operation_status: str = Field(max_length=32)
    details_status: str | None = Field(default=None, max_length=64)
    tracking_type: str | None = Field(default=None, max_length=32)
    shipment_status: str | None = Field(default=None, max_length=64)
    shipment_message: str | None = Field(default=None, max_length=255)
    event_time: datetime = ts_field()
    received_at: datetime = ts_field()
    is_exception: bool = False
    became_current: bool = False  # False for a late, older event kept only in history
    source: str = Field(default=SOURCE_D1, max_length=32)
    payload: dict[str, Any] | None = json_field()  # d1.semantics.operation_for_storage


class SubscriptionRecord(SQLModel, table=True):
    """A channel following a card. Belongs to the channel; survives its creator leaving."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "channel_id", "card_id", name="uq_subscription"),
        sa.Index("ix_subscriptions_card", "card_id", "filter"),
        sa.Index("ix_subscriptions_channel", "workspace_id", "channel_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    card_id: str = Field(max_length=64)
    filter: str = Field(default=FILTER_ALL, max_length=16)
    created_by: str = Field(max_length=32)
    created_at: datetime = ts_field()


class SubscriptionRemovalRecord(SQLModel, table=True):
    """A subscription that was removed, who removed it and why."""

    __tablename__ = "subscription_removals"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    card_id: str = Field(max_length=64)
    filter: str = Field(max_length=16)
    created_by: str = Field(max_length=32)
    created_at: datetime = ts_field()
    removed_by: str = Field(max_length=32)  # a user id, or "system"
    removed_at: datetime = ts_field()
    reason: str = Field(max_length=255)


class ThreadRecord(SQLModel, table=True):
    """The parent message about a card in a channel; later updates go to its thread."""

    __tablename__ = "threads"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "channel_id", "card_id", name="uq_thread"),
        sa.Index("ix_threads_parent_update_due_at", "parent_update_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    card_id: str = Field(max_length=64)
    parent_ts: str = Field(max_length=32)
    created_at: datetime = ts_field()
    updated_at: datetime = ts_field()
    # Set while the parent shows an older state than the card's because the workspace budget
    # postponed its update: when the update is due (a worker taking it moves this to the end
    # of its lease). Stored so that a restart or another replica still makes it.
    parent_update_due_at: datetime | None = ts_field(nullable=True)


class OutboxRecord(SQLModel, table=True):
    """A message waiting to be delivered to Slack; sent by exactly one worker, once."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_due", "state", "next_attempt_at"),
        sa.Index("ix_outbox_thread", "thread_key", "id"),
        sa.Index("ix_outbox_channel", "channel_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(default="", max_length=32)
    channel_id: str = Field(max_length=32)
    kind: str = Field(max_length=32)  # card_event | exception_alert | stuck_alert | digest | ...
    card_id: str | None = Field(default=None, max_length=64)
    event_id: int | None = None
    subscription_id: int | None = None
    thread_key: str | None = Field(default=None, max_length=160)  # workspace:channel:card
    payload: dict[str, Any] | None = json_field()
    state: str = Field(default=OUTBOX_PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = ts_field()
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = ts_field(nullable=True)
    last_error: str | None = Field(default=None, max_length=255)
    created_at: datetime = ts_field()
    sent_at: datetime | None = ts_field(nullable=True)
    slack_ts: str | None = Field(default=None, max_length=32)


class FanoutRecord(SQLModel, table=True):
    """A new current event whose per-subscription outbox rows are still owed: written by intake
    (one row instead of one per subscribed channel, and no secondary index to maintain), turned
    into `card_event` rows (and the exceptions-channel alert) by the delivery worker, in id
    order, and deleted in that same transaction."""

    __tablename__ = "fanouts"

    id: int | None = Field(default=None, primary_key=True)
    card_id: str = Field(max_length=64)
    event_id: int
    is_exception: bool = False
    workspace_id: str = Field(default="", max_length=32)  # of the alert
    alert_channel: str | None = Field(default=None, max_length=32)  # exceptions channel, if owed
    received_at: datetime = ts_field()


class AuditRecord(SQLModel, table=True):
    """Every command and button press: who, where, what card, outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_at", "at"),
        sa.Index("ix_audit_card", "card_id", "at"),  # who looked at a card (its timeline)
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = ts_field()
    workspace_id: str | None = Field(default=None, max_length=32)
    channel_id: str | None = Field(default=None, max_length=32)
    user_id: str | None = Field(default=None, max_length=32)
    action: str = Field(max_length=64)
    card_id: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=64)
    detail: str | None = Field(default=None, max_length=255)


# Exception case states.
CASE_OPEN = "open"
CASE_RESOLVED = "resolved"


class ExceptionCaseRecord(SQLModel, table=True):
    """A card's exception and who owns it: opened by its first failure, held by an owner until
    resolved, reopened by a new failure. One row per card; its latest alert is remembered so
    that the alert can be updated in place."""

    __tablename__ = "exception_cases"
    __table_args__ = (
        sa.UniqueConstraint("card_id", name="uq_exception_case_card"),
        sa.Index("ix_exception_cases_state", "state", "owner", "opened_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    card_id: str = Field(max_length=64)
    workspace_id: str = Field(default="", max_length=32)
    state: str = Field(default=CASE_OPEN, max_length=16)
    owner: str | None = Field(default=None, max_length=32)
    assigned_at: datetime | None = ts_field(nullable=True)
    opened_at: datetime = ts_field()  # the first failure of this episode
    last_failure_at: datetime = ts_field()
    last_event_id: int | None = None
    failures: int = 1  # in this episode
    reopened: int = 0  # times a new failure (or an agent) reopened it
    resolved_by: str | None = Field(default=None, max_length=32)
    resolved_at: datetime | None = ts_field(nullable=True)
    alert_channel: str | None = Field(default=None, max_length=32)  # its latest alert
    alert_ts: str | None = Field(default=None, max_length=32)
    alert_event_id: int | None = None


class JobRunRecord(SQLModel, table=True):
    """A claimed run of a scheduled job: unique per job and scheduled time, so that with
    several replicas each run happens once."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job_name", "scheduled_for", name="uq_job_run"),)

    id: int | None = Field(default=None, primary_key=True)
    job_name: str = Field(max_length=128)
    scheduled_for: datetime = ts_field()
    claimed_by: str = Field(max_length=64)
    claimed_at: datetime = ts_field()
    finished_at: datetime | None = ts_field(nullable=True)
    outcome: str | None = Field(default=None, max_length=32)
    detail: str | None = Field(default=None, max_length=255)


class DigestScheduleRecord(SQLModel, table=True):
    """A channel's own daily digest time and timezone."""

    __tablename__ = "digest_schedules"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "channel_id", name="uq_digest_schedule"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    time_of_day: str = Field(max_length=5)  # HH:MM
    timezone: str = Field(max_length=64)
    enabled: bool = True
    updated_by: str = Field(max_length=32)
    updated_at: datetime = ts_field()


class StuckAlertRecord(SQLModel, table=True):
    """A stuck-card alert already raised for a card in a given state (so it alerts once)."""

    __tablename__ = "stuck_alerts"
    __table_args__ = (sa.UniqueConstraint("card_id", "rule", "state_key", name="uq_stuck_alert"),)

    id: int | None = Field(default=None, primary_key=True)
    card_id: str = Field(max_length=64)
    rule: str = Field(max_length=64)
    state_key: str = Field(max_length=160)  # status|shipment status|state event time
    raised_at: datetime = ts_field()


class ChannelPauseRecord(SQLModel, table=True):
    """A channel the bot cannot post in (removed, archived, private and not invited): its
    delivery waits, nothing is dropped, until the bot is back in the channel."""

    __tablename__ = "channel_pauses"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "channel_id", name="uq_channel_pause"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    reason: str = Field(max_length=64)  # Slack's error code, e.g. not_in_channel
    paused_at: datetime = ts_field()


class QuarantineRecord(SQLModel, table=True):
    """An operation D1 sent that could not be accepted, kept (PANs masked) with the reason so
    that an operator can see what was lost and ask D1 for it again."""

    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = ts_field(index=True)
    operation_index: int  # its place in the request's `operations` (0 for a single one)
    operation_id: str | None = Field(default=None, max_length=64)  # when it follows D1's pattern
    field: str = Field(max_length=255)  # the first field that is wrong, as a JSON path
    error_code: str = Field(max_length=32)
    payload: Any = json_field()  # the operation as received, made storable


class ChannelSettingRecord(SQLModel, table=True):
    """A channel's thread mode for card updates (on, off, quiet); no row means `on`."""

    __tablename__ = "channel_settings"

    workspace_id: str = Field(max_length=32, primary_key=True)
    channel_id: str = Field(max_length=32, primary_key=True)
    thread_mode: str = Field(max_length=8)
    updated_at: datetime = ts_field()
