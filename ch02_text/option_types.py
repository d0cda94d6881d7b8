"""Checked option types for argparse: a bad value is refused when parsed, naming the option.

Unlike ``type=int``: ``0``, ``-3``, ``nan`` and ``inf`` are refused where they make no sense.

>>> positive_int("3")
3
>>> positive_int("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a positive integer, got '0'
>>> nonneg_float("nan")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a number >= 0, got 'nan'
"""

from __future__ import annotations

import argparse
import math


# -- option types: each raises ArgumentTypeError, which the parser reports with the option's name --
def _number(kind, text, ok, what):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonneg_int(text):
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    return _number(float, text, lambda v: v > 0, "a number > 0")


def nonneg_float(text):
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def unit_interval(text):
    """A share strictly between 0 and 1 (a split ratio)."""
    return _number(float, text, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


def fraction(text):
    """A share in [0, 1): a dropout rate, a validation fraction."""
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def port_number(text):
    """A TCP port to serve on; 0 lets the system pick a free one."""
    return _number(int, text, lambda v: 0 <= v <= 65535, "a port number from 0 to 65535 (0: any free port)")


def probability_mass(text):
    """Top-p: in (0, 1]."""
    return _number(float, text, lambda v: 0 < v <= 1, "a number in (0, 1]")
