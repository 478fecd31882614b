"""Notices the wall clock stepping while the daemon runs: ``date -s``, an NTP step (a node that
booted without a real-time clock and synced a day later), a resume from suspend.

Every duration the daemon keeps (PIN wait, lockout, held open, unlock, exceptions, retries) runs
on the monotonic clock, and whatever reads the wall clock (schedules, validity dates, the daily
anti-passback reset) reads it at each decision; neither needs telling (docs/time.md). What does:
the retention purge, which runs once a day and would otherwise keep what a day forward made
too old until its next run; and whoever reads the records, whose timestamps jump at the step.
So a step is logged as a warning, written to the audit log (``clock.step``, with the wall
clock before and after), and passed to ``on_step``.

The watch compares the wall clock with the monotonic one every ``CHECK_S``: their difference
moves only when the wall clock is set (or the machine slept). NTP's slewing moves it by at
most 0.5 ms a second, far below ``STEP_S``, and each check is against the last one, so a slew
never adds up to a step. Two clock reads a second cost nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from .timestamps import rfc3339

log = logging.getLogger(__name__)

CHECK_S = 1.0
STEP_S = 2.0
"""A change of the wall clock against the monotonic one this large is a step."""


class ClockWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_step: Callable[[float, str, str], None],
                 wall: Callable[[], float] = time.time) -> None:
        """``on_step(seconds, before, after)``: the step (negative: back) and the wall clock
        before and after it, as RFC 3339 text."""
        self.loop = loop
        self.on_step = on_step
        self.wall = wall
        self.offset = 0.0
        """The wall clock less the monotonic one at the last check."""
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.offset = self._read()[1]
        self.timer = self.loop.call_later(CHECK_S, self._check)

    def _read(self) -> tuple[float, float]:
        """(the wall clock, it less the monotonic one), read between two monotonic readings so
        that a thread descheduled in between cannot pass for a step (read again instead)."""
        while True:
            first = self.loop.time()
            now = self.wall()
            last = self.loop.time()
            if last - first < STEP_S / 10:
                return now, now - (first + last) / 2

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        now, offset = self._read()
        step, self.offset = offset - self.offset, offset
        self.timer = self.loop.call_later(CHECK_S, self._check)
        if abs(step) >= STEP_S:
            # ``now - step``: where the wall clock would be had it not been set.
            before, after = (rfc3339(dt.datetime.fromtimestamp(t, dt.timezone.utc)) for t in (now - step, now))
            log.warning("the wall clock stepped %+.0f s (from about %s to %s): durations run on unchanged; "
                        "timestamps recorded around now jump", step, before, after)
            self.on_step(step, before, after)


__all__ = ["CHECK_S", "STEP_S", "ClockWatch"]
