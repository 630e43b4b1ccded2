"""Errors every room may raise."""
from __future__ import annotations


class UsageError(Exception):
    """A bad argument or config value; the message names the field and what was expected."""
