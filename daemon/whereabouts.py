"""Where each person is, by the rule the site's occupancy and muster use (issue 15, item 2):
where their latest granted pass led, latest by the event's own ``ts``, then node and ``seq``,
not by arrival. A late, replayed or repeated event never moves anyone back, so the answer does
not depend on the order events are taken in.

The recorder's store keeps the answer as its ``whereabouts`` table, updated in the transaction
that stores each batch by an upsert guarded by this order (recorder_store.py); ``Whereabouts``
is the same rule in memory: what fills the table when a store older than it is migrated, and
what the occupancy publisher (site_occupancy.py) keeps between batches.

What it cannot place: a pass without a subject (an exit button), and events of a node older
than the ``area`` field (nothing is guessed for them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .site_events import kind_of

if TYPE_CHECKING:
    from .recorder_store import Received


@dataclass(frozen=True)
class Pass:
    """A subject's latest placing pass: where it led (empty: out of every area), and when."""

    area: str
    ts: str
    node: str
    seq: int
    door: str

    @property
    def order(self) -> tuple[str, str, int]:
        return (self.ts, self.node, self.seq)


def placing(event: Received) -> tuple[str, Pass] | None:
    """(subject, pass) for a granted pass of a person that names its area; None for any other
    event (a denial, a desk, an exit button, an older node's event without ``area``)."""
    if kind_of(event.topic) != "door":
        return None
    p = json.loads(event.payload)
    subject = p.get("subject")
    if p.get("kind") != "access" or p.get("result") != "granted" or "area" not in p or not isinstance(subject, str) \
            or not subject:
        return None
    area = p["area"] if isinstance(p["area"], str) else ""
    return subject, Pass(area, event.ts, event.node, event.seq, str(p.get("door") or ""))


class Whereabouts:
    """Each subject's latest placing pass. ``take`` and ``fold`` are idempotent and order-free."""

    def __init__(self, last: dict[str, Pass] | None = None) -> None:
        self.last: dict[str, Pass] = dict(last or {})

    def take(self, passes: Iterable[tuple[str, Pass]]) -> set[str]:
        """Take in (subject, pass) pairs; the areas whose occupants changed."""
        changed: set[str] = set()
        for subject, new in passes:
            old = self.last.get(subject)
            if old is not None and old.order >= new.order:
                continue  # a repeat, or a pass older than what is known
            self.last[subject] = new
            if old is None or old.area != new.area:
                changed |= {new.area, old.area if old else ""} - {""}
        return changed

    def fold(self, events: Iterable[Received]) -> set[str]:
        """Take in events; the areas whose occupants changed."""
        return self.take(placed for placed in map(placing, events) if placed is not None)

    def inside(self, area: str) -> dict[str, Pass]:
        """subject -> the pass that took them into ``area``."""
        return {s: p for s, p in self.last.items() if p.area == area}

    def areas(self) -> list[str]:
        return sorted({p.area for p in self.last.values() if p.area})
