"""The shape every driver has, and the table its options are declared in."""

from __future__ import annotations

import threading
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


class ThreadedDriver:
    """The part every driver shares whose blocking library runs in a thread of its own (pyscard,
    nfcpy): the thread waits on ``_stopping``, and ``_send`` passes events on only until
    ``stop()`` begins, so nothing is emitted after a driver has stopped."""

    def __init__(self, name: str, emit: Emit) -> None:
        self.name = name
        self._emit = emit
        self._gate = threading.Lock()
        self._open = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self, target: Callable[[], None], kind: str) -> None:
        self._stopping.clear()
        with self._gate:
            self._open = True
        self._thread = threading.Thread(target=target, name=f"{kind} {self.name}", daemon=True)
        self._thread.start()

    def _close(self) -> threading.Thread | None:
        """Stop emitting and tell the thread to end; returns the thread to join, if any."""
        with self._gate:
            self._open = False
        self._stopping.set()
        thread, self._thread = self._thread, None
        return thread

    def _send(self, event: Event) -> None:
        with self._gate:
            if self._open:
                self._emit(event)


class DriverError(Exception):
    """A driver could not start: missing library, device or permission. The message says which."""
