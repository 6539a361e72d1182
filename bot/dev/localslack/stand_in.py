"""`LocalSlack`: the stand-in as tests and the demo hold it. It answers each call in Slack's
order (token, then scripted faults and rate limit, then the method), records it, and offers
the scripting and inspection the tests need; state, faults, methods and HTTP live in their own
modules."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp

from bot.dev.localslack.calls import Answer, Call, decode_body
from bot.dev.localslack.faults import TIER3_PER_MINUTE, Faults
from bot.dev.localslack.methods import METHODS
from bot.dev.localslack.serving import LoopbackServer, slack_routes
from bot.dev.localslack.workspace import Workspace


class LocalSlack:
    """The Slack Web API on 127.0.0.1 (see the package docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_call: Callable[[Call], None] | None = None,
        token_prefix: str = "xox",
    ) -> None:
        self.on_call = on_call
        self._token_prefix = token_prefix
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []
        self.answer_delay = 0.0  # seconds between recording a call and answering it
        self._delay_from_call = 0
        self._response_tokens: set[str] = set()
        self._workspace = Workspace()
        self._faults = Faults()
        self._app = slack_routes(self._api_call, self._response_call)
        self._server = LoopbackServer(self._app, host=host, port=port)
        self.base_url = ""
        self.root_url = ""

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """App Home views published, by user id."""
        return self._workspace.views

    @property
    def modals(self) -> dict[str, dict[str, Any]]:
        """Modals opened (`views.open`) and as last updated, by view id."""
        return self._workspace.modals

    @property
    def early_calls(self) -> list[Call]:
        """Calls that arrived before a Retry-After we gave had elapsed."""
        return self._faults.early_calls

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalSlack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.root_url = await self._server.start()
        self.base_url = f"{self.root_url}/api/"

    async def stop(self) -> None:
        await self._server.stop()

    def asgi_app(self) -> ASGIApp:
        """The stand-in as an ASGI app (to serve it some other way)."""
        return self._app

    # ------------------------------------------------------------------ scripting

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        count: int = 1,
        skip: int = 0,
    ) -> None:
        """Make the next `count` calls of `method` fail: an HTTP status (500, 429 with
        `Retry-After`), or HTTP 200 with `{"ok": false, "error": error}`. `skip` lets that many
        calls succeed first (fail the second post of a pair, say). Scripts queue up in order."""
        self._faults.fail_next(
            method, status=status, error=error, retry_after=retry_after, count=count, skip=skip
        )

    def enforce_rate_limit(
        self,
        per_channel_per_second: float | None = 1.0,
        *,
        workspace_per_minute: int | None = None,
        update_per_minute: int | None = TIER3_PER_MINUTE,
        tolerance: float = 0.05,
    ) -> None:
        """Answer 429 + Retry-After to a post that comes sooner than `1/rate` seconds after the
        previous accepted post to the same channel, to a `chat.postMessage` or `chat.update`
        beyond `workspace_per_minute` of them in any minute, and to a `chat.update` beyond
        `update_per_minute` (Tier 3) in any minute (`tolerance` absorbs loopback jitter).
        `None` turns that limit off."""
        self._faults.enforce_rate_limit(
            per_channel_per_second,
            tolerance,
            workspace_per_minute=workspace_per_minute,
            update_per_minute=update_per_minute,
        )

    @property
    def rate_limited(self) -> int:
        """How many 429s the enforced limits answered (scripted ones aside)."""
        return self._faults.rate_limited

    def enable_messages_tab(self, enabled: bool = True) -> None:
        """Whether the app's Messages tab is on: with it off (the manifest's choice), posts to
        a direct message are refused with `messages_tab_disabled`."""
        self._workspace.messages_tab_enabled = enabled

    def delete_message(self, channel: str, ts: str) -> None:
        """Delete a message as an agent would in Slack (its thread can no longer be replied to,
        an update finds nothing)."""
        if not self._workspace.delete(channel, ts):
            raise KeyError(f"no message {ts} in {channel}")

    def set_bot_membership(self, channel_id: str, *, member: bool) -> None:
        """The bot was invited to, or removed from, a declared channel."""
        known = self._workspace.channel(channel_id)
        known.bot_is_member = member
        self._workspace.channels[channel_id] = known

    def set_archived(self, channel_id: str, *, archived: bool) -> None:
        known = self._workspace.channel(channel_id)
        known.is_archived = archived
        self._workspace.channels[channel_id] = known

    def delay_answers(self, seconds: float, *, after: int = 0) -> None:
        """Answer calls `seconds` after they arrived, from the `after`-th call on (each is
        recorded, rate-checked and given its `ts` on arrival, as Slack does): a slow way back,
        or a busy Slack."""
        self.answer_delay = seconds
        self._delay_from_call = len(self.calls) + after

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
        """Declare a channel. Undeclared channels exist too: public, with the bot as a member.
        A private channel the bot is not in answers `channel_not_found`, as in Slack."""
        self._workspace.add_channel(
            channel_id,
            name=name,
            members=members,
            bot_is_member=bot_is_member,
            is_archived=is_archived,
            is_private=is_private,
        )

    def set_usergroup(self, usergroup_id: str, users: list[str]) -> None:
        self._workspace.usergroups[usergroup_id] = list(users)

    def response_url(self) -> str:
        """A fresh `response_url` on this server (what Slack puts in slash-command payloads)."""
        token = secrets.token_hex(8)
        self._response_tokens.add(token)
        return f"{self.root_url}/response/{token}"

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, *, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages posted (and kept current by `chat.update`), in posting order."""
        return self._workspace.messages(channel=channel)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in the thread under `thread_ts`, in order."""
        return self._workspace.thread(channel, thread_ts)

    def ephemerals(self, *, channel: str | None = None) -> list[dict[str, Any]]:
        return self._workspace.ephemerals(channel=channel)

    def reset(self) -> None:
        """Forget recorded calls and messages (channels and usergroups stay)."""
        self.calls.clear()
        self.responses.clear()
        self._faults.clear_early_calls()
        self._workspace.clear_posts()

    # ------------------------------------------------------------------ answering

    async def _api_call(
        self, method: str, query: dict[str, str], raw: bytes, content_type: str, authorization: str
    ) -> Answer:
        """One Web API call: recorded and answered at once, the answer sent after any delay."""
        body: dict[str, Any] = dict(query)
        body.update(decode_body(raw, content_type))
        body.pop("token", None)
        call = Call(method=method, body=body, at=time.monotonic())
        headers: dict[str, str] = {}
        try:
            call.status, call.response, headers = self._answer(call, authorization)
        except Exception as exc:  # a stand-in bug must show up in the test, not hang it
            call.status, call.response = 500, {"ok": False, "error": f"stand_in_error: {exc}"}
        self._record(call)
        position = len(self.calls) - 1  # this call's place (recorded just now)
        if self.answer_delay and position >= self._delay_from_call:
            await asyncio.sleep(self.answer_delay)
        return call.status, call.response, headers

    def _response_call(self, token: str, raw: bytes, content_type: str) -> tuple[int, str]:
        """A POST to a `response_url`: kept in `responses` if we handed that URL out."""
        body = decode_body(raw, content_type)
        call = Call(method="response_url", body=body, at=time.monotonic())
        if token not in self._response_tokens:
            call.status = 404
            call.response = {"ok": False, "error": "invalid_response_url"}
            self._record(call)
            return 404, "invalid_response_url"
        self.responses.append(body)
        call.response = {"ok": True}
        self._record(call)
        return 200, "ok"

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def _answer(self, call: Call, authorization: str) -> Answer:
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if not token.startswith(self._token_prefix):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        refusal = self._faults.refusal(call)
        if refusal is not None:
            return refusal
        method = METHODS.get(call.method)
        if method is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        response = method(self._workspace, call.body)
        if response.get("ok"):
            self._faults.accepted(call)
        return 200, response, {}
