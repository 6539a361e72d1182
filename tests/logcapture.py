"""Capture what the product's log handler writes (the real handler, redaction included)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bot.logs import configure_logging

_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@contextmanager
def captured_logs(*, fmt: str = "text", level: str = "DEBUG") -> Iterator[io.StringIO]:
    """Install `bot.logs.configure_logging` writing to a StringIO; restore logging after."""
    root = logging.getLogger()
    saved_level = root.level
    saved_uvicorn = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
            logging.getLogger(name).disabled,
        )
        for name in _UVICORN
    }
    stream = io.StringIO()
    handler = configure_logging(level=level, fmt=fmt, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, (handlers, propagate, disabled) in saved_uvicorn.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled
