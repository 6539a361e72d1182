"""The daily digest: rendering (pure: `DigestData` -> Block Kit pages under Slack's limits) and
what `/card digest` does (show now, post now, schedule, off). The subcommand's text is parsed
in bot/slack/commands.py; these functions take its typed values.

Nothing personal is ever in a digest: card ids, statuses, counts and the carrier's normalised
message only (names and addresses are not even read). Outside text goes through
`bot.render.slacktext.escape` and every page is finished by `slacktext.message_payload`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block, DividerBlock

from bot import metrics
from bot.render import slacktext
from bot.render.blockpages import line_sections, paginate
from bot.render.mrkdwn import plain_status
from bot.render.slacktext import context, escape, header, section
from bot.render.triage import age
from bot.render.views import Reply
from bot.runtime import Runtime
from bot.scheduled.schedules import describe_local, digest_windows, next_occurrence
from bot.scheduled.stuck import criteria, default_rules, rule_titles, state_words, stuck_line
from d1.models import (
    PRODUCTION_STATUS_WORDS,
    PRODUCTION_STATUSES,
    SHIPMENT_STATUS_WORDS,
    SHIPMENT_STATUSES,
    TRACKING_STATUSES,
)
from storage.repositories import cases as open_cases
from storage.repositories.digest import DigestData, StatusCount, digest_data
from storage.repositories.outbox import enqueue_message
from storage.repositories.schedules import disable_schedule, get_schedule, set_schedule

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
        (
            words.get(c.status) or escape(slacktext.clip(c.status, 40)),
            str(c.current),
            str(c.previous),
            _change(c.change),
        )
        for c in counts
    ]
    header = (title, "period", "day before", "change")
    width = max(len(r[0]) for r in [header, *rows])
    lines = [f"{header[0]:<{width}}  {header[1]:>6}  {header[2]:>10}  {header[3]:>6}"]
    lines += [f"{r[0]:<{width}}  {r[1]:>6}  {r[2]:>10}  {r[3]:>6}" for r in rows]
    return "```\n" + "\n".join(lines) + "\n```"


def thread_link(channel_id: str, ts: str) -> str:
    """A permalink to a message, built without an API call (the caller makes it safe)."""
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def exception_line(event: Any) -> str:
    kind = state_words(event.status, event.shipment_status)
    if event.operation_status == "FAILED":
        kind += " · operation failed"
    line = f"`{escape(event.card_id)}` {kind}"
    if event.reason and event.reason not in (event.status, event.shipment_status):
        line += f" — {escape(event.reason)}"
    if event.thread_channel_id and event.thread_ts:
        link = slacktext.safe_url(thread_link(event.thread_channel_id, event.thread_ts))
        if link:
            line += f" · <{link}|thread>"
    return "• " + line


def digest_blocks(
    data: DigestData,
    *,
    zone: ZoneInfo,
    titles: dict[str, str],
    late_note: str | None = None,
    unowned: tuple[list[str], int] = ([], 0),
) -> list[Block]:
    """Every block of the digest, in reading order (pagination comes after). `unowned`: the
    lines of open exceptions nobody owns past D1BOT_TRIAGE_STALE_HOURS, and how many."""
    now = data.window_end
    period = (
        f"{describe_local(data.window_start, zone)} → {describe_local(data.window_end, zone)}"
        f" ({zone.key}), compared with the day before"
    )
    blocks: list[Block] = [header(DIGEST_TITLE), context(escape(period))]
    if late_note:
        blocks.append(section(f":warning: {escape(late_note)}"))
    delivered = data.delivered
    summary = [
        f"*{delivered.current}* delivered ({_change(delivered.change)})",
        f"*{data.exceptions_total}* new exception{'s' if data.exceptions_total != 1 else ''}",
        f"*{data.stuck_total}* stuck",
    ]
    if data.dead_letters:
        summary.append(f"*{data.dead_letters}* undelivered Slack message(s)")
    blocks.append(section(" · ".join(summary)))
    production_words = {**PRODUCTION_STATUS_WORDS}
    if data.production:
        blocks.append(
            section(
                status_table(
                    "Production",
                    _order(data.production, PRODUCTION_STATUSES + TRACKING_STATUSES),
                    production_words,
                )
            )
        )
    if data.shipment:
        blocks.append(
            section(
                status_table(
                    "Shipment", _order(data.shipment, SHIPMENT_STATUSES), SHIPMENT_STATUS_WORDS
                )
            )
        )
    if not data.production and not data.shipment:
        blocks.append(section("No production or shipping news."))
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
    lines, total = unowned
    if total:
        blocks.append(DividerBlock())
        if total > len(lines):
            lines = [*lines, f"_…and {total - len(lines)} more (`/card exceptions`)_"]
        blocks += line_sections(f"*Open exceptions without an owner ({total})*", lines)
    if data.dead_letters:
        blocks.append(
            context(
                f":warning: {data.dead_letters} message(s) could not be delivered "
                "to Slack and wait in the dead letters for an operator."
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
    unowned: tuple[list[str], int] = ([], 0),
) -> dict[str, Any]:
    """The outbox payload of a digest: first page, then thread pages when long."""
    blocks = digest_blocks(data, zone=zone, titles=titles, late_note=late_note, unowned=unowned)
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
    stale = end - timedelta(hours=runtime.settings.d1bot_triage_stale_hours)
    cases, total = open_cases.stale_unowned(runtime.engine, opened_before=stale)
    lines = [
        f"• *{escape(c.case.card_id)}*: "
        + (plain_status(c.card.status, c.card.shipment_status) if c.card else "Unknown")
        + f" · no owner for {age(end - c.case.opened_at)}"
        for c in cases
    ]
    return render_digest(
        data, zone=zone, titles=rule_titles(rules), late_note=late, unowned=(lines, total)
    )


# --------------------------------------------------------------------------- /card digest
# What each `/card digest ...` subcommand does, once bot/slack/commands.py has parsed it.
# Schedule changes are news for the whole channel (`in_channel`); the rest answer the asker.


def _channel_zone(runtime: Runtime, workspace_id: str, channel_id: str) -> str:
    stored = get_schedule(runtime.engine, workspace_id=workspace_id, channel_id=channel_id)
    return stored.timezone if stored is not None else runtime.settings.d1bot_timezone


async def show_digest(runtime: Runtime, *, workspace_id: str, channel_id: str) -> Reply:
    """`/card digest`: the channel's digest so far, to the asker only (first page)."""

    def work() -> dict[str, Any]:
        zone = ZoneInfo(_channel_zone(runtime, workspace_id, channel_id))
        return compute_digest(runtime, end=runtime.clock(), zone=zone, channel_id=channel_id)

    payload = await asyncio.to_thread(work)
    blocks = list(payload["blocks"])
    if payload["thread"]:
        # An ephemeral reply has no thread: say where the rest is.
        more = context(
            f"{len(payload['thread'])} more page(s): "
            "`/card digest post` posts the whole digest here."
        ).to_dict()
        blocks = [*blocks[:-1], more]
    return Reply(text=payload["text"], blocks=blocks)


async def post_digest(runtime: Runtime, *, workspace_id: str, channel_id: str) -> Reply:
    """`/card digest post`: through the outbox (paced, paginated into the thread); the asker
    gets a confirmation."""

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
    return Reply(text="Posting the digest to this channel now.")


async def schedule_digest(
    runtime: Runtime,
    *,
    workspace_id: str,
    channel_id: str,
    user_id: str,
    at: time,
    timezone: str | None,
) -> Reply:
    """`/card digest schedule HH:MM [Area/City]`: `timezone` None keeps the channel's zone."""
    if timezone is None:
        timezone = await asyncio.to_thread(_channel_zone, runtime, workspace_id, channel_id)
    zone = ZoneInfo(timezone)
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
        f"{slacktext.user(user_id)} scheduled this channel's daily digest at {time_of_day} "
        f"({escape(zone.key)}). Next one: {escape(following)}."
    )
    return Reply(text=text, in_channel=True)


async def turn_digest_off(
    runtime: Runtime, *, workspace_id: str, channel_id: str, user_id: str
) -> Reply:
    """`/card digest off`: kept as a disabled schedule, so a restart does not turn it back on."""
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
        f"{slacktext.user(user_id)} turned this channel's daily digest off. "
        "`/card digest schedule HH:MM` turns it back on."
    )
    return Reply(text=text, in_channel=True)


def _refresh_live_scheduler(runtime: Runtime) -> None:
    """Tell this process's scheduler (other replicas pick it up at their next sync)."""
    runtime.report_schedule_change()


__all__ = [
    "compute_digest",
    "digest_blocks",
    "digest_text",
    "late_note",
    "post_digest",
    "render_digest",
    "schedule_digest",
    "show_digest",
    "status_table",
    "turn_digest_off",
]
