"""What ``sekisho muster``, ``events``, ``alarms``, ``purge`` and ``audit verify`` do: read and keep the
record.

Each reads the store without creating one (a mistyped ``--data-dir`` is an error, not an empty
list), except ``purge``, which writes. Times a person types without a zone are in the site's time
zone; the store's are UTC text, compared as text. The arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import zoneinfo

from . import site_records_cli as site
from .cli_site import _actor, _config, _no, _person, _print_table, _record, _store
from .errors import DataError, UsageError
from .site_records_cli import site_wide
from .timestamps import local as local_time
from .timestamps import rfc3339

EX_DATAERR = 65


def cmd_muster(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if site_wide(cfg, args):
        rows, areas = site.muster(args)
        columns = ["area", "person_id", "name", "since", "door", "node"]
    else:
        cfg, record = _record(args, create=False)
        if args.area and args.area not in cfg.areas:
            raise _no("area", args.area, cfg.areas, str(cfg.path))
        rows = record.muster(args.area)
        tz = zoneinfo.ZoneInfo(cfg.site.timezone)
        for r in rows:
            r["since"] = dt.datetime.fromisoformat(r["since"]).astimezone(tz).strftime(
                "%Y-%m-%d %H:%M")
        columns = ["area", "person_id", "name", "since"]
        areas = [args.area] if args.area else list(cfg.areas)
    if args.csv:
        writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    for area in areas:
        inside = [r for r in rows if r["area"] == area]
        print(f"{area}: {len(inside)} inside")
        for r in inside:
            print(f"  {r['name']:<30} {r['person_id']:<12} since {r['since']}")
    return 0


def _instant(text: str | None, tz: str, flag: str) -> str | None:
    """A user's time as the store's UTC timestamp text."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{flag}: {text!r} is not a date or time (example: 2026-11-01 or 2026-11-01T09:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return rfc3339(t)


EVENT_COLUMNS = ["ts", "seq", "kind", "door", "reader", "direction", "result", "reason", "rule", "person_id", "id"]


def cmd_events(args: argparse.Namespace) -> int:
    from .store.people import People
    from .store.record import Record
    cfg = _config(args)
    if site_wide(cfg, args):
        found = site.events(args, _instant(args.since, cfg.site.timezone, "--since"),
                            _instant(args.until, cfg.site.timezone, "--until"))
        _print_rows(args, found, list(site.EVENT_COLUMNS), ["ts", "node", "door", "reader", "direction", "result",
                                                             "reason", "name"])
        return 0
    if args.node:
        raise UsageError("--node is for a recorder node (the site's events); this node lists its own")
    cfg, database, _ = _store(args, create=False)
    record = Record(database, cfg.site.node)
    if args.person:
        _person(People(database), args.person)
    # A door this node no longer has still has its record; only a name found nowhere is a slip.
    if args.door and args.door not in cfg.doors and not record.events(door=args.door):
        raise _no("door", args.door, cfg.doors, str(cfg.path))
    rows = record.events(since=_instant(args.since, cfg.site.timezone, "--since"),
                         until=_instant(args.until, cfg.site.timezone, "--until"),
                         door=args.door, person=args.person, result=args.result)
    # In the site's time, as --since and --until read them and as sekisho alarms lists them.
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    rows = [{c: r.get(c) for c in EVENT_COLUMNS} | {"ts": local_time(r["ts"], tz)} for r in rows]
    _print_rows(args, rows, EVENT_COLUMNS, ["ts", "door", "reader", "direction", "result", "reason", "person_id",
                                           "rule"])
    return 0


def _print_rows(args: argparse.Namespace, rows: list[dict], columns: list[str], shown: list[str]) -> None:
    """A listing as --json (every column), --csv (every column, a header row) or a table of the
    ``shown`` columns."""
    if args.json:
        json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
        print()
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, shown)


ALARM_COLUMNS = ["id", "kind", "source", "severity", "subject", "state", "raised", "cleared", "acked_by", "acked_at",
                 "ack_note", "closed"]


def _alarm_state(row: dict) -> str:
    if row["closed"]:
        return "closed"
    if row["acked_by"]:
        return "acked"  # seen; its condition still holds
    return "cleared" if row["cleared"] else "raised"


def cmd_alarms(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if site_wide(cfg, args):
        rows = site.alarms(args, _instant(args.since, cfg.site.timezone, "--since"))
        if not rows and not (args.json or args.csv):
            print("no alarms" if not args.open else "no open alarms")
        else:
            _print_rows(args, rows, site.ALARM_COLUMNS, ["id", "severity", "state", "raised", "cleared", "acked_by"])
        return 0
    cfg, record = _record(args, create=False)
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    rows = []
    for row in record.alarms(open_only=args.open, since=_instant(args.since, cfg.site.timezone, "--since")):
        local = {k: local_time(row[k], tz) if row[k] else None for k in ("raised", "cleared", "acked_at", "closed")}
        rows.append({**{c: row.get(c) for c in ALARM_COLUMNS}, **local, "state": _alarm_state(row)})
    if not rows and not (args.json or args.csv):
        print("no alarms" if not args.open else "no open alarms")
    else:
        _print_rows(args, rows, ALARM_COLUMNS, ["id", "severity", "state", "raised", "cleared", "acked_by"])
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from .retention import purge_before
    cfg, record = _record(args)
    before = purge_before(cfg)
    events, audit_rows = record.purge(before, _actor())
    print(f"deleted {events} events and {audit_rows} audit rows from before {before}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .store.audit import verify
    _, database, _ = _store(args, create=False)
    # The whole file first: a damaged page can hide rows from the chain walk, or stop it.
    problems = database.integrity()
    if problems:
        print(f"store damaged: {database.path}:", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
        return EX_DATAERR
    report = verify(database.db)
    if report.ok:
        print(f"audit log intact: {report.rows} rows")
        return 0
    print(f"audit log altered: {report.problem} ({report.rows} rows before it are intact)", file=sys.stderr)
    return EX_DATAERR
