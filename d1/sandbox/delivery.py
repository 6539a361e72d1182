"""Notification delivery the way D1 does it: POSTs to the issuer's callback, at least once.

- Body `{"operations": [...]}` with up to `batch_size` operations, or one bare operation (the
  shape of the tracking-hub examples); `body_shape="mixed"` (the default) sends both.
- Authentication: a static Bearer, or a Bearer first fetched from the callback side's
  `/oauth2/token` with Basic client credentials (`grant_type=client_credentials`), cached until
  shortly before `expires_in` and fetched again once after a 401.
- At least once: with `duplicate_rate` an operation is queued a second time; with `shuffle` the
  queue is shuffled before each batch (out-of-order arrival). A non-2xx answer or a connection
  error is retried with capped exponential backoff; a batch interrupted mid-flight goes back to
  the head of the queue. All randomness comes from one generator seeded by the config's seed.
- A 4xx is final, as D1's tables say of every 4xx: the operations are lost. The sandbox does not
  retry them; it records the loss (`refused`, the `/sandbox/cards` status) and logs it. A 401
  first fetches a new token once (client credentials).
- Said loudly (ERROR, with the fix): credentials the callback side refuses (at its token
  endpoint or on the notification), and a callback nobody answers (once until it answers).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from d1.sandbox.base import SandboxConfig
from d1.sandbox.faults import Faults

log = logging.getLogger("d1.sandbox.delivery")

AUTH_FIX = (
    "the bot refused the sandbox's credentials (%d): %d notification(s) LOST. Fix: run "
    "`d1bot sandbox` and `d1bot serve` from the same folder so that they read the same .env "
    "(SANDBOX_CALLBACK_CLIENT_ID/SECRET equal to D1_NOTIFY_CLIENT_ID/SECRET, or "
    "SANDBOX_CALLBACK_TOKEN equal to D1_NOTIFY_TOKEN), then restart `d1bot serve` so that it "
    "reads them"
)

Operation = dict[str, Any]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every delivery round: building one (loading the CA bundle) costs
    more than the round itself."""
    return ssl.create_default_context()


class CallbackRefused(Exception):
    """The callback side's token endpoint refused our client credentials (a 4xx)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class Refusal:
    """Operations the callback refused with a 4xx: lost, as they would be with D1."""

    operations: list[Operation]
    status: int
    answer: Any  # the callback's body (JSON when it was), for the record


def token_url_for(callback_url: str) -> str:
    """The callback side's token endpoint: `/oauth2/token` at the callback's origin."""
    parts = urlsplit(callback_url)
    return f"{parts.scheme}://{parts.netloc}/oauth2/token"


class Notifier:
    """The queue of operations waiting for delivery, and the delivery itself."""

    def __init__(self, *, config_of: Callable[[], SandboxConfig], faults: Faults, seed: int):
        self._config_of = config_of
        self._faults = faults
        self._rng = random.Random(f"delivery:{seed}")
        self.queue: list[Operation] = []
        self.dropped: list[Operation] = []
        self.undeliverable: list[Operation] = []
        self.refused: list[Refusal] = []
        self.delivered: list[tuple[list[Operation], int]] = []
        self.token_fetches = 0
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._unreachable_said = False  # "cannot reach the callback" said since it last answered

    # ------------------------------------------------------------------ queueing

    def enqueue(self, operations: list[Operation]) -> None:
        config = self._config_of()
        for op in operations:
            if self._faults.take_drop():
                self.dropped.append(op)
                continue
            self.queue.append(op)
            if config.duplicate_rate > 0 and self._rng.random() < config.duplicate_rate:
                self.queue.append(copy.deepcopy(op))
        if operations:
            self._wakeup.set()

    def wake(self) -> None:
        """Make the background worker look at the queue (e.g. a callback was just set)."""
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self.queue)

    @property
    def lost(self) -> int:
        """Operations refused with a 4xx (never retried) or given up on after the attempts."""
        return sum(len(r.operations) for r in self.refused) + len(self.undeliverable)

    # ------------------------------------------------------------------ delivering

    async def run_forever(self) -> None:
        """Background worker: deliver whenever something is queued."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.deliver_pending()
            except Exception:  # keep the worker alive; the queue keeps what was not acked
                log.exception("sandbox notification delivery failed")

    async def deliver_pending(self) -> None:
        """Deliver until the queue is empty (or there is no callback configured)."""
        async with self._lock, httpx.AsyncClient(timeout=10.0, verify=_tls_context()) as http:
            while self.queue and self._config_of().callback_url:
                batch, single = self._take_batch()
                try:
                    delivered = await self._send(http, batch, single=single)
                except BaseException:
                    self.queue[0:0] = batch  # interrupted: nothing is lost
                    raise
                if not delivered:
                    self.undeliverable.extend(batch)

    def _take_batch(self) -> tuple[list[Operation], bool]:
        """The next request's operations, and whether they go as one bare operation."""
        config = self._config_of()
        if config.shuffle and len(self.queue) > 1:
            self._rng.shuffle(self.queue)
        single = self._single()
        size = 1 if single else max(1, config.batch_size)
        batch, self.queue[:] = self.queue[:size], self.queue[size:]
        return batch, single

    def _single(self) -> bool:
        """Whether the next request carries one bare operation rather than an envelope."""
        shape = self._config_of().body_shape
        if shape == "mixed":
            return self._rng.random() < 0.5
        return shape == "single"

    async def _send(self, http: httpx.AsyncClient, batch: list[Operation], *, single: bool) -> bool:
        config = self._config_of()
        body: Any = batch[0] if single else {"operations": batch}
        fresh_token_tried = False
        for attempt in range(1, config.delivery_max_attempts + 1):
            status = 0
            response: httpx.Response | None = None
            failure = self._faults.take_failure("callback")
            delay = self._faults.take_delay("callback")
            if delay:
                await asyncio.sleep(delay)
            if failure is not None:
                status = failure.status
            else:
                try:
                    headers = await self._auth_headers(http)
                    response = await http.post(
                        config.callback_url or "", json=body, headers=headers
                    )
                    status = response.status_code
                except CallbackRefused as refused:
                    response, status = refused.response, refused.response.status_code
                except httpx.HTTPError as exc:
                    log.info("callback delivery attempt %d failed: %s", attempt, type(exc).__name__)
                    self._say_unreachable(config.callback_url or "", exc)
            self.delivered.append(([copy.deepcopy(op) for op in batch], status))
            if status:
                self._unreachable_said = False
            if 200 <= status < 300:
                return True
            if status == 401 and self._token is not None and not fresh_token_tried:
                self._token, fresh_token_tried = None, True  # one new token, then send again
                continue
            if 400 <= status < 500:
                self._record_refusal(batch, status, response)
                return True  # final: not retried, and not counted as undeliverable
            if attempt < config.delivery_max_attempts:
                ceiling = min(
                    config.delivery_backoff_max_seconds,
                    config.delivery_backoff_seconds * 2 ** (attempt - 1),
                )
                await asyncio.sleep(ceiling / 2 + self._rng.uniform(0, ceiling / 2))
        log.warning("gave up delivering %d operations", len(batch))
        return False

    def _record_refusal(
        self, batch: list[Operation], status: int, response: httpx.Response | None
    ) -> None:
        answer: Any = None
        if response is not None:
            try:
                answer = response.json()
            except ValueError:
                answer = response.text[:500]
        self.refused.append(Refusal([copy.deepcopy(op) for op in batch], status, answer))
        if status in (401, 403):
            log.error(AUTH_FIX, status, len(batch))
        ids = ", ".join(sorted({str(op.get("operationId")) for op in batch}))
        log.warning(
            "callback refused %d operation(s) with %d: LOST, D1 does not retry a 4xx "
            "(operations %s; answer %s)",
            len(batch),
            status,
            ids,
            answer,
        )

    def _say_unreachable(self, url: str, exc: Exception) -> None:
        if not self._unreachable_said:
            self._unreachable_said = True
            log.error(
                "cannot reach the callback %s (%s): is `d1bot serve` running and listening "
                "there? The notifications wait and are retried",
                url,
                type(exc).__name__,
            )

    async def _auth_headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        config = self._config_of()
        if config.callback_static_token:
            return {"authorization": f"Bearer {config.callback_static_token}"}
        if not (config.callback_client_id and config.callback_client_secret):
            return {}
        now = time.monotonic()
        if self._token is None or now >= self._token[1]:
            url = config.callback_token_url or token_url_for(config.callback_url or "")
            response = await http.post(
                url,
                auth=(config.callback_client_id, config.callback_client_secret),
                data={"grant_type": "client_credentials"},
            )
            if 400 <= response.status_code < 500:
                raise CallbackRefused(response)
            response.raise_for_status()
            answer = response.json()
            self.token_fetches += 1
            lifetime = float(answer.get("expires_in", 300))
            self._token = (str(answer["access_token"]), now + max(lifetime - 30, lifetime / 2))
        return {"authorization": f"Bearer {self._token[0]}"}


__all__ = ["Notifier", "token_url_for"]
