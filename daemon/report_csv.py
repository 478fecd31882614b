"""The audit report as one CSV: every section in one table, told apart by its first column,
``section``, so that a spreadsheet's filter shows one section and ``csv.DictReader`` reads all.

Every row has the same columns (``COLUMNS``); a section fills those that mean something for it
(docs/report.md lists which). Times are local to the site's zone, as ``2026-11-30 23:30:00``;
the zone is in the ``report`` rows at the top. The last line is the seal: ``digest,sha256,...``
with the SHA-256 of every byte before it (UTF-8, without the BOM a file starts with), which
``sekisho report --verify`` recomputes.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line reads SECTIONS for its help without loading the report
    from .report import Report

COLUMNS = ["section", "date", "time", "area", "door", "desk", "direction", "what", "reason", "count", "person_id",
           "name", "from", "to", "by", "by_name", "at", "note", "ref"]
SECTIONS = ("report", "presence", "door", "desk_session", "desk_event", "usb", "print_operator", "print_supervisor",
            "alarm", "change")
DIGEST_PREFIX = "digest,sha256,"


def _notes() -> dict[str, str]:
    from .report import NOTES

    return NOTES


def _t(t: dt.datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""


def rows(r: Report) -> list[dict[str, Any]]:
    """Every row of the report, in section order."""
    out: list[dict[str, Any]] = []

    def add(section: str, **cells: Any) -> None:
        out.append({"section": section, **{k.rstrip("_"): v for k, v in cells.items()}})

    integrity = "OK" if r.integrity.ok else f"BROKEN: {r.integrity.problem}"
    for key, value in (("site", r.site), ("node", r.node), ("period", r.period.label),
                       ("period_from", f"{r.period.first} 00:00 ({r.period.since} UTC)"),
                       ("period_until", f"{r.period.last + dt.timedelta(days=1)} 00:00 ({r.period.until} UTC), "
                                        "not included"),
                       ("timezone", r.period.timezone), ("area", r.area or "all"),
                       ("generated", r.generated.strftime("%Y-%m-%d %H:%M:%S")),
                       ("audit_chain", f"{integrity} ({r.integrity.rows} rows intact)"),
                       ("usb_allowed_by_rules", str(r.usb_allowed))):
        add("report", what=key, note=value)
    for code in r.notes:
        add("report", what="not_recorded", reason=code, note=_notes()[code])
    for m in r.movements:
        add("presence", date=m.at.date(), time=m.at.strftime("%H:%M:%S"), area=m.area, door=m.door,
            direction="entered" if m.entered else "left", person_id=m.person_id, name=m.name, ref=m.reader)
    for c in r.doors:
        add("door", door=c.door, direction=c.direction, what=c.result, reason=c.reason, count=c.count)
    for s in r.desk_sessions:
        add("desk_session", date=(s.start or s.end or r.generated).date(), area=s.area, desk=s.desk,
            person_id=s.person_id, name=s.name, from_=_t(s.start), to=_t(s.end), reason=s.ended)
    for d in r.desk_events:
        add("desk_event", date=d.at.date(), time=d.at.strftime("%H:%M:%S"), area=d.area, desk=d.desk, what=d.kind,
            reason=d.reason, person_id=d.person_id, name=d.name)
    for u in r.usb:
        add("usb", date=u.at.date(), time=u.at.strftime("%H:%M:%S"), what=u.action, reason=u.reason, by=u.approved_by,
            person_id=u.approver_id, by_name=u.approver_name, note=u.device, ref=u.exception or u.rule)
    # Printing: one row per person and count (``what``, ``count``), as a pivot table reads it.
    for o in r.print_operators:
        for what, n in (("held", o.held), ("released", o.released), ("cancelled", o.cancelled),
                        ("expired", o.expired), ("withdrawn", o.withdrawn), ("printed", o.printed),
                        ("pages_printed", o.pages)):
            add("print_operator", person_id=o.person_id, name=o.name, what=what, count=n)
    for su in r.print_supervisors:
        for what, n in (("released", su.released), ("cancelled", su.cancelled)):
            add("print_supervisor", by=su.actor, person_id=su.person_id, by_name=su.name, what=what, count=n)
    for a in r.alarms:
        first = a.raised or a.cleared or a.acked_at or a.closed or r.generated
        add("alarm", date=first.date(), what=a.kind, reason=a.severity, ref=a.id, door=a.source,
            from_=_t(a.raised), to=_t(a.cleared), by=a.acked_by, at=_t(a.acked_at), note=a.note)
    for ch in r.changes:
        add("change", date=ch.at.date(), time=ch.at.strftime("%H:%M:%S"), what=ch.action, by=ch.actor,
            person_id=ch.person_id, name=ch.name, note=ch.detail, ref=ch.n)
    return out


def body(r: Report, section: str | None = None) -> str:
    """The CSV without its seal: a header row, then the rows (of one ``section``, when given)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(row for row in rows(r) if section is None or row["section"] in (section, "report"))
    return buf.getvalue()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seal(sha256: str) -> str:
    """The last line: the digest row, as wide as every other row."""
    return DIGEST_PREFIX + sha256 + "," * (len(COLUMNS) - 3) + "\r\n"


def render(r: Report, section: str | None = None) -> str:
    """The CSV with its seal as the last line (no BOM: the caller adds one for a file)."""
    text = body(r, section)
    return text + seal(digest(text))


def check(text: str) -> tuple[str, str]:
    """(the digest the file states, the digest of every byte before its last line) of a CSV
    report without its BOM. The last line must be the seal exactly: nothing may follow it."""
    head, sep, last = text.removesuffix("\r\n").rpartition("\n")
    if not sep or not last.startswith(DIGEST_PREFIX):
        raise ValueError("its last line is not a digest row (digest,sha256,...)")
    stated = last[len(DIGEST_PREFIX):].split(",")[0]
    if last + "\r\n" != seal(stated) or not text.endswith("\r\n"):
        raise ValueError("its last line is not a digest row as sekisho writes it")
    return stated, digest(head + sep)
