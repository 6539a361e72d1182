"""`d1bot --version`, and `--help` of every command ending with an example."""

from __future__ import annotations

import argparse
from importlib import metadata

import pytest

from bot.cli import _parser, main


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command path of the parser: ("serve",), ("quarantine", "list"), ..."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"d1bot {metadata.version('d1-slack')}\n"


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(_parser())
    assert {c[0] for c in commands} == {
        "serve",
        "demo",
        "sandbox",
        "quarantine",
        "migrate",
        "check",
    }
    for command in [(), *commands]:
        with pytest.raises(SystemExit) as stop:
            main([*command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        example = out.split("\nexample:\n", 1)
        assert len(example) == 2, f"`d1bot {' '.join(command)} --help` has no example"
        assert example[1].lstrip().startswith("d1bot" if command else "d1bot demo")
        if command:
            assert " ".join(command) in example[1]  # the example runs this very command
