"""argparse value types shared by the publishers' command lines."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from beam_pipelines.events import parse_ts


def fraction(text: str) -> float:
    """A number within [0, 1], e.g. ``0.05``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction within [0, 1]")
    return value


def non_negative(kind: type) -> Callable[[str], int | float]:
    """A parser for a ``kind`` (int or float) >= 0; ``1_000`` is accepted."""

    def parse(text: str):
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
        return value

    return parse


def iso_utc(text: str) -> datetime:
    """ISO-8601 with a UTC offset (``2026-11-22T10:00:00Z``)."""
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; example: 2026-11-22T10:00:00Z") from None
