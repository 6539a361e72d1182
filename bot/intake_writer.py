"""The intake writer process: D1's notifications parsed and recorded beside the HTTP server.

Why a process. Under load the server's event loop is the bottleneck, and it is shared by the
HTTP stack and, with the writer in-process, by everything intake does after reading a body:
parsing, the facts, the batch's statements, the group commit. A thread would not help (every
`sqlite3` call gives the GIL up and waits to get it back from the busy loop: measured, a
convoy). A process has its own interpreter: the server reads the request, hands the raw body to
the writer over a Unix socket, and answers when the writer says the batch holding it is
committed. The writer records with the same `GroupCommitter` (same statements, fallback and
checkpoints), in a loop of its own with no event loop (`_Writer`).

Guarantees are unchanged: the route answers 204 only after the writer's COMMIT. If the writer
dies, every request it held gets 503 (D1 retries; whatever it committed is deduplicated), and
the next request starts a new writer. If the server dies, the writer reads end-of-stream,
finishes what it holds and exits: nothing it acknowledged is lost, and what it commits after
the server is gone was never acknowledged, so D1 sends it again and the dedup key drops it.

Run by the server as `python -m bot.intake_writer <fd>`: the socket's descriptor is inherited;
the configuration (database URL included) arrives over the socket, never on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot import intake_wire as wire
from d1.notifications import NotificationRejected, parse_body
from storage.repositories.group_commit import BatchStats, GroupCommitter, PendingRequest
from storage.repositories.intake import IntakeResult

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # the writer imports, connects and answers "ready" within this
STOP_TIMEOUT_S = 30.0  # for what it holds to be committed and answered at shutdown
RESTART_INTERVAL_S = 1.0  # after a failed start, requests get 503 this long before a retry
RECV_BYTES = 1 << 20
SWITCH_INTERVAL_S = 0.0002  # the writer process's GIL switch interval (see `_Writer.run`)
_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class WriterUnavailable(Exception):
    """The writer process is not running (starting, crashed) or lost the request: 503."""


@dataclass
class WriterConfig:
    """What the writer needs to record as the server would: sent over the socket as JSON."""

    database_url: str
    workspace_id: str
    exceptions_channel: str | None
    extra_exception_statuses: list[str]
    issuer_id: str | None
    gather_seconds: float
    gather_target: int
    log_level: str = "INFO"
    log_format: str = "text"
    sqlite_synchronous: str | None = None  # as the server's engine has it
    sqlite_busy_timeout_ms: int | None = None

    @classmethod
    def mirroring(cls, engine: Engine, **values: Any) -> WriterConfig:
        """A config whose database is `engine`'s, with the same SQLite pragmas."""
        url = engine.url.render_as_string(hide_password=False)
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()  # no transaction: reading pragmas takes no lock
            try:
                sync = raw.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0]
                busy = raw.dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0]
            finally:
                raw.close()
            values["sqlite_synchronous"] = _SYNCHRONOUS.get(int(sync), "FULL")
            values["sqlite_busy_timeout_ms"] = int(busy)
        return cls(database_url=url, **values)


# =========================================================================== the server's side


class _ServerSide(asyncio.Protocol):
    """The server's end of the socket: frames out, answers in."""

    def __init__(self, on_frame: Callable[[int, bytes], None], on_lost: Callable[[], None]):
        self._reader = wire.FrameReader()
        self._on_frame = on_frame
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, data: bytes) -> None:
        """Write `data` at once, not at the end of the loop's turn: the writer can start on a
        request while we read the next."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except wire.WireError:
            log.error("intake writer sent an unreadable frame; dropping it")
            if self.transport is not None:
                self.transport.abort()
            return
        for request_id, _micros, payload in frames:
            self._on_frame(request_id, payload)

    def eof_received(self) -> bool:
        return False  # the writer is gone: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost()


class IntakeWriter:
    """The server's handle on its writer process: `record` a body, get the committed result.

    Started by the app's lifespan (or lazily by the first `record`), stopped with it; a writer
    that died is started again by the next request, at most once per `RESTART_INTERVAL_S`."""

    def __init__(self, engine: Engine, *, python: str = sys.executable, **values: Any) -> None:
        self.engine = engine
        self.values = values  # WriterConfig's fields but the database's (`mirroring`)
        self.python = python
        self.stats = BatchStats()  # the writer's figures, as it reports them when it stops
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._protocol: _ServerSide | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._last_failed_start = float("-inf")
        self._stopping = False
        self._closed: asyncio.Future[None] | None = None  # set by stop(), done when the writer is

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the writer with the app. A failure (the database unreachable, say) does not
        stop the app: the health check reports it, and the next notification tries again."""
        try:
            await self._running()
        except WriterUnavailable as exc:
            log.error("%s", exc)

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        process = self._process
        return process.pid if process is not None and self._protocol is not None else None

    def is_healthy(self) -> bool:
        process = self._process
        return self._stopping or (
            self._protocol is not None and process is not None and process.poll() is None
        )

    async def _running(self) -> _ServerSide:
        if self._protocol is not None:
            return self._protocol
        if self._stopping:
            raise WriterUnavailable("intake writer is stopping")
        if self._starting is None:
            if time.monotonic() - self._last_failed_start < RESTART_INTERVAL_S:
                raise WriterUnavailable("intake writer failed to start; retrying shortly")
            self._starting = asyncio.get_running_loop().create_task(self._spawn())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except Exception as exc:
            raise WriterUnavailable(f"intake writer did not start: {exc}") from exc
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None
        assert self._protocol is not None
        return self._protocol

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            config = await loop.run_in_executor(
                None, functools.partial(WriterConfig.mirroring, self.engine, **self.values)
            )
        except Exception:
            self._last_failed_start = time.monotonic()
            raise
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await loop.run_in_executor(
                None,
                functools.partial(
                    subprocess.Popen,
                    [self.python, "-m", "bot.intake_writer", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                ),
            )
        except OSError:
            ours.close()
            self._last_failed_start = time.monotonic()
            raise
        finally:
            theirs.close()
        ready: asyncio.Future[None] = loop.create_future()
        protocol = _ServerSide(self._on_frame, lambda: self._on_lost(protocol, process))
        self._ready = ready
        self._process = process
        await loop.create_unix_connection(lambda: protocol, sock=ours)
        protocol.send(wire.json_frame(wire.CONTROL_ID, asdict(config)))
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT_S)
        except BaseException:
            self._last_failed_start = time.monotonic()
            if protocol.transport is not None:
                protocol.transport.abort()
            _reap(process, timeout=0)
            raise
        self._protocol = protocol
        log.info("intake writer process %d ready", process.pid)

    async def stop(self) -> None:
        """Let the writer commit and answer what it holds, then wait for it to exit."""
        self._stopping = True
        try:
            if self._starting is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._starting)
            protocol, process = self._protocol, self._process
            if protocol is None or process is None:
                return
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._closed = lost
            if protocol.transport is not None:
                protocol.transport.write_eof()  # the writer finishes, reports, closes
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost, STOP_TIMEOUT_S)
            await asyncio.get_running_loop().run_in_executor(None, _reap, process, 5.0)
        finally:
            self._stopping = False
            self._protocol = self._process = None

    # ------------------------------------------------------------------ use

    async def record(self, raw: bytes, *, received_at: datetime) -> IntakeResult:
        """Record one notification body; returns once it is committed.

        Raises NotificationRejected (400), WriterUnavailable or SQLAlchemy's error kinds'
        stand-in (503), RuntimeError (500)."""
        protocol = await self._running()
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        protocol.send(wire.frame(request_id, wire.to_micros(received_at), raw))
        try:
            outcome = await future
        finally:
            self._waiting.pop(request_id, None)
        kind = outcome["kind"]
        if kind == wire.STORED:
            return wire.result_of(outcome)
        if kind == wire.REJECTED:
            raise NotificationRejected(outcome["errorCode"], outcome["field"])
        if kind == wire.UNAVAILABLE:
            raise WriterUnavailable(outcome["reason"])
        raise RuntimeError(f"intake writer failed: {outcome.get('reason')}")

    def _on_frame(self, request_id: int, payload: bytes) -> None:
        if request_id == wire.CONTROL_ID:
            self._on_control(json.loads(payload))
            return
        future = self._waiting.get(request_id)
        if future is not None and not future.done():
            future.set_result(json.loads(payload))

    def _on_control(self, message: dict[str, Any]) -> None:
        if message.get("ready") and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if "stats" in message:
            figures = message["stats"]
            self.stats.batches += figures["batches"]
            self.stats.requests += figures["requests"]
            self.stats.largest = max(self.stats.largest, figures["largest"])
            self.stats.fallbacks += figures["fallbacks"]
            self.stats.commit_ms.extend(figures["commit_ms"])

    def _on_lost(self, protocol: _ServerSide, process: subprocess.Popen[bytes]) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(WriterUnavailable("intake writer exited while starting"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._waiting:
            log.error(
                "intake writer process %d stopped with %d notifications unanswered (503)",
                process.pid,
                len(self._waiting),
            )
        elif not self._stopping:
            log.error("intake writer process %d stopped", process.pid)
        if not self._stopping:  # stop() reaps its own; a writer that died is reaped here
            asyncio.get_running_loop().run_in_executor(None, _reap, process, 5.0)
        for future in self._waiting.values():
            if not future.done():
                future.set_result(wire.unavailable("intake writer stopped"))
        self._waiting.clear()


def _reap(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the writer to exit; kill it if it will not."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# =========================================================================== the writer's side


class _Writer:
    """The writer process's loop: read what the server sent, parse it, record it as one batch,
    commit, answer; again. The COMMIT (the fsync) runs in a thread of its own while this one
    reads and parses the requests that arrived meanwhile, which become the next batch. No
    event loop: nothing else runs here, so nothing waits for a turn."""

    def __init__(self, sock: socket.socket, config: WriterConfig) -> None:
        from storage.db import make_engine

        options: dict[str, Any] = {}
        if config.sqlite_synchronous is not None:
            options["synchronous"] = config.sqlite_synchronous
        if config.sqlite_busy_timeout_ms is not None:
            options["busy_timeout_ms"] = config.sqlite_busy_timeout_ms
        self.sock = sock
        self.config = config
        self.committer = GroupCommitter(
            make_engine(config.database_url, **options),
            workspace_id=config.workspace_id,
            exceptions_channel=config.exceptions_channel,
            extra_exception_statuses=frozenset(config.extra_exception_statuses),
            gather_seconds=config.gather_seconds,
            gather_target=config.gather_target,
        )
        self.reader = wire.FrameReader()
        self.held: list[tuple[int, int, bytes]] = []  # frames read, not parsed yet
        self.ready: list[tuple[int, PendingRequest]] = []  # parsed, for the next batch
        self.closed = False
        self._stop_checkpoints = threading.Event()

    def run(self) -> None:
        # The commit thread hands the GIL back as soon as its fsync returns; the default
        # switch interval (5 ms) would hold the batch that long behind our parsing.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        checkpointer = threading.Thread(target=self._checkpoints, name="intake-checkpoint")
        checkpointer.start()
        committer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-commit")
        try:
            self.sock.sendall(wire.json_frame(wire.CONTROL_ID, {"ready": True}))
            self._loop(committer_thread)
            self.sock.sendall(wire.json_frame(wire.CONTROL_ID, {"stats": self._figures()}))
        finally:
            committer_thread.shutdown(wait=True)
            self._stop_checkpoints.set()
            checkpointer.join()
            self.committer.close()
            self.committer.engine.dispose()

    def _loop(self, committer_thread: ThreadPoolExecutor) -> None:
        committing: Future[list[IntakeResult | BaseException]] | None = None
        committing_ids: list[int] = []
        while True:
            if committing is None and not self.ready:
                if self.closed:
                    return
                self._read(timeout=None)  # nothing to do until the server sends something
            else:
                self._read(timeout=0)
            self._parse()
            if committing is not None:
                self._answer(committing_ids, committing.result())
                committing = None
            if self.ready and self._gather():
                cut = self.committer.max_batch
                batch, self.ready = self.ready[:cut], self.ready[cut:]
                committing_ids = [request_id for request_id, _ in batch]
                finish = self.committer.record_now([pending for _, pending in batch])
                committing = committer_thread.submit(finish)

    def _read(self, timeout: float | None) -> bool:
        """Take what has arrived (waiting up to `timeout`; None: until something does)."""
        if self.closed:
            return False
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not ready:
                return False
        data = self.sock.recv(RECV_BYTES)
        if not data:
            self.closed = True  # the server stopped (or died): finish what is held
            return False
        self.held.extend(self.reader.feed(data))
        while True:  # and whatever else is already there, without waiting
            try:
                data = self.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            if not data:
                self.closed = True
                return True
            self.held.extend(self.reader.feed(data))

    def _parse(self) -> None:
        """Held frames into the next batch; a body that does not parse is refused at once."""
        if not self.held:
            return
        refusals: list[bytes] = []
        issuer_id = self.config.issuer_id
        for request_id, micros, raw in self.held:
            try:
                operations = parse_body(raw, issuer_id=issuer_id)
                pending = self.committer.pending(operations, received_at=wire.from_micros(micros))
            except NotificationRejected as exc:
                refusal = wire.rejected(exc.error_code, exc.field)
                refusals.append(wire.json_frame(request_id, refusal))
                continue
            except Exception as exc:  # a bug must cost this request a 500, not the writer
                log.exception("notification not parsed")
                refusals.append(wire.json_frame(request_id, wire.failed(type(exc).__name__)))
                continue
            self.ready.append((request_id, pending))
        self.held.clear()
        if refusals:
            self.sock.sendall(b"".join(refusals))

    def _gather(self) -> bool:
        """The commit delay, if one is set: wait up to `gather_seconds` for `gather_target`
        requests. True when there is a batch to record."""
        wait = self.config.gather_seconds
        if wait > 0 and len(self.ready) < self.config.gather_target:
            deadline = time.monotonic() + wait
            while len(self.ready) < self.config.gather_target and self._read(
                timeout=deadline - time.monotonic()
            ):
                self._parse()
        return bool(self.ready)

    def _answer(self, ids: list[int], outcomes: list[IntakeResult | BaseException]) -> None:
        self.sock.sendall(
            b"".join(
                wire.json_frame(request_id, _outcome_of(outcome))
                for request_id, outcome in zip(ids, outcomes, strict=True)
            )
        )

    def _checkpoints(self) -> None:
        while not self._stop_checkpoints.wait(self.committer.checkpoint_interval_s):
            self.committer.checkpoint_if_committed()

    def _figures(self) -> dict[str, Any]:
        stats = self.committer.stats
        return {
            "batches": stats.batches,
            "requests": stats.requests,
            "largest": stats.largest,
            "fallbacks": stats.fallbacks,
            "commit_ms": list(stats.commit_ms),
        }


def _outcome_of(outcome: IntakeResult | BaseException) -> dict[str, Any]:
    if isinstance(outcome, IntakeResult):
        return wire.stored(outcome)
    if isinstance(outcome, SQLAlchemyError):
        return wire.unavailable(type(outcome).__name__)
    log.error("notification not stored: %s", type(outcome).__name__, exc_info=outcome)
    return wire.failed(type(outcome).__name__)


def _configuration(sock: socket.socket) -> WriterConfig:
    """The first frame: the configuration."""
    reader = wire.FrameReader()
    while True:
        data = sock.recv(RECV_BYTES)
        if not data:
            raise SystemExit(0)  # the server went away before configuring us
        frames = reader.feed(data)
        if frames:
            request_id, _micros, payload = frames[0]
            if request_id != wire.CONTROL_ID or len(frames) > 1:
                raise SystemExit("intake writer: expected the configuration first")
            return WriterConfig(**json.loads(payload))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the server stops
    # us (end-of-stream) once it has stopped taking requests, after what we hold is answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    sock.setblocking(True)
    config = _configuration(sock)
    from bot.logs import configure_logging

    configure_logging(level=config.log_level, fmt=config.log_format)
    _Writer(sock, config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
