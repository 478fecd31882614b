"""Who is in each area of the site, from every node's door events: the recorder's answer to an
area whose doors are on several nodes (issue 15, item 2).

Each door node knows only its own doors: with two nodes on one area, each would publish its
own partial view as the area's retained ``area/<area>/occupancy``, and the last to publish
would win. The recorder sees every node's door events, and each granted pass names the area it
leads into (``area`` in docs/mqtt.md; ``null`` is out of every area). A person is where their
latest pass led (the rule and its order: whereabouts.py), which the recorder's store keeps as
its ``whereabouts`` table: read once at start, then kept here from each stored batch by the
same rule. Published only where ``[site] occupancy_from = "recorder"``; door nodes then publish
none (presence.py), so one publisher speaks for each area.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence

from .recorder_store import Received, RecorderStore
from .store.record import NewState
from .topics import Topics
from .whereabouts import Whereabouts

log = logging.getLogger(__name__)

EVER = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
"""``events(since, until)`` over the whole store."""


class SiteOccupancy:
    """The recorder's publisher of ``area/<area>/occupancy`` for the site: every area once the
    store's whereabouts are read (and the config's areas, so that an empty area says 0), then
    each area whose occupants a stored batch changed.

    The whereabouts are read in a thread of their own, retried every ``retry_s`` while the store
    cannot be read (a PostgreSQL that is down): the daemon's loop never waits for it. ``stored``
    is called from the recorder's writing thread after each committed batch; the fold and the
    messages are made on the daemon's loop (``call_soon_threadsafe``), where the node's other
    records are queued. Batches that come before the whereabouts are read wait for them, then
    are folded too: nothing is published from a partial view, which is the bug this exists for."""

    def __init__(self, areas: Sequence[str], topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[NewState], None], retry_s: float = 5.0) -> None:
        self.areas = tuple(areas)
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.retry_s = retry_s
        self.where = Whereabouts()
        self.pending: list[Received] | None = []
        """Batches stored before the whereabouts were read; None once they were."""
        self.stopping = threading.Event()

    def start(self, open_store: Callable[[], RecorderStore]) -> None:
        threading.Thread(target=self._read_store, args=(open_store,), name="site-occupancy", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def stored(self, events: Sequence[Received]) -> None:
        """A committed batch (any thread)."""
        self.loop.call_soon_threadsafe(self._fold, list(events))

    def _read_store(self, open_store: Callable[[], RecorderStore]) -> None:
        while not self.stopping.is_set():
            try:
                with open_store() as store:
                    where = store.whereabouts()
            except Exception as exc:  # noqa: BLE001 - any backend's failure: said, and tried again
                log.warning("site occupancy: cannot read the recorder's store, trying again in %.0f s: %s",
                            self.retry_s, exc)
                self.stopping.wait(self.retry_s)
                continue
            self.loop.call_soon_threadsafe(self._read, where)
            return

    def _read(self, where: Whereabouts) -> None:
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
