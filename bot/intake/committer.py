"""Notifications recorded in shared commits, so that every 204 is durable without an fsync each.

Requests queue here; a writer thread of its own records everything queued in one transaction
(`storage.repositories.intake.record_requests`) and only after the commit answers each request.
What arrives while a commit runs forms the next batch: the busier it gets, the more requests
share one fsync, and an idle bot waits for nothing but its own commit. The thread takes the next
batch as soon as it has committed one, without waiting for the event loop to hand it over: the
loop is then busy answering the batch just committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from collections.abc import Sequence
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
_Outcome = IntakeResult | BaseException


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
        self._waiting: deque[_Waiting] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        # One thread: one write transaction at a time, off the event loop.
        self._thread: threading.Thread | None = None

    async def record(
        self,
        operations: Sequence[Operation],
        *,
        received_at: datetime,
        quarantined: Sequence[QuarantinedOperation] = (),
    ) -> IntakeResult:
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        with self._changed:
            if self._stopping:
                raise RuntimeError("intake stopped")
            self._waiting.append((IntakeRequest(operations, received_at, quarantined), future))
            self._changed.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="intake", daemon=True)
                self._thread.start()
        return await future

    def _write(self) -> None:
        """The writer thread: batch after batch until stopped and nothing is left."""
        while True:
            with self._changed:
                while not self._waiting and not self._stopping:
                    self._changed.wait()
                if not self._waiting:
                    return
                batch = self._next_batch()
            outcomes: Sequence[_Outcome]
            try:
                outcomes = self._record([request for request, _ in batch])
            except Exception as exc:  # every waiter learns, none hangs
                outcomes = [exc] * len(batch)
            loop = batch[0][1].get_loop()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_answer, batch, outcomes)

    def _next_batch(self) -> list[_Waiting]:
        """The oldest waiting requests, within both bounds (always at least one)."""
        batch: list[_Waiting] = []
        operations = 0
        while self._waiting and len(batch) < self.max_batch:
            request = self._waiting[0][0]
            operations += len(request.operations) + len(request.quarantined)
            if batch and operations > MAX_BATCH_OPERATIONS:
                break
            batch.append(self._waiting.popleft())
        return batch

    async def stop(self) -> None:
        """Answer what is queued, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:  # its last answers are delivered before this returns
            await asyncio.to_thread(thread.join)

    def is_healthy(self) -> bool:
        return self._thread is None or self._thread.is_alive() or self._stopping


def _answer(batch: list[_Waiting], outcomes: Sequence[_Outcome]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # its caller went away; the data is stored all the same
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


__all__ = ["MAX_BATCH", "MAX_BATCH_OPERATIONS", "IntakeCommitter"]
