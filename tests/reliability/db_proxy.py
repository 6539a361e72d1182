"""A TCP proxy between the bot and PostgreSQL that can cut the network for a while.

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for(database_url)    # the bot connects through the proxy
        proxy.cut(10)                        # every connection dropped, new ones refused, 10 s
        await proxy.restored.wait()          # set again when the cut is over

During a cut every open connection is aborted (the client sees its server vanish mid-query)
and every new one is closed as soon as it is accepted; afterwards connections are forwarded
again. It runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from sqlalchemy.engine import make_url

CHUNK = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:<port> to (host, port) until `cut` (see the module docstring)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.refused = 0  # connections closed at once during a cut
        self.restored = asyncio.Event()
        self.restored.set()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._end_of_cut: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._end_of_cut is not None:
            self._end_of_cut.cancel()
        assert self._server is not None
        self._server.close()
        self._abort_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def url_for(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    @property
    def is_cut(self) -> bool:
        return not self.restored.is_set()

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for `seconds`."""
        self.restored.clear()
        self._abort_all()
        self._end_of_cut = asyncio.get_running_loop().call_later(seconds, self.restored.set)

    def _abort_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy one direction until either side closes; then close both."""
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(sink)
            with contextlib.suppress(Exception):
                sink.close()


__all__ = ["TcpProxy"]
