"""Group commit for intake: one writer batches concurrent requests into one transaction.

Every 204 must be durable (SQLite `synchronous=FULL`: an fsync per commit), and an fsync per
request caps throughput at the disk's flush rate. So requests queue here; one writer takes
everything queued, records the whole batch in one transaction (`intake_batch`, the fast path),
commits once, and only then answers every request of the batch. While it commits, new requests
queue up and form the next batch: the busier it gets, the bigger the batches, and the cost of an
fsync is shared. If the fast path fails (a request the database refuses), the batch is rolled
back and recorded again with one SAVEPOINT per request (`record_operations_in`), so that the bad
request fails alone.

Where the statements run. PostgreSQL: everything in the writer thread (each statement is a
network round trip). SQLite: BEGIN IMMEDIATE (which may wait for another writer) and COMMIT (the
fsync) run in the writer thread, and the statements in between run on the event loop. Measured:
with the statements in the thread, every `sqlite3` step releases the GIL and then waits up to the
interpreter's switch interval (5 ms) to get it back from the busy HTTP thread, so a batch took
~25 ms of which a few were work (a GIL convoy). Between our BEGIN IMMEDIATE and COMMIT we hold
SQLite's write lock, so the statements never wait for a lock: they are CPU work on pages in
memory (~40 us an operation), like the parsing the loop already does. A batch with more than
`inline_max_operations` operations runs its statements in the thread instead, so that a huge
bulk request cannot stall the loop.

Commit delay (PostgreSQL's `commit_delay` / `commit_siblings`, for the same reason): when the
writer finds fewer than `gather_target` requests waiting, it waits up to `gather_seconds` (1 ms)
for more before it begins, and begins at once when the target is reached. A batch has fixed
costs on the event loop (BEGIN, one execution of each statement, the hop to the thread for the
COMMIT and back, answering): under load, batches of ~11 became ~24 and the loop's CPU per
request fell by ~25% (docs/intake.md has the figures); at low load a notification waits at most
that millisecond longer for its 204.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from d1.models import Operation
from storage.repositories.intake import IntakeResult, _facts, record_operations_in
from storage.repositories.intake_batch import (
    BatchRequest,
    FanOut,
    record_batch,
    record_batch_dbapi,
    write_fan_out,
)
from storage.tables import SOURCE_D1

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256
# Commit delay: wait up to this long for this many requests before beginning a batch.
DEFAULT_GATHER_SECONDS = 0.001
DEFAULT_GATHER_TARGET = 32
# How long a PostgreSQL intake transaction waits for a lock before answering 503.
POSTGRES_LOCK_TIMEOUT_MS = 5000
# Above this many operations in a batch, SQLite statements run in the writer thread (see above).
DEFAULT_INLINE_MAX_OPERATIONS = 512
# SQLite: how often the WAL is checkpointed beside the writer (see `_checkpoints`).
DEFAULT_CHECKPOINT_INTERVAL_S = 0.5
SQLITE_DEFAULT_AUTOCHECKPOINT = 1000
# A checkpoint round this short left little behind: the writer copies the rest after a commit.
CHECKPOINT_SHORT_S = 0.003
CHECKPOINT_MAX_ROUNDS = 8


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class PendingRequest:
    """One request on its way into a batch."""

    operations: Sequence[Operation]
    request: BatchRequest  # the operations' facts and arrival time, as the batch takes them
    future: asyncio.Future[IntakeResult] | None = None  # None: recorded by `record_now`


@dataclass
class BatchStats:
    """Counters for the benchmark and the logs: how much batching actually happens."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    fallbacks: int = 0  # batches re-recorded one savepoint per request after a driver error
    history: list[int] = field(default_factory=list, repr=False)
    # Wall time of the last commits (fan-out + COMMIT, as the batch waits for them), in ms.
    commit_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=100_000), repr=False
    )

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class GroupCommitter:
    """Records operation batches through one writer; `submit` answers after the shared commit.

    `submit` raises the database error of its request (or of the shared commit); the caller
    maps it to a retryable answer. Started lazily on first use, stopped with `stop()` (which
    finishes what is queued)."""

    def __init__(
        self,
        engine: Engine,
        *,
        workspace_id: str,
        exceptions_channel: str | None,
        extra_exception_statuses: frozenset[str] = frozenset(),
        max_batch: int = DEFAULT_MAX_BATCH,
        source: str = SOURCE_D1,
        inline: bool | None = None,
        inline_max_operations: int = DEFAULT_INLINE_MAX_OPERATIONS,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
        gather_seconds: float = DEFAULT_GATHER_SECONDS,
        gather_target: int = DEFAULT_GATHER_TARGET,
    ) -> None:
        self.engine = engine
        self.workspace_id = workspace_id
        self.exceptions_channel = exceptions_channel
        self.extra_exception_statuses = extra_exception_statuses
        self.max_batch = max_batch
        self.source = source
        # SQLite only: statements on the loop, BEGIN/COMMIT in the thread (module docstring).
        self.inline = engine.dialect.name == "sqlite" if inline is None else inline
        self.inline_max_operations = inline_max_operations
        self.checkpoint_interval_s = checkpoint_interval_s
        self.gather_seconds = gather_seconds
        self.gather_target = min(gather_target, max_batch)
        self._gathering: asyncio.Future[None] | None = None  # set while the writer waits
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_executor: ThreadPoolExecutor | None = None
        self._commits_since_checkpoint = 0
        self._catch_up = False  # the checkpointer finished a round: see `_catch_up_checkpoint`
        self.stats = BatchStats()
        self._queue: asyncio.Queue[PendingRequest] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._raw: Any = None  # the pooled connection the SQLite writer keeps between batches
        self._busy_timeout_ms = 0  # that connection's configured busy_timeout

    # ------------------------------------------------------------------ lifecycle

    def _ensure_started(self) -> asyncio.Queue[PendingRequest]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-writer")
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._queue), name="intake-group-commit"
            )
            if self.inline:
                self._checkpoint_executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="intake-checkpoint"
                )
                self._checkpointer = asyncio.get_running_loop().create_task(
                    self._checkpoints(self._checkpoint_executor), name="intake-checkpoint"
                )
        return self._queue

    async def start(self) -> None:
        self._ensure_started()

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        for executor in (self._executor, self._checkpoint_executor):
            if executor is not None:
                executor.shutdown(wait=True)
        self._release()
        self._task = self._queue = self._executor = None
        self._checkpointer = self._checkpoint_executor = None

    def is_healthy(self) -> bool:
        return self._task is None or not self._task.done()

    # ------------------------------------------------------------------ use

    async def submit(
        self, operations: Sequence[Operation], *, received_at: datetime
    ) -> IntakeResult:
        """Record `operations`; returns once they are committed (durable)."""
        queue = self._ensure_started()
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        # The facts (dedup keys, payload JSON) are computed here, before the batch forms: the
        # writer's critical section (write lock held) stays short.
        facts = [_facts(op, self.extra_exception_statuses) for op in operations]
        queue.put_nowait(PendingRequest(operations, BatchRequest(facts, received_at), future))
        gathering = self._gathering
        if gathering is not None and queue.qsize() + 1 >= self.gather_target:
            _wake(gathering)  # the writer holds one request; with these it has its target
        return await future

    async def _run(self, queue: asyncio.Queue[PendingRequest]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            if self.gather_seconds > 0 and queue.qsize() + 1 < self.gather_target:
                await self._gather(loop)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if self.inline:
                    outcomes = await self._commit_inline(batch)
                else:
                    outcomes = await loop.run_in_executor(self._executor, self._commit, batch)
            except BaseException as exc:  # the shared commit failed: every request fails
                outcomes = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    for pending in batch:
                        if pending.future is not None and not pending.future.done():
                            pending.future.set_exception(exc)
                        queue.task_done()
                    raise
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            for pending, outcome in zip(batch, outcomes, strict=True):
                future = pending.future
                if future is not None and not future.done():
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                queue.task_done()

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until `gather_target` requests are queued (`submit` wakes us) or
        `gather_seconds` have passed (see "Commit delay" in the module docstring)."""
        waiter: asyncio.Future[None] = loop.create_future()
        self._gathering = waiter
        timer = loop.call_later(self.gather_seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._gathering = None

    # ------------------------------------------------------------------ SQLite: inline

    async def _commit_inline(
        self, batch: list[PendingRequest]
    ) -> list[IntakeResult | BaseException]:
        """BEGIN IMMEDIATE in the thread, the statements here, COMMIT (fsync) in the thread."""
        loop = asyncio.get_running_loop()

        def in_thread(fn: Any, *args: Any) -> asyncio.Future[Any]:
            return loop.run_in_executor(self._executor, fn, *args)

        try:
            if not self._begin_now():
                await in_thread(self._begin)
        except SQLAlchemyError as exc:  # busy (another process writes), unreachable
            return [exc] * len(batch)
        fan_out = FanOut()
        record = functools.partial(self._record_fast, batch, fan_out)
        try:
            if sum(len(p.request.facts) for p in batch) <= self.inline_max_operations:
                results = record()
            else:
                results = await in_thread(record)
        except Exception as exc:
            await in_thread(self._rollback)
            log.info("intake batch re-recorded request by request: %s", type(exc).__name__)
            self.stats.fallbacks += 1
            return await in_thread(self._commit_each, batch)
        started = time.perf_counter()
        try:
            await in_thread(self._finish, fan_out)
        except SQLAlchemyError as exc:
            return [exc] * len(batch)
        self.stats.commit_ms.append((time.perf_counter() - started) * 1000)
        self._commits_since_checkpoint += 1
        return results

    def _record_fast(
        self, batch: list[PendingRequest], fan_out: FanOut
    ) -> list[IntakeResult | BaseException]:
        """The batch's statements on the kept SQLite connection (the fast path); the fan-out
        markers it owes go into `fan_out`, for `_finish`."""
        return list(
            record_batch_dbapi(
                self._raw.dbapi_connection,
                "sqlite",
                [p.request for p in batch],
                workspace_id=self.workspace_id,
                exceptions_channel=self.exceptions_channel,
                source=self.source,
                fan_out=fan_out,
            )
        )

    async def _checkpoints(self, executor: ThreadPoolExecutor) -> None:
        """Every `checkpoint_interval_s` after commits, a PASSIVE checkpoint on another
        connection in another thread: it copies committed WAL frames into the database without
        taking the write lock, so the writer goes on committing meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.checkpoint_interval_s)
            if self._commits_since_checkpoint:
                self._commits_since_checkpoint = 0
                await loop.run_in_executor(executor, self._checkpoint)

    def _checkpoint(self) -> None:
        """PASSIVE checkpoints, one after another while each takes long (the writer keeps
        committing meanwhile: each round copies what the previous one left), until one is
        short; then the writer is asked to copy the last few frames (`_catch_up_checkpoint`)."""
        try:
            raw = self.engine.raw_connection()
            try:
                for _ in range(CHECKPOINT_MAX_ROUNDS):
                    started = time.perf_counter()
                    raw.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if time.perf_counter() - started < CHECKPOINT_SHORT_S:
                        self._catch_up = True
                        break
            finally:
                raw.close()
        except Exception as exc:  # the next round (or any other connection's commit) retries
            log.warning("intake WAL checkpoint failed: %s", type(exc).__name__)

    def _catch_up_checkpoint(self) -> None:
        """After a COMMIT, when the checkpointer has just copied the WAL but for the frames
        committed meanwhile: copy those too, on the writer's connection, so that nothing is
        left behind and the next BEGIN starts the WAL over from its first frame. Otherwise,
        under steady load, the checkpointer never catches the writer and the WAL grows without
        end (measured: 2 GB in 40 s of the bench), and every commit then writes into new space,
        which the kernel zeroes and the journal records (~14% of the writer's CPU, and a
        metadata flush in every fsync)."""
        self._catch_up = False
        with contextlib.suppress(sqlite3.Error):  # busy: the next round tries again
            self._raw.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _begin_now(self) -> bool:
        """BEGIN IMMEDIATE on the loop when the write lock is free (the common case: it takes
        microseconds), saving a round trip to the thread; False when it must wait (busy) or
        the connection is not made yet: then `_begin` does it in the thread."""
        if self._raw is None:
            return False
        try:
            self._raw.dbapi_connection.execute("BEGIN IMMEDIATE")  # busy_timeout is 0 here
        except sqlite3.Error:
            return False
        return True

    def _begin(self) -> None:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            dbapi = self._raw.dbapi_connection
            self._busy_timeout_ms = int(dbapi.execute("PRAGMA busy_timeout").fetchone()[0])
            # The writer never checkpoints: `_checkpoints` does, beside it (measured: the
            # commit that crossed SQLite's 1,000-page threshold copied the WAL into the database
            # and fsynced it, a 50-250 ms stall for the whole batch: the p99).
            dbapi.execute("PRAGMA wal_autocheckpoint=0")
        # Wait for the lock here, in the thread, with the configured patience; on the loop
        # (`_begin_now`) the connection never waits.
        dbapi = self._raw.dbapi_connection
        dbapi.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            self._driver_call("BEGIN IMMEDIATE")
        finally:
            dbapi.execute("PRAGMA busy_timeout=0")

    def _finish(self, fan_out: FanOut) -> None:
        """The batch's fan-out markers (one executemany: C work, no GIL needed), then COMMIT."""
        try:
            try:
                write_fan_out(self._raw.dbapi_connection, "sqlite", fan_out)
            except sqlite3.Error as exc:
                raise DBAPIError.instance("fan-out", None, exc, sqlite3.Error) from exc
            self._driver_call("COMMIT")
        except SQLAlchemyError:
            self._rollback()
            raise
        if self._catch_up:
            self._catch_up_checkpoint()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._raw is not None and self._raw.dbapi_connection.in_transaction:
                self._raw.dbapi_connection.execute("ROLLBACK")

    def _driver_call(self, statement: str) -> None:
        """Run `statement` on the kept connection; its errors as SQLAlchemy's (the route
        answers 503 to those)."""
        try:
            self._raw.dbapi_connection.execute(statement)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

    def _release(self) -> None:
        if self._raw is not None:
            self._rollback()
            with contextlib.suppress(sqlite3.Error):
                dbapi = self._raw.dbapi_connection
                dbapi.execute(f"PRAGMA wal_autocheckpoint={SQLITE_DEFAULT_AUTOCHECKPOINT}")
                dbapi.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._raw.close()  # back to the pool, as it came
            self._raw = None

    # ------------------------------------------------------------------ synchronous use

    def pending(self, operations: Sequence[Operation], *, received_at: datetime) -> PendingRequest:
        """A request for `record_now`: its facts computed now, before the batch forms."""
        facts = [_facts(op, self.extra_exception_statuses) for op in operations]
        return PendingRequest(operations, BatchRequest(facts, received_at))

    def record_now(
        self, batch: list[PendingRequest]
    ) -> Callable[[], list[IntakeResult | BaseException]]:
        """Record `batch` in one transaction from the calling thread, for a writer with no
        event loop to keep free (the intake writer process); returns the rest of the work, the
        COMMIT, for the caller to run where it likes: in another thread while it reads and
        parses the next requests (the fsync releases the GIL). Until that has run, the next
        `record_now` must wait. Same statements, fallback and figures as `submit`'s batches.

        SQLite: BEGIN IMMEDIATE and the statements run here, the fan-out markers and COMMIT in
        the returned call. PostgreSQL: all of it in the returned call (`_commit`)."""
        if not self.inline:
            return functools.partial(self._counted, batch, self._commit)
        try:
            if not self._begin_now():
                self._begin()
        except SQLAlchemyError as exc:
            failed: list[IntakeResult | BaseException] = [exc] * len(batch)
            return functools.partial(self._counted, batch, lambda _batch: failed)
        fan_out = FanOut()
        try:
            results = self._record_fast(batch, fan_out)
        except Exception as exc:
            self._rollback()
            log.info("intake batch re-recorded request by request: %s", type(exc).__name__)
            self.stats.fallbacks += 1
            return functools.partial(self._counted, batch, self._commit_each)

        def commit(_batch: list[PendingRequest]) -> list[IntakeResult | BaseException]:
            started = time.perf_counter()
            try:
                self._finish(fan_out)
            except SQLAlchemyError as exc:
                return [exc] * len(batch)
            self.stats.commit_ms.append((time.perf_counter() - started) * 1000)
            self._commits_since_checkpoint += 1
            return results

        return functools.partial(self._counted, batch, commit)

    def _counted(
        self,
        batch: list[PendingRequest],
        record: Callable[[list[PendingRequest]], list[IntakeResult | BaseException]],
    ) -> list[IntakeResult | BaseException]:
        outcomes = record(batch)
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        return outcomes

    def checkpoint_if_committed(self) -> None:
        """A PASSIVE checkpoint if anything was committed since the last one (for a writer
        that runs its own checkpoint thread: see `_checkpoints`)."""
        if self._commits_since_checkpoint and self.inline:
            self._commits_since_checkpoint = 0
            self._checkpoint()

    def close(self) -> None:
        """Give back the connection `record_now` kept."""
        self._release()

    # ------------------------------------------------------------------ in the writer thread

    def _commit(self, batch: list[PendingRequest]) -> list[IntakeResult | BaseException]:
        """In the writer thread: the whole batch in one transaction on the fast path, one
        commit; on a driver error, again request by request (`_commit_each`). A failing BEGIN
        or COMMIT (busy, unreachable) fails them all."""
        try:
            with self.engine.connect() as conn, conn.begin():
                _bound_lock_waits(conn)
                return list(
                    record_batch(
                        conn,
                        [p.request for p in batch],
                        workspace_id=self.workspace_id,
                        exceptions_channel=self.exceptions_channel,
                        source=self.source,
                    )
                )
        except SQLAlchemyError as exc:
            return [exc] * len(batch)
        except Exception as exc:
            base = _driver_busy_base(exc)
            if base is not None:
                # The database is busy or locked (not a bad request): the whole batch gets 503
                # and D1 retries, rather than waiting again request by request.
                return [DBAPIError.instance(None, None, exc, base)] * len(batch)
            log.info("intake batch re-recorded request by request: %s", type(exc).__name__)
            self.stats.fallbacks += 1
        return self._commit_each(batch)

    def _commit_each(self, batch: list[PendingRequest]) -> list[IntakeResult | BaseException]:
        """One transaction, a savepoint per request (the Core path), one commit."""
        outcomes: list[IntakeResult | BaseException] = []
        with self.engine.connect() as conn, conn.begin():
            _bound_lock_waits(conn)
            for pending in batch:
                savepoint = conn.begin_nested()
                try:
                    result = record_operations_in(
                        conn,
                        pending.operations,
                        received_at=pending.request.received_at,
                        workspace_id=self.workspace_id,
                        exceptions_channel=self.exceptions_channel,
                        extra_exception_statuses=self.extra_exception_statuses,
                        source=self.source,
                    )
                except Exception as exc:  # this request only; the batch goes on
                    savepoint.rollback()
                    log.warning("intake request rolled back: %s", type(exc).__name__)
                    outcomes.append(exc)
                else:
                    savepoint.commit()
                    outcomes.append(result)
        return outcomes


def _driver_busy_base(exc: Exception) -> type[Exception] | None:
    """The driver's base error class when `exc` is the driver saying the database is busy,
    locked or unreachable (an OperationalError), else None. psycopg is looked up, not
    imported: a process on SQLite never loads it (22 MB of the intake writer's memory)."""
    if isinstance(exc, sqlite3.OperationalError):
        return sqlite3.Error
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return psycopg.Error
    return None


def _bound_lock_waits(conn: Connection) -> None:
    """PostgreSQL: a lock held elsewhere (a migration, an operator's LOCK TABLE) fails this
    transaction after a bound instead of holding D1's request open: the route answers 503 and
    D1 retries, as with SQLite's busy timeout."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{POSTGRES_LOCK_TIMEOUT_MS}ms'")


__all__ = ["BatchStats", "GroupCommitter", "PendingRequest"]
