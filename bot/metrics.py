"""Prometheus metrics of the product, defined once so every module instruments the same names.

Served at `GET /metrics`. Label values are bounded sets (reasons, methods, outcomes): never a
card id, channel id or anything from a payload.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS_RECEIVED = Counter(
    "d1bot_notifications_received_total", "Notification operations stored as new events"
)
NOTIFICATIONS_DUPLICATE = Counter(
    "d1bot_notifications_duplicate_total", "Notification operations that were duplicates"
)
NOTIFICATIONS_REJECTED = Counter(
    "d1bot_notifications_rejected_total", "Notification requests refused", ["reason"]
)
OPERATIONS_REJECTED = Counter(
    "d1bot_operations_rejected_total",
    "Notification operations refused one by one (kept in quarantine; the rest stored)",
)
INTAKE_LATENCY = Histogram(
    "d1bot_intake_seconds",
    "Time from request to durable answer on the notification endpoint",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_DEPTH = Gauge("d1bot_outbox_pending", "Messages waiting in the outbox")
OUTBOX_OLDEST_AGE = Gauge(
    "d1bot_outbox_oldest_pending_seconds", "Age of the oldest pending outbox message"
)
DEAD_LETTERS = Counter("d1bot_outbox_dead_letters_total", "Messages given up on", ["reason"])
SLACK_CALLS = Counter("d1bot_slack_calls_total", "Slack Web API calls", ["method", "outcome"])
D1_CALLS = Counter("d1bot_d1_calls_total", "D1 API calls", ["endpoint", "outcome"])
D1_LATENCY = Histogram("d1bot_d1_call_seconds", "D1 API call latency", ["endpoint"])
COMMANDS = Counter(
    "d1bot_commands_total", "Slash commands and button presses", ["action", "outcome"]
)
JOB_RUNS = Counter("d1bot_job_runs_total", "Scheduled job runs", ["job", "outcome"])
DIGEST_RUNS = Counter("d1bot_digest_runs_total", "Digests computed and enqueued", ["outcome"])
READY = Gauge(
    "d1bot_ready", "1 when the readiness check passes, 0 when it fails (GET /readyz)", ["check"]
)


def observe_d1_call(endpoint: str, outcome: str, seconds: float) -> None:
    """`d1.client.D1Client`'s call observer: count and time every D1 call."""
    D1_CALLS.labels(endpoint=endpoint, outcome=outcome).inc()
    D1_LATENCY.labels(endpoint=endpoint).observe(seconds)
