"""The frames between the server and its intake writer: any chunking, exact times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import intake_wire as wire
from storage.repositories.intake import IntakeResult

frames = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.binary(max_size=300),
    ),
    max_size=8,
)


@given(frames=frames, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_frames_come_out_whole_however_the_stream_is_cut(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(wire.frame(*f) for f in frames)
    reader = wire.FrameReader()
    out: list[tuple[int, int, bytes]] = []
    start = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        out += reader.feed(stream[start:cut])
        start = cut
    assert out == frames


def test_an_oversized_length_is_refused_not_awaited() -> None:
    header = wire.HEADER.pack(wire.MAX_PAYLOAD + 1, 7, 0)
    with pytest.raises(wire.WireError):
        wire.FrameReader().feed(header)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(timezone.utc),
    )
)
def test_arrival_times_cross_to_the_microsecond(moment: datetime) -> None:
    assert wire.from_micros(wire.to_micros(moment)) == moment


def test_a_naive_time_is_taken_as_utc() -> None:
    naive = datetime(2026, 5, 1, 8, 0, 0, 123456)
    assert wire.from_micros(wire.to_micros(naive)) == naive.replace(tzinfo=timezone.utc)
    paris = timezone(timedelta(hours=2))
    assert wire.to_micros(naive.replace(tzinfo=paris)) == wire.to_micros(naive) - 7200 * 10**6


def test_a_stored_outcome_carries_the_whole_result() -> None:
    result = IntakeResult(
        new_event_ids=[3, 4], duplicates=1, enqueued=2, exception_event_ids=[4], gap_card_ids=["c"]
    )
    payload = json.loads(wire.json_frame(9, wire.stored(result))[wire.HEADER.size :])
    assert wire.result_of(payload) == result
