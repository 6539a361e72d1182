"""The pacer's reading of Slack's `ts` (pure, explicit times; the end-to-end pacing through the
stand-in is in tests/test_outbox.py)."""

from __future__ import annotations

from bot.delivery.notify import SlackArrivalClock

# Slack's clock is ahead of our monotonic clock by this much in these tests.
OFFSET = 1_700_000_000.0


def _ts(our_time: float) -> str:
    """The `ts` Slack would mint for a post that arrived at `our_time` (on our clock)."""
    return f"{our_time + OFFSET:.6f}"


def test_a_prompt_answer_teaches_the_offset_and_later_late_answers_read_their_arrival() -> None:
    clock = SlackArrivalClock()
    # Sent at 10.000, arrived at 10.001, answered at 10.002: the offset is known to 2 ms.
    assert 10.0 <= clock.arrival(_ts(10.001), sent=10.0, answered=10.002) <= 10.002
    # Sent at 11.000, arrived at 11.001, but the answer was read only at 11.300.
    arrival = clock.arrival(_ts(11.001), sent=11.0, answered=11.3)
    assert 11.001 <= arrival <= 11.001 + 0.002


def test_the_estimate_is_never_earlier_than_the_real_arrival() -> None:
    """Whatever the order of quick and slow answers, ts minus the learned bound is at or after
    the arrival (the bound is a lower bound on Slack's clock minus ours)."""
    clock = SlackArrivalClock()
    sends = [(0.0, 0.050, 0.400), (1.0, 1.001, 1.002), (2.0, 2.2, 2.9), (3.0, 3.0005, 3.001)]
    for sent, arrived, answered in sends:
        estimate = clock.arrival(_ts(arrived), sent=sent, answered=answered)
        assert arrived - 1e-6 <= estimate <= answered


def test_without_a_usable_ts_the_answer_time_counts() -> None:
    clock = SlackArrivalClock()
    assert clock.arrival(None, sent=1.0, answered=1.5) == 1.5
    assert clock.arrival("not-a-ts", sent=1.0, answered=1.5) == 1.5
    assert clock.arrival("nan", sent=1.0, answered=1.5) == 1.5


def test_a_ts_that_disagrees_with_our_times_is_clamped_between_send_and_answer() -> None:
    clock = SlackArrivalClock()
    clock.arrival(_ts(5.001), sent=5.0, answered=5.002)
    # Slack's clock stepped back by 10 s: the ts now reads as long before we sent.
    assert clock.arrival(_ts(6.001 - 10), sent=6.0, answered=6.2) == 6.0
    # Stepped forward: no later than the answer.
    assert clock.arrival(_ts(7.001 + 10), sent=7.0, answered=7.2) == 7.2


def test_an_old_bound_ages_out_so_drift_cannot_keep_it_too_high() -> None:
    """Slack's clock losing time against ours lowers the true offset; a bound learned two
    windows ago is forgotten, so arrivals stop reading early."""
    clock = SlackArrivalClock(window=60.0)
    clock.arrival(_ts(0.001), sent=0.0, answered=0.002)
    drift = -0.05  # Slack's clock now 50 ms behind where it was
    late = 200.0
    estimate = clock.arrival(f"{late + 0.001 + OFFSET + drift:.6f}", sent=late, answered=late + 0.3)
    assert estimate >= late + 0.001  # the old, too-high bound no longer applies
