"""The daily digest: rendering (pure: `DigestData` -> Block Kit pages under Slack's limits) and
`/card digest` (show now, post now, schedule, off).

Nothing personal is ever in a digest: card ids, statuses, counts and the carrier's normalised
message only (names and addresses are not even read).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import metrics
from bot.render.blockpages import escape, line_sections, paginate
from bot.runtime import Runtime
from bot.scheduled.schedules import (
    check_timezone,
    describe_local,
    digest_windows,
    next_occurrence,
    parse_time_of_day,
)
from bot.scheduled.stuck import criteria, default_rules, rule_titles, state_words, stuck_line
from d1.models import (
    PRODUCTION_STATUS_WORDS,
    PRODUCTION_STATUSES,
    SHIPMENT_STATUS_WORDS,
    SHIPMENT_STATUSES,
    TRACKING_STATUSES,
)
from storage.repositories.digest import DigestData, StatusCount, digest_data
from storage.repositories.outbox import enqueue_message
from storage.repositories.schedules import disable_schedule, get_schedule, set_schedule

log = logging.getLogger(__name__)

DIGEST_TITLE = "Daily card digest"
EXCEPTIONS_SHOWN = 20
STUCK_SHOWN = 30

# --------------------------------------------------------------------------- rendering (pure)


def _order(counts: list[StatusCount], known: tuple[str, ...]) -> list[StatusCount]:
    rank = {status: i for i, status in enumerate(known)}
    return sorted(counts, key=lambda c: (rank.get(c.status, len(rank)), c.status))


def _change(value: int) -> str:
    return f"+{value}" if value > 0 else ("0" if value == 0 else str(value))


def status_table(title: str, counts: list[StatusCount], words: dict[str, str]) -> str:
    """A fixed-width table (code block) of counts, the day before and the change."""
    rows = [
        (words.get(c.status, c.status), str(c.current), str(c.previous), _change(c.change))
        for c in counts
    ]
    header = (title, "period", "day before", "change")
    width = max(len(r[0]) for r in [header, *rows])
    lines = [f"{header[0]:<{width}}  {header[1]:>6}  {header[2]:>10}  {header[3]:>6}"]
    lines += [f"{r[0]:<{width}}  {r[1]:>6}  {r[2]:>10}  {r[3]:>6}" for r in rows]
    return "```\n" + "\n".join(lines) + "\n```"


def thread_link(channel_id: str, ts: str) -> str:
    """A permalink to a message, built without an API call."""
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def exception_line(event: Any) -> str:
    kind = state_words(event.status, event.shipment_status)
    if event.operation_status == "FAILED":
        kind += " · operation failed"
    line = f"`{event.card_id}` {kind}"
    if event.reason and event.reason not in (event.status, event.shipment_status):
        line += f" — {escape(event.reason)}"
    if event.thread_channel_id and event.thread_ts:
        line += f" · <{thread_link(event.thread_channel_id, event.thread_ts)}|thread>"
    return "• " + line


def digest_blocks(
    data: DigestData,
    *,
    zone: ZoneInfo,
    titles: dict[str, str],
    late_note: str | None = None,
) -> list[Block]:
    """Every block of the digest, in reading order (pagination comes after)."""
    now = data.window_end
    period = (
        f"{describe_local(data.window_start, zone)} → {describe_local(data.window_end, zone)}"
        f" ({zone.key}), compared with the day before"
    )
    blocks: list[Block] = [
        HeaderBlock(text=DIGEST_TITLE),
        ContextBlock(elements=[MarkdownTextObject(text=period)]),
    ]
    if late_note:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f":warning: {late_note}")))
    delivered = data.delivered
    summary = [
        f"*{delivered.current}* delivered ({_change(delivered.change)})",
        f"*{data.exceptions_total}* new exception{'s' if data.exceptions_total != 1 else ''}",
        f"*{data.stuck_total}* stuck",
    ]
    if data.dead_letters:
        summary.append(f"*{data.dead_letters}* undelivered Slack message(s)")
    blocks.append(SectionBlock(text=MarkdownTextObject(text=" · ".join(summary))))
    production_words = {**PRODUCTION_STATUS_WORDS}
    if data.production:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=status_table(
                        "Production",
                        _order(data.production, PRODUCTION_STATUSES + TRACKING_STATUSES),
                        production_words,
                    )
                )
            )
        )
    if data.shipment:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=status_table(
                        "Shipment",
                        _order(data.shipment, SHIPMENT_STATUSES),
                        SHIPMENT_STATUS_WORDS,
                    )
                )
            )
        )
    if not data.production and not data.shipment:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No production or shipping news.")))
    if data.exceptions_total:
        blocks.append(DividerBlock())
        lines = [exception_line(e) for e in data.exceptions]
        if data.exceptions_total > len(data.exceptions):
            lines.append(f"_…and {data.exceptions_total - len(data.exceptions)} more_")
        blocks += line_sections(f"*New exceptions ({data.exceptions_total})*", lines)
        if data.top_reasons:
            reasons = [f"• {escape(r.reason)} x{r.count}" for r in data.top_reasons]
            blocks += line_sections("*Top reasons*", reasons)
    if data.stuck_total:
        blocks.append(DividerBlock())
        lines = ["• " + stuck_line(card, titles, now) for card in data.stuck]
        if data.stuck_total > len(data.stuck):
            lines.append(f"_…and {data.stuck_total - len(data.stuck)} more_")
        blocks += line_sections(f"*Stuck cards ({data.stuck_total}), oldest first*", lines)
    if data.dead_letters:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f":warning: {data.dead_letters} message(s) could not be delivered "
                        "to Slack and wait in the dead letters for an operator."
                    )
                ]
            )
        )
    return blocks


def digest_text(data: DigestData) -> str:
    """The notification / fallback text of the digest."""
    return (
        f"{DIGEST_TITLE}: {data.delivered.current} delivered, "
        f"{data.exceptions_total} new exceptions, {data.stuck_total} stuck"
    )


def render_digest(
    data: DigestData,
    *,
    zone: ZoneInfo,
    titles: dict[str, str],
    late_note: str | None = None,
    max_blocks: int = 50,
) -> dict[str, Any]:
    """The outbox payload of a digest: first page, then thread pages when long."""
    blocks = digest_blocks(data, zone=zone, titles=titles, late_note=late_note)
    return paginate(digest_text(data), blocks, max_blocks=max_blocks)


def late_note(scheduled_for: datetime, zone: ZoneInfo, missed: int) -> str:
    """What a late digest says about itself."""
    when = scheduled_for.astimezone(zone).strftime("%H:%M")
    note = f"Sent late: the service was down at {when} ({zone.key})."
    if missed > 1:
        note += f" {missed} scheduled digests were missed; this one covers the last day."
    return note


# --------------------------------------------------------------------------- computing (I/O)


def compute_digest(
    runtime: Runtime,
    *,
    end: datetime,
    zone: ZoneInfo,
    channel_id: str | None,
    late: str | None = None,
    exceptions_shown: int = EXCEPTIONS_SHOWN,
    stuck_shown: int = STUCK_SHOWN,
) -> dict[str, Any]:
    """Read the numbers for the local day ending at `end` and render them (blocking)."""
    rules = default_rules(runtime.settings)
    previous_start, start, end = digest_windows(end, zone)
    data = digest_data(
        runtime.engine,
        previous_start=previous_start,
        window_start=start,
        window_end=end,
        stuck_criteria=criteria(rules, end),
        channel_id=channel_id,
        exceptions_limit=exceptions_shown,
        stuck_limit=stuck_shown,
    )
    return render_digest(data, zone=zone, titles=rule_titles(rules), late_note=late)


# --------------------------------------------------------------------------- /card digest

USAGE = (
    "Try `/card digest` (show it to you now), `/card digest post` (post it here now), "
    "`/card digest schedule 08:00 Europe/Paris` or `/card digest off`."
)


def _channel_zone(runtime: Runtime, workspace_id: str, channel_id: str) -> str:
    stored = get_schedule(runtime.engine, workspace_id=workspace_id, channel_id=channel_id)
    return stored.timezone if stored is not None else runtime.settings.d1bot_timezone


def _words(args: Any) -> list[str]:
    if args is None:
        return []
    if isinstance(args, str):
        return args.split()
    return [str(a) for a in args if a is not None and str(a) != ""]


async def digest_command(
    runtime: Runtime,
    *,
    workspace_id: str,
    channel_id: str,
    user_id: str,
    action: str,
    args: Any = (),
) -> tuple[str, list[dict[str, Any]], bool]:
    """`/card digest[ post| schedule HH:MM [Area/City]| off]` -> (text, blocks,
    post_to_channel). post_to_channel True: the answer is news for the whole channel (a
    schedule change); False: reply to the asker only. `digest post` goes through the outbox
    (paced, paginated into the thread) and answers the asker with a confirmation."""
    action = (action or "show").strip().lower()
    words = _words(args)
    try:
        if action in {"show", "digest", ""}:
            return await _show(runtime, workspace_id=workspace_id, channel_id=channel_id)
        if action == "post":
            return await _post(runtime, workspace_id=workspace_id, channel_id=channel_id)
        if action == "schedule":
            return await _schedule(
                runtime,
                workspace_id=workspace_id,
                channel_id=channel_id,
                user_id=user_id,
                words=words,
            )
        if action == "off":
            return await _off(
                runtime, workspace_id=workspace_id, channel_id=channel_id, user_id=user_id
            )
    except Exception:
        log.exception("digest command %s failed", action)
        metrics.COMMANDS.labels(action=f"digest_{action}", outcome="error").inc()
        return ("Sorry, the digest could not be prepared right now. Try again shortly.", [], False)
    return (f"I don't know `digest {action}`. {USAGE}", [], False)


async def _show(
    runtime: Runtime, *, workspace_id: str, channel_id: str
) -> tuple[str, list[dict[str, Any]], bool]:
    def work() -> dict[str, Any]:
        zone = ZoneInfo(_channel_zone(runtime, workspace_id, channel_id))
        return compute_digest(runtime, end=runtime.clock(), zone=zone, channel_id=channel_id)

    payload = await asyncio.to_thread(work)
    blocks = list(payload["blocks"])
    if payload["thread"]:
        # An ephemeral reply has no thread: say where the rest is.
        more = ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{len(payload['thread'])} more page(s): "
                    "`/card digest post` posts the whole digest here."
                )
            ]
        ).to_dict()
        blocks = [*blocks[:-1], more]
    return payload["text"], blocks, False


async def _post(
    runtime: Runtime, *, workspace_id: str, channel_id: str
) -> tuple[str, list[dict[str, Any]], bool]:
    def work() -> None:
        zone = ZoneInfo(_channel_zone(runtime, workspace_id, channel_id))
        now = runtime.clock()
        payload = compute_digest(runtime, end=now, zone=zone, channel_id=channel_id)
        enqueue_message(
            runtime.engine,
            workspace_id=workspace_id,
            channel_id=channel_id,
            kind="message",
            payload=payload,
            now=now,
        )

    await asyncio.to_thread(work)
    metrics.DIGEST_RUNS.labels(outcome="on_demand").inc()
    runtime.wake_outbox()
    return "Posting the digest to this channel now.", [], False


async def _schedule(
    runtime: Runtime, *, workspace_id: str, channel_id: str, user_id: str, words: list[str]
) -> tuple[str, list[dict[str, Any]], bool]:
    if not words or len(words) > 2:
        return f"Tell me when: `/card digest schedule HH:MM [Area/City]`. {USAGE}", [], False
    try:
        at = parse_time_of_day(words[0])
        zone_name = (
            words[1]
            if len(words) == 2
            else await asyncio.to_thread(_channel_zone, runtime, workspace_id, channel_id)
        )
        zone = check_timezone(zone_name)
    except ValueError as exc:
        return f"That schedule doesn't work: {exc}.", [], False
    time_of_day = at.strftime("%H:%M")
    now = runtime.clock()
    stored = await asyncio.to_thread(
        lambda: set_schedule(
            runtime.engine,
            workspace_id=workspace_id,
            channel_id=channel_id,
            time_of_day=time_of_day,
            timezone=zone.key,
            updated_by=user_id,
            now=now,
        )
    )
    _refresh_live_scheduler(runtime)
    following = describe_local(next_occurrence(stored.updated_at, at, zone), zone)
    text = (
        f"<@{user_id}> scheduled this channel's daily digest at {time_of_day} ({zone.key}). "
        f"Next one: {following}."
    )
    return text, [], True


async def _off(
    runtime: Runtime, *, workspace_id: str, channel_id: str, user_id: str
) -> tuple[str, list[dict[str, Any]], bool]:
    now = runtime.clock()
    await asyncio.to_thread(
        lambda: disable_schedule(
            runtime.engine,
            workspace_id=workspace_id,
            channel_id=channel_id,
            updated_by=user_id,
            now=now,
            default_time=runtime.settings.d1bot_digest_time,
            default_timezone=runtime.settings.d1bot_timezone,
        )
    )
    _refresh_live_scheduler(runtime)
    text = (
        f"<@{user_id}> turned this channel's daily digest off. "
        "`/card digest schedule HH:MM` turns it back on."
    )
    return text, [], True


def _refresh_live_scheduler(runtime: Runtime) -> None:
    """Tell this process's scheduler (other replicas pick it up at their next sync)."""
    runtime.report_schedule_change()


__all__ = [
    "compute_digest",
    "digest_blocks",
    "digest_command",
    "digest_text",
    "late_note",
    "render_digest",
    "status_table",
]
