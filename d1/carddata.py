"""Card data helpers: finding and masking PAN-like numbers (13-19 digits passing Luhn).

Card data is sensitive: whatever reaches a channel, a log or the database goes through these.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DIGITS = re.compile(r"\d")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number passes."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# A run of digit groups separated by single spaces or dashes ("card-1 4111 1111 1111 1111").
_DIGIT_GROUPS = re.compile(r"\d+(?:[ -]\d+)*")
_GROUP = re.compile(r"\d+")


def pan_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every substring that looks like a full PAN: whole digit groups adding up
    to 13-19 digits and passing Luhn. Windows of whole groups are tried, so a PAN that follows
    an unrelated number ("card-1 4111 ...") is still found; an unbroken run of digits is never
    cut (a 20-digit tracking number is not a PAN)."""
    spans: list[tuple[int, int]] = []
    for run in _DIGIT_GROUPS.finditer(text):
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, run.start(), run.end())]
        start_index = 0
        while start_index < len(groups):
            matched_end = None
            total = 0
            for end_index in range(start_index, len(groups)):
                total += groups[end_index][1] - groups[end_index][0]
                if total > 19:
                    break
                if total >= 13:
                    first, last = groups[start_index][0], groups[end_index][1]
                    digits = "".join(c for c in text[first:last] if c.isdigit())
                    if luhn_valid(digits):
                        matched_end = end_index
            if matched_end is None:
                start_index += 1
                continue
            spans.append((groups[start_index][0], groups[matched_end][1]))
            start_index = matched_end + 1
    return spans


def find_pans(text: str) -> list[str]:
    """Substrings of `text` that look like a full PAN (13-19 digits passing Luhn)."""
    return [text[start:end] for start, end in pan_spans(text)]


def redact_pans(text: str, replacement: Callable[[str], str] | None = None) -> str:
    """`text` with every PAN-like substring replaced (by default masked to its last four)."""
    spans = pan_spans(text)
    if not spans:
        return text
    replace = replacement or (lambda pan: mask_pan(re.sub(r"[ -]", "", pan)))
    pieces: list[str] = []
    cursor = 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        pieces.append(replace(text[start:end]))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def contains_pan(text: str) -> bool:
    return bool(find_pans(text))


def mask_pan(value: str) -> str:
    """Keep at most the last four digits; everything else becomes '*'."""
    if len(value) <= 4:
        return "*" * len(value)
    digits = [c for c in value]
    visible_from = len(digits) - 4
    return "".join(c if i >= visible_from or not c.isdigit() else "*" for i, c in enumerate(digits))
