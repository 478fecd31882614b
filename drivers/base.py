"""The shape every driver has, and the table its options are declared in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol

from sekisho.policies.events import Event

Emit = Callable[[Event], None]
"""Hands an event to the daemon's loop. Safe to call from any thread."""


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Option:
    """One driver option as the config file spells it. ``check`` returns what is wrong with a
    value, or None; the config loader runs it, so a bad value stops ``check-config`` rather
    than the daemon's start."""

    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None


class Driver(Protocol):
    OPTIONS: ClassVar[Mapping[str, Option]]

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None: ...

    async def start(self) -> None:
        """Begin reporting. Raise ``DriverError`` when the device or its library is missing."""

    async def stop(self) -> None:
        """Stop promptly; no event is emitted after this returns."""


class DriverError(Exception):
    """A driver could not start: missing library, device or permission. The message says which."""
