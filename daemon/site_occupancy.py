"""Who is in each area of the site, from every node's door events: the recorder's answer to an
area whose doors are on several nodes (issue 15, item 2).

Each door node knows only its own doors: with two nodes on one area, each would publish its
own partial view as the area's retained ``area/<area>/occupancy``, and the last to publish
would win. The recorder sees every node's door events, and each granted pass names the area it
leads into (``area`` in docs/mqtt.md; ``null`` is out of every area). A person is where their
latest pass led, latest by the event's own ``ts`` (then node and ``seq``), not by arrival: a
node's events that come late (a replay, a broker outage) place nobody wrongly, since an older
pass never overrides a newer one. So the fold does not depend on the order it is fed in.

What it cannot place: a pass without a subject (an exit button), and events of a node older
than the ``area`` field (nothing is guessed for them). Published only where ``[site]
occupancy_from = "recorder"``; door nodes then publish none (presence.py), so one publisher
speaks for each area.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .recorder_store import Received, RecorderStore
from .site_events import kind_of
from .store.record import NewState
from .topics import Topics

log = logging.getLogger(__name__)

EVER = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
"""``events(since, until)`` over the whole store."""


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
    """Each subject's latest placing pass. ``fold`` is idempotent and order-free."""

    def __init__(self) -> None:
        self.last: dict[str, Pass] = {}

    def fold(self, events: Iterable[Received]) -> set[str]:
        """Take in events; the areas whose occupants changed."""
        changed: set[str] = set()
        for event in events:
            placed = placing(event)
            if placed is None:
                continue
            subject, new = placed
            old = self.last.get(subject)
            if old is not None and old.order >= new.order:
                continue  # a repeat, or a pass older than what is known
            self.last[subject] = new
            if old is None or old.area != new.area:
                changed |= {new.area, old.area if old else ""} - {""}
        return changed

    def inside(self, area: str) -> dict[str, Pass]:
        """subject -> the pass that took them into ``area``."""
        return {s: p for s, p in self.last.items() if p.area == area}

    def areas(self) -> list[str]:
        return sorted({p.area for p in self.last.values() if p.area})


def fold_store(store: RecorderStore) -> Whereabouts:
    """The whole store folded: where everyone is now."""
    where = Whereabouts()
    where.fold(store.events(*EVER, kind="door"))
    return where


class SiteOccupancy:
    """The recorder's publisher of ``area/<area>/occupancy`` for the site: every area once the
    whole store is folded (and the config's areas, so that an empty area says 0), then each
    area whose occupants a stored batch changed.

    The store is folded in a thread of its own, retried every ``retry_s`` while it cannot be
    read (a PostgreSQL that is down): the daemon's loop never waits for it. ``stored`` is
    called from the recorder's writing thread after each committed batch; the fold and the
    messages are made on the daemon's loop (``call_soon_threadsafe``), where the node's other
    records are queued. Batches that come before the store is folded wait for it, then are
    folded too: nothing is published from a partial fold, which is the bug this exists for."""

    def __init__(self, areas: Sequence[str], topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[NewState], None], retry_s: float = 5.0) -> None:
        self.areas = tuple(areas)
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.retry_s = retry_s
        self.where = Whereabouts()
        self.pending: list[Received] | None = []
        """Batches stored before the whole store was folded; None once it was."""
        self.stopping = threading.Event()

    def start(self, open_store: Callable[[], RecorderStore]) -> None:
        threading.Thread(target=self._fold_store, args=(open_store,), name="site-occupancy", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def stored(self, events: Sequence[Received]) -> None:
        """A committed batch (any thread)."""
        self.loop.call_soon_threadsafe(self._fold, list(events))

    def _fold_store(self, open_store: Callable[[], RecorderStore]) -> None:
        while not self.stopping.is_set():
            try:
                with open_store() as store:
                    where = fold_store(store)
            except Exception as exc:  # noqa: BLE001 - any backend's failure: said, and tried again
                log.warning("site occupancy: cannot read the recorder's store, trying again in %.0f s: %s",
                            self.retry_s, exc)
                self.stopping.wait(self.retry_s)
                continue
            self.loop.call_soon_threadsafe(self._folded, where)
            return

    def _folded(self, where: Whereabouts) -> None:
        self.where = where
        where.fold(self.pending or [])
        self.pending = None
        for area in sorted(set(self.areas) | set(where.areas())):
            self.queue(self._message(area))

    def _fold(self, events: list[Received]) -> None:
        if self.pending is not None:
            self.pending += events
            return
        for area in sorted(self.where.fold(events)):
            self.queue(self._message(area))

    def _message(self, area: str) -> NewState:
        inside = sorted(self.where.inside(area))
        return NewState(self.topics.area_occupancy(area), {"count": len(inside), "subjects": inside})
