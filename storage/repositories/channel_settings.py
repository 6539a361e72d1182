"""A channel's settings (`/card settings`): today its thread mode, read by delivery to decide
how a card's updates are posted there. A channel that never set one is `on`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from storage.tables import ChannelSettingRecord

settings = ChannelSettingRecord.__table__  # type: ignore[attr-defined]

# Updates in the card's thread; an exception is also shown in the channel (reply_broadcast).
THREADS_ON = "on"
# One top-level message per update: no parent, no thread.
THREADS_OFF = "off"
# Updates in the card's thread, nothing broadcast to the channel.
THREADS_QUIET = "quiet"
THREAD_MODES = (THREADS_ON, THREADS_OFF, THREADS_QUIET)
DEFAULT_THREAD_MODE = THREADS_ON

Key = tuple[str, str]  # (workspace, channel)


def thread_mode(engine: Engine, *, workspace_id: str, channel_id: str) -> str:
    """The channel's thread mode (`on` when it never set one)."""
    return thread_modes(engine, keys=[(workspace_id, channel_id)])[(workspace_id, channel_id)]


def thread_modes(engine: Engine, *, keys: Iterable[Key]) -> dict[Key, str]:
    """The thread mode of each (workspace, channel), in one primary-key query per 500 channels
    of a workspace (a delivery round reads those of its rows at once)."""
    wanted = set(keys)
    found = dict.fromkeys(wanted, DEFAULT_THREAD_MODE)
    if not wanted:
        return found
    by_workspace: dict[str, list[str]] = {}
    for workspace_id, channel_id in sorted(wanted):
        by_workspace.setdefault(workspace_id, []).append(channel_id)
    with engine.connect() as conn:
        for workspace_id, channels in by_workspace.items():
            for start in range(0, len(channels), 500):
                rows = conn.execute(
                    sa.select(settings.c.channel_id, settings.c.thread_mode).where(
                        settings.c.workspace_id == workspace_id,  # the primary key's prefix
                        settings.c.channel_id.in_(channels[start : start + 500]),
                    )
                )
                for channel_id, mode in rows:
                    if mode in THREAD_MODES:
                        found[(workspace_id, channel_id)] = mode
    return found


def set_thread_mode(
    engine: Engine, *, workspace_id: str, channel_id: str, mode: str, now: datetime
) -> str:
    """Store the channel's thread mode; returns the mode it had before."""
    if mode not in THREAD_MODES:
        raise ValueError(f"unknown thread mode: {mode!r}")
    try:
        return _store(engine, workspace_id=workspace_id, channel_id=channel_id, mode=mode, now=now)
    except IntegrityError:  # set at the same moment by another agent: this one comes last
        return _store(engine, workspace_id=workspace_id, channel_id=channel_id, mode=mode, now=now)


def _store(engine: Engine, *, workspace_id: str, channel_id: str, mode: str, now: datetime) -> str:
    where = (settings.c.workspace_id == workspace_id, settings.c.channel_id == channel_id)
    with engine.begin() as conn:
        before = conn.execute(sa.select(settings.c.thread_mode).where(*where)).scalar_one_or_none()
        if before is None:
            conn.execute(
                sa.insert(settings).values(
                    workspace_id=workspace_id,
                    channel_id=channel_id,
                    thread_mode=mode,
                    updated_at=now,
                )
            )
        else:
            conn.execute(sa.update(settings).where(*where).values(thread_mode=mode, updated_at=now))
    return DEFAULT_THREAD_MODE if before is None else str(before)
