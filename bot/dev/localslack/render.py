"""Recorded calls as readable text, for `d1bot demo` and for eyeballing a failing test: Block
Kit is JSON, and what a reader wants is the header, sections, fields and buttons it shows."""

from __future__ import annotations

from typing import Any

from bot.dev.localslack.calls import Call, truthy


def render_message_text(call: Call) -> str:
    """A recorded call as readable text (for `d1bot demo`): where it went, then the header,
    sections, fields, context and buttons of its blocks."""
    body = call.body
    where = body.get("channel") or body.get("user_id") or call.method
    head = f"[{call.method} -> {where}"
    if body.get("thread_ts"):
        head += f" thread {body['thread_ts']}"
    if truthy(body.get("reply_broadcast")):
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
