"""The one PAN detector (d1/carddata.py): every way a card number gets pasted is found, every
string and nested value comes out without one, and ordinary numbers are left alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d1.carddata import contains_pan, find_pans, is_pan, mask_pans_in, redact_pans

VISA = "4111111111111111"
SEPARATED = [
    "4111 1111 1111 1111",
    "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces
    "4111\u20091111\u20091111\u20091111",  # thin spaces
    "4111\u202f1111\u202f1111\u202f1111",  # narrow no-break spaces
    "4111\t1111\t1111\t1111",
    "4111.1111.1111.1111",
    "4111-1111-1111-1111",
    "4111+1111+1111+1111",  # a form-encoded body
    "4111%201111%201111%201111",  # a URL
    "4111  1111 \t 1111 . 1111",  # doubled and mixed
    "4111\u20131111\u20131111\u20131111",  # en dashes
    "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
    "3782-822463-10005",  # Amex, 15 digits
    "5500 0000 0000 0004",  # Mastercard
    "6011000990139424",  # Discover
    "2223000048400011",  # Mastercard 2-series
    "4222222222222",  # 13-digit Visa
    "6250941006528599",  # UnionPay
]


@pytest.mark.parametrize("written", SEPARATED)
def test_every_way_of_writing_a_pan_is_found_and_masked(written: str) -> None:
    text = f"card {written} lost"
    assert find_pans(text) == [written]
    masked = redact_pans(text)
    assert not contains_pan(masked)
    last_four = "".join(str(int(c)) for c in written[-4:])
    assert masked.startswith("card *********") and masked.endswith(f"{last_four} lost")


@pytest.mark.parametrize(
    "text",
    [
        "tracking 61293150000079650811",  # 20 digits, unbroken
        "4111111111111112",  # fails Luhn
        "1234567812345670",  # Luhn, but no card network starts with 1
        "9400111899223100000000",  # a USPS tracking number
        "slack ts 1733605020.123456",
        "2026-11-22 07:26:00",
        "card-123456",
        "41111111\n11111111",  # a line break is not a separator
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert not contains_pan(text)
    assert redact_pans(text) == text


def test_identifiers_are_not_exempt() -> None:
    assert redact_pans(f"crd-{VISA}") == "crd-************1111"
    assert redact_pans(f"issuerRequestId=REQ{VISA}X") == "issuerRequestId=REQ************1111X"


def test_the_four_digits_kept_never_complete_another_pan() -> None:
    # masking the first PAN leaves "1111" next to digits that, with it, form another PAN
    text = f"{VISA} 4111 1111 1111 1"
    assert not contains_pan(redact_pans(text))


def test_nested_values_are_masked_everywhere() -> None:
    value = {
        "cardId": f"card-{VISA}",
        "details": {"reason": ["ok", f"pan {SEPARATED[1]}"], VISA: 4111111111111111},
        "count": 3,
        "flag": True,
        "none": None,
        "tuple": (VISA,),
    }
    masked = mask_pans_in(value)
    assert masked["cardId"] == "card-************1111"
    assert masked["details"]["reason"] == ["ok", "pan ************1111"]
    assert masked["details"]["************1111"] == "************1111"
    assert masked["count"] == 3 and masked["flag"] is True and masked["none"] is None
    assert masked["tuple"] == ("************1111",)
    assert value["cardId"] == f"card-{VISA}"  # the original is left as it was


def test_a_huge_integer_is_left_as_it_is() -> None:
    huge = 4**8000
    assert mask_pans_in({"n": huge}) == {"n": huge}


SEPARATORS = st.sampled_from([" ", "\u00a0", "\u2009", "\t", ".", "-", "+", "%20", "  ", " - "])


@st.composite
def written_pans(draw: st.DrawFn) -> str:
    """A valid PAN (network prefix, 13-19 digits, Luhn) split by arbitrary separators."""
    prefix = draw(st.sampled_from(["4", "51", "55", "34", "37", "6011", "62", "35", "2221"]))
    length = draw(st.integers(min_value=13, max_value=19))
    body = prefix + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(prefix) - 1,
                      max_size=length - len(prefix) - 1))
    )  # fmt: skip
    for check in "0123456789":
        if is_pan(body + check):
            body += check
            break
    cuts = sorted(set(draw(st.lists(st.integers(1, len(body) - 1), max_size=5))))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(body[last:cut])
        last = cut
    pieces.append(body[last:])
    return "".join(
        p + (draw(SEPARATORS) if i < len(pieces) - 1 else "") for i, p in enumerate(pieces)
    )


@settings(max_examples=300, deadline=None)
@given(pan=written_pans(), before=st.text(max_size=30), after=st.text(max_size=30))
def test_a_pan_in_any_text_never_survives_masking(pan: str, before: str, after: str) -> None:
    text = f"{before} {pan} {after}"
    assert contains_pan(text)
    masked = redact_pans(text)
    assert not contains_pan(masked)
    assert redact_pans(masked) == masked


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_masking_any_text_leaves_no_pan(text: str) -> None:
    masked = redact_pans(text)
    assert not contains_pan(masked)
    assert len(masked) <= len(text)


def test_a_uuid_is_not_a_card_number_but_a_card_number_beside_one_is() -> None:
    """D1's operation ids are UUIDs; about one in 500 has leading digit-only groups that read as
    16 digits passing Luhn. Refusing those would lose real notifications (D1 does not resend)."""
    operation_id = "op-6f3e29a3-5278-471c-bf65-495871231324"
    assert not contains_pan(operation_id)
    assert redact_pans(operation_id) == operation_id
    assert find_pans(f"{operation_id} card 4111 1111 1111 1111") == ["4111 1111 1111 1111"]
    assert contains_pan("4111-1111-1111-1111") and contains_pan("REQ-4111111111111111")
