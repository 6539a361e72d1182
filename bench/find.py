"""`/card find` and `/card status <issuerRequestId|trackingNumber>` lookups at 1,000,000 cards, on
SQLite: the repository calls the commands make (storage/repositories/search.py).

    .venv/bin/python bench/find.py [--cards 1000000] [--lookups 2000]

The database is generated once (bulk INSERT ... SELECT from a recursive sequence, indexes built
after the load, every index of the migrations) and cached under `bench/out/`. Then, in this
process, each kind of lookup runs `--lookups` times with pseudo-random targets: an existing
issuerRequestId, an existing tracking number, a card id prefix matching about ten cards, a
miss, and the `/card status` resolution of a tracking number. Prints the machine, the query
plan of each lookup (every one must be an index SEARCH, never a SCAN of cards), the median and
p99 in milliseconds, and a last JSON line.
Target: p99 <= 20 ms per lookup at 1M cards.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import print_machine  # noqa: E402

OUT = ROOT / "bench" / "out"
DATA_VERSION = 1  # bump when the generated cards change


def db_path(cards: int) -> Path:
    return OUT / f"find-{cards}-v{DATA_VERSION}.db"


def generate(cards: int) -> Path:
    """Build (or reuse) the database: card `crd-%07d`, request `REQ-%07d` for 90 % of the cards,
    tracking number `1Z%09d` (pseudo-random, a few shared) for the 70 % that shipped."""
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
        "AND tbl_name = 'cards'"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.execute(
        f"""
        INSERT INTO cards (card_id, issuer_id, issuer_request_id, status, operation,
            operation_status, shipment_status, carrier, tracking_number, state_rank,
            state_event_time, state_since, is_exception, first_seen_at, last_seen_at)
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {cards})
        SELECT printf('crd-%07d', i), 'issuer-001',
            CASE WHEN i % 10 = 0 THEN NULL ELSE printf('REQ-%07d', i) END,
            CASE WHEN h % 10 < 7 THEN 'CARD_SHIPPED' ELSE 'CARD_PROD_ONGOING' END,
            'PRODUCE', 'SUCCESSFUL',
            CASE WHEN h % 10 < 7 THEN 'IN_TRANSIT' END,
            CASE WHEN h % 10 < 7 THEN 'ups' END,
            CASE WHEN h % 10 < 7 THEN printf('1Z%09d', h % 999999937) END,
            5, t, t, 0, t, t
        FROM (
            SELECT i, (i * 2654435761) % 4294967296 AS h,
                datetime('2025-06-10 08:00:00', '-' || (i % 10368000) || ' seconds') AS t
            FROM s
        )
        """
    )
    conn.execute("COMMIT")
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    (count,) = conn.execute("SELECT count(*) FROM cards").fetchone()
    conn.close()
    tmp.rename(path)
    print(
        f"  generated {count:,} cards in {time.perf_counter() - started:.1f} s "
        f"-> {path.relative_to(ROOT)}"
    )
    return path


def _plans(path: Path) -> dict[str, list[str]]:
    """SQLite's plan of each lookup, as the repository issues it (compiled by SQLAlchemy)."""
    from sqlalchemy import event

    from storage.db import make_engine
    from storage.repositories import search

    engine = make_engine(f"sqlite:///{path}")
    seen: list[tuple[str, tuple[object, ...]]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, tuple(parameters)))

    event.listen(engine, "before_cursor_execute", record)
    search.find_cards(engine, text="crd-000012")
    search.cards_known_as(engine, text="1Z000000001")
    event.remove(engine, "before_cursor_execute", record)
    engine.dispose()
    conn = sqlite3.connect(path)
    plans: dict[str, list[str]] = {}
    for n, (statement, parameters) in enumerate(seen):
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
        plans[f"query {n + 1}"] = [str(r[-1]) for r in rows]
    conn.close()
    return plans


def measure(path: Path, cards: int, lookups: int) -> dict[str, dict[str, float]]:
    from storage.db import make_engine
    from storage.repositories import search

    engine = make_engine(f"sqlite:///{path}")
    rng = random.Random(7)
    with sqlite3.connect(path) as conn:
        tracking = [
            r[0]
            for r in conn.execute(
                "SELECT tracking_number FROM cards WHERE tracking_number IS NOT NULL "
                "ORDER BY card_id LIMIT 5000"
            )
        ]

    def request_id() -> str:
        return f"REQ-{rng.randrange(1, cards + 1):07d}"

    def prefix() -> str:  # crd-000123 matches crd-0001230 .. crd-0001239
        return f"crd-{rng.randrange(1, max(2, cards // 10)):06d}"

    kinds = {
        "find issuerRequestId": lambda: search.find_cards(engine, text=request_id()),
        "find tracking number": lambda: search.find_cards(engine, text=rng.choice(tracking)),
        "find card id prefix": lambda: search.find_cards(engine, text=prefix()),
        "find miss": lambda: search.find_cards(engine, text=f"NOPE-{rng.randrange(10**6)}"),
        "status by tracking": lambda: search.cards_known_as(engine, text=rng.choice(tracking)),
    }
    results: dict[str, dict[str, float]] = {}
    for name, lookup in kinds.items():
        lookup()  # warm the pool and the statement cache
        times = []
        for _ in range(lookups):
            started = time.perf_counter()
            lookup()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        results[name] = {
            "median_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        }
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    print_machine()
    path = generate(args.cards)
    print("\nquery plans:")
    scans = []
    for name, plan in _plans(path).items():
        print(f"  {name}: " + " | ".join(plan))
        scans += [p for p in plan if p.startswith("SCAN") and "cards" in p]
    results = measure(path, args.cards, args.lookups)
    print(f"\n{args.cards:,} cards, {args.lookups} lookups each")
    print(f"{'lookup':<24}{'median ms':>10}{'p99 ms':>9}")
    for name, r in results.items():
        print(f"{name:<24}{r['median_ms']:>10.2f}{r['p99_ms']:>9.2f}")
    print("\ntarget at 1M cards: p99 <= 20 ms per lookup, no SCAN of cards")
    if scans:
        print("a lookup SCANs the cards table: " + "; ".join(scans))
    print(json.dumps({"cards": args.cards, "scans": len(scans), "results": results}))
    return 1 if scans else 0


if __name__ == "__main__":
    sys.exit(main())
