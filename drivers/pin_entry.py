"""A PIN typed key by key on a reader's keypad, collected into one ``PinEntered``: the part the
evdev PIN pad (evdev_keys.py) and an OSDP reader's keypad (osdp.py) share.

Digits are collected; the submit key reports them as one ``PinEntered`` under the reader's
name; the clear key drops them. An entry with no key for ``timeout_s``, or one longer than
``max_digits``, is discarded and reported as nothing. Runs on the daemon's loop thread (the
inter-key timer is a loop timer). PIN digits are never logged: only how many there were.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sekisho.policies.events import Event, PinEntered


def check_timeout(value: float) -> str | None:
    return None if 0.1 <= value <= 300 else "must be between 0.1 and 300 (seconds)"


def check_max_digits(value: int) -> str | None:
    return None if 1 <= value <= 64 else "must be between 1 and 64"


class PinEntry:
    """One entry under way. ``digit``, ``submit``, ``clear`` and ``reset`` are called on the
    loop thread; ``send`` gets the ``PinEntered``; ``log`` is the driver's logger, so its lines
    say whose they are."""

    def __init__(self, name: str, timeout_s: float, max_digits: int, send: Callable[[Event], None],
                 log: logging.Logger) -> None:
        self.name = name
        self.log = log
        self.timeout_s = timeout_s
        self.max_digits = max_digits
        self._send = send
        self._entry: list[str] = []
        self._too_long = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """How many digits the entry under way holds (never which)."""
        return len(self._entry)

    @property
    def under_way(self) -> bool:
        return bool(self._entry) or self._too_long

    def digit(self, d: str) -> None:
        if not self._too_long:
            self._entry.append(d)
            if len(self._entry) > self.max_digits:
                self._too_long = True
                self._entry.clear()
        self._arm_timer()

    def submit(self, raw: Mapping[str, Any]) -> None:
        digits, too_long = "".join(self._entry), self._too_long
        self.reset()
        if too_long:
            self.log.warning("%s: PIN longer than %d digits discarded", self.name, self.max_digits)
        elif digits:
            self._send(PinEntered(source=self.name, digits=digits, raw=raw))

    def clear(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the entry under way (also: the device was lost, or the driver is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entry.clear()
        self._too_long = False

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.under_way:
            self.log.info("%s: no key for %g s; the PIN entry under way is discarded", self.name, self.timeout_s)
        self.reset()
