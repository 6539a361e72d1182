"""Long Block Kit messages cut to Slack's limits: at most 50 blocks per message and 3000
characters per section text. A message that does not fit becomes a first page plus thread
replies (the outbox's `payload["thread"]`). Each page is finished by `slacktext.message_payload`
(limits enforced, card numbers masked)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block

from bot.render import slacktext

MAX_BLOCKS = slacktext.MESSAGE_BLOCKS
MAX_SECTION_CHARS = slacktext.SECTION_TEXT
# Leave room for a page marker block.
SECTION_BUDGET = 2900


def line_sections(heading: str, lines: list[str], *, budget: int = SECTION_BUDGET) -> list[Block]:
    """`heading` and bullet `lines` (mrkdwn, outside text already escaped) as as many sections
    as needed, each under the text limit. A single line longer than the budget is cut with a
    visible `…` (never dropped)."""
    sections: list[Block] = []
    current = heading
    for raw in lines:
        line = slacktext.clip(raw, budget - 2)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > budget:
            sections.append(slacktext.section(current))
            current = line
        else:
            current = candidate
    if current:
        sections.append(slacktext.section(current))
    return sections


def paginate(text: str, blocks: list[Block], *, max_blocks: int = MAX_BLOCKS) -> dict[str, Any]:
    """The outbox payload `{"text", "blocks", "thread": [...]}` for `blocks`: the first page in
    the channel, the rest as numbered thread replies."""
    per_page = max_blocks - 1  # one block for the "page n/m" marker
    pages = [blocks[i : i + per_page] for i in range(0, len(blocks), per_page)] or [[]]
    total = len(pages)
    rendered: list[dict[str, Any]] = []
    for number, page in enumerate(pages, start=1):
        page_blocks = list(page)
        if total > 1:
            marker = f"Page {number}/{total}" + (
                " · continued in the thread" if number == 1 else ""
            )
            page_blocks.append(slacktext.context(marker))
        page_text = text if number == 1 else f"{text} (continued, {number}/{total})"
        rendered.append(slacktext.message_payload(page_text, page_blocks, max_blocks=max_blocks))
    first, *rest = rendered
    return {"text": first["text"], "blocks": first["blocks"], "thread": rest}


__all__ = ["MAX_BLOCKS", "MAX_SECTION_CHARS", "line_sections", "paginate"]
