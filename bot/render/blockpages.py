"""Long Block Kit messages cut to Slack's limits: at most 50 blocks per message and 3000
characters per section text. A message that does not fit becomes a first page plus thread
replies (the outbox's `payload["thread"]`)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
# Leave room for a page marker block and for escaping done by clients.
SECTION_BUDGET = 2900


def escape(text: str) -> str:
    """Text from outside (carrier messages) made inert in mrkdwn: no mentions, no links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def line_sections(heading: str, lines: list[str], *, budget: int = SECTION_BUDGET) -> list[Block]:
    """`heading` and bullet `lines` as as many sections as needed, each under the text limit.
    A single line longer than the budget is cut (never dropped)."""
    sections: list[Block] = []
    current = heading
    for raw in lines:
        line = raw if len(raw) <= budget - 2 else raw[: budget - 3] + "…"
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > budget:
            sections.append(SectionBlock(text=MarkdownTextObject(text=current)))
            current = line
        else:
            current = candidate
    if current:
        sections.append(SectionBlock(text=MarkdownTextObject(text=current)))
    return sections


def paginate(text: str, blocks: list[Block], *, max_blocks: int = MAX_BLOCKS) -> dict[str, Any]:
    """The outbox payload `{"text", "blocks", "thread": [...]}` for `blocks`: the first page in
    the channel, the rest as numbered thread replies. Every block is rendered through
    slack_sdk, which checks the per-block limits."""
    per_page = max_blocks - 1  # one block for the "page n/m" marker
    pages = [blocks[i : i + per_page] for i in range(0, len(blocks), per_page)] or [[]]
    total = len(pages)
    rendered: list[dict[str, Any]] = []
    for number, page in enumerate(pages, start=1):
        page_blocks = list(page)
        if total > 1:
            page_blocks.append(
                ContextBlock(
                    elements=[
                        MarkdownTextObject(
                            text=f"Page {number}/{total}"
                            + (" · continued in the thread" if number == 1 else "")
                        )
                    ]
                )
            )
        page_text = text if number == 1 else f"{text} (continued, {number}/{total})"
        rendered.append({"text": page_text, "blocks": [b.to_dict() for b in page_blocks]})
    first, *rest = rendered
    return {"text": first["text"], "blocks": first["blocks"], "thread": rest}


__all__ = ["MAX_BLOCKS", "MAX_SECTION_CHARS", "escape", "line_sections", "paginate"]
