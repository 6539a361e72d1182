"""The scheduled jobs' bodies: send a channel's digest, raise stuck-card alerts, reconcile quiet
cards. Each run is claimed in the database first (`storage/repositories/jobs.py`), so with
several replicas every run happens once; the APScheduler glue is `bot/scheduled/scheduler.py`.

The digest and stuck functions block (database work): call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import Block

from bot import metrics
from bot.render.blockpages import line_sections, paginate
from bot.runtime import Runtime
from bot.scheduled.digest import compute_digest, late_note
from bot.scheduled.reconcile import Reconciler, ReconcileReport, period_start
from bot.scheduled.schedules import DigestSchedule, digest_due
from bot.scheduled.stuck import criteria, default_rules, notice_payload, rule_titles, stuck_line
from storage.repositories.digest import enqueue_scheduled_digest
from storage.repositories.jobs import claim_run, finish_run, last_claimed_run
from storage.repositories.retention import PruneReport, prune
from storage.repositories.stuck import StuckAlertResult, StuckCard, raise_stuck_alerts, stuck_cards

log = logging.getLogger(__name__)

# A digest sent more than this after its time says it is late, and why.
LATE_AFTER = timedelta(minutes=10)
STUCK_JOB = "stuck-cards"
RECONCILE_JOB = "reconcile-quiet"
RETENTION_JOB = "retention"


def send_digest_if_due(runtime: Runtime, schedule: DigestSchedule, *, fired: bool) -> bool:
    """Send `schedule`'s digest when a run is owed and no replica has claimed it; True when
    this call queued it. `fired`: the timer went off (else: a catch-up look)."""
    now = runtime.clock()
    due = digest_due(
        schedule,
        now=now,
        last_claimed=last_claimed_run(runtime.engine, job_name=schedule.job_name),
        fired=fired,
    )
    if due is None:
        return False
    scheduled_for, missed = due
    zone = schedule.zone
    late = late_note(scheduled_for, zone, missed) if now - scheduled_for > LATE_AFTER else None
    payload = compute_digest(runtime, end=now, zone=zone, channel_id=schedule.channel_id, late=late)
    queued = enqueue_scheduled_digest(
        runtime.engine,
        job_name=schedule.job_name,
        scheduled_for=scheduled_for,
        instance=runtime.instance,
        workspace_id=schedule.workspace_id,
        channel_id=schedule.channel_id,
        payload=payload,
        now=now,
    )
    outcome = ("late" if late else "sent") if queued else "taken"
    metrics.DIGEST_RUNS.labels(outcome=outcome).inc()
    if queued:
        log.info(
            "digest queued for %s (scheduled %s%s)",
            schedule.channel_id,
            scheduled_for.isoformat(),
            ", late" if late else "",
        )
    return queued


def stuck_summary_payload(cards: list[StuckCard], titles: dict[str, str], now: datetime) -> Any:
    """The exceptions channel's message about cards that just got stuck."""
    count = len(cards)
    heading = f":hourglass: *{count} card{'s' if count != 1 else ''} look stuck*"
    blocks: list[Block] = line_sections(
        heading, ["• " + stuck_line(card, titles, now) for card in cards]
    )
    return paginate(f"{count} card(s) look stuck", blocks)


def check_stuck(runtime: Runtime) -> StuckAlertResult | None:
    """Alert once about each card that crossed a stuck threshold. None when another replica
    has this period's run."""
    settings = runtime.settings
    now = runtime.clock()
    slot = period_start(now, timedelta(minutes=settings.d1bot_stuck_check_interval_minutes))
    if not claim_run(
        runtime.engine, job_name=STUCK_JOB, scheduled_for=slot, instance=runtime.instance, now=now
    ):
        return None
    rules = default_rules(settings)
    titles = rule_titles(rules)
    try:
        _total, cards = stuck_cards(runtime.engine, criteria(rules, now))
        result = raise_stuck_alerts(
            runtime.engine,
            cards,
            now=now,
            card_payload=lambda card: notice_payload(card, titles, now),
            exceptions_channel=settings.d1bot_exceptions_channel,
            exceptions_workspace_id=settings.d1bot_workspace_id,
            exceptions_payload=lambda new: stuck_summary_payload(new, titles, now),
        )
    except Exception:
        finish_run(
            runtime.engine, job_name=STUCK_JOB, scheduled_for=slot, outcome="failed", now=now
        )
        metrics.JOB_RUNS.labels(job="stuck", outcome="failed").inc()
        raise
    finish_run(
        runtime.engine,
        job_name=STUCK_JOB,
        scheduled_for=slot,
        outcome="ok",
        now=runtime.clock(),
        detail=f"{len(result.new_cards)} newly stuck",
    )
    metrics.JOB_RUNS.labels(job="stuck", outcome="ok").inc()
    return result


async def reconcile_quiet(runtime: Runtime, reconciler: Reconciler) -> ReconcileReport | None:
    """The periodic reconciliation run, claimed per interval. None when another replica has
    it or D1 is not configured."""
    if runtime.d1_client is None:
        return None
    settings = runtime.settings
    now = runtime.clock()
    slot = period_start(now, timedelta(minutes=settings.d1bot_reconcile_interval_minutes))
    claimed = await asyncio.to_thread(
        claim_run,
        runtime.engine,
        job_name=RECONCILE_JOB,
        scheduled_for=slot,
        instance=runtime.instance,
        now=now,
    )
    if not claimed:
        return None
    try:
        report = await reconciler.run_quiet()
    except Exception:
        await asyncio.to_thread(
            finish_run,
            runtime.engine,
            job_name=RECONCILE_JOB,
            scheduled_for=slot,
            outcome="failed",
            now=runtime.clock(),
        )
        metrics.JOB_RUNS.labels(job="reconcile", outcome="failed").inc()
        raise
    await asyncio.to_thread(
        finish_run,
        runtime.engine,
        job_name=RECONCILE_JOB,
        scheduled_for=slot,
        outcome="ok",
        now=runtime.clock(),
        detail=f"asked {report.asked}, changed {len(report.changed)}",
    )
    metrics.JOB_RUNS.labels(job="reconcile", outcome="ok").inc()
    return report


def prune_old_rows(runtime: Runtime) -> PruneReport | None:
    """Delete sent messages, job runs, quarantined operations and audit rows past retention,
    once a day across
    replicas. None when another replica has today's run."""
    settings = runtime.settings
    now = runtime.clock()
    day = period_start(now, timedelta(days=1))
    if not claim_run(
        runtime.engine, job_name=RETENTION_JOB, scheduled_for=day, instance=runtime.instance,
        now=now,
    ):  # fmt: skip
        return None
    report = prune(
        runtime.engine,
        sent_before=now - timedelta(days=settings.d1bot_retention_days),
        audit_before=now - timedelta(days=settings.d1bot_audit_retention_days),
    )
    finish_run(
        runtime.engine,
        job_name=RETENTION_JOB,
        scheduled_for=day,
        outcome="ok",
        now=runtime.clock(),
        detail=f"{report.sent_messages} messages, {report.job_runs} runs, "
        f"{report.quarantined} quarantined, {report.audit_rows} audit rows",
    )
    metrics.JOB_RUNS.labels(job="retention", outcome="ok").inc()
    return report


__all__ = [
    "LATE_AFTER",
    "check_stuck",
    "prune_old_rows",
    "reconcile_quiet",
    "send_digest_if_due",
    "stuck_summary_payload",
]
