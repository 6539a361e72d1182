"""HTTP/1.1 messages for the outbox's Slack calls, the pure part: the bytes of a JSON POST, and
an incremental reader of the answer (status, headers, body framed by Content-Length, chunked
transfer coding or the end of the connection; gzip and deflate content codings).

No I/O here: `bot.keepalive` owns the connections and feeds this reader what arrives. Only what
a JSON API answer can be is supported; anything else is a `ProtocolError`, never a guess.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The peer's bytes are not an HTTP/1.x answer this reader accepts (a broken exchange, like
    a connection reset: what was sent may or may not have been acted on)."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port, and the path prefix of the base URL."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def of(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("a base URL with credentials, a query or a fragment")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        prefix = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme, parts.hostname, port, prefix)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def post_head(origin: Origin, path: str, *, length: int, headers: dict[str, str]) -> bytes:
    """The head of `POST <prefix><path>` with a JSON body of `length` bytes."""
    lines = [
        f"POST {origin.prefix}{path} HTTP/1.1",
        f"Host: {origin.host_header}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {length}",
        "Accept-Encoding: gzip, deflate",
    ]
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError("a header with a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes
    keep_alive: bool  # the connection may carry the next request


class ResponseReader:
    """Feed it what arrives on a connection (`feed`), and `end()` when the peer closes; it
    returns the answer once the answer is complete. One reader per request."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._keep_alive = True
        self._length: int | None = None  # Content-Length framing
        self._chunked = False
        self._until_close = False
        self._chunks: list[bytes] = []
        self._chunk_left: int | None = None  # bytes left in the current chunk (+ its CRLF)
        self._in_trailer = False
        self._received = 0

    def feed(self, data: bytes) -> Response | None:
        self._buffer += data
        if self._headers is None and not self._read_head():
            return None
        return self._read_body()

    def end(self) -> Response:
        """The peer closed the connection: the answer if that is how it was framed."""
        if self._headers is not None and self._until_close:
            return self._done(bytes(self._buffer), keep_alive=False)
        raise ProtocolError("connection closed before the answer was complete")

    # ------------------------------------------------------------------ head

    def _read_head(self) -> bool:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("answer head too large")
                return False
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            status, headers, version = _parse_head(head)
            if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
                continue
            self._status, self._headers = status, headers
            connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            self._keep_alive = (
                "close" not in connection if version == "1.1" else "keep-alive" in connection
            )
            self._frame(headers)
            return True

    def _frame(self, headers: dict[str, str]) -> None:
        if self._status in _NO_BODY_STATUSES:
            self._length = 0
            return
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise ProtocolError(f"transfer coding {coding!r}")
            self._chunked = True
            return
        length = headers.get("content-length")
        if length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError("bad Content-Length")
            self._length = int(values.pop())
            if self._length > MAX_BODY_BYTES:
                raise ProtocolError("answer body too large")
            return
        self._until_close = True
        self._keep_alive = False

    # ------------------------------------------------------------------ body

    def _read_body(self) -> Response | None:
        if self._length is not None:
            if len(self._buffer) < self._length:
                return None
            body = bytes(self._buffer[: self._length])
            extra = len(self._buffer) > self._length
            return self._done(body, keep_alive=self._keep_alive and not extra)
        if self._chunked:
            return self._read_chunks()
        if len(self._buffer) > MAX_BODY_BYTES:
            raise ProtocolError("answer body too large")
        return None  # until the peer closes

    def _read_chunks(self) -> Response | None:
        while True:
            if self._in_trailer:
                return self._read_trailer()
            if self._chunk_left is None:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 1024:
                        raise ProtocolError("chunk size line too long")
                    return None
                size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
                if not size_text or size_text.lstrip(b"0123456789abcdefABCDEF"):
                    raise ProtocolError("bad chunk size")
                size = int(size_text, 16)
                del self._buffer[: end + 2]
                if size == 0:
                    self._in_trailer = True
                    continue
                self._received += size
                if self._received > MAX_BODY_BYTES:
                    raise ProtocolError("answer body too large")
                self._chunk_left = size + 2
            if len(self._buffer) < self._chunk_left:
                return None
            chunk_end = self._chunk_left - 2
            if self._buffer[chunk_end : chunk_end + 2] != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
            self._chunks.append(bytes(self._buffer[:chunk_end]))
            del self._buffer[: self._chunk_left]
            self._chunk_left = None

    def _read_trailer(self) -> Response | None:
        """After the last chunk: trailer lines (ignored), then an empty line."""
        if self._buffer.startswith(b"\r\n"):
            end = 2
        else:
            found = self._buffer.find(b"\r\n\r\n")
            if found < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("trailer too large")
                return None
            end = found + 4
        extra = len(self._buffer) > end
        return self._done(b"".join(self._chunks), keep_alive=self._keep_alive and not extra)

    def _done(self, body: bytes, *, keep_alive: bool) -> Response:
        assert self._headers is not None
        coding = self._headers.get("content-encoding", "identity").strip().lower()
        if coding in {"gzip", "x-gzip"}:
            body = _inflate(body, zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            try:
                body = _inflate(body, zlib.MAX_WBITS)
            except ProtocolError:  # some servers send raw deflate
                body = _inflate(body, -zlib.MAX_WBITS)
        elif coding != "identity":
            raise ProtocolError(f"content coding {coding!r}")
        return Response(self._status, self._headers, body, keep_alive)


def _inflate(body: bytes, wbits: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(body, MAX_BODY_BYTES)
    except zlib.error as exc:
        raise ProtocolError("bad compressed body") from exc
    if decompressor.unconsumed_tail:
        raise ProtocolError("answer body too large")
    return out


def _parse_head(head: bytes) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and HTTP minor version of an answer's head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ProtocolError("not an HTTP/1.x status line")
    if len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError("bad status code")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError("bad header line")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(parts[1]), headers, parts[0][5:].decode("ascii")


__all__ = ["Origin", "ProtocolError", "Response", "ResponseReader", "post_head"]
