"""The audit report for the whole site, gathered at the recorder node: the same ``Report`` as
one node's (report.py), so that report_csv.py and report_html.py print it unchanged, built
from the recorder's store instead of a node's.

Where each part comes from:
  - doors, desks and USB: every node's events in the recorder's store (site_events.py);
  - names: the recorder node's people (site_names.py: subject -> person -> name; a subject
    nobody here matches is shown as the pseudonym);
  - where each door leads and where each desk stands: the ``area`` the events name (a node's
    config is its own), completed by the recorder node's own config;
  - changes to people, cards and levels, and the audit chain's result: the recorder node's own
    audit log, since enrolment is done there;
  - alarms: the alarm steps the recorder stored (site_alarms.py), every life with a step in the
    period.

The node's store is read in one read transaction (changes and chain agree, as in report.py);
the recorder's store is read once, for the period: a batch committed meanwhile is wholly in or
wholly out.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from .keys import SiteKey
from .recorder_store import AlarmStep, RecorderStore
from .report import SITE_NOTES, AlarmLife, Layout, Period, Report, assemble, changes, integrity
from .site_alarms import lives
from .site_events import rows as site_rows
from .site_names import SiteNames
from .site_occupancy import EVER
from .store.database import Database


def learned_layout(rows: Sequence[Mapping[str, Any]], own: Layout) -> Layout:
    """Where doors lead and desks stand, as the events say: a granted pass ``in`` names its
    door's ``area_in``, one ``out`` its ``area_out`` (``null``: outside every area); a desk's
    event names its area; the latest event wins (``rows`` in time order). The recorder node's
    own config fills in and wins for its own doors. ``gather_site`` passes the door events up
    to the period's end, so a door passed one way only in the period still has both sides,
    and a later change of a node's config does not rewrite the period."""
    doors: dict[str, tuple[str, str]] = {}
    desks: dict[str, str] = {}
    for r in rows:
        if r["kind"] == "door" and r["result"] == "granted" and r["door"]:
            p = json.loads(r["payload"])
            if "area" not in p:
                continue  # a node older than the field: the door stays unplaced
            a_in, a_out = doors.get(r["door"], ("", ""))
            area = p["area"] or ""
            doors[r["door"]] = (area, a_out) if r["direction"] == "in" else (a_in, area)
        elif r["kind"] == "desk" and r["reader"] and r["area"]:
            desks[r["reader"]] = r["area"]
    return Layout({**doors, **own.doors}, {**desks, **own.desks})


def alarms(steps: Sequence[AlarmStep], p: Period) -> tuple[AlarmLife, ...]:
    """Every life of every alarm with a step in the period, as the report lists them."""
    zone = zoneinfo.ZoneInfo(p.timezone)

    def local(ts: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(ts).astimezone(zone) if ts else None
    return tuple(AlarmLife(li.id, li.kind, li.source, li.severity, local(li.raised), local(li.cleared),
                           li.acked_by or "", local(li.acked_at), li.ack_note or "", local(li.closed))
                 for li in lives(steps))


def gather_site(store: RecorderStore, database: Database, key: SiteKey, cfg: Any, p: Period, *, area: str = "",
                now: dt.datetime | None = None) -> Report:
    """The site's report for period ``p`` (and ``area``) at the recorder node of ``cfg``."""
    database.db.execute("BEGIN")
    try:
        names = SiteNames.of(database.db.query("SELECT id, name FROM people"), key, cfg.site.publish_names)
        since, until = dt.datetime.fromisoformat(p.since), dt.datetime.fromisoformat(p.until)
        events = store.events(since, until)
        rows = site_rows(events, names)
        people = dict(names.names)
        for r in rows:
            if r["person_id"] and r["person_id"] not in people:
                people[r["person_id"]] = r["name"]  # a pseudonym standing for itself
        subjects = {s: person.id for s, person in names.by_subject.items()}
        doors_until = site_rows(store.events(EVER[0], until, kind="door"), names)
        nodes = sorted({e.node for e in events})
        notes = [n for n in SITE_NOTES if (n != "site_area" or area) and n != "gaps_open"]
        if store.gaps():
            notes.append("gaps_open")
        return assemble(site=cfg.site.id, node=f"{cfg.site.node} (recorder; nodes: {', '.join(nodes) or 'none'})",
                        p=p, layout=learned_layout(doors_until + [r for r in rows if r["kind"] == "desk"],
                                                   Layout.of(cfg)),
                        area=area, events=rows, people=people,
                        subjects=subjects, alarms=alarms(store.alarm_steps(since, until), p),
                        changes=changes(database.db, p, people),
                        integrity=integrity(database), notes=tuple(notes), now=now)
    finally:
        database.db.execute("ROLLBACK")
