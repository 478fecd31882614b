"""The data-protection audit report, gathered: who entered and left each area, what each door
decided, desk sessions and their failures, USB blocks and exceptions with who approved them,
print jobs per operator and per supervisor (report_print.py), alarms with who acknowledged
them, and changes to people, cards and levels, for one local day or month; with the audit
chain's verification result.

``gather`` reads a store and returns plain frozen values; it renders nothing. The renderers
(``report_csv.py``, ``report_html.py``) take only a ``Report``, so the site-wide recorder can
build one from its own store and print it the same way.

Failure model: the report says what the store holds, and says what it cannot know instead of
guessing (``Report.notes``): a desk session that began before the period has no start; a name
is the person's name today (the store keeps no earlier one); a card appears only as the start
of its keyed hash, never as a UID, since the store has none. A broken audit chain does not stop
the report: it is stated in it, with the first row that does not hold.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DataError
from .report_print import PrintOperator, PrintSupervisor, tally
from .store.audit import verify
from .store.database import Database
from .store.record import Record
from .timestamps import rfc3339

DESK_ACCEPTED = frozenset({"card", "same_card", "tailgating_flagged", "occupancy_unknown"})
"""Reasons of a ``card_inserted`` event that make the card's holder the desk's: a session starts."""
DESK_ENDS = frozenset({"card_removed", "reader_lost"})
"""Desk event kinds that end a session."""
DESK_PROBLEMS = frozenset({"lock_failed", "unlocked_without_card", "tailgating", "foreign_card",
                           "session_terminated", "reader_lost"})
"""Desk event kinds listed one by one; a refused ``card_inserted`` is listed too."""
USB_LISTED = frozenset({"blocked", "exception_granted", "exception_expired", "approval_pending", "approval_refused"})
"""USB actions listed; a device the rules allow (a keyboard) is counted, not listed."""
CHANGE_PREFIXES = ("person.", "card.", "level.", "pin.")
"""Audit actions that change who may come in."""
OPERATION_ACTIONS = frozenset({"door.mode", "door.unlock", "retention.purge", "clock.step"})
"""Other audited actions of a person on this node, listed with the changes."""

NOTES = {
    "names_today": "Names are as the people table holds them today; the store keeps no earlier name.",
    "cards_hashed": "Cards appear only as the first 12 hex digits of their keyed hash; the store holds no card UID.",
    "sessions_before": "A desk session that began before the period has no start here (its card was inserted "
                       "earlier); one still running at the period's end has no end.",
    "usb_allowed_counted": "USB devices that the rules allowed are counted, not listed one by one.",
    "print_fates": "Print jobs are counted by what happened to them in the period: a job held before it and "
                   "released in it counts as released, not as held; pages printed are those the printer reported.",
    "one_node": "This report reads one node's store: doors, desks and USB of other nodes are in their own stores.",
    "node_wide": "USB, printing, alarms and changes are this node's, whatever the area.",
    "exit_button": "An exit button opens without a card: such an exit has no person.",
    "alarm_before": "An alarm raised before the period shows no raised time when only its later steps fall in it.",
    "site_wide": "This report reads the recorder's store: the events every node of the site published and the "
                 "recorder received; the node line lists the nodes heard from.",
    "site_area": "USB, printing, alarms and changes are the whole site's, whatever the area.",
    "site_names": "People are named by the recorder node, where enrolment is done; a person it does not know "
                  "appears as their pseudonym.",
    "site_areas": "Where a door leads comes from the area its events name; a door of a node older than that "
                  "field shows in the door counts only, without presence.",
    "site_changes": "Changes to people, cards and levels are from the recorder node's audit log (enrolment is "
                    "done there); the audit chain stated is that node's.",
    "gaps_open": "Some events have not reached the recorder yet (gaps in a node's sequence): they are missing "
                 "here.",
}
"""What the report cannot know, by code; the HTML renderer has each in Japanese too."""
NODE_NOTES = ("names_today", "cards_hashed", "sessions_before", "usb_allowed_counted", "print_fates", "one_node",
              "node_wide", "exit_button", "alarm_before")
"""Those of one node's report (``node_wide`` only with an area)."""
SITE_NOTES = ("site_wide", "site_names", "names_today", "cards_hashed", "sessions_before", "usb_allowed_counted",
              "print_fates", "site_area", "site_areas", "site_changes", "exit_button", "gaps_open")
"""Those of the recorder's site-wide report (``site_area`` only with an area, ``gaps_open`` only
when the recorder knows of missing events)."""


@dataclass(frozen=True)
class Period:
    """One local day or month of the site's time zone, and its bounds as the store's UTC text."""

    label: str
    """``2026-11`` or ``2026-11-30``."""
    first: dt.date
    last: dt.date
    """Inclusive."""
    timezone: str
    since: str
    until: str
    """Exclusive: the first instant after the period."""

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def period(*, month: str | None = None, day: str | None = None, timezone: str) -> Period:
    """The period a person names, in the site's zone; a DataError for a month or day that is none."""
    zone = zoneinfo.ZoneInfo(timezone)
    if (month is None) == (day is None):
        raise DataError("name one period: --month YYYY-MM or --day YYYY-MM-DD")
    if month is not None:
        try:
            first = dt.date.fromisoformat(month + "-01")
        except ValueError:
            raise DataError(f"--month: {month!r} is not a month like 2026-11") from None
        if len(month) != 7:
            raise DataError(f"--month: {month!r} is not a month like 2026-11")
        after = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        label = month
    else:
        assert day is not None
        try:
            first = dt.date.fromisoformat(day)
        except ValueError:
            raise DataError(f"--day: {day!r} is not a day like 2026-11-30") from None
        if len(day) != 10:
            raise DataError(f"--day: {day!r} is not a day like 2026-11-30")
        after = first + dt.timedelta(days=1)
        label = first.isoformat()

    def start(d: dt.date) -> str:
        return rfc3339(dt.datetime.combine(d, dt.time(), zone))
    return Period(label, first, after - dt.timedelta(days=1), timezone, start(first), start(after))


@dataclass(frozen=True)
class Layout:
    """Where doors lead and where desks stand: the config's, or the recorder's for the site."""

    doors: Mapping[str, tuple[str, str]]
    """door -> (area_in, area_out); an empty area is outside every area."""
    desks: Mapping[str, str]
    """desk -> its area."""

    @classmethod
    def of(cls, cfg: Any) -> Layout:
        return cls({n: (d.area_in, d.area_out) for n, d in cfg.doors.items()},
                   {n: d.area for n, d in cfg.desks.items()})


# ----------------------------------------------------------------------------- the rows
@dataclass(frozen=True)
class Movement:
    """A person entered or left an area through a door (a granted passage)."""

    at: dt.datetime
    """Local, aware."""
    area: str
    entered: bool
    door: str
    reader: str
    direction: str
    """The reader's: ``in`` (into the door's area_in) or ``out``."""
    person_id: str
    """Empty for an exit button."""
    name: str


@dataclass(frozen=True)
class DoorCount:
    door: str
    direction: str
    """``in``, ``out``, or empty (a fire input)."""
    result: str
    """``granted``, ``denied`` or ``fire``."""
    reason: str
    count: int


@dataclass(frozen=True)
class DeskSession:
    desk: str
    area: str
    person_id: str
    name: str
    start: dt.datetime | None
    """None: it began before the period."""
    end: dt.datetime | None
    """None: still running at the period's end (or at the last event)."""
    ended: str
    """How it ended: ``removed``, ``away_timeout``, ``reader_lost``, another card, or empty."""


@dataclass(frozen=True)
class DeskEvent:
    """A desk event that is a problem: a lock that failed, a refused card, a tailgater, ..."""

    at: dt.datetime
    desk: str
    area: str
    kind: str
    reason: str
    person_id: str
    name: str


@dataclass(frozen=True)
class UsbEvent:
    at: dt.datetime
    action: str
    device: str
    """vid:pid, name, serial and port, as one line."""
    rule: str
    reason: str
    approved_by: str
    """Who allowed it (``cli:<user>``, ``key:<key>``, ``supervisor:<subject>``); empty for a block."""
    approver_id: str
    approver_name: str
    exception: str
    """The exception's id, and until when it held."""


@dataclass(frozen=True)
class AlarmLife:
    """One life of an alarm: raised, cleared, acknowledged; from the audit log."""

    id: str
    kind: str
    source: str
    severity: str
    raised: dt.datetime | None
    cleared: dt.datetime | None
    acked_by: str
    acked_at: dt.datetime | None
    note: str
    closed: dt.datetime | None


@dataclass(frozen=True)
class Change:
    """An audited change to people, cards, levels or PINs, or another person's action."""

    at: dt.datetime
    n: int
    """The audit row's number."""
    actor: str
    action: str
    person_id: str
    name: str
    detail: str


@dataclass(frozen=True)
class Integrity:
    ok: bool
    rows: int
    problem: str


@dataclass(frozen=True)
class Report:
    site: str
    node: str
    period: Period
    area: str
    """Empty: every area."""
    generated: dt.datetime
    integrity: Integrity
    movements: tuple[Movement, ...]
    doors: tuple[DoorCount, ...]
    desk_sessions: tuple[DeskSession, ...]
    desk_events: tuple[DeskEvent, ...]
    usb: tuple[UsbEvent, ...]
    usb_allowed: int
    print_operators: tuple[PrintOperator, ...]
    print_supervisors: tuple[PrintSupervisor, ...]
    alarms: tuple[AlarmLife, ...]
    changes: tuple[Change, ...]
    notes: tuple[str, ...]
    """Codes of ``NOTES``."""

    def entries_per_day(self) -> list[tuple[dt.date, int]]:
        """Entries per local day: into the report's area, or (every area) passages through an
        in-reader, each counted once."""
        if self.area:
            per = Counter(m.at.date() for m in self.movements if m.entered)
        else:
            per = Counter(m.at.date() for m in self.movements if m.entered and m.direction == "in")
        return [(d, per.get(d, 0)) for d in self.period.days]

    def denials_by_reason(self) -> list[tuple[str, int]]:
        per: Counter[str] = Counter()
        for c in self.doors:
            if c.result == "denied":
                per[c.reason] += c.count
        return sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))


# ----------------------------------------------------------------------------- gathering
def gather(database: Database, node: str, site: str, p: Period, layout: Layout, *, area: str = "",
           pseudonym: Callable[[str], str] | None = None, now: dt.datetime | None = None) -> Report:
    """Read the store for period ``p`` (and ``area``, when given) into a ``Report``, in one read
    transaction: a daemon writing meanwhile lands wholly after it, so the sections and the audit
    chain's check agree.

    ``pseudonym`` maps a person id to their subject on the bus (the site key's HMAC), so that an
    approval recorded as ``supervisor:<subject>`` is named; without it, it stays a pseudonym.
    """
    database.db.execute("BEGIN")
    try:
        return _gather(database, node, site, p, layout, area, pseudonym, now)
    finally:
        database.db.execute("ROLLBACK")


def _gather(database: Database, node: str, site: str, p: Period, layout: Layout, area: str,
            pseudonym: Callable[[str], str] | None, now: dt.datetime | None) -> Report:
    zone = zoneinfo.ZoneInfo(p.timezone)
    db = database.db
    people = {r[0]: r[1] for r in db.execute("SELECT id, name FROM people")}
    subjects: dict[str, str] = {}
    if pseudonym is not None:
        subjects = {pseudonym(pid): pid for pid in people}
    subjects.update({name: pid for pid, name in people.items() if name not in subjects})

    def local(ts: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(ts).astimezone(zone) if ts else None

    events = Record(database, node).events(since=p.since, until=p.until)
    return assemble(site=site, node=node, p=p, layout=layout, area=area, events=events, people=people,
                    subjects=subjects, alarms=_alarms(db, p, local), changes=changes(db, p, people),
                    integrity=integrity(database), notes=tuple(n for n in NODE_NOTES if n != "node_wide" or area),
                    now=now)


def assemble(*, site: str, node: str, p: Period, layout: Layout, area: str, events: Iterable[Mapping[str, Any]],
             people: Mapping[str, str], subjects: Mapping[str, str], alarms: tuple[AlarmLife, ...],
             changes: tuple[Change, ...], integrity: Integrity, notes: tuple[str, ...],
             now: dt.datetime | None) -> Report:
    """The report from event rows in a node's ``events`` table's shape (``kind``, ``ts``,
    ``door``, ``reader``, ``direction``, ``result``, ``reason``, ``person_id``, ``payload``), in
    time order, and the sections read elsewhere: one node's store, or the recorder's
    (site_report.py). ``people``: person id -> name; ``subjects``: subject -> person id."""
    zone = zoneinfo.ZoneInfo(p.timezone)
    events = list(events)  # read twice: here, and for printing (report_print.py)

    def at(ts: str) -> dt.datetime:
        return dt.datetime.fromisoformat(ts).astimezone(zone)

    def local(ts: str | None) -> dt.datetime | None:
        return at(ts) if ts else None

    doors_shown = {d for d, (a_in, a_out) in layout.doors.items() if not area or area in (a_in, a_out)}
    desks_shown = {d for d, a in layout.desks.items() if not area or a == area}

    movements: list[Movement] = []
    counts: Counter[tuple[str, str, str, str]] = Counter()
    desk_rows: dict[str, list[Mapping[str, Any]]] = {}
    usb: list[UsbEvent] = []
    usb_allowed = 0
    for e in events:
        kind = e["kind"]
        if kind == "door":
            door = e["door"] or ""
            if area and door not in doors_shown:
                continue
            counts[(door, e["direction"] or "", e["result"] or "", e["reason"] or "")] += 1
            if e["result"] != "granted" or door not in layout.doors:
                continue
            a_in, a_out = layout.doors[door]
            left, entered = (a_out, a_in) if e["direction"] == "in" else (a_in, a_out)
            pid = e["person_id"] or ""
            for name, into in ((left, False), (entered, True)):
                if name and (not area or name == area):
                    movements.append(Movement(at(e["ts"]), name, into, door, e["reader"] or "", e["direction"], pid,
                                              people.get(pid, "")))
        elif kind == "desk":
            desk = e["reader"] or ""
            if area and desk not in desks_shown:
                continue
            desk_rows.setdefault(desk, []).append(e)
        elif kind == "usb":
            payload = json.loads(e["payload"])
            action = payload.get("action", "")
            if action not in USB_LISTED:
                usb_allowed += action == "allowed"
                continue
            usb.append(_usb_event(at(e["ts"]), payload, e, subjects, people, local))

    sessions: list[DeskSession] = []
    problems: list[DeskEvent] = []
    for desk, rows in desk_rows.items():
        s, pr = _desk(desk, layout.desks.get(desk, ""), rows, at, people)
        sessions += s
        problems += pr
    print_operators, print_supervisors = tally(events, subjects, people)

    return Report(
        site=site, node=node, period=p, area=area, generated=(now or dt.datetime.now(zone)).astimezone(zone),
        integrity=integrity,
        movements=tuple(sorted(movements, key=lambda m: (m.area, m.at))),
        doors=tuple(DoorCount(*k, n) for k, n in sorted(counts.items())),
        desk_sessions=tuple(sorted(sessions, key=lambda s: (s.desk, s.start or s.end or dt.datetime.min.replace(
            tzinfo=zone)))),
        desk_events=tuple(sorted(problems, key=lambda d: (d.desk, d.at))),
        usb=tuple(usb), usb_allowed=usb_allowed,
        print_operators=print_operators, print_supervisors=print_supervisors,
        alarms=alarms,
        changes=changes,
        notes=notes,
    )


def integrity(database: Database) -> Integrity:
    """The audit chain's check, the one ``sekisho audit verify`` runs after SQLite's own."""
    problems = database.integrity()
    if problems:
        return Integrity(False, 0, f"store damaged: {problems[0]}")
    r = verify(database.db)
    return Integrity(r.ok, r.rows, r.problem)


def _desk(desk: str, area: str, rows: list[Mapping[str, Any]], at: Callable[[str], dt.datetime],
          people: Mapping[str, str]) -> tuple[list[DeskSession], list[DeskEvent]]:
    sessions: list[DeskSession] = []
    problems: list[DeskEvent] = []
    open_: tuple[str, dt.datetime | None] | None = None
    started = False
    """Whether a session has begun in the period: a removal before any is of a card inserted earlier."""
    for e in rows:
        kind, reason, pid, t = e["result"] or "", e["reason"] or "", e["person_id"] or "", at(e["ts"])
        if kind == "card_inserted" and reason in DESK_ACCEPTED and pid:
            if open_ is not None and open_[0] != pid:
                sessions.append(DeskSession(desk, area, open_[0], people.get(open_[0], ""), open_[1], t,
                                            "another_card"))
                open_ = None
            if open_ is None:
                open_ = (pid, t)
                started = True
        elif kind in DESK_ENDS:
            if open_ is not None:
                sessions.append(DeskSession(desk, area, open_[0], people.get(open_[0], ""), open_[1], t, reason))
                open_ = None
            elif not started and pid and kind == "card_removed":
                sessions.append(DeskSession(desk, area, pid, people.get(pid, ""), None, t, reason))
                started = True
        if kind in DESK_PROBLEMS or (kind == "card_inserted" and reason not in DESK_ACCEPTED):
            problems.append(DeskEvent(t, desk, area, kind, reason, pid, people.get(pid, "")))
    if open_ is not None:
        sessions.append(DeskSession(desk, area, open_[0], people.get(open_[0], ""), open_[1], None, ""))
    return sessions, problems


def _device(d: Mapping[str, Any]) -> str:
    parts = [f"{d.get('vid') or '?'}:{d.get('pid') or '?'}"]
    if d.get("match"):
        parts = [str(d["match"])]
    for key in ("name", "serial", "port"):
        if d.get(key):
            parts.append(f"{key} {d[key]}" if key != "name" else str(d[key]))
    return ", ".join(parts)


def _usb_event(t: dt.datetime, payload: Mapping[str, Any], row: Mapping[str, Any], subjects: Mapping[str, str],
               people: Mapping[str, str], local: Callable[[str | None], dt.datetime | None]) -> UsbEvent:
    exc = payload.get("exception") or {}
    action = payload.get("action", "")
    by = str(exc.get("actor") or "")
    approver = ""
    if action.startswith("approval_"):
        approver = row.get("person_id") or ""
        by = f"supervisor:{payload.get('subject') or ''}"
    elif by.startswith("supervisor:"):
        approver = subjects.get(by.split(":", 1)[1], "")
    until = local(exc.get("until"))
    exception = f"{exc['id']} until {until:%Y-%m-%d %H:%M}" if exc.get("id") and until else str(exc.get("id", ""))
    return UsbEvent(t, action, _device(payload.get("device") or {}), payload.get("rule") or "",
                    payload.get("reason") or "", by, approver, people.get(approver, ""), exception)


def _alarms(db: Any, p: Period, local: Callable[[str | None], dt.datetime | None]) -> tuple[AlarmLife, ...]:
    """Every life of every alarm with a step in the period, from the audit log; severity from the
    alarms table (the id's latest life)."""
    table = {r["id"]: r for r in db.query("SELECT * FROM alarms")}
    lives: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for row in db.query("SELECT n, ts, actor, action, detail FROM audit WHERE action LIKE 'alarm.%' AND ts >= ? "
                        "AND ts < ? ORDER BY n", [p.since, p.until]):
        d = json.loads(row["detail"])
        aid = d.get("alarm", "")
        life = lives.get(aid)
        if row["action"] == "alarm.raise" and (life is None or life.get("raised")):
            if life is not None:
                done.append(life)
            life = lives[aid] = {"id": aid, "kind": d.get("kind", ""), "source": d.get("source", ""),
                                 "raised": row["ts"]}
        elif life is None:
            life = lives[aid] = {"id": aid, "kind": d.get("kind", ""), "source": d.get("source", ""),
                                 "raised": None}
        if row["action"] == "alarm.clear":
            life["cleared"] = row["ts"]
        if row["action"] == "alarm.ack":
            life["acked_by"], life["acked_at"], life["note"] = row["actor"], row["ts"], d.get("note", "")
        if d.get("closed"):
            life["closed"] = row["ts"]
            done.append(lives.pop(aid))
    done += lives.values()
    out = []
    for life in sorted(done, key=lambda li: (li["raised"] or li.get("acked_at") or li.get("closed") or "", li["id"])):
        t = table.get(life["id"])
        if t is not None and (t["raised"] == life["raised"] or life["raised"] is None and t["raised"] < p.since):
            # The table holds this life: an incident's cleared (set when it was raised), the note.
            life.setdefault("cleared", t["cleared"])
            if not life.get("acked_by") and t["acked_by"] and (t["acked_at"] or "") < p.until:
                life["acked_by"], life["acked_at"], life["note"] = t["acked_by"], t["acked_at"], t["ack_note"]
        out.append(AlarmLife(life["id"], life["kind"], life["source"], t["severity"] if t is not None else "",
                             local(life["raised"]), local(life.get("cleared")), life.get("acked_by") or "",
                             local(life.get("acked_at")), life.get("note") or "", local(life.get("closed"))))
    return tuple(out)


def changes(db: Any, p: Period, people: Mapping[str, str]) -> tuple[Change, ...]:
    """The audited changes to people, cards, levels and PINs, and the other actions of a person,
    in ``db``'s audit log during ``p``."""
    zone = zoneinfo.ZoneInfo(p.timezone)
    out = []
    for row in db.query("SELECT n, ts, actor, action, detail FROM audit WHERE ts >= ? AND ts < ? ORDER BY n",
                        [p.since, p.until]):
        action = row["action"]
        if not (action.startswith(CHANGE_PREFIXES) or action in OPERATION_ACTIONS):
            continue
        d = json.loads(row["detail"])
        pid = str(d.pop("person", "") or "")
        out.append(Change(dt.datetime.fromisoformat(row["ts"]).astimezone(zone), row["n"], row["actor"], action, pid,
                          people.get(pid, ""),
                          _detail(d)))
    return tuple(out)


def _detail(d: Mapping[str, Any]) -> str:
    """An audit row's detail as ``key value`` pairs; a card is already the start of its hash."""
    return "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(d.items()))
