"""``sekisho events``, ``alarms``, ``muster`` and ``report`` at a recorder node: the answer for
the whole site, from the recorder's store (``--local``: this node's own store, as elsewhere).
records_cli.py and report_cli.py hand over to these when ``[site] roles`` names ``recorder``.

Names are the recorder node's (site_names.py); times are shown in the site's time zone, and
typed ones without a zone are read in it, as the node's own listings do. The recorder's store
is only read: a recorder node whose SQLite store does not exist yet is an error, not an empty
answer, and a PostgreSQL that cannot be reached is one line naming it (the URL without its
password).
"""

from __future__ import annotations

import argparse
import datetime as dt
import zoneinfo
from typing import Any

from .cli_site import _no, _store
from .errors import DataError, NoInput
from .keys import SiteKey
from .recorder_store import DB_NAME, RecorderStore, open_store
from .site_alarms import latest_lives
from .site_events import COLUMNS as EVENT_COLUMNS
from .site_events import rows as site_rows
from .site_names import SiteNames
from .site_occupancy import EVER
from .store.database import Database
from .timestamps import local as local_time


def site_wide(cfg: Any, args: argparse.Namespace) -> bool:
    """Whether a command answers for the site: at a recorder node, unless ``--local``."""
    return "recorder" in cfg.site.roles and not getattr(args, "local", False)


def recorder(args: argparse.Namespace) -> tuple[Any, Database, SiteKey, RecorderStore, SiteNames]:
    """The config, the node's store and key, the recorder's store and the names."""
    from .cli_site import _data_dir
    cfg, database, key = _store(args, create=False)
    assert cfg.recorder is not None  # the recorder role has its section (config/site.py link_roles)
    data_dir = _data_dir(args)
    if not cfg.recorder.database and not (data_dir / DB_NAME).exists():
        raise NoInput(f"no recorder store in {data_dir} (the recorder has stored nothing yet; --local for this "
                      f"node's own records)")
    store = open_store(cfg.recorder.database, data_dir)
    names = SiteNames.of(database.db.query("SELECT id, name FROM people"), key, cfg.site.publish_names)
    return cfg, database, key, store, names


def muster(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Who is inside each area now, from the whereabouts every node's door events left in the
    store (a table, not a fold of the events): (rows, areas listed)."""
    cfg, _, _, store, names = recorder(args)
    with store:
        where = store.whereabouts()
    known = sorted(set(cfg.areas) | set(where.areas()))
    if args.area and args.area not in known:
        raise _no("area", args.area, known, "the site's records")
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    areas = [args.area] if args.area else known
    rows = []
    for area in areas:
        for subject, p in where.inside(area).items():
            person = names.person(subject)
            assert person is not None
            rows.append({"area": area, "person_id": person.id, "name": person.name,
                         "since": dt.datetime.fromisoformat(p.ts).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                         "door": p.door, "node": p.node})
    rows.sort(key=lambda r: (r["area"], r["name"]))
    return rows, areas


def events(args: argparse.Namespace, since: str | None, until: str | None) -> list[dict[str, Any]]:
    """Every node's events, in the site's time, filtered as ``sekisho events`` says."""
    cfg, _, _, store, names = recorder(args)
    subject = None
    if args.person:
        if args.person not in names.names:
            raise DataError(f"no person {args.person!r} in the recorder node's people (see: sekisho person list)")
        subject = names.subject_of_id[args.person]
    lo = dt.datetime.fromisoformat(since) if since else EVER[0]
    hi = dt.datetime.fromisoformat(until) if until else EVER[1]
    with store:
        found = site_rows(store.events(lo, hi, node=args.node), names)
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    out = []
    for r in found:
        if args.door and args.door not in (r["door"], r["reader"] if r["kind"] == "desk" else None):
            continue
        if subject is not None and r["subject"] != subject:
            continue
        if args.result and r["result"] != args.result:
            continue
        out.append({c: r[c] for c in EVENT_COLUMNS} | {"ts": local_time(r["ts"], tz)})
    return out


ALARM_COLUMNS = ["id", "node", "kind", "source", "severity", "subject", "state", "raised", "cleared", "acked_by",
                 "acked_at", "ack_note", "closed"]


def alarms(args: argparse.Namespace, since: str | None) -> list[dict[str, Any]]:
    """Each alarm id's latest life, of every node, from the steps the recorder stored."""
    cfg, _, _, store, _ = recorder(args)
    with store:
        found = latest_lives(store.alarm_steps(*EVER))
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    out = []
    for life in found:
        if args.open and life.closed:
            continue
        if since and (life.raised or "") < since:
            continue
        row = {c: getattr(life, c) for c in ALARM_COLUMNS}
        row.update({k: local_time(row[k], tz) if row[k] else None for k in ("raised", "cleared", "acked_at", "closed")})
        out.append(row)
    return out
