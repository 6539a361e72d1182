"""HTTP/1.1 framing of the outbox's Slack calls (pure): request heads and the answer reader,
whatever way the bytes are split on arrival."""

from __future__ import annotations

import gzip
import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.http1 import Origin, ProtocolError, Response, ResponseReader, post_head

JSON = b'{"ok":true,"channel":"C1","ts":"1700000000.000100"}'


def _read(data: bytes, splits: list[int] | None = None) -> Response | None:
    """Feed `data` cut at `splits`; the answer, once complete (and nothing fed after it)."""
    reader = ResponseReader()
    cuts = sorted({0, len(data), *(min(cut, len(data)) for cut in splits or [])})
    answer = None
    for start, end in itertools.pairwise(cuts):
        assert answer is None, "the answer completed before all its bytes arrived"
        answer = reader.feed(data[start:end])
    return answer


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(body: bytes, size: int, trailer: bytes = b"") -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n" + trailer + b"\r\n"


def test_post_head_names_the_path_under_the_base_url_and_the_length() -> None:
    origin = Origin.of("http://127.0.0.1:8123/api/")
    head = post_head(origin, "chat.postMessage", length=12, headers={"Authorization": "Bearer x"})
    assert head.startswith(b"POST /api/chat.postMessage HTTP/1.1\r\nHost: 127.0.0.1:8123\r\n")
    assert b"\r\nContent-Length: 12\r\n" in head and head.endswith(b"Bearer x\r\n\r\n")
    slack = Origin.of("https://slack.com/api")
    assert (slack.scheme, slack.port, slack.prefix, slack.host_header) == (
        "https",
        443,
        "/api/",
        "slack.com",
    )


def test_header_injection_and_odd_base_urls_are_refused() -> None:
    origin = Origin.of("https://slack.com/api/")
    with pytest.raises(ValueError):
        post_head(origin, "m", length=0, headers={"X": "a\r\nEvil: 1"})
    for url in ("ftp://slack.com/api/", "https://user:pw@slack.com/api/", "https:///api/"):
        with pytest.raises(ValueError):
            Origin.of(url)


@given(splits=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_content_length_answer_whatever_the_split(splits: list[int]) -> None:
    data = _head(
        "HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(JSON)}"
    )
    answer = _read(data + JSON, splits)
    assert answer == Response(
        200,
        {"content-type": "application/json", "content-length": str(len(JSON))},
        JSON,
        True,
    )


@given(
    body=st.binary(max_size=300),
    size=st.integers(min_value=1, max_value=64),
    splits=st.lists(st.integers(min_value=0, max_value=800), max_size=10),
    trailer=st.sampled_from([b"", b"X-Trace: 1\r\n"]),
)
def test_chunked_answer_whatever_the_split(
    body: bytes, size: int, splits: list[int], trailer: bytes
) -> None:
    data = _head("HTTP/1.1 429 Too Many Requests", "Retry-After: 3", "Transfer-Encoding: chunked")
    answer = _read(data + _chunked(body, size, trailer), splits)
    assert answer is not None
    assert (answer.status, answer.body, answer.keep_alive) == (429, body, True)
    assert answer.headers["retry-after"] == "3"


def test_chunk_extensions_are_ignored() -> None:
    data = _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"4;name=v\r\nabcd\r\n0\r\n\r\n"
    answer = _read(data)
    assert answer is not None and answer.body == b"abcd"


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    for coding, packed in (
        ("gzip", gzip.compress(JSON)),
        ("deflate", zlib.compress(JSON)),
        ("deflate", _raw_deflate(JSON)),
    ):
        data = _head(
            "HTTP/1.1 200 OK", f"Content-Encoding: {coding}", f"Content-Length: {len(packed)}"
        )
        answer = _read(data + packed)
        assert answer is not None and answer.body == JSON


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_connection_reuse_follows_the_server() -> None:
    close = _read(_head("HTTP/1.1 200 OK", "Connection: close", "Content-Length: 2") + b"{}")
    assert close is not None and not close.keep_alive
    old = _read(_head("HTTP/1.0 200 OK", "Content-Length: 2") + b"{}")
    assert old is not None and not old.keep_alive
    old_kept = _read(
        _head("HTTP/1.0 200 OK", "Connection: keep-alive", "Content-Length: 2") + b"{}"
    )
    assert old_kept is not None and old_kept.keep_alive
    # Bytes after the answer: something is wrong with this connection, do not reuse it.
    extra = _read(_head("HTTP/1.1 200 OK", "Content-Length: 2") + b"{}HTTP/1.1")
    assert extra is not None and not extra.keep_alive


def test_interim_answers_are_skipped_and_no_body_statuses_end_at_the_head() -> None:
    answer = _read(_head("HTTP/1.1 100 Continue") + _head("HTTP/1.1 204 No Content"))
    assert answer is not None and (answer.status, answer.body) == (204, b"")


def test_an_answer_framed_by_the_end_of_the_connection() -> None:
    reader = ResponseReader()
    assert reader.feed(_head("HTTP/1.1 200 OK") + b'{"ok":') is None
    assert reader.feed(b"true}") is None
    answer = reader.end()
    assert (answer.body, answer.keep_alive) == (b'{"ok":true}', False)


def test_a_connection_closed_early_is_an_error() -> None:
    reader = ResponseReader()
    reader.feed(_head("HTTP/1.1 200 OK", "Content-Length: 10") + b"{}")
    with pytest.raises(ProtocolError):
        reader.end()
    with pytest.raises(ProtocolError):
        ResponseReader().end()


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        _head("HTTP/1.1 2000 OK"),
        _head("HTTP/1.1 200 OK", "no colon here"),
        _head("HTTP/1.1 200 OK", " Folded: header"),
        _head("HTTP/1.1 200 OK", "Content-Length: -1"),
        _head("HTTP/1.1 200 OK", "Content-Length: 2, 3"),
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"),
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"zz\r\n",
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"2\r\nabcd\r\n",
        _head("HTTP/1.1 200 OK", "Content-Encoding: br", "Content-Length: 2") + b"{}",
        _head("HTTP/1.1 200 OK", "Content-Encoding: gzip", "Content-Length: 2") + b"{}",
    ],
)
def test_malformed_answers_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseReader().feed(data)


def test_a_protocol_error_is_a_connection_error() -> None:
    """The outbox treats it as it treats a reset connection: retried later, never dead."""
    assert issubclass(ProtocolError, OSError)
