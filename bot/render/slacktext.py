"""The one boundary between outside text and Slack: every string the bot sends to Slack (blocks,
fallback `text`, ephemeral replies, App Home, modals, digests, notices, shares) is built here.

Two steps, each in one place:

- **Inserting outside text** (D1's free text, unknown codes, card ids, URLs, ids from a
  request): `escape` masks card numbers (`d1.carddata`, the one detector) and escapes `&`, `<`,
  `>`, which makes every mention or special token in the data inert (`<!here>`, `<!channel>`,
  `<@U…>`, `<#C…>`, `<!subteam^…>`, `<!date^…>` are shown, not obeyed). Mentions and links the
  bot means are built only by `user`, `channel` and `tracking_link`.
- **Finishing a payload**: `message_payload` and `view_payload` cut every text to Slack's
  limit with a visible `…` (never inside a `<…>` token or an `&…;` entity), cap fields,
  elements and blocks, and mask card numbers once more in every string. `slack_sdk` does not
  check most of these limits, and real Slack answers `invalid_blocks` when one is broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from d1.carddata import contains_pan, mask_pans_in, redact_pans
from d1.models import CARRIER_NAMES

# --------------------------------------------------------------------------- Slack's limits

SECTION_TEXT = 3000
SECTION_FIELD = 2000
SECTION_FIELDS = 10
HEADER_TEXT = 150
CONTEXT_ELEMENT = 2000
CONTEXT_ELEMENTS = 10
ACTION_ELEMENTS = 25
BUTTON_TEXT = 75
OPTION_TEXT = 75
BUTTON_VALUE = 2000
BUTTON_URL = 3000
MODAL_TITLE = 24
PRIVATE_METADATA = 3000
FALLBACK_TEXT = 40000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100  # App Home and modals

ELLIPSIS = "…"
EMPTY = "-"  # Slack refuses an empty text object

# --------------------------------------------------------------------------- inserting text


def escape(text: object) -> str:
    """Outside text made inert for Slack: card numbers masked, then `&`, `<`, `>` escaped."""
    if text is None:
        return ""
    value = text if isinstance(text, str) else str(text)
    if not value:
        return ""
    return redact_pans(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_USER_ID = re.compile(r"^[UWB][A-Z0-9]{1,20}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{1,20}$")


def user(user_id: str | None) -> str:
    """A mention of a Slack user id; anything not shaped like one is shown as text."""
    value = user_id or ""
    return f"<@{value}>" if _USER_ID.match(value) else escape(value)


def channel(channel_id: str | None) -> str:
    """A link to a Slack channel id; anything not shaped like one is shown as text."""
    value = channel_id or ""
    return f"<#{value}>" if _CHANNEL_ID.match(value) else escape(value)


# Characters a URL keeps as they are; everything else (`|`, `>`, `<`, spaces, quotes, non-ASCII)
# is percent-encoded, so that nothing in it can close or split Slack's `<url|label>`.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def safe_url(url: str | None) -> str | None:
    """`url` ready for `<url|label>`: http or https with a host, percent-encoded, with no
    card number in it (as written or decoded); None when it is not fit to be a link."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    if contains_pan(url) or contains_pan(unquote(url)):
        return None
    encoded = quote(url, safe=_URL_SAFE)
    if len(encoded) > BUTTON_URL:
        return None
    return encoded.replace("&", "&amp;")


def carrier_label(code: str | None) -> str:
    """The carrier's display name from D1's carrier code; an unknown code shown escaped."""
    if not code:
        return "the carrier"
    return CARRIER_NAMES.get(code) or escape(code)


def tracking_link(url: str | None, carrier_code: str | None) -> str | None:
    """A link to the carrier's tracking page, labelled with the carrier's name only (never
    other text from the payload, which could pose as another site); None for an unfit URL."""
    target = safe_url(url)
    if target is None:
        return None
    return f"<{target}|Track on {carrier_label(carrier_code)}>"


# --------------------------------------------------------------------------- cutting


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with a visible `…`, never inside a `<…>` token or an
    `&…;` entity (a half token would show as markup or break the link)."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ELLIPSIS))]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        cut = cut[:opened]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def _text(text: str, limit: int) -> str:
    return clip(text, limit) if text else EMPTY


# --------------------------------------------------------------------------- building blocks


def section(text: str) -> SectionBlock:
    """A mrkdwn section (text already escaped where it came from outside)."""
    return SectionBlock(text=MarkdownTextObject(text=_text(text, SECTION_TEXT)))


def field(label: str, value: str) -> MarkdownTextObject:
    """One `*label*\\nvalue` field of a section."""
    return MarkdownTextObject(text=_text(f"*{label}*\n{value or EMPTY}", SECTION_FIELD))


def field_sections(fields: Sequence[MarkdownTextObject]) -> list[Block]:
    """Fields laid out in as many sections as Slack's 10-field limit needs."""
    return [
        SectionBlock(fields=list(fields[i : i + SECTION_FIELDS]))
        for i in range(0, len(fields), SECTION_FIELDS)
    ]


def header(text: str) -> HeaderBlock:
    """A header (plain text, escaped like the rest: Slack decodes the entities)."""
    return HeaderBlock(text=_text(text, HEADER_TEXT))


def context(*texts: str) -> ContextBlock:
    """A context block of mrkdwn elements (at most 10)."""
    return ContextBlock(
        elements=[
            MarkdownTextObject(text=_text(t, CONTEXT_ELEMENT)) for t in texts[:CONTEXT_ELEMENTS]
        ]
    )


def button(text: str, *, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=_text(text, BUTTON_TEXT),
        action_id=action_id,
        value=clip(value, BUTTON_VALUE),
        style=style,
    )


# --------------------------------------------------------------------------- finishing payloads


def _fit_text_object(obj: Any, limit: int) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return {**obj, "text": _text(obj["text"], limit)}
    return obj


def _fit_element(element: Any) -> Any:
    if not isinstance(element, dict):
        return element
    kind = element.get("type")
    if kind in {"button", "overflow", "static_select", "radio_buttons", "checkboxes"}:
        element = {**element}
        if "text" in element:
            element["text"] = _fit_text_object(element["text"], BUTTON_TEXT)
        if isinstance(element.get("value"), str):
            element["value"] = clip(element["value"], BUTTON_VALUE)
        if isinstance(element.get("options"), list):
            element["options"] = [
                {**o, "text": _fit_text_object(o.get("text"), OPTION_TEXT)}
                if isinstance(o, dict)
                else o
                for o in element["options"]
            ]
    return element


def fit_block(block: dict[str, Any]) -> dict[str, Any]:
    """One block dict cut to Slack's limits for its type."""
    block = {**block}
    kind = block.get("type")
    if kind == "section":
        if "text" in block:
            block["text"] = _fit_text_object(block["text"], SECTION_TEXT)
        if isinstance(block.get("fields"), list):
            block["fields"] = [
                _fit_text_object(f, SECTION_FIELD) for f in block["fields"][:SECTION_FIELDS]
            ]
        if "accessory" in block:
            block["accessory"] = _fit_element(block["accessory"])
    elif kind == "header":
        block["text"] = _fit_text_object(block.get("text"), HEADER_TEXT)
    elif kind == "context" and isinstance(block.get("elements"), list):
        block["elements"] = [
            _fit_text_object(e, CONTEXT_ELEMENT) for e in block["elements"][:CONTEXT_ELEMENTS]
        ]
    elif kind == "actions" and isinstance(block.get("elements"), list):
        block["elements"] = [_fit_element(e) for e in block["elements"][:ACTION_ELEMENTS]]
    return block


def fit_blocks(
    blocks: Iterable[Block | dict[str, Any]], *, max_blocks: int = MESSAGE_BLOCKS
) -> list[dict[str, Any]]:
    """Blocks as dicts within Slack's limits, card numbers masked in every string. More than
    `max_blocks` keeps the first ones and says how many were left out."""
    dicts = [b if isinstance(b, dict) else b.to_dict() for b in blocks]
    if len(dicts) > max_blocks:
        left_out = len(dicts) - (max_blocks - 1)
        dicts = [
            *dicts[: max_blocks - 1],
            context(f"{ELLIPSIS} {left_out} more not shown").to_dict(),
        ]
    fitted: list[dict[str, Any]] = mask_pans_in([fit_block(b) for b in dicts])
    return fitted


def fallback_text(text: str) -> str:
    """The message's `text` (notifications, screen readers) within its limit, PANs masked."""
    return redact_pans(clip(text, FALLBACK_TEXT)) if text else EMPTY


def message_payload(
    text: str, blocks: Iterable[Block | dict[str, Any]], *, max_blocks: int = MESSAGE_BLOCKS
) -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage, chat.update and response_url answers."""
    payload: dict[str, Any] = {"text": fallback_text(text)}
    fitted = fit_blocks(blocks, max_blocks=max_blocks)
    if fitted:
        payload["blocks"] = fitted
    return payload


def view_payload(view: dict[str, Any]) -> dict[str, Any]:
    """An App Home or modal view within Slack's limits (100 blocks, title, metadata)."""
    fitted = {**view, "blocks": fit_blocks(view.get("blocks") or [], max_blocks=VIEW_BLOCKS)}
    for key in ("title", "submit", "close"):
        if key in fitted:
            fitted[key] = mask_pans_in(_fit_text_object(fitted[key], MODAL_TITLE))
    if isinstance(fitted.get("private_metadata"), str):
        metadata = fitted["private_metadata"]
        fitted["private_metadata"] = metadata if len(metadata) <= PRIVATE_METADATA else ""
    return fitted


__all__ = [
    "ELLIPSIS",
    "button",
    "carrier_label",
    "channel",
    "clip",
    "context",
    "escape",
    "fallback_text",
    "field",
    "field_sections",
    "fit_block",
    "fit_blocks",
    "header",
    "message_payload",
    "safe_url",
    "section",
    "tracking_link",
    "user",
    "view_payload",
]
