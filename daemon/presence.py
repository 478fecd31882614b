"""Who is where: the site's presence, as this node knows it.

Three kinds of knowledge, kept apart because they are trusted differently:
  - **Local areas** (those this node's doors lead into): each person's last recorded area and
    when they entered it, from the store at start and from every granted pass since. These
    answer anti-passback and are this node's retained ``area/<area>/occupancy``.
  - **Remote areas** (those a desk here, or ``[print] area``, names but another node's doors
    lead into): the subjects that node publishes as the area's retained occupancy. Until that
    message arrives, nobody knows who is inside: ``entered`` answers None and the desk's stance
    decides (print release refuses: ``occupancy_unknown``).
    With ``[site] occupancy_from = "recorder"`` every desk area is remote, local or not: the
    recorder publishes each area from every node's doors, and this node's own doors are only
    part of the story (someone who came in through another node's door is inside all the same).
    This node then publishes no occupancy: its partial view must not overwrite the site's.
  - **Subjects**: how each person appears on the bus, a keyed hash (or the name, where the
    site publishes names), computed once per person per run.

A malformed occupancy message is logged and ignored; it never replaces what was known.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from .config import Config
from .keys import SiteKey
from .store.people import People
from .store.record import Move, NewState, Record
from .timestamps import rfc3339, utc_now
from .topics import Topics

log = logging.getLogger(__name__)


class Presence:
    def __init__(self, config: Config, people: People, record: Record, key: SiteKey, topics: Topics,
                 loop: asyncio.AbstractEventLoop, queue: Callable[[Move | NewState], None]) -> None:
        self.config = config
        self.people = people
        self.key = key
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.tz = ZoneInfo(config.site.timezone)
        self.local_areas = frozenset(a for d in config.doors.values() for a in (d.area_in, d.area_out) if a)
        self.publishes = config.site.occupancy_from == "doors"
        """Whether this node's doors speak for their areas' occupancy (else the recorder does)."""
        # The areas a check here asks about: each desk's, and the one a supervisor releasing print
        # jobs must be inside.
        checked = frozenset(d.area for d in config.desks.values() if d.area) | frozenset(
            [config.print.area] if config.print and config.print.area else [])
        self.remote_areas = checked - self.local_areas if self.publishes else checked
        self.locations = record.locations()
        """person id -> (area, since as the store's UTC text), for everyone inside a local area."""
        # Who is in each area, kept up to date on every move: rebuilding it from ``locations``
        # on each grant cost one HMAC per person inside, on the tap path, before the strike.
        self.inside: dict[str, set[str]] = {}
        for person_id, (area, _) in self.locations.items():
            self.inside.setdefault(area, set()).add(person_id)
        self.heard: dict[str, set[str]] = {}
        """Remote area -> the subjects its door node last published as inside."""
        self.subjects: dict[str, str] = {}
        self.changed: set[str] = set()

    def startup(self) -> None:
        """Publish the occupancy of every local area. Only those: a desk-only node knows nothing
        of who is inside, and its word must not overwrite the door node's retained message; nor
        a door node's when the recorder publishes for the site."""
        if not self.publishes:
            return
        for area in sorted(self.local_areas):
            self.queue(self._occupancy(area))

    # ------------------------------------------------------------------------- questions
    def subject_of(self, person_id: str) -> str:
        """How a person appears on the bus; computed once per person (an HMAC, or a store read)."""
        subject = self.subjects.get(person_id)
        if subject is None:
            if self.config.site.publish_names:
                person = self.people.person(person_id)
                subject = person["name"] if person else person_id
            else:
                subject = self.key.pseudonym(person_id)
            self.subjects[person_id] = subject
        return subject

    def entered(self, person_id: str, area: str) -> bool | None:
        """Is the person recorded inside ``area``? None when nobody knows who is in it."""
        if area in self.local_areas and self.publishes:
            return self.locations.get(person_id, ("", ""))[0] == area
        inside = self.heard.get(area)
        return None if inside is None else self.subject_of(person_id) in inside

    def passback_area(self, person_id: str) -> str | None:
        """The area the person was last recorded entering since the daily anti-passback reset;
        None when unknown or before the reset."""
        if person_id not in self.locations:
            return None
        area, since = self.locations[person_id]
        return area if since >= self._last_reset() else None

    def remote_counts(self) -> dict[str, int | None]:
        """Remote areas -> how many the bus says are inside, None until its message arrived."""
        return {a: len(self.heard[a]) if a in self.heard else None for a in sorted(self.remote_areas)}

    # ------------------------------------------------------------------------- changes
    def move(self, person_id: str, entered: str) -> None:
        """A granted pass took the person into ``entered`` (empty: out of every area)."""
        before = self.locations.get(person_id, ("", ""))[0]
        if entered:
            self.locations[person_id] = (entered, utc_now())
        else:
            self.locations.pop(person_id, None)
        self.queue(Move(person_id, entered))
        if before == entered:
            return  # who is inside changed only when the area did
        self.inside.get(before, set()).discard(person_id)
        if entered:
            self.inside.setdefault(entered, set()).add(person_id)
        if not self.publishes:
            return
        if not self.changed:
            # After this tick's strike and record: a burst of grants shares one message per area.
            self.loop.call_soon(self._publish_changed)
        self.changed |= {before, entered} - {""}

    def occupancy_heard(self, topic: str, payload: bytes) -> None:
        """A door node's retained ``area/<area>/occupancy`` (the publisher's subscription handler)."""
        area = topic.split("/")[-2]
        if area not in self.remote_areas:
            return
        try:
            subjects = json.loads(payload)["subjects"] if payload else []
        except (ValueError, KeyError, TypeError, RecursionError):
            subjects = None
        # A list of pseudonyms, or nothing is learnt: a string here was once taken as the set of
        # its characters, and any other value as subjects no person has.
        if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
            log.warning("ignoring a malformed occupancy message on %s", topic)
            return
        self.heard[area] = set(subjects)

    # ------------------------------------------------------------------------- inside
    def _publish_changed(self) -> None:
        areas, self.changed = self.changed, set()
        for area in sorted(areas):
            self.queue(self._occupancy(area))

    def _occupancy(self, area: str) -> NewState:
        inside = sorted(self.subject_of(p) for p in self.inside.get(area, ()))
        return NewState(self.topics.area_occupancy(area), {"count": len(inside), "subjects": inside})

    def _last_reset(self) -> str:
        """The latest daily anti-passback reset, as the store's UTC timestamp text."""
        now = dt.datetime.now(self.tz)
        reset = dt.datetime.combine(now.date(), dt.time.fromisoformat(self.config.site.passback_reset), self.tz)
        if reset > now:
            reset -= dt.timedelta(days=1)
        return rfc3339(reset)
