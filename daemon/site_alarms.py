"""The alarms of the whole site, from the steps the recorder stored: each message on
``alarm/<alarm-id>`` (raised, cleared, acknowledged) is one step, and the steps that share an
alarm id and a ``raised`` are one life of that alarm (an id names a condition, which may come
back: docs/mqtt.md).

A life's state is its latest step's: ``cleared`` and ``acked_by`` as it says, and closed when
that step has both, since that is the step a node publishes once more as it closes the alarm
(the empty retained message that follows carries nothing to store). A node with ``[site]
alarms_need_ack = false`` closes an alarm when it clears, unacknowledged: such a life stays
``cleared`` here, which the listing says rather than guesses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .recorder_store import AlarmStep


@dataclass(frozen=True)
class Life:
    id: str
    node: str
    kind: str
    source: str
    severity: str
    subject: str | None
    raised: str | None
    cleared: str | None
    acked_by: str | None
    acked_at: str | None
    ack_note: str | None
    closed: str | None
    """The ``ts`` of the step that closed it (cleared and acknowledged), else None."""

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        if self.acked_by:
            return "acked"
        return "cleared" if self.cleared else "raised"


def lives(steps: Iterable[AlarmStep]) -> list[Life]:
    """Each life the steps (in time order) show, oldest raised first."""
    latest: dict[tuple[str, str], AlarmStep] = {}
    for step in steps:
        latest[(step.alarm_id, str(step.payload.get("raised") or ""))] = step
    out = []
    for (aid, raised), step in latest.items():
        p = step.payload
        closed = p.get("ts") if p.get("cleared") and p.get("acked_at") else None
        out.append(Life(aid, step.node, str(p.get("kind") or ""), str(p.get("source") or ""),
                        str(p.get("severity") or ""), p.get("subject"), raised or None, p.get("cleared"),
                        p.get("acked_by"), p.get("acked_at"), p.get("ack_note"), closed))
    return sorted(out, key=lambda li: (li.raised or "", li.id))


def latest_lives(steps: Iterable[AlarmStep]) -> list[Life]:
    """Each alarm id's latest life (as a node's ``alarms`` table holds it), oldest raised first."""
    by_id: dict[str, Life] = {}
    for life in lives(steps):
        by_id[life.id] = life  # lives come oldest raised first: the last one stays
    return sorted(by_id.values(), key=lambda li: (li.raised or "", li.id))
