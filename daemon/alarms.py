"""The node's alarms and their life cycle: raised, condition cleared, acknowledged, closed.

An alarm is named by where it comes from (``source``: a door, a desk, an input, the node), what
it is (``kind``: forced, held_open, fire, pin_lockout, tailgating, lock_failed, ...) and, where
there is one, whom it is about (``subject``, a pseudonym): its id is built from those, here and
nowhere else, so the same condition always has the same id and the same retained topic
``alarm/<id>``, and a console can follow it.

The life cycle:
  - ``raise_`` opens it (or refreshes an open one) and publishes it retained;
  - ``clear`` says its condition is gone (the door closed, the lockout ended);
  - ``ack`` says a person has seen it;
  - it is **closed** once both are true, and its retained message is emptied. With
    ``ack_needed`` off, clearing alone closes it: today's behaviour until the officer's console
    exists to acknowledge alarms (issue 14).

Every change is one ``AlarmChange`` through the daemon's queue: its row in the alarms table, an
audit row, and the retained message, in one transaction. The store-damaged alarm is the one
exception: the store cannot carry it, so ``damaged`` only builds the message for the publisher.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .store.record import AlarmChange, Record
from .timestamps import utc_now
from .topics import Topics

log = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    """The condition is gone, nobody has acknowledged it yet."""
    ACKED = "acked"
    """Acknowledged, the condition still there."""


@dataclass(frozen=True)
class Alarm:
    id: str
    kind: str
    source: str
    severity: str
    subject: str | None
    raised: str
    cleared: str | None = None
    acked_by: str | None = None
    acked_at: str | None = None
    detail: tuple[tuple[str, Any], ...] = ()

    @property
    def phase(self) -> Phase:
        return Phase.ACKED if self.acked_by else Phase.CLEARED if self.cleared else Phase.RAISED

    def message(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "severity": self.severity, "subject": self.subject,
                "raised": self.raised, "cleared": self.cleared, "acked_by": self.acked_by,
                "acked_at": self.acked_at, **dict(self.detail)}


class Alarms:
    def __init__(self, node: str, record: Record, topics: Topics, queue: Callable[[AlarmChange], None], *,
                 ack_needed: bool = False) -> None:
        self.node = node
        self.record = record
        self.topics = topics
        self.queue = queue
        self.ack_needed = ack_needed
        self.open: dict[str, Alarm] = {}

    def alarm_id(self, kind: str, source: str, subject: str | None = None) -> str:
        """The one place an alarm's id is made: the same condition, the same id."""
        return ".".join(part.replace("_", "-") for part in (self.node, source, kind, subject) if part)

    def startup(self) -> None:
        """Alarms a previous run left open are closed: the conditions behind them (lockouts, a
        door held open) did not survive the restart, and anything still true is raised again."""
        for row in self.record.active_alarms():
            self.queue(AlarmChange(row["id"], row["kind"], row["source"], row["severity"],
                                   self.topics.alarm(row["id"]), None))

    def raise_(self, kind: str, source: str, severity: str, subject: str | None = None, **detail: Any) -> str:
        """Open the alarm (or refresh it, if it is open) through the queue; its id."""
        change = self.raised(kind, source, severity, subject, **detail)
        self.queue(change)
        return change.alarm_id

    def raised(self, kind: str, source: str, severity: str, subject: str | None = None,
               **detail: Any) -> AlarmChange:
        """Open the alarm and return its change for the caller to commit itself (at start, before
        the daemon's queue runs)."""
        alarm_id = self.alarm_id(kind, source, subject)
        before = self.open.get(alarm_id)
        alarm = Alarm(alarm_id, kind, source, severity, subject, before.raised if before else utc_now(),
                      detail=tuple(sorted(detail.items())))
        self.open[alarm_id] = alarm
        log.warning("alarm %s raised (%s, %s)", alarm_id, kind, severity)
        return self._change(alarm)

    def clear(self, kind: str, source: str, subject: str | None = None) -> None:
        """The condition behind the alarm is gone; nothing happens if it is not open."""
        alarm = self.open.get(self.alarm_id(kind, source, subject))
        if alarm is None or alarm.cleared:
            return
        self._settle(replace(alarm, cleared=utc_now()))

    def ack(self, alarm_id: str, by: str) -> Alarm:
        """A person has seen it; raises ``KeyError`` for an alarm that is not open."""
        alarm = self.open[alarm_id]
        if not alarm.acked_by:
            alarm = replace(alarm, acked_by=by, acked_at=utc_now())
            self._settle(alarm)
        return alarm

    def listing(self) -> list[Alarm]:
        return sorted(self.open.values(), key=lambda a: a.raised)

    def damaged(self, detail: str) -> tuple[str, dict[str, Any]]:
        """The store-damaged alarm's topic and message, for the publisher to send directly."""
        alarm = Alarm(self.alarm_id("store_damaged", self.node), "store_damaged", self.node, "critical", None,
                      utc_now(), detail=(("detail", detail),))
        return self.topics.alarm(alarm.id), {**alarm.message(), "ts": utc_now()}

    def _settle(self, alarm: Alarm) -> None:
        if alarm.cleared and (alarm.acked_by or not self.ack_needed):
            self.open.pop(alarm.id, None)
            log.info("alarm %s closed", alarm.id)
            self.queue(AlarmChange(alarm.id, alarm.kind, alarm.source, alarm.severity, self.topics.alarm(alarm.id),
                                   None))
            return
        self.open[alarm.id] = alarm
        self.queue(self._change(alarm))

    def _change(self, alarm: Alarm) -> AlarmChange:
        return AlarmChange(alarm.id, alarm.kind, alarm.source, alarm.severity, self.topics.alarm(alarm.id),
                           alarm.message())
