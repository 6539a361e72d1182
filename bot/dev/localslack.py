"""A local stand-in for the Slack Web API: real HTTP on loopback, port 0.

Used by the tests (with the real `slack_sdk.AsyncWebClient(base_url=slack.base_url)`) and by
`d1bot demo`. It records every call with its decoded body, keeps the messages of each channel
(with their `ts`, threads and updates), and can be scripted to fail (`fail_next`) or to enforce
Slack's per-channel posting rate with `429 Retry-After`, so that delivery code is exercised
against the failures it must survive rather than against a mock.

    async with LocalSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages(channel="C1")[0]["text"] == "hi"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from aiohttp import web as aiohttp_web
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

BOT_USER_ID = "UD1BOT"
BOT_ID = "BD1BOT"
TEAM_ID = "T0LOCAL"
PERMALINK_HOST = "https://localslack.example"
# Methods whose posting rate Slack limits per channel (about one message per second).
RATE_LIMITED_METHODS = frozenset({"chat.postMessage"})
# Form fields that carry JSON documents when a client sends form-encoded bodies.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")


@dataclass
class Call:
    """One request the stand-in received, and what it answered."""

    method: str
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def channel(self) -> str | None:
        value = self.body.get("channel")
        return str(value) if value is not None else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Failure:
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    remaining: int = 1
    skip: int = 0


@dataclass
class _Channel:
    id: str
    name: str
    members: list[str]
    bot_is_member: bool = True
    is_archived: bool = False


class LocalSlack:
    """The Slack Web API on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_call: Callable[[Call], None] | None = None,
        token_prefix: str = "xox",
        server: str = "uvicorn",
    ) -> None:
        if server not in {"uvicorn", "aiohttp"}:
            raise ValueError(f"unknown server {server!r}: uvicorn or aiohttp")
        self.server = server  # aiohttp's C HTTP parser costs a third of uvicorn+h11 per call
        self._runner: aiohttp_web.AppRunner | None = None
        self._host = host
        self._port = port
        self.on_call = on_call
        self._token_prefix = token_prefix
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.early_calls: list[Call] = []  # arrived before a Retry-After we gave had elapsed
        self._messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._ephemerals: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._channels: dict[str, _Channel] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._rate: float | None = None
        self._rate_tolerance = 0.0
        self._last_post: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._last_ts_us = 0
        self.answer_delay = 0.0  # seconds between recording a call and answering it
        self._delay_from_call = 0
        self._response_tokens: set[str] = set()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""
        self.root_url = ""

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
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._socket = sock
        port = sock.getsockname()[1]
        self.root_url = f"http://{self._host}:{port}"
        self.base_url = f"{self.root_url}/api/"
        if self.server == "aiohttp":
            await self._start_aiohttp(sock)
            return
        config = uvicorn.Config(
            self.asgi_app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)

    async def _start_aiohttp(self, sock: socket.socket) -> None:
        app = aiohttp_web.Application()
        app.router.add_route("GET", "/api/{method}", self._aiohttp_api)
        app.router.add_route("POST", "/api/{method}", self._aiohttp_api)
        app.router.add_route("POST", "/response/{token}", self._aiohttp_response)
        self._runner = aiohttp_web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await aiohttp_web.SockSite(self._runner, sock).start()

    async def _aiohttp_api(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        call, headers = self._api_call(
            request.match_info["method"],
            dict(request.query),
            await request.read(),
            request.headers.get("Content-Type", ""),
            request.headers.get("Authorization", ""),
        )
        await self._delay(len(self.calls) - 1)  # this call's place (recorded just now)
        return aiohttp_web.json_response(call.response, status=call.status, headers=headers)

    async def _aiohttp_response(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        status, text = self._response_call(
            request.match_info["token"],
            await request.read(),
            request.headers.get("Content-Type", ""),
        )
        return aiohttp_web.Response(text=text, status=status)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None

    def asgi_app(self) -> ASGIApp:
        """The stand-in as an ASGI app. A plain dispatch on the path rather than a Starlette
        router with its middleware: at a thousand calls a second (the fan-out benchmark) the
        stand-in's own cost per call must stay well below the bot's."""
        return self._asgi

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        verb: str = scope["method"]
        request = Request(scope, receive)
        response: Response
        if path.startswith("/api/") and "/" not in path[5:] and path[5:]:
            if verb not in {"GET", "HEAD", "POST"}:
                response = Response("Method Not Allowed", status_code=405)
            else:
                scope["path_params"] = {"method": path[5:]}
                response = await self._handle_api(request)
        elif path.startswith("/response/") and "/" not in path[10:] and path[10:]:
            if verb != "POST":
                response = Response("Method Not Allowed", status_code=405)
            else:
                scope["path_params"] = {"token": path[10:]}
                response = await self._handle_response(request)
        else:
            response = Response("Not Found", status_code=404)
        await response(scope, receive, send)

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
        if status == 200 and error is None:
            error = "internal_error"
        if status == 429 and retry_after is None:
            retry_after = 1
        self._failures[method].append(
            _Failure(
                status=status, error=error, retry_after=retry_after, remaining=count, skip=skip
            )
        )

    def enforce_rate_limit(
        self, per_channel_per_second: float | None = 1.0, *, tolerance: float = 0.05
    ) -> None:
        """Answer 429 + Retry-After to a post that comes sooner than `1/rate` seconds after the
        previous accepted post to the same channel (`tolerance` absorbs loopback jitter).
        `None` turns enforcement off."""
        self._rate = per_channel_per_second
        self._rate_tolerance = tolerance

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
    ) -> None:
        """Declare a channel. Undeclared channels exist too, with the bot as a member."""
        self._channels[channel_id] = _Channel(
            id=channel_id,
            name=name or channel_id.lower(),
            members=list(members or []),
            bot_is_member=bot_is_member,
            is_archived=is_archived,
        )

    def set_usergroup(self, usergroup_id: str, users: list[str]) -> None:
        self._usergroups[usergroup_id] = list(users)

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
        if channel is not None:
            return list(self._messages.get(channel, []))
        return [m for msgs in self._messages.values() for m in msgs]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in the thread under `thread_ts`, in order."""
        return [m for m in self._messages.get(channel, []) if m.get("thread_ts") == thread_ts]

    def ephemerals(self, *, channel: str | None = None) -> list[dict[str, Any]]:
        if channel is not None:
            return list(self._ephemerals.get(channel, []))
        return [m for msgs in self._ephemerals.values() for m in msgs]

    def reset(self) -> None:
        """Forget recorded calls and messages (channels and usergroups stay)."""
        self.calls.clear()
        self.responses.clear()
        self.early_calls.clear()
        self._messages.clear()
        self._ephemerals.clear()
        self.views.clear()

    # ------------------------------------------------------------------ HTTP

    async def _handle_response(self, request: Request) -> Response:
        raw = await request.body()
        status, text = self._response_call(
            request.path_params["token"], raw, request.headers.get("content-type", "")
        )
        return Response(text, status_code=status, media_type="text/plain")

    async def _handle_api(self, request: Request) -> Response:
        call, headers = self._api_call(
            request.path_params["method"],
            dict(request.query_params),
            await request.body(),
            request.headers.get("content-type", ""),
            request.headers.get("authorization", ""),
        )
        await self._delay(len(self.calls) - 1)  # this call's place (recorded just now)
        return JSONResponse(call.response, status_code=call.status, headers=headers)

    async def _delay(self, position: int) -> None:
        if self.answer_delay and position >= self._delay_from_call:
            await asyncio.sleep(self.answer_delay)

    def _response_call(self, token: str, raw: bytes, content_type: str) -> tuple[int, str]:
        """A POST to a `response_url` (whichever HTTP server received it)."""
        body = _decode(raw, content_type)
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

    def _api_call(
        self, method: str, query: dict[str, str], raw: bytes, content_type: str, authorization: str
    ) -> tuple[Call, dict[str, str]]:
        """One Web API call (whichever HTTP server received it): recorded and answered."""
        body: dict[str, Any] = dict(query)
        body.update(_decode(raw, content_type))
        body.pop("token", None)
        call = Call(method=method, body=body, at=time.monotonic())
        headers: dict[str, str] = {}
        try:
            call.status, call.response, headers = self._answer(call, authorization)
        except Exception as exc:  # a stand-in bug must show up in the test, not hang it
            call.status, call.response = 500, {"ok": False, "error": f"stand_in_error: {exc}"}
        self._record(call)
        return call, headers

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def _answer(self, call: Call, authorization: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if not token.startswith(self._token_prefix):
            return 200, {"ok": False, "error": "invalid_auth"}, {}

        channel = call.channel
        rate_key = f"{call.method}:{channel}" if channel else call.method
        now = call.at
        not_before = self._not_before.get(rate_key)
        if not_before is not None and now < not_before:
            self.early_calls.append(call)

        failure = self._take_failure(call.method)
        if failure is not None:
            headers: dict[str, str] = {}
            if failure.status == 429:
                wait = float(failure.retry_after or 1)
                headers["Retry-After"] = str(math.ceil(wait))
                self._not_before[rate_key] = now + wait
                return 429, {"ok": False, "error": "ratelimited"}, headers
            if failure.status != 200:
                return failure.status, {"ok": False, "error": "internal_error"}, headers
            return 200, {"ok": False, "error": failure.error}, headers

        if call.method in RATE_LIMITED_METHODS and channel and self._rate:
            interval = 1.0 / self._rate
            last = self._last_post.get(channel)
            if last is not None and now - last < interval - self._rate_tolerance:
                wait = interval - (now - last)
                self._not_before[rate_key] = last + interval - self._rate_tolerance
                return (
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )

        handler = _HANDLERS.get(call.method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        response = handler(self, call.body)
        if call.method in RATE_LIMITED_METHODS and channel and response.get("ok"):
            self._last_post[channel] = now
        return 200, response, {}

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        if failure.skip > 0:
            failure.skip -= 1
            return None
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.popleft()
        return failure

    # ------------------------------------------------------------------ methods

    def _next_ts(self) -> str:
        """A message `ts` as Slack mints it: the epoch time at which the message was recorded,
        to the microsecond, bumped by a microsecond where two would collide (a `ts` names one
        message). The delivery worker's pacer reads the arrival time from it."""
        now_us = time.time_ns() // 1000
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _channel_error(self, channel_id: str | None) -> str | None:
        if not channel_id:
            return "channel_not_found"
        known = self._channels.get(channel_id)
        if known is None:
            return None
        if known.is_archived:
            return "is_archived"
        if not known.bot_is_member:
            return "not_in_channel"
        return None

    def _auth_test(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"{PERMALINK_HOST}/",
            "team": "Local Slack",
            "user": "d1bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel")
        error = self._channel_error(channel)
        if error:
            return {"ok": False, "error": error}
        if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
            return {"ok": False, "error": "no_text"}
        if len(str(body.get("text") or "")) > 40000:
            return {"ok": False, "error": "msg_too_long"}
        thread_ts = body.get("thread_ts") or None
        if thread_ts is not None and not any(
            m["ts"] == thread_ts for m in self._messages.get(channel, [])
        ):
            return {"ok": False, "error": "thread_not_found"}
        ts = self._next_ts()
        message = {
            "ts": ts,
            "channel": channel,
            "thread_ts": thread_ts,
            "reply_broadcast": _truthy(body.get("reply_broadcast")),
            "text": body.get("text"),
            "blocks": body.get("blocks"),
            "user": BOT_USER_ID,
            "updates": 0,
        }
        self._messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": _public(message)}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel"), body.get("ts")
        error = self._channel_error(channel)
        if error:
            return {"ok": False, "error": error}
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                if "text" in body:
                    message["text"] = body["text"]
                if "blocks" in body:
                    message["blocks"] = body["blocks"]
                message["updates"] += 1
                return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def _post_ephemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, user = body.get("channel"), body.get("user")
        error = self._channel_error(channel)
        if error:
            return {"ok": False, "error": error}
        if not user:
            return {"ok": False, "error": "user_not_in_channel"}
        ts = self._next_ts()
        self._ephemerals[channel].append(
            {"ts": ts, "channel": channel, "user": user, "text": body.get("text"),
             "blocks": body.get("blocks"), "thread_ts": body.get("thread_ts")}
        )  # fmt: skip
        return {"ok": True, "message_ts": ts}

    def _get_permalink(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel"), body.get("message_ts")
        if not channel or not ts:
            return {"ok": False, "error": "invalid_arguments"}
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                link = f"{PERMALINK_HOST}/archives/{channel}/p{ts.replace('.', '')}"
                if message.get("thread_ts"):
                    link += f"?thread_ts={message['thread_ts']}&cid={channel}"
                return {"ok": True, "channel": channel, "permalink": link}
        return {"ok": False, "error": "message_not_found"}

    def _views_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id, view = body.get("user_id"), body.get("view")
        if not user_id or not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        self.views[user_id] = view
        return {"ok": True, "view": {"id": f"V{len(self.views):08d}", **view}}

    def _conversations_info(self, body: dict[str, Any]) -> dict[str, Any]:
        channel_id = body.get("channel")
        if not channel_id:
            return {"ok": False, "error": "channel_not_found"}
        known = self._channels.get(channel_id)
        if known is None:
            known = _Channel(id=channel_id, name=channel_id.lower(), members=[])
        return {
            "ok": True,
            "channel": {
                "id": known.id,
                "name": known.name,
                "is_channel": True,
                "is_member": known.bot_is_member,
                "is_archived": known.is_archived,
                "num_members": len(known.members),
            },
        }

    def _usergroups_users_list(self, body: dict[str, Any]) -> dict[str, Any]:
        group = body.get("usergroup")
        if group not in self._usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self._usergroups[group])}

    def _conversations_open(self, body: dict[str, Any]) -> dict[str, Any]:
        users = body.get("users")
        if isinstance(users, list):
            users = ",".join(users)
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        first = str(users).split(",")[0].strip()
        return {"ok": True, "channel": {"id": f"D{first}"}}


_HANDLERS: dict[str, Callable[[LocalSlack, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": LocalSlack._auth_test,
    "chat.postMessage": LocalSlack._post_message,
    "chat.update": LocalSlack._update,
    "chat.postEphemeral": LocalSlack._post_ephemeral,
    "chat.getPermalink": LocalSlack._get_permalink,
    "views.publish": LocalSlack._views_publish,
    "conversations.info": LocalSlack._conversations_info,
    "usergroups.users.list": LocalSlack._usergroups_users_list,
    "conversations.open": LocalSlack._conversations_open,
}


def _decode(raw: bytes, content_type: str) -> dict[str, Any]:
    """JSON or form-encoded body as a dict; JSON documents inside form fields decoded."""
    if not raw:
        return {}
    if "json" in content_type:
        try:
            decoded = json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}
        return decoded if isinstance(decoded, dict) else {"_json": decoded}
    body: dict[str, Any] = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                body[name] = json.loads(value)
    return body


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in {"1", "true", "yes"}
    return bool(value)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in {"updates", "channel"} and v is not None}


# ---------------------------------------------------------------------- readable rendering


def render_message_text(call: Call) -> str:
    """A recorded call as readable text (for `d1bot demo`): where it went, then the header,
    sections, fields, context and buttons of its blocks."""
    body = call.body
    where = body.get("channel") or body.get("user_id") or call.method
    head = f"[{call.method} -> {where}"
    if body.get("thread_ts"):
        head += f" thread {body['thread_ts']}"
    if _truthy(body.get("reply_broadcast")):
        head += " +broadcast"
    if body.get("ts"):
        head += f" update {body['ts']}"
    head += "]"
    if call.status != 200 or not call.response.get("ok", True):
        head += f" -> {call.status} {call.response.get('error', '')}".rstrip()
    lines = [head]
    blocks = body.get("blocks")
    if isinstance(body.get("view"), dict):
        blocks = body["view"].get("blocks")
    if isinstance(blocks, list) and blocks:
        lines.extend(_render_blocks(blocks))
    elif body.get("text"):
        lines.append(f"  {body['text']}")
    return "\n".join(lines)


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return str(obj.get("text", ""))
    return str(obj or "")


def _render_blocks(blocks: list[Any]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "header":
            lines.append(f"  == {_text_of(block.get('text'))} ==")
        elif kind == "section":
            if block.get("text"):
                lines.extend(f"  {line}" for line in _text_of(block["text"]).splitlines())
            for item in block.get("fields") or []:
                lines.append("    - " + _text_of(item).replace("\n", " "))
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                lines.append(f"  [{_text_of(accessory.get('text'))}]")
        elif kind == "context":
            parts = [_text_of(e) for e in block.get("elements") or [] if isinstance(e, dict)]
            lines.append("  (" + " | ".join(p for p in parts if p) + ")")
        elif kind == "actions":
            buttons = [
                f"[{_text_of(e.get('text'))}]"
                for e in block.get("elements") or []
                if isinstance(e, dict)
            ]
            lines.append("  " + " ".join(buttons))
        elif kind == "divider":
            lines.append("  ----")
    return lines


__all__ = ["BOT_USER_ID", "TEAM_ID", "Call", "LocalSlack", "render_message_text"]
