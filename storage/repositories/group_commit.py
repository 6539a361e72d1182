"""Group commit for intake: one writer batches concurrent requests into one transaction.

Every 204 must be durable (SQLite `synchronous=FULL`: an fsync per commit), and an fsync per
request caps throughput at the disk's flush rate. So requests queue here; one writer thread takes
everything queued, records each request inside its own SAVEPOINT (one bad request never fails
the others), commits once, and only then answers every request of the batch. While the writer
commits, new requests queue up and form the next batch: the busier it gets, the bigger the
batches, and the cost of an fsync is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from d1.models import Operation
from storage.repositories.intake import IntakeResult, record_operations_in
from storage.tables import SOURCE_D1

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256


@dataclass
class _Pending:
    operations: Sequence[Operation]
    received_at: datetime
    future: asyncio.Future[IntakeResult]


@dataclass
class BatchStats:
    """Counters for the benchmark and the logs: how much batching actually happens."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    history: list[int] = field(default_factory=list, repr=False)

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
    ) -> None:
        self.engine = engine
        self.workspace_id = workspace_id
        self.exceptions_channel = exceptions_channel
        self.extra_exception_statuses = extra_exception_statuses
        self.max_batch = max_batch
        self.source = source
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    def _ensure_started(self) -> asyncio.Queue[_Pending]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-writer")
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._queue), name="intake-group-commit"
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
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._queue = self._executor = None

    def is_healthy(self) -> bool:
        return self._task is None or not self._task.done()

    # ------------------------------------------------------------------ use

    async def submit(
        self, operations: Sequence[Operation], *, received_at: datetime
    ) -> IntakeResult:
        """Record `operations`; returns once they are committed (durable)."""
        queue = self._ensure_started()
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Pending(operations, received_at, future))
        return await future

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                outcomes = await loop.run_in_executor(self._executor, self._commit, batch)
            except BaseException as exc:  # the shared commit failed: every request fails
                outcomes = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                        queue.task_done()
                    raise
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            for pending, outcome in zip(batch, outcomes, strict=True):
                if not pending.future.done():
                    if isinstance(outcome, BaseException):
                        pending.future.set_exception(outcome)
                    else:
                        pending.future.set_result(outcome)
                queue.task_done()

    def _commit(self, batch: list[_Pending]) -> list[IntakeResult | BaseException]:
        """In the writer thread: one transaction, a savepoint per request, one commit."""
        outcomes: list[IntakeResult | BaseException] = []
        with self.engine.connect() as conn, conn.begin():
            for pending in batch:
                savepoint = conn.begin_nested()
                try:
                    result = record_operations_in(
                        conn,
                        pending.operations,
                        received_at=pending.received_at,
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


__all__ = ["BatchStats", "GroupCommitter"]
