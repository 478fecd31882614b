"""Something lost, as an alarm: raised once it has been lost for a grace, cleared when it is
back. A door's reader (``reader_lost`` after ``[site] reader_lost_after_s``), print release's
cupsd (``print_unavailable`` after ``[print] unavailable_after_s``).

A reader lost for a moment is routine (pcscd restarted by an upgrade, a USB reader found again
after a hiccup, an OSDP reader's session renewed), as is a cupsd restarted by an upgrade, and
each alarm waits for a person's acknowledgement, so one back within the grace raises nothing.
The outage itself is always in the daemon's log; the alarm is for an outage someone must look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .alarms import Alarms

KIND = "reader_lost"


class Outages:
    def __init__(self, alarms: Alarms, loop: asyncio.AbstractEventLoop, after_s: float, kind: str = KIND,
                 details: Mapping[str, Any] | None = None) -> None:
        self.alarms = alarms
        self.loop = loop
        self.after_s = after_s
        self.kind = kind
        self.details = dict(details or {})
        """Said with each alarm raised, beside its ``reason``."""
        self.pending: dict[str, asyncio.TimerHandle] = {}
        """Sources lost and not back, whose alarm is not raised yet."""
        self.raised: set[str] = set()
        """Sources lost and not back, whose alarm is raised."""

    def lost(self, source: str, reason: str) -> None:
        """It was lost: its alarm comes after the grace, unless it is back first. A
        second loss (another reason) before it is back changes nothing: the first loss's
        deadline, or its alarm, stands."""
        if source not in self.pending and source not in self.raised:
            self.pending[source] = self.loop.call_later(self.after_s, self._raise, source, reason)

    def back(self, source: str) -> None:
        pending = self.pending.pop(source, None)
        if pending is not None:
            pending.cancel()
        if source in self.raised:
            self.raised.discard(source)
            self.alarms.clear(self.kind, source)

    def _raise(self, source: str, reason: str) -> None:
        self.pending.pop(source, None)
        self.raised.add(source)
        self.alarms.raise_(self.kind, source, "warning", reason=reason, **self.details)

    def stop(self) -> None:
        """No alarm raised after this (the daemon stops)."""
        for pending in self.pending.values():
            pending.cancel()
        self.pending.clear()
