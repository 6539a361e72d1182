"""The simulated workspace: channels, usergroups, the messages and threads posted so far,
ephemerals and App Home views.

It is what the Web API methods read and change, and what tests inspect afterwards; it knows
nothing about HTTP, tokens or rate limits.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass
class Channel:
    """A declared channel. Undeclared ones behave as public channels the bot is a member of."""

    id: str
    name: str
    members: list[str]
    bot_is_member: bool = True
    is_archived: bool = False
    is_private: bool = False


class Workspace:
    """What Slack holds between calls (see the module docstring)."""

    def __init__(self) -> None:
        self.messages_by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ephemerals_by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.channels: dict[str, Channel] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.modals: dict[str, dict[str, Any]] = {}  # by view id, as last opened or updated
        self.messages_tab_enabled = False  # as the app's manifest says
        self._last_ts_us = 0

    # ------------------------------------------------------------------ declaring

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        members: list[str] | None = None,
        bot_is_member: bool = True,
        is_archived: bool = False,
        is_private: bool = False,
    ) -> None:
        self.channels[channel_id] = Channel(
            id=channel_id,
            name=name or channel_id.lower(),
            members=list(members or []),
            bot_is_member=bot_is_member,
            is_archived=is_archived,
            is_private=is_private,
        )

    def channel(self, channel_id: str) -> Channel:
        """The declared channel, or the default an undeclared id stands for."""
        known = self.channels.get(channel_id)
        if known is None:
            known = Channel(id=channel_id, name=channel_id.lower(), members=[])
        return known

    def channel_error(self, channel_id: str) -> str | None:
        """Why the bot may not post in `channel_id`, as Slack's error code; None if it may.
        A private channel the bot is not in does not exist as far as the bot can tell."""
        if not channel_id:
            return "channel_not_found"
        if channel_id.startswith("D"):
            return None if self.messages_tab_enabled else "messages_tab_disabled"
        known = self.channels.get(channel_id)
        if known is None:
            return None
        if known.is_private and not known.bot_is_member:
            return "channel_not_found"
        if known.is_archived:
            return "is_archived"
        if not known.bot_is_member:
            return "not_in_channel"
        return None

    def delete(self, channel_id: str, ts: Any) -> bool:
        """Delete a message (as an agent would); its thread can no longer be replied to."""
        messages = self.messages_by_channel.get(channel_id, [])
        for i, message in enumerate(messages):
            if message["ts"] == ts:
                del messages[i]
                return True
        return False

    # ------------------------------------------------------------------ messages

    def next_ts(self) -> str:
        """A message `ts` as Slack mints it: the epoch time at which the message was recorded,
        to the microsecond, bumped by a microsecond where two would collide (a `ts` names one
        message). The delivery worker's pacer reads the arrival time from it."""
        now_us = time.time_ns() // 1000
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def find(self, channel_id: str, ts: Any) -> dict[str, Any] | None:
        for message in self.messages_by_channel.get(channel_id, []):
            if message["ts"] == ts:
                return message
        return None

    def messages(self, *, channel: str | None = None) -> list[dict[str, Any]]:
        if channel is not None:
            return list(self.messages_by_channel.get(channel, []))
        return [m for msgs in self.messages_by_channel.values() for m in msgs]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [
            m for m in self.messages_by_channel.get(channel, []) if m.get("thread_ts") == thread_ts
        ]

    def ephemerals(self, *, channel: str | None = None) -> list[dict[str, Any]]:
        if channel is not None:
            return list(self.ephemerals_by_channel.get(channel, []))
        return [m for msgs in self.ephemerals_by_channel.values() for m in msgs]

    def clear_posts(self) -> None:
        """Forget messages, ephemerals and views; channels and usergroups stay declared."""
        self.messages_by_channel.clear()
        self.ephemerals_by_channel.clear()
        self.views.clear()
        self.modals.clear()
