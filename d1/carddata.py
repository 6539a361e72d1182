"""Card data: the one detector of full card numbers (PANs), and their masking.

Whatever reaches a channel, a log line or the database goes through these functions. A PAN is
13-19 digits that pass Luhn and start with a card network's prefix, written with any separators
people paste (spaces of every width, tabs, dots, dashes, `+`, URL-encoded spaces, mixtures,
several in a row). Identifiers are not exempt: a card id or a reference holding a PAN is masked
too. An unbroken run of more than 19 digits is not a PAN (a long tracking number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Card networks' leading digits: Mir and Mastercard 2-series (22-27), Diners (30, 36, 38, 39),
# Amex (34, 37), JCB (35), Visa (4), Mastercard and Maestro (5x), Discover, UnionPay, RuPay and
# Maestro (6x).
_NETWORK_PREFIX = re.compile(r"(?:2[2-7]|3[0456789]|4|5|6)")

# What may stand between the digit groups of a pasted number: any horizontal whitespace
# (space, no-break, thin, figure, narrow no-break spaces, tab), dots, ASCII and Unicode
# dashes, `+` (a form-encoded space), and the URL-encoded forms of those. Never a line break.
_SEPARATOR = (
    r"(?:[^\S\r\n\u2028\u2029]|[.+\-\u2010-\u2015\u2212]"
    r"|%(?:20|09|2[BbDdEe])|%[Cc]2%[Aa]0|%[Ee]2%80%(?:[89][0-9A-Fa-f]|[Aa][Ff]))+"
)
_DIGIT_GROUPS = re.compile(rf"\d+(?:{_SEPARATOR}\d+)*")
# Inside a run: a separator (skipped, so the digits of `%20` are not a group) or a digit group.
_RUN_PART = re.compile(rf"{_SEPARATOR}|(\d+)")

MIN_DIGITS = 13
MAX_DIGITS = 19


def _ascii_digits(group: str) -> str:
    """A group of Unicode decimal digits (full-width ones too) as ASCII digits."""
    return group if group.isascii() else "".join(str(int(c)) for c in group)


def _digits(text: str) -> str:
    """The ASCII digits of a number as written: separators (`%20` included) dropped."""
    return "".join(
        _ascii_digits(m.group(1)) for m in _RUN_PART.finditer(text) if m.group(1) is not None
    )


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number passes."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def is_pan(digits: str) -> bool:
    """Whether a digit string is a full card number: 13-19 digits, a network prefix, Luhn."""
    return (
        MIN_DIGITS <= len(digits) <= MAX_DIGITS
        and _NETWORK_PREFIX.match(digits) is not None
        and luhn_valid(digits)
    )


# A UUID (`op-6f3e29a3-5278-471c-bf65-495871231324`, as D1 writes operation ids): about one in
# 500 has leading groups of digits only that would otherwise read as a 16-digit card number.
_UUID = re.compile(
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Fa-f])"
)

# A quick look before the full search, for plain ASCII text without `%` (most of what intake
# sees): digits become `9`, the ASCII separators vanish, everything else becomes `x`. A PAN then
# leaves at least 13 `9`s in a row, so text without them holds none.
_SQUEEZE = bytes(ord("9") if chr(b).isdigit() else ord("x") for b in range(256))
_ASCII_SEPARATORS = b" \t\x0b\x0c.+-"
_THIRTEEN_DIGITS = b"9" * MIN_DIGITS


def _cannot_hold_pan(text: str) -> bool:
    return (
        text.isascii()
        and "%" not in text
        and _THIRTEEN_DIGITS not in text.encode("ascii").translate(_SQUEEZE, _ASCII_SEPARATORS)
    )


def pan_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every substring of `text` that is a full PAN: whole digit groups adding
    up to 13-19 digits that pass `is_pan`. Windows of whole groups are tried, so a PAN that
    follows an unrelated number ("card-1 4111 ...") is still found; a run of digits is never
    cut (a 20-digit tracking number is not a PAN)."""
    spans: list[tuple[int, int]] = []
    if _cannot_hold_pan(text):
        return spans
    uuids = [m.span() for m in _UUID.finditer(text)] if "-" in text else []
    for run in _DIGIT_GROUPS.finditer(text):
        if any(start <= run.start() and run.end() <= end for start, end in uuids):
            continue  # digit groups of a UUID (D1's operation ids): not a card number
        if run.end() - run.start() < MIN_DIGITS:
            continue  # too short to hold 13 digits
        groups = [
            part.span(1)
            for part in _RUN_PART.finditer(text, run.start(), run.end())
            if part.group(1) is not None
        ]
        digits = [_ascii_digits(text[start:end]) for start, end in groups]
        start_index = 0
        while start_index < len(groups):
            matched_end = None
            number = ""
            for end_index in range(start_index, len(groups)):
                number += digits[end_index]
                if len(number) > MAX_DIGITS:
                    break
                if len(number) >= MIN_DIGITS and is_pan(number):
                    matched_end = end_index
            if matched_end is None:
                start_index += 1
                continue
            spans.append((groups[start_index][0], groups[matched_end][1]))
            start_index = matched_end + 1
    return spans


def find_pans(text: str) -> list[str]:
    """Substrings of `text` that are full PANs (as written, separators included)."""
    return [text[start:end] for start, end in pan_spans(text)]


def contains_pan(text: str) -> bool:
    return bool(pan_spans(text))


def mask_pan(value: str) -> str:
    """Keep at most the last four digits; every other digit becomes '*'."""
    if len(value) <= 4:
        return "*" * len(value)
    visible_from = len(value) - 4
    return "".join(
        c if i >= visible_from or not c.isdecimal() else "*" for i, c in enumerate(value)
    )


def _masked(pan: str) -> str:
    """A found PAN as `************1111`: its separators dropped, its last four kept."""
    return mask_pan(_digits(pan))


def _replace_once(text: str, replace: Callable[[str], str]) -> str:
    spans = pan_spans(text)
    if not spans:
        return text
    pieces: list[str] = []
    cursor = 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        pieces.append(replace(text[start:end]))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_pans(text: str, replacement: Callable[[str], str] | None = None) -> str:
    """`text` with every PAN replaced (by default masked to its last four digits). Repeated
    until none is left: the four digits kept could otherwise complete a PAN with the digits
    that follow them."""
    replace = replacement or _masked
    for _ in range(len(text)):
        cleaned = _replace_once(text, replace)
        if cleaned == text:
            return cleaned
        text = cleaned
    return text


def mask_pans_in(value: Any) -> Any:
    """`value` with every PAN masked, however deep: strings, the keys and values of dicts,
    lists and tuples (rebuilt, the original is left as it is); other values as they are, except
    integers, which are masked as text when they are a PAN."""
    if isinstance(value, str):
        return redact_pans(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        text = str(value) if value.bit_length() <= 64 else ""
        return redact_pans(text) if text and contains_pan(text) else value
    if isinstance(value, dict):
        return {mask_pans_in(k): mask_pans_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_pans_in(v) for v in value)
    return value


__all__ = [
    "contains_pan",
    "find_pans",
    "is_pan",
    "luhn_valid",
    "mask_pan",
    "mask_pans_in",
    "pan_spans",
    "redact_pans",
]
