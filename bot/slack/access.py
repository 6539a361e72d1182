"""Who may use the bot where: optional allowlists of channels and of Slack user groups.

`D1BOT_ALLOWED_CHANNELS` and `D1BOT_ALLOWED_USERGROUPS` are comma-separated ids; an empty list
allows everyone. Group membership comes from `usergroups.users.list`, cached briefly so a burst
of commands costs one Slack call per group. When Slack cannot tell us, access is refused (fail
closed) with a reason the agent can act on.

The check is Bolt middleware (bot/slack/middleware.py): it acks, then checks, and Slack's HTTP
request is answered only after the check, so the lookup is bounded well under Slack's 3-second
limit: a slow Slack means "try again", never a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bot.settings import Settings

log = logging.getLogger(__name__)

MEMBERSHIP_TTL_SECONDS = 60.0
LOOKUP_TIMEOUT_SECONDS = 2.0
NOT_ALLOWED_CHANNEL = (
    "The card bot is not enabled in this channel; ask an admin or use an allowed channel."
)
NOT_ALLOWED_USER = (
    "You are not in a user group allowed to use the card bot; ask an admin to add you."
)
CANNOT_VERIFY = "Slack did not let me check your user groups just now; try again in a minute."


class AccessControl:
    """Decides whether a user may use the bot in a channel; `refusal()` gives the reason."""

    def __init__(
        self,
        *,
        allowed_channels: frozenset[str],
        allowed_usergroups: frozenset[str],
        client: Any,
        ttl_seconds: float = MEMBERSHIP_TTL_SECONDS,
        lookup_timeout_seconds: float = LOOKUP_TIMEOUT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed_channels = allowed_channels
        self.allowed_usergroups = allowed_usergroups
        self._client = client
        self._ttl = ttl_seconds
        self._lookup_timeout = lookup_timeout_seconds
        self._monotonic = monotonic
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, client: Any) -> AccessControl:
        return cls(
            allowed_channels=settings.allowed_channels,
            allowed_usergroups=settings.allowed_usergroups,
            client=client,
        )

    async def refusal(self, *, user_id: str, channel_id: str) -> str | None:
        """None when allowed, else a sentence saying why not."""
        if self.allowed_channels and channel_id not in self.allowed_channels:
            return NOT_ALLOWED_CHANNEL
        if not self.allowed_usergroups:
            return None
        try:
            async with asyncio.timeout(self._lookup_timeout):
                for group in sorted(self.allowed_usergroups):
                    if user_id in await self._group_members(group):
                        return None
        except Exception as exc:  # Slack slow, down or missing scope: refuse, say so, log the kind
            log.warning("usergroup membership lookup failed: %s", type(exc).__name__)
            return CANNOT_VERIFY
        return NOT_ALLOWED_USER

    async def _group_members(self, group: str) -> frozenset[str]:
        now = self._monotonic()
        cached = self._members.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._lock:
            cached = self._members.get(group)
            if cached is not None and cached[0] > self._monotonic():
                return cached[1]
            response = await self._client.usergroups_users_list(usergroup=group)
            members = frozenset(response.get("users") or [])
            self._members[group] = (self._monotonic() + self._ttl, members)
            return members
