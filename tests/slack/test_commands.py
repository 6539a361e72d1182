"""The `/card` text parser: typed commands, safe error messages, PANs refused unechoed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.slack.commands import (
    HELP_POINTER,
    CommandError,
    DigestOffCommand,
    DigestPostCommand,
    DigestScheduleCommand,
    DigestShowCommand,
    HelpCommand,
    ListCommand,
    StatusCommand,
    SubscribeCommand,
    TrackCommand,
    UnsubscribeCommand,
    command_name,
    parse_command,
)
from d1.models import ProductionTrackingRequest, ReturnTrackingRequest, ShipmentTrackingRequest

PAN = "4111111111111111"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status card-1", StatusCommand("card-1")),
        ("  STATUS   card_2  ", StatusCommand("card_2")),
        ("subscribe card-1", SubscribeCommand("card-1", "all")),
        ("subscribe card-1 exceptions", SubscribeCommand("card-1", "exceptions")),
        ("unsubscribe card-1", UnsubscribeCommand("card-1")),
        ("list", ListCommand()),
        ("help", HelpCommand()),
        ("", HelpCommand()),
        ("digest", DigestShowCommand()),
        ("digest post", DigestPostCommand()),
        ("digest off", DigestOffCommand()),
        ("digest schedule 8:30", DigestScheduleCommand("08:30", None)),
        ("digest schedule 17:05 Europe/Paris", DigestScheduleCommand("17:05", "Europe/Paris")),
    ],
)
def test_parses_each_subcommand(text: str, expected: object) -> None:
    assert parse_command(text) == expected


def test_track_production_and_return_build_d1_requests() -> None:
    cmd = parse_command("track card-1 production productionSite=PARIS")
    assert isinstance(cmd, TrackCommand)
    assert cmd.tracking_type == "PRODUCTION"
    assert cmd.request == ProductionTrackingRequest(production_site="PARIS")
    ret = parse_command('track card-1 RETURN production_site="Site 2"')
    assert isinstance(ret, TrackCommand)
    assert ret.request == ReturnTrackingRequest(production_site="Site 2")


def test_track_shipment_validates_and_normalises() -> None:
    cmd = parse_command(
        "track card-1 shipment trackingNumber=1Z999 shipmentDate=2024-05-31 "
        "postalCode=75001 countrycode=fr"
    )
    assert isinstance(cmd, TrackCommand)
    request = cmd.request
    assert isinstance(request, ShipmentTrackingRequest)
    assert request.country_code == "FR"
    assert request.shipment_date == datetime(2024, 5, 31, tzinfo=timezone.utc)
    assert request.to_wire()["trackingType"] == "SHIPMENT"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("track card-1 production", "`productionSite` is missing"),
        ("track card-1 shipment trackingNumber=1Z", "`shipmentDate`, `postalCode`, `countryCode`"),
        (
            "track card-1 shipment trackingNumber=1Z shipmentDate=yesterday postalCode=1 "
            "countryCode=FR",
            "`shipmentDate` is not a valid date",
        ),
        (
            "track card-1 shipment trackingNumber=1Z shipmentDate=2024-01-01 postalCode=1 "
            "countryCode=FRA",
            "`countryCode` is not valid",
        ),
        (
            "track card-1 shipment trackingNumber=1Z! shipmentDate=2024-01-01 postalCode=1 "
            "countryCode=FR",
            "`trackingNumber` is not valid",
        ),
        ("track card-1 production productionSite=A colour=red", "Unknown tracking argument"),
        ("track card-1 production trackingNumber=1", "`trackingNumber` does not apply"),
        ("track card-1 production productionSite", "`key=value`"),
        ("track card-1 teleport", "`production`, `shipment` or `return`"),
        ("track card-1 production productionSite=", "`productionSite` is empty"),
    ],
)
def test_track_errors_name_the_field(text: str, names: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert names in info.value.message
    assert info.value.reply.endswith(HELP_POINTER)


@pytest.mark.parametrize(
    "text",
    [
        "status",
        "status card!1",
        "status " + "x" * 65,
        "status card-1 extra",
        "subscribe card-1 sometimes",
        "list everything",
        "frobnicate",
        'status "card-1',
        "digest schedule 25:00",
        "digest schedule 08:00 Mars/Olympus",
    ],
)
def test_bad_commands_get_a_reason_and_a_pointer(text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert info.value.reply.endswith(HELP_POINTER)
    assert not info.value.pan_refused


@pytest.mark.parametrize(
    "text",
    [
        f"status {PAN}",
        "status 4111 1111 1111 1111",
        "status 4111-1111-1111-1111",
        f"track card-1 shipment trackingNumber={PAN}",
        f"subscribe card-1 {PAN}",
        f"frobnicate {PAN}",
    ],
)
def test_pan_anywhere_is_refused_and_never_echoed(text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert info.value.pan_refused
    assert "1111" not in info.value.reply
    assert "card number" in info.value.reply


def test_digits_that_fail_luhn_are_just_a_bad_or_good_card_id() -> None:
    assert parse_command("status 4111111111111112") == StatusCommand("4111111111111112")


def test_longest_subcommand_wins() -> None:
    assert isinstance(parse_command("digest schedule 07:00"), DigestScheduleCommand)
    assert command_name(parse_command("digest post")) == "digest_post"


@pytest.mark.parametrize(
    "text", [f"subscribe card-1 {PAN}", "status 12 4111 1111 1111 1111", f"status 7-{PAN}"]
)
def test_pan_next_to_other_digits_is_still_refused(text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert info.value.pan_refused
