"""Notifications recorded in shared commits, so that every 204 is durable without an fsync each.

Requests queue here; one writer records everything queued in one transaction
(`storage.repositories.intake.record_requests`) in a thread of its own, and only after the commit
answers each request. What arrives while a commit runs forms the next batch: the busier it gets,
the more requests share one fsync, and an idle bot waits for nothing but its own commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.engine import Engine

from d1.models import Operation
from storage.repositories.intake import (
    IntakeRequest,
    IntakeResult,
    QuarantinedOperation,
    record_requests,
)

MAX_BATCH = 128
# Operations per transaction, at most (a request may hold many): the statements bind every card
# and dedup key of a batch, well under the databases' limits on bound parameters.
MAX_BATCH_OPERATIONS = 4096

_Waiting = tuple[IntakeRequest, asyncio.Future[IntakeResult]]


class IntakeCommitter:
    """`record` returns once the operations are committed, or raises the database's error."""

    def __init__(
        self,
        engine: Engine,
        *,
        workspace_id: str,
        exceptions_channel: str | None,
        extra_exception_statuses: frozenset[str] = frozenset(),
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._record = functools.partial(
            record_requests,
            engine,
            workspace_id=workspace_id,
            exceptions_channel=exceptions_channel,
            extra_exception_statuses=extra_exception_statuses,
        )
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        # One thread: one write transaction at a time, off the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake")

    async def record(
        self,
        operations: Sequence[Operation],
        *,
        received_at: datetime,
        quarantined: Sequence[QuarantinedOperation] = (),
    ) -> IntakeResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IntakeResult] = loop.create_future()
        self._waiting.append((IntakeRequest(operations, received_at, quarantined), future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="intake-writer")
        return await future

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._next_batch()
            requests = [request for request, _ in batch]
            outcomes: Sequence[IntakeResult | BaseException]
            try:
                outcomes = await loop.run_in_executor(self._thread, self._record, requests)
            except Exception as exc:  # every waiter learns, none hangs
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its caller went away; the data is stored all the same
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _next_batch(self) -> list[_Waiting]:
        """The oldest waiting requests, within both bounds (always at least one)."""
        count, operations = 0, 0
        for request, _ in self._waiting[: self.max_batch]:
            operations += len(request.operations) + len(request.quarantined)
            if count and operations > MAX_BATCH_OPERATIONS:
                break
            count += 1
        batch = self._waiting[:count]
        del self._waiting[:count]
        return batch

    async def stop(self) -> None:
        """Answer what is queued, then release the thread."""
        if self._writer is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._writer
        for _, future in self._waiting:  # only when the writer was cancelled
            if not future.done():
                future.set_exception(RuntimeError("intake stopped"))
        self._waiting.clear()
        self._thread.shutdown(wait=True)

    def is_healthy(self) -> bool:
        return self._writer is None or not self._writer.cancelled()


__all__ = ["MAX_BATCH", "MAX_BATCH_OPERATIONS", "IntakeCommitter"]
