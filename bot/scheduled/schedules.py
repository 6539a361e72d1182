"""Digest schedules and their time arithmetic, pure: when a channel's digest is due, what window
it covers, how many runs were missed. All local-time reasoning goes through `zoneinfo`, so a
08:00 Europe/Paris digest stays at 08:00 across daylight-saving changes (the day it covers is
then 23 or 25 hours long).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
DIGEST_JOB_PREFIX = "digest"


@dataclass(frozen=True)
class DigestSchedule:
    """When a channel gets its digest. `since`: when the schedule was set (None for the
    configured default), so that a catch-up never sends a run from before it existed."""

    workspace_id: str
    channel_id: str
    time_of_day: str
    timezone: str
    since: datetime | None = None

    @property
    def job_name(self) -> str:
        return f"{DIGEST_JOB_PREFIX}:{self.workspace_id}:{self.channel_id}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def at(self) -> time:
        return parse_time_of_day(self.time_of_day)


def parse_time_of_day(text: str) -> time:
    """`HH:MM` (24-hour clock; `8:00` accepted) -> time; ValueError with a readable reason."""
    match = _HHMM.match(text.strip())
    if not match:
        raise ValueError("the time must be HH:MM on a 24-hour clock, e.g. 08:00")
    return time(int(match.group(1)), int(match.group(2)))


def check_timezone(name: str) -> ZoneInfo:
    """An IANA zone (`Europe/Paris`); ValueError with a readable reason otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("the timezone must be an IANA name such as Europe/Paris") from None


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def latest_occurrence(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The most recent local `at` at or before `now`, in UTC."""
    day = now.astimezone(zone).date()
    for back in range(3):
        candidate = _local(day - timedelta(days=back), at, zone)
        if candidate <= now:
            return candidate
    raise AssertionError("unreachable: a day always has the time of day")


def next_occurrence(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first local `at` strictly after `now`, in UTC."""
    day = now.astimezone(zone).date()
    for ahead in range(3):
        candidate = _local(day + timedelta(days=ahead), at, zone)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a day always has the time of day")


def occurrences_between(after: datetime, until: datetime, at: time, zone: ZoneInfo) -> int:
    """How many local `at` fall in `(after, until]`."""
    if until <= after:
        return 0
    count = 0
    day = after.astimezone(zone).date()
    last_day = until.astimezone(zone).date()
    while day <= last_day:
        moment = _local(day, at, zone)
        if after < moment <= until:
            count += 1
        day += timedelta(days=1)
    return count


def one_local_day_before(moment: datetime, zone: ZoneInfo) -> datetime:
    """The same wall-clock time on the previous local day (23, 24 or 25 hours earlier)."""
    local = moment.astimezone(zone)
    earlier = datetime.combine(local.date() - timedelta(days=1), local.time())
    return earlier.replace(tzinfo=zone).astimezone(timezone.utc)


def digest_windows(end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    """(previous_start, start, end): the local day ending at `end` and the day before it."""
    start = one_local_day_before(end, zone)
    return one_local_day_before(start, zone), start, end


def effective_schedules(
    *,
    default_channel: str | None,
    default_workspace_id: str,
    default_time: str,
    default_timezone: str,
    stored: list[tuple[str, str, str, str, bool, datetime]],
) -> list[DigestSchedule]:
    """The schedules in force: stored ones (workspace, channel, time, zone, enabled, updated_at)
    override the configured default channel; disabled ones are left out."""
    by_key: dict[tuple[str, str], DigestSchedule | None] = {}
    if default_channel:
        by_key[(default_workspace_id, default_channel)] = DigestSchedule(
            workspace_id=default_workspace_id,
            channel_id=default_channel,
            time_of_day=default_time,
            timezone=default_timezone,
        )
    for workspace_id, channel_id, time_of_day, zone, enabled, updated_at in stored:
        by_key[(workspace_id, channel_id)] = (
            DigestSchedule(
                workspace_id=workspace_id,
                channel_id=channel_id,
                time_of_day=time_of_day,
                timezone=zone,
                since=updated_at,
            )
            if enabled
            else None
        )
    return [s for s in by_key.values() if s is not None]


def describe_local(moment: datetime, zone: ZoneInfo) -> str:
    """`Mon 31 Mar 08:00` in the zone: how a team lead reads a time."""
    return moment.astimezone(zone).strftime("%a %d %b %H:%M")


__all__ = [
    "DigestSchedule",
    "check_timezone",
    "describe_local",
    "digest_due",
    "digest_windows",
    "effective_schedules",
    "latest_occurrence",
    "next_occurrence",
    "occurrences_between",
    "one_local_day_before",
    "parse_time_of_day",
]


def digest_due(
    schedule: DigestSchedule, *, now: datetime, last_claimed: datetime | None, fired: bool
) -> tuple[datetime, int] | None:
    """Whether a digest run is owed at `now`: (scheduled_for, runs missed since the last one)
    or None. `fired`: the timer went off for this schedule (a first-ever run is owed); otherwise
    this is a catch-up look after a start or a pause, which never sends a run from before the
    schedule existed, nor one already claimed by any replica."""
    at, zone = schedule.at, schedule.zone
    latest = latest_occurrence(now, at, zone)
    if schedule.since is not None and latest < schedule.since:
        return None
    if last_claimed is not None and last_claimed >= latest:
        return None
    if last_claimed is None:
        if schedule.since is None and not fired:
            return None
        since = schedule.since or (latest - timedelta(seconds=1))
        return latest, max(1, occurrences_between(since, latest, at, zone))
    return latest, max(1, occurrences_between(last_claimed, latest, at, zone))
