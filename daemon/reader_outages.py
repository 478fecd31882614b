"""A door's reader lost, as an alarm: raised once it has been lost for ``[site]
reader_lost_after_s``, cleared when it is back.

A reader lost for a moment is routine (pcscd restarted by an upgrade, a USB reader found again
after a hiccup, an OSDP reader's session renewed) and each ``reader_lost`` alarm waits for a
person's acknowledgement, so a reader back within the grace raises nothing. The outage itself is
always in the daemon's log; the alarm is for an outage someone must look at.
"""

from __future__ import annotations

import asyncio

from .alarms import Alarms

KIND = "reader_lost"


class ReaderOutages:
    def __init__(self, alarms: Alarms, loop: asyncio.AbstractEventLoop, after_s: float) -> None:
        self.alarms = alarms
        self.loop = loop
        self.after_s = after_s
        self.pending: dict[str, asyncio.TimerHandle] = {}
        """Readers lost and not back, whose alarm is not raised yet."""
        self.raised: set[str] = set()
        """Readers lost and not back, whose alarm is raised."""

    def lost(self, reader: str, reason: str) -> None:
        """The reader was lost: its alarm comes after the grace, unless it is back first. A
        second loss (another reason) before it is back changes nothing: the first loss's
        deadline, or its alarm, stands."""
        if reader not in self.pending and reader not in self.raised:
            self.pending[reader] = self.loop.call_later(self.after_s, self._raise, reader, reason)

    def back(self, reader: str) -> None:
        pending = self.pending.pop(reader, None)
        if pending is not None:
            pending.cancel()
        if reader in self.raised:
            self.raised.discard(reader)
            self.alarms.clear(KIND, reader)

    def _raise(self, reader: str, reason: str) -> None:
        self.pending.pop(reader, None)
        self.raised.add(reader)
        self.alarms.raise_(KIND, reader, "warning", reason=reason)
