"""argparse value types the command lines share (replay, evaluate_drives): one rule each."""
from __future__ import annotations

import argparse

from bisenet_core.spec import MAX_INPUT_SIDE, SIZE_DIVISOR


def network_side(text: str) -> int:
    """A network input width or height, in pixels."""
    value = int(text)
    if not SIZE_DIVISOR <= value <= MAX_INPUT_SIDE:
        raise argparse.ArgumentTypeError(f'{text} is not in {SIZE_DIVISOR}..{MAX_INPUT_SIDE}')
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text} is not >= 1')
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f'{text} is not > 0')
    return value
