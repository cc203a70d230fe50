"""Errors the recipe raises on purpose.

Example:
    >>> issubclass(ArgumentError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["ArgumentError"]


class ArgumentError(ValueError):
    """An argument the user passed does not fit the run (a key not in the batch, a layer that does
    not exist, priors of the wrong length). Raised even from inside a hook, where other errors
    become a ``skipped`` finding, because only the user can fix it and the message says how."""
