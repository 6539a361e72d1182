"""Group commit for the delivery worker: what many Slack answers mean, written in one
transaction (`storage.repositories.outbox_settle.settle_many`).

A caller awaits its own item: `settle` returns only after the transaction holding it has
committed, so "store the parent's `ts`, then post in its thread" keeps its order. A commit
begins `commit_delay` (5 ms) after the first item of its batch arrived, and whatever arrives
while a commit runs goes into the next one, so batches grow with the load. Each transaction
has a fixed cost in the worker thread (BEGIN, the statements, the fsync of COMMIT) that the
thread pays holding the GIL part of the time; without the delay a thousand answers a second
made ~200 commits of ~20 items where ~80 of ~50 do. Nothing waits on a settlement for long:
a channel's next post is a second away, and a parent's `ts` is needed only by its first
reply. The delay also widens, by as much, the window in which a crash repeats a post Slack
had accepted (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from storage.repositories.outbox_settle import Settlement, settle_many

log = logging.getLogger(__name__)

MAX_BATCH = 2000
COMMIT_DELAY_SECONDS = 0.005
# A failed commit (the database briefly locked, a PostgreSQL failover) is tried again before
# giving up: giving up on a `Sent` means the row is posted again later.
COMMIT_ATTEMPTS = 4
COMMIT_RETRY_SECONDS = 0.2


class SettleQueue:
    """Collects settlements and commits them in batches (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker: str,
        clock: Callable[[], datetime],
        max_batch: int = MAX_BATCH,
        commit_delay: float = COMMIT_DELAY_SECONDS,
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.clock = clock
        self.max_batch = max_batch
        self.commit_delay = commit_delay
        self._queue: list[tuple[Settlement, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # for the bench and tests: how many transactions it took
        self.items = 0

    async def settle(self, item: Settlement) -> bool:
        """Write `item` in the next group commit; True once committed, False when the row's
        claim was no longer ours. Raises what the last commit attempt raised."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="outbox-settle")
        return await future

    async def close(self) -> None:
        """Wait for the queued items to be written."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._queue:
            if self.commit_delay > 0 and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.commit_delay)  # let the answers arriving now join
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                results = await self._commit([item for item, _ in batch])
            except Exception as exc:  # every waiter learns, none hangs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _commit(self, items: list[Settlement]) -> list[bool]:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                results = await asyncio.to_thread(
                    settle_many, self.engine, worker=self.worker, now=self.clock(), items=items
                )
            except Exception:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning(
                    "outbox settle commit of %d items failed (attempt %d); retrying",
                    len(items),
                    attempt,
                    exc_info=True,
                )
                await asyncio.sleep(COMMIT_RETRY_SECONDS * attempt)
                continue
            self.commits += 1
            self.items += len(items)
            return results
        raise AssertionError("unreachable")


__all__ = ["SettleQueue"]
