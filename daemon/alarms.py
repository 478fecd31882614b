"""The node's alarms and their life cycle: raised, condition cleared, acknowledged, closed.

An alarm is named by where it comes from (``source``: a door, a desk, an input, the node), what
it is (``kind``: forced, held_open, fire, pin_lockout, tailgating, lock_failed, ...) and, where
there is one, whom it is about (``subject``, a pseudonym): its id is built from those, here and
nowhere else, so the same condition always has the same id and the same retained topic
``alarm/<id>``, and a console can follow it.

The life cycle:
  - ``raise_`` opens it (or refreshes an open one) and publishes it retained;
  - ``clear`` says its condition is gone (the door closed, the lockout ended);
  - ``ack`` says a person has seen it (``sekisho alarm ack``, or a signed ``alarm.ack`` from the
    console), with who and an optional note;
  - it is **closed** once both are true, and its retained message is emptied. An alarm waits
    for a person: a forced door that closes again is still an alarm until someone has seen it.
    With ``[site] alarms_need_ack = false`` clearing alone closes it (a lab, a demo).

An acknowledgement holds for the occurrence it saw: raised again while still raised (a fire
input reported twice) it stays acknowledged; raised again after its condition cleared, it is a
new occurrence and waits for a person again.

Alarms outlive a restart when they wait for a person: ``startup`` takes back every alarm the
store has open, marks its condition cleared (it did not survive the restart; what is still true
is raised again by the part that sees it) and keeps it open until acknowledged.

Every change is one ``AlarmChange`` through the daemon's queue: its row in the alarms table, an
audit row naming who did it, and the retained message, in one transaction. The store-damaged
alarm is the one exception: the store cannot carry it, so ``damaged`` only builds the message
for the publisher.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .errors import SekishoError
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
    ack_note: str | None = None
    detail: tuple[tuple[str, Any], ...] = ()

    @property
    def phase(self) -> Phase:
        return Phase.ACKED if self.acked_by else Phase.CLEARED if self.cleared else Phase.RAISED

    def message(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "severity": self.severity, "subject": self.subject,
                "raised": self.raised, "cleared": self.cleared, "acked_by": self.acked_by,
                "acked_at": self.acked_at, "ack_note": self.ack_note, **dict(self.detail)}


class Alarms:
    def __init__(self, node: str, record: Record, topics: Topics, queue: Callable[[AlarmChange], None], *,
                 ack_needed: bool = True) -> None:
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
        """Take back the alarms a previous run left open (the module says how)."""
        now = utc_now()
        for row in self.record.active_alarms():
            alarm = Alarm(row["id"], row["kind"], row["source"], row["severity"], row["subject"], row["raised"],
                          cleared=row["cleared"], acked_by=row["acked_by"], acked_at=row["acked_at"],
                          ack_note=row["ack_note"])
            if alarm.cleared and self.ack_needed:
                self.open[alarm.id] = alarm  # waiting for a person already, and said so: as it was
            else:
                self._settle(replace(alarm, cleared=alarm.cleared or now), "alarm.clear", "daemon")

    def raise_(self, kind: str, source: str, severity: str, subject: str | None = None, *, incident: bool = False,
               **detail: Any) -> str:
        """Open the alarm (or refresh it, if it is open) through the queue; its id. An
        ``incident`` (a lock that failed, a tailgater, a strike that did not answer) has no
        condition that could clear later: it is cleared as it is raised, and closes once a
        person has acknowledged it."""
        change = self.raised(kind, source, severity, subject, incident=incident, **detail)
        self.queue(change)
        return change.alarm_id

    def raised(self, kind: str, source: str, severity: str, subject: str | None = None, *, incident: bool = False,
               **detail: Any) -> AlarmChange:
        """Open the alarm and return its change for the caller to commit itself (at start, before
        the daemon's queue runs)."""
        alarm_id = self.alarm_id(kind, source, subject)
        before = self.open.get(alarm_id)
        now = utc_now()
        # Raised again while its condition holds: the same occurrence, its time and its
        # acknowledgement kept. After the condition cleared (or for an incident): a new one.
        same = before is not None and not before.cleared
        alarm = Alarm(alarm_id, kind, source, severity, subject, before.raised if before and same else now,
                      cleared=now if incident else None, detail=tuple(sorted(detail.items())))
        if before is not None and same:
            alarm = replace(alarm, acked_by=before.acked_by, acked_at=before.acked_at, ack_note=before.ack_note)
        log.warning("alarm %s raised (%s, %s)", alarm_id, kind, severity)
        closed = incident and not self.ack_needed
        if closed:
            self.open.pop(alarm_id, None)
        else:
            self.open[alarm_id] = alarm
        return self._change(alarm, "alarm.raise", "daemon", closed)

    def clear(self, kind: str, source: str, subject: str | None = None) -> None:
        """The condition behind the alarm is gone; nothing happens if it is not open."""
        alarm = self.open.get(self.alarm_id(kind, source, subject))
        if alarm is None or alarm.cleared:
            return
        self._settle(replace(alarm, cleared=utc_now()), "alarm.clear", "daemon")

    def ack(self, alarm_id: str, by: str, note: str | None = None, raised: str | None = None) -> Alarm:
        """A person has seen it: ``by`` is who (``key:<id>`` for a signed command, ``cli:<user>``
        at the node). ``raised``, when given, is the occurrence the person saw: one raised again
        since is refused, not acknowledged unseen. An alarm acknowledged already keeps its first
        acknowledgement. An id that is not open is a ``SekishoError``."""
        alarm = self.open.get(alarm_id)
        if alarm is None:
            raise SekishoError(f"no open alarm {alarm_id!r} (sekisho alarms --open lists them)")
        if raised is not None and raised != alarm.raised:
            raise SekishoError(f"alarm {alarm_id!r} was raised again at {alarm.raised}, after the one seen "
                               f"({raised}): look at it first")
        if not alarm.acked_by:
            alarm = replace(alarm, acked_by=by, acked_at=utc_now(), ack_note=note or None)
            log.info("alarm %s acknowledged by %s", alarm_id, by)
            self._settle(alarm, "alarm.ack", by)
        return alarm

    def listing(self) -> list[Alarm]:
        """The open alarms, oldest first."""
        return sorted(self.open.values(), key=lambda a: a.raised)

    def damaged(self, detail: str) -> tuple[str, dict[str, Any]]:
        """The store-damaged alarm's topic and message, for the publisher to send directly."""
        alarm = Alarm(self.alarm_id("store_damaged", self.node), "store_damaged", self.node, "critical", None,
                      utc_now(), detail=(("detail", detail),))
        return self.topics.alarm(alarm.id), {**alarm.message(), "ts": utc_now()}

    def _settle(self, alarm: Alarm, action: str, actor: str) -> None:
        closed = bool(alarm.cleared and (alarm.acked_by or not self.ack_needed))
        if closed:
            self.open.pop(alarm.id, None)
            log.info("alarm %s closed", alarm.id)
        else:
            self.open[alarm.id] = alarm
        self.queue(self._change(alarm, action, actor, closed))

    def _change(self, alarm: Alarm, action: str, actor: str, closed: bool = False) -> AlarmChange:
        return AlarmChange(alarm.id, alarm.kind, alarm.source, alarm.severity, self.topics.alarm(alarm.id),
                           alarm.message(), action=action, actor=actor, closed=closed)
