"""The Web API methods the bot calls, answered from the simulated workspace.

Each takes the decoded request body and returns Slack's JSON answer, errors included
(`{"ok": false, "error": ...}` with HTTP 200, as Slack does). Authentication, scripted faults
and rate limits are decided before a method runs (see `faults` and `stand_in`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.dev.localslack.calls import BOT_ID, BOT_USER_ID, PERMALINK_HOST, TEAM_ID, truthy
from bot.dev.localslack.workspace import Workspace

Method = Callable[[Workspace, dict[str, Any]], dict[str, Any]]
MAX_TEXT_CHARS = 40000
MAX_BLOCKS = 50  # per message
MAX_SECTION_CHARS = 3000  # a section block's text


def _content_error(body: dict[str, Any]) -> str | None:
    """Slack's refusal of a message's content: too long, or blocks it would not accept."""
    if len(str(body.get("text") or "")) > MAX_TEXT_CHARS:
        return "msg_too_long"
    blocks = body.get("blocks")
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            return "invalid_blocks"
        text = block.get("text")
        if isinstance(text, dict) and len(str(text.get("text") or "")) > MAX_SECTION_CHARS:
            return "invalid_blocks"
    return None


def _channel_id(body: dict[str, Any], key: str = "channel") -> str:
    return str(body.get(key) or "")


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Slack returns it: without the stand-in's own bookkeeping."""
    return {k: v for k, v in message.items() if k not in {"updates", "channel"} and v is not None}


def auth_test(_ws: Workspace, _body: dict[str, Any]) -> dict[str, Any]:
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


def post_message(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel = _channel_id(body)
    error = ws.channel_error(channel)
    if error:
        return {"ok": False, "error": error}
    if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
        return {"ok": False, "error": "no_text"}
    refused = _content_error(body)
    if refused:
        return {"ok": False, "error": refused}
    thread_ts = body.get("thread_ts") or None
    if thread_ts is not None and ws.find(channel, thread_ts) is None:
        return {"ok": False, "error": "thread_not_found"}
    ts = ws.next_ts()
    message = {
        "ts": ts,
        "channel": channel,
        "thread_ts": thread_ts,
        "reply_broadcast": truthy(body.get("reply_broadcast")),
        "text": body.get("text"),
        "blocks": body.get("blocks"),
        "user": BOT_USER_ID,
        "updates": 0,
    }
    ws.messages_by_channel[channel].append(message)
    return {"ok": True, "channel": channel, "ts": ts, "message": _public(message)}


def update(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel, ts = _channel_id(body), body.get("ts")
    error = ws.channel_error(channel)
    if error:
        return {"ok": False, "error": error}
    message = ws.find(channel, ts)
    if message is None:
        return {"ok": False, "error": "message_not_found"}
    refused = _content_error(body)
    if refused:
        return {"ok": False, "error": refused}
    if "text" in body:
        message["text"] = body["text"]
    if "blocks" in body:
        message["blocks"] = body["blocks"]
    message["updates"] += 1
    return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}


def delete(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel, ts = _channel_id(body), body.get("ts")
    error = ws.channel_error(channel)
    if error:
        return {"ok": False, "error": error}
    if not ws.delete(channel, ts):
        return {"ok": False, "error": "message_not_found"}
    return {"ok": True, "channel": channel, "ts": ts}


def post_ephemeral(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel, user = _channel_id(body), body.get("user")
    error = ws.channel_error(channel)
    if error:
        return {"ok": False, "error": error}
    if not user:
        return {"ok": False, "error": "user_not_in_channel"}
    ts = ws.next_ts()
    ws.ephemerals_by_channel[channel].append(
        {"ts": ts, "channel": channel, "user": user, "text": body.get("text"),
         "blocks": body.get("blocks"), "thread_ts": body.get("thread_ts")}
    )  # fmt: skip
    return {"ok": True, "message_ts": ts}


def get_permalink(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel, ts = _channel_id(body), body.get("message_ts")
    if not channel or not ts:
        return {"ok": False, "error": "invalid_arguments"}
    message = ws.find(channel, ts)
    if message is None:
        return {"ok": False, "error": "message_not_found"}
    link = f"{PERMALINK_HOST}/archives/{channel}/p{str(ts).replace('.', '')}"
    if message.get("thread_ts"):
        link += f"?thread_ts={message['thread_ts']}&cid={channel}"
    return {"ok": True, "channel": channel, "permalink": link}


def views_publish(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    user_id, view = body.get("user_id"), body.get("view")
    if not user_id or not isinstance(view, dict):
        return {"ok": False, "error": "invalid_arguments"}
    ws.views[user_id] = view
    return {"ok": True, "view": {"id": f"V{len(ws.views):08d}", **view}}


MAX_VIEW_BLOCKS = 100
MAX_TITLE_CHARS = 24
MAX_METADATA_CHARS = 3000


def _view_error(view: Any) -> str | None:
    """Slack's refusal of a modal: not a modal, too many blocks, a long title or metadata."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return "invalid_arguments"
    title = (view.get("title") or {}).get("text") if isinstance(view.get("title"), dict) else None
    blocks = view.get("blocks")
    if not title or len(title) > MAX_TITLE_CHARS:
        return "invalid_arguments"
    if not isinstance(blocks, list) or len(blocks) > MAX_VIEW_BLOCKS:
        return "invalid_arguments"
    if len(str(view.get("private_metadata") or "")) > MAX_METADATA_CHARS:
        return "invalid_arguments"
    return _content_error({"blocks": blocks[:MAX_BLOCKS]})


def views_open(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """A modal opened for the user who pressed or typed (`trigger_id`)."""
    if not body.get("trigger_id"):
        return {"ok": False, "error": "invalid_trigger_id"}
    error = _view_error(body.get("view"))
    if error:
        return {"ok": False, "error": error}
    view_id = f"VM{len(ws.modals) + 1:07d}"
    ws.modals[view_id] = body["view"]
    return {"ok": True, "view": {"id": view_id, **body["view"]}}


def views_update(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    view_id = body.get("view_id")
    if view_id not in ws.modals:
        return {"ok": False, "error": "not_found"}
    error = _view_error(body.get("view"))
    if error:
        return {"ok": False, "error": error}
    ws.modals[view_id] = body["view"]
    return {"ok": True, "view": {"id": view_id, **body["view"]}}


def conversations_info(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    channel_id = _channel_id(body)
    if not channel_id:
        return {"ok": False, "error": "channel_not_found"}
    known = ws.channel(channel_id)
    if known.is_private and not known.bot_is_member:
        return {"ok": False, "error": "channel_not_found"}  # the bot cannot see it
    return {
        "ok": True,
        "channel": {
            "id": known.id,
            "name": known.name,
            "is_channel": not known.is_private,
            "is_group": known.is_private,
            "is_private": known.is_private,
            "is_im": channel_id.startswith("D"),
            "is_member": known.bot_is_member,
            "is_archived": known.is_archived,
            "num_members": len(known.members),
        },
    }


def conversations_join(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    """The bot joins a public channel (scope `channels:join`); private ones need an invite."""
    channel_id = _channel_id(body)
    if not channel_id:
        return {"ok": False, "error": "channel_not_found"}
    known = ws.channel(channel_id)
    if known.is_private:
        error = "method_not_supported_for_channel_type" if known.bot_is_member else None
        return {"ok": False, "error": error or "channel_not_found"}
    if known.is_archived:
        return {"ok": False, "error": "is_archived"}
    if channel_id in ws.channels:
        known.bot_is_member = True
    return {"ok": True, "channel": {"id": known.id, "name": known.name, "is_member": True}}


def usergroups_users_list(ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    group = body.get("usergroup")
    if group not in ws.usergroups:
        return {"ok": False, "error": "no_such_subteam"}
    return {"ok": True, "users": list(ws.usergroups[group])}


def conversations_open(_ws: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    users = body.get("users")
    if isinstance(users, list):
        users = ",".join(users)
    if not users:
        return {"ok": False, "error": "users_list_not_supplied"}
    first = str(users).split(",")[0].strip()
    return {"ok": True, "channel": {"id": f"D{first}"}}


METHODS: dict[str, Method] = {
    "auth.test": auth_test,
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
    "views.publish": views_publish,
    "views.open": views_open,
    "views.update": views_update,
    "conversations.info": conversations_info,
    "conversations.join": conversations_join,
    "usergroups.users.list": usergroups_users_list,
    "conversations.open": conversations_open,
}
