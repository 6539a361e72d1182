"""Who asked, how an action ended, and the audit row every `/card` action and button leaves.

Every agent action is audited once and counted in `bot.metrics.COMMANDS`; a user's mistake,
D1's trouble or our own bug all end as a short sentence, never an exception in a listener.
Blocking database work runs in a thread so the event loop keeps serving Slack's 3-second acks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from bot.metrics import COMMANDS
from bot.render import views
from bot.runtime import Runtime
from storage.repositories import audit

log = logging.getLogger(__name__)
T = TypeVar("T")

SOMETHING_WENT_WRONG = "Something went wrong on my side; it has been logged. Try again in a minute."
# Outcomes written to the audit log and used as metric labels (a bounded set).
OK = "ok"
INVALID = "invalid"
REFUSED_PAN = "refused_pan"
NOT_ALLOWED = "not_allowed"
ERROR = "error"


@dataclass(frozen=True)
class Invoker:
    """Who asked, and where."""

    workspace_id: str
    channel_id: str
    user_id: str


class Outcome(Exception):
    """Ends an action early with a reply and an audit outcome (not an error of ours)."""

    def __init__(self, outcome: str, reply: views.Reply, detail: str | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reply = reply
        self.detail = detail


async def in_thread(engine: Engine, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """A blocking repository call, off the event loop."""
    return await asyncio.to_thread(fn, engine, **kwargs)


class Auditor:
    """Writes the audit row of an action and turns how it ended into the agent's reply."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def audit(
        self,
        who: Invoker,
        *,
        action: str,
        outcome: str,
        card_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Write the audit row and count the action; never fails the reply."""
        COMMANDS.labels(action=action, outcome=outcome).inc()
        try:
            await in_thread(
                self.runtime.engine,
                audit.record,
                action=action,
                outcome=outcome,
                workspace_id=who.workspace_id,
                channel_id=who.channel_id,
                user_id=who.user_id,
                card_id=card_id,
                detail=detail,
                at=self.runtime.clock(),
            )
        except Exception:
            log.exception("audit write failed for action %s", action)

    async def audited(
        self,
        who: Invoker,
        action: str,
        card_id: str | None,
        work: Callable[[], Awaitable[views.Reply]],
    ) -> views.Reply:
        """Run `work`, turning Outcome and our own bugs into replies; audit once."""
        detail = None
        try:
            reply = await work()
            outcome = OK
        except Outcome as early:
            reply, outcome, detail = early.reply, early.outcome, early.detail
        except Exception:
            log.exception("%s failed", action)
            reply, outcome = views.error_reply(SOMETHING_WENT_WRONG), ERROR
        await self.audit(who, action=action, outcome=outcome, card_id=card_id, detail=detail)
        return reply

    async def refused(self, who: Invoker, *, action: str, reason: str) -> views.Reply:
        """Audit a refusal by access control; the reply says why."""
        await self.audit(who, action=action, outcome=NOT_ALLOWED)
        return views.error_reply(reason)
