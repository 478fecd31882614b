"""The shape every driver has: its constructor, ``start`` and ``stop``, its ``OPTIONS`` table (of
``Option``, drivers/options.py) and ``emit``, the one way back to the daemon."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from sekisho.policies.events import Event

from .options import Option

Emit = Callable[[Event], None]
"""Hands an event to the daemon's loop. Safe to call from any thread."""


class Driver(Protocol):
    OPTIONS: ClassVar[Mapping[str, Option]]

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None: ...

    async def start(self) -> None:
        """Begin reporting. Raise ``DriverError`` when the device or its library is missing."""

    async def stop(self) -> None:
        """Stop promptly; no event is emitted after this returns."""


@runtime_checkable
class ShowsDoorMode(Protocol):
    """A reader that can show its door's mode (an OSDP reader: its LED at rest, its display)."""

    def show_mode(self, mode: str) -> None:
        """The door's mode now (normal, lockdown, free, emergency); called on the loop thread,
        before the driver starts too. Shown whenever the reader can: never raises."""


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


class DriverNotSetUp(DriverError):
    """A driver that cannot start until a person sets something up (an OSDP reader never keyed):
    starting again will not help, so the daemon exits as for a config error (78), which the
    unit does not restart."""


def check_options(options: Mapping[str, Option], values: Iterable[tuple[str, Any]]) -> None:
    """At ``start()``: the values a driver holds pass its ``OPTIONS`` checks. The config loader
    ran them already; this catches a driver built without a config. ``DriverError`` names the
    first that does not."""
    for key, value in values:
        check = options[key].check
        if check and (wrong := check(value)):
            raise DriverError(f"{key}: {wrong}")
