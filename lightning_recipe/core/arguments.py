"""Argument checks that need no Lightning, for the check modules and the functions without a Trainer.

Example:
    >>> check_positive_int("inspect_data", "top_k", 0, minimum=0)
    >>> check_positive_int("inspect_data", "max_samples", 0)
    Traceback (most recent call last):
    ...
    ValueError: inspect_data(max_samples=0): pass an integer >= 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_positive_int"]


def check_positive_int(
    owner: str, argument: str, value: Any, allow_none: bool = False, minimum: int = 1
) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``value`` is an int >= ``minimum`` (or ``None`` if allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}({argument}={value!r}): pass an integer >= {minimum}.")
    if value < minimum:
        raise ValueError(f"{owner}({argument}={value!r}): pass an integer >= {minimum}.")


def check_choice(owner: str, argument: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (message lists them)."""
    choices = list(choices)
    if value not in choices:
        listed = (
            ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
            if len(choices) > 1
            else repr(choices[0])
        )
        raise ValueError(f"{owner}({argument}={value!r}): unknown value; pass one of {listed}.")
