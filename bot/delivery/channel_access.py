"""Whether the bot can post in a channel, asked before a channel subscribes (so that an agent is
told now rather than every later post failing), and the end of a channel's pause.

`conversations.info` (`channels:read`, `groups:read`) tells a public channel from a private
one. The bot joins a public channel it is not in (`channels:join`: it shows up in the channel,
where people see it and can remove it, which then pauses delivery). A private channel it was
not invited to looks to it as if it did not exist: the agent is asked to invite it first."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.delivery.slack_errors import (
    AppUnauthorized,
    ChannelUnavailable,
    classify_slack_error,
    error_code,
    failed_answer,
)
from bot.runtime import Runtime
from storage.repositories import pauses

log = logging.getLogger(__name__)

INVITE_FIRST = (
    "I can't see this channel: it is private and I'm not a member. Invite the app first "
    "(`/invite @D1 Cards`), then run `/card subscribe` again."
)
ARCHIVED = "This channel is archived: I can't post here. Unarchive it first."
NOT_A_CHANNEL = "Cards can be followed in channels only: run `/card subscribe` in a channel."
SLACK_REFUSED = "Slack did not let me check this channel ({error}). Try again in a minute."


@dataclass(frozen=True)
class ChannelCheck:
    """The answer: `refusal` is the sentence for the agent when the channel cannot subscribe,
    `outcome` the audit code."""

    outcome: str
    refusal: str | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


async def check_channel(client: AsyncWebClient | None, channel_id: str) -> ChannelCheck:
    """Can the bot post in `channel_id`? Joins it when it is public and the bot is not in it."""
    if client is None:  # no Slack token: nothing can be checked (nor posted)
        return ChannelCheck("unchecked")
    if channel_id.startswith("D"):
        return ChannelCheck("not_a_channel", NOT_A_CHANNEL)
    try:
        info = (await client.conversations_info(channel=channel_id)).get("channel") or {}
        if info.get("is_im") or info.get("is_mpim"):
            return ChannelCheck("not_a_channel", NOT_A_CHANNEL)
        if info.get("is_archived"):
            return ChannelCheck("is_archived", ARCHIVED)
        if not info.get("is_member"):
            if info.get("is_private") or info.get("is_group"):
                return ChannelCheck("not_in_channel", INVITE_FIRST)
            await client.conversations_join(channel=channel_id)
            log.info("joined public channel %s to post its card updates", channel_id)
    except SlackApiError as exc:
        return _refusal(exc)
    return ChannelCheck("ok")


def _refusal(exc: SlackApiError) -> ChannelCheck:
    code = error_code(exc)
    if code == "channel_not_found":
        return ChannelCheck("not_in_channel", INVITE_FIRST)
    if code == "is_archived":
        return ChannelCheck("is_archived", ARCHIVED)
    status, _data, retry_after = failed_answer(exc)
    failure = classify_slack_error(status=status, error=code, retry_after=retry_after)
    if isinstance(failure, ChannelUnavailable):
        return ChannelCheck(failure.error, INVITE_FIRST)
    if isinstance(failure, AppUnauthorized):
        log.error("Slack refuses the bot token while checking a channel (%s)", failure.error)
    return ChannelCheck("slack_error", SLACK_REFUSED.format(error=failure.error))


async def resume_channel(runtime: Runtime, *, workspace_id: str, channel_id: str) -> bool:
    """End the channel's delivery pause (the bot was invited back, the channel unarchived, or
    someone subscribed it again); True when it was paused. Its waiting messages go out now."""
    reason = await asyncio.to_thread(
        pauses.resume_channel, runtime.engine, workspace_id=workspace_id, channel_id=channel_id
    )
    if reason is None:
        return False
    log.warning("delivery to channel %s resumes (it was paused: %s)", channel_id, reason)
    runtime.wake_outbox()
    return True


__all__ = ["ChannelCheck", "check_channel", "resume_channel"]
