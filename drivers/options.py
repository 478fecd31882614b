"""One option of a config table, and the checks its value must pass.

Every key a person can write in the config file is an ``Option``: the config's own sections
(``[site]``, ``[doors.<name>]``, ...) and each driver's ``OPTIONS`` table alike, so there is one
type to read and one loader (``sekisho.daemon.config``) that converts and checks them all.

It lives here, among the drivers, because drivers import only the standard library, the
policies and each other (tests/test_layout.py); the daemon's config may import drivers, not the
other way round. It is plain data: nothing here reads a file or raises. A check returns what is
wrong with a value, as words that follow the dotted key (``must be between 5 and 3600``), or
None; the loader runs it, so a bad value stops ``check-config`` rather than the daemon's start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]
"""Returns what is wrong with a value, or None."""


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()
"""The default of an option that has none: leaving it out is a problem."""


@dataclass(frozen=True)
class Option:
    """One key as the config file spells it. ``help`` is its documentation (examples/sekisho.toml
    must mention every key); ``check`` runs after the type is right."""

    type: type
    default: Any
    help: str
    check: Check | None = None


def type_name(t: type) -> str:
    """How a problem names the type an option wants: ``a string``, ``an integer`` ..."""
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "an array", dict: "a table"}.get(t, t.__name__)


def kind(value: Any) -> str:
    """How a problem names the type of what was written instead."""
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "a table",
            list: "an array", dt.date: "a date", dt.datetime: "a date-time"}.get(type(value), type(value).__name__)


def one_of(*allowed: Any) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def strings(check: Check | None = None) -> Check:
    """An array of strings, each passing ``check`` if one is given."""
    def run(v: list) -> str | None:
        for i, x in enumerate(v):
            if not isinstance(x, str):
                return f"item {i + 1} must be a string, not {kind(x)} {x!r}"
            if check and (wrong := check(x)):
                return f"item {i + 1}: {wrong}"
        return None
    return run
