"""Digest computation over 10k, 100k and 1M cards with realistic event histories, on SQLite.

    .venv/bin/python bench/digest.py [--sizes 10000,100000,1000000] [--repeat 3]

Each database is generated once (bulk INSERT ... SELECT from a recursive sequence, indexes built
after the load) and cached under `bench/out/`. Every size is then measured in a fresh child
process: seconds for the whole digest (SQL aggregation + Block Kit rendering), the Python heap
peak (tracemalloc) and the process's peak RSS. Target: <= 2 s and <= 200 MB at 1M cards.

Histories: each card is ordered at a pseudo-random time in the last 120 days and walks the
lifecycle REQUESTED -> DATA_PREPARED -> READY -> ONGOING -> SHIPPED (INFO_RECEIVED, IN_TRANSIT,
OUT_FOR_DELIVERY, DELIVERED) as far as its age allows; 2% stop at DATA_EXCEPTION, 2% on hold,
3% with a carrier EXCEPTION. About 7 events per card; 1% of cards are subscribed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402

OUT = ROOT / "bench" / "out"
NOW = datetime(2025, 6, 10, 8, 0, tzinfo=timezone.utc)
NOW_SQL = "2025-06-10 08:00:00"

# step, production status, shipment status, hours after the order
STEPS = [
    (1, "CARD_PROD_REQUESTED", None, 0),
    (2, "DATA_PREPARED", None, 6),
    (3, "CARD_PROD_READY", None, 12),
    (4, "CARD_PROD_ONGOING", None, 24),
    (5, "CARD_SHIPPED", "INFO_RECEIVED", 36),
    (6, "CARD_SHIPPED", "IN_TRANSIT", 60),
    (7, "CARD_SHIPPED", "OUT_FOR_DELIVERY", 96),
    (8, "CARD_SHIPPED", "DELIVERED", 100),
]


DATA_VERSION = 2  # bump when the generated histories change


def db_path(cards: int) -> Path:
    return OUT / f"digest-{cards}-v{DATA_VERSION}.db"


def generate(cards: int) -> Path:
    """Build (or reuse) the database for `cards` cards."""
    path = db_path(cards)
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp}")
    upgrade(engine)
    engine.dispose()
    started = time.perf_counter()
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-200000")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
        "AND tbl_name IN ('cards','events')"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE steps(k INT, status TEXT, ship TEXT, hours INT)")
    conn.executemany("INSERT INTO steps VALUES (?,?,?,?)", STEPS)
    conn.execute(
        f"""CREATE TEMP TABLE seq AS
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {cards})
        SELECT i, (i * 2654435761) % 4294967296 AS h FROM s"""
    )
    # scenario: r < 2 data exception at step 2, r < 4 on hold at step 4, r < 7 carrier exception
    # at step 7; ordered h % 120 days before NOW; steps stretched by up to 40 %.
    conn.execute(
        f"""
        INSERT INTO events (dedup_key, card_id, operation_id, operation, operation_status,
            details_status, tracking_type, shipment_status, shipment_message, event_time,
            received_at, is_exception, became_current, source, payload)
        SELECT 'k' || i || '-' || k, 'card-' || i, 'op-' || i, 'PRODUCE',
            'SUCCESSFUL', status, NULL, ship, msg, t, t, exc, 1, 'd1', payload
        FROM (
            SELECT i, k,
                CASE WHEN r < 2 AND k = 2 THEN 'DATA_EXCEPTION'
                     WHEN r >= 2 AND r < 4 AND k = 4 THEN 'CARD_PROD_ONHOLD'
                     ELSE status END AS status,
                CASE WHEN r >= 4 AND r < 7 AND k = 7 THEN 'EXCEPTION' ELSE ship END AS ship,
                CASE WHEN r >= 4 AND r < 7 AND k = 7 THEN 'Customs hold'
                     WHEN k = 8 THEN 'Delivered' ELSE NULL END AS msg,
                CASE WHEN (r < 2 AND k = 2) OR (r >= 2 AND r < 4 AND k = 4)
                       OR (r >= 4 AND r < 7 AND k = 7) THEN 1 ELSE 0 END AS exc,
                CASE WHEN r < 2 AND k = 2 THEN '{{"details":{{"reason":"Invalid address"}}}}'
                     ELSE NULL END AS payload,
                datetime('{NOW_SQL}', '-' || (h % 10368000) || ' seconds',
                         '+' || (hours * (10 + h % 5) * 360) || ' seconds') AS t
            FROM (SELECT i, h, (h / 7) % 100 AS r FROM seq) JOIN steps
            WHERE NOT (r < 2 AND k > 2) AND NOT (r >= 2 AND r < 4 AND k > 4)
              AND NOT (r >= 4 AND r < 7 AND k > 7)
        )
        WHERE t <= '{NOW_SQL}'
        ORDER BY t, i, k  -- appended in the order they arrive, as intake does
        """
    )
    conn.execute(
        """
        INSERT INTO cards (card_id, issuer_id, status, operation, operation_status,
            shipment_status, shipment_message, carrier, estimated_delivery_at, delivered_at,
            state_rank, state_event_time, state_since, last_shipment_update_at, last_event_id,
            is_exception, first_seen_at, last_seen_at)
        SELECT e.card_id, 'issuer-001', e.details_status, 'PRODUCE', 'SUCCESSFUL',
            e.shipment_status, e.shipment_message,
            CASE WHEN e.shipment_status IS NULL THEN NULL ELSE 'fedex' END,
            CASE WHEN e.shipment_status IS NULL THEN NULL
                 ELSE datetime(e.event_time, '+3 days') END,
            CASE WHEN e.shipment_status = 'DELIVERED' THEN e.event_time END,
            0, e.event_time, e.event_time,
            CASE WHEN e.shipment_status IS NULL THEN NULL ELSE e.event_time END,
            e.id, e.is_exception, e.event_time, e.event_time
        FROM (SELECT max(id) AS last_id, min(id) AS first_id FROM events GROUP BY card_id) g
        JOIN events e ON e.id = g.last_id
        ORDER BY g.first_id  -- cards are inserted when first heard of
        """
    )
    conn.execute(
        """INSERT INTO subscriptions (workspace_id, channel_id, card_id, filter, created_by,
               created_at)
           SELECT 'T1', 'C' || (i % 20), 'card-' || i, 'all', 'U1', '2025-01-01 00:00:00'
           FROM seq WHERE i % 100 = 0"""
    )
    conn.execute("COMMIT")
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode=WAL")
    counts = conn.execute("SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM events)")
    n_cards, n_events = counts.fetchone()
    conn.close()
    tmp.rename(path)
    print(
        f"  generated {n_cards:,} cards / {n_events:,} events in "
        f"{time.perf_counter() - started:.1f} s -> {path.relative_to(ROOT)}"
    )
    return path


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(cards: int, repeat: int) -> dict[str, float]:
    """In this (fresh) process: time and memory of computing the digest."""
    from bot.runtime import Runtime
    from bot.scheduled.digest import compute_digest
    from bot.settings import load_settings
    from storage.db import make_engine

    engine = make_engine(f"sqlite:///{db_path(cards)}")
    runtime = Runtime(settings=load_settings(_env_file=None), engine=engine, clock=lambda: NOW)
    zone = ZoneInfo("Europe/Paris")
    with engine.connect() as conn:  # open the pool: not part of the digest
        conn.exec_driver_sql("SELECT 1")
    rss_before = _status_mb("VmRSS")
    times = []
    tracemalloc.start()
    payload: dict = {}
    for _ in range(repeat):
        started = time.perf_counter()
        payload = compute_digest(runtime, end=NOW, zone=zone, channel_id="C1")
        times.append(time.perf_counter() - started)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _status_mb("VmHWM")  # ru_maxrss would include the parent before exec
    return {
        "first_s": times[0],
        "median_s": statistics.median(times),
        "heap_peak_mb": heap_peak / 1024 / 1024,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss,
        "pages": 1 + len(payload["thread"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return 0
    print_machine()
    sizes = [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        generate(size)
    print(
        f"\n{'cards':>9}  {'first s':>8}  {'median s':>8}  {'heap MB':>8}  "
        f"{'RSS MB':>7}  {'(base)':>7}  {'DB MB':>7}"
    )
    for size in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(size), "--repeat", str(args.repeat)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        db_mb = db_path(size).stat().st_size / 1024 / 1024
        print(
            f"{size:>9,}  {r['first_s']:>8.3f}  {r['median_s']:>8.3f}  "
            f"{r['heap_peak_mb']:>8.1f}  {r['peak_rss_mb']:>7.1f}  {r['rss_before_mb']:>7.1f}  "
            f"{db_mb:>7.0f}"
        )
    print("\ntarget at 1M cards: <= 2 s and <= 200 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
