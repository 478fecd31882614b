"""What ``sekisho watch`` shows: one line per message (``line``), and the full screen
(``screen``) drawn as ANSI escapes (``frame``). Pure: the site (watch_state.py), the time zone,
``now`` and the window's size in; text out. The terminal itself is watch.py's.

Names, not topics: a door, desk or USB host by its config name, an area by its name, a person
by the pseudonym the bus carries (a name with ``publish_names``); times in the site's zone.

Everything a payload carries is shown as text and nothing else: a control character in it (an
escape in a USB device's name, a newline in an ack note) is shown as ``?``, so a message can
neither move the officer's cursor, recolour the screen nor split one line into two.

Colour only repeats what the words say (``CRITICAL``, ``denied``, ``NOT ACKED``, ``offline``), so
the screen reads the same without it (``NO_COLOR``, a terminal without colours).

The screen, top to bottom: a title line (site, broker, connection), the open alarms (most severe
first), doors, desks, areas and nodes, then the event stream, newest at the bottom as in the line
mode, ``tail -f`` and the journal: the latest line is where the eye already is, and the lines
above it are the story that led there. A window too small for everything keeps the parts in that
order: the alarms always, before anything else; what does not fit is counted (``… 3 more``).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .timestamps import local
from .watch_state import Alarm, Event, Message, Payload, Site

EVENTS_KEPT_FREE = 5
"""Lines kept for the event stream (its title and four events) below the summary, in a window
high enough for both; the alarms come first whatever the height."""
PLACEHOLDER = "—"
GAP = "  "


class Style(StrEnum):
    PLAIN = "plain"
    TITLE = "title"
    HEADING = "heading"
    CRITICAL = "critical"
    WARNING = "warning"
    BAD = "bad"
    GOOD = "good"
    DIM = "dim"


SGR_COLOUR = {Style.TITLE: "7", Style.HEADING: "1", Style.CRITICAL: "1;37;41", Style.WARNING: "1;33",
              Style.BAD: "31", Style.GOOD: "32", Style.DIM: "2"}
"""Select Graphic Rendition per style, where the terminal has colours."""
SGR_MONO = {Style.TITLE: "7", Style.HEADING: "1", Style.CRITICAL: "1;7", Style.WARNING: "1"}
"""Without colours: reverse video and bold only, which NO_COLOR leaves alone."""


@dataclass(frozen=True)
class Span:
    text: str
    style: Style = Style.PLAIN


Row = tuple[Span, ...]


@dataclass(frozen=True)
class Clock:
    """The site's zone and the present, for times a person reads."""

    zone: dt.tzinfo
    now: dt.datetime

    def short(self, ts: Any) -> str:
        """``16:12:03`` today in the site's zone, ``11-23 16:12`` before; ``—`` for no time."""
        if not ts:
            return PLACEHOLDER
        try:
            t = dt.datetime.fromisoformat(str(ts)).astimezone(self.zone)
        except (ValueError, OverflowError):
            return str(ts)
        if t.date() == self.now.astimezone(self.zone).date():
            return t.strftime("%H:%M:%S")
        return t.strftime("%m-%d %H:%M")

    def full(self, ts: Any) -> str:
        """``2026-11-23T16:12:03+09:00`` (timestamps.local), or the text as it came."""
        if not ts:
            return local(self.now.isoformat(), self.zone)
        try:
            return local(str(ts), self.zone)
        except (ValueError, OverflowError):
            return str(ts)


# ----------------------------------------------------------------------------- text
def clean(text: str) -> str:
    """Control and format characters shown as ``?``: a payload never reaches the terminal as a
    command (escape, carriage return, newline, bidirectional override)."""
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def fit(text: str, columns: int) -> str:
    """``text`` cut to ``columns``, ending in ``…`` when cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        w = width(c)
        if used + w > columns - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + ("…" if columns >= 1 else "")


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def _s(value: Any) -> str:
    return PLACEHOLDER if value is None or value == "" else str(value)


# ----------------------------------------------------------------------------- what happened
def event_what(e: Event) -> Span:
    """What an event says happened, in words: granted or denied and why, the desk's step, the
    USB device and what became of it, the print job's fate and who decided it."""
    p = e.payload
    if e.group == "door" and p.get("kind") == "fire":
        released = ", door released" if p.get("released") else ""
        return Span(f"fire {_s(p.get('input'))} {_s(p.get('state'))}{released}",
                    Style.CRITICAL if p.get("state") == "active" else Style.WARNING)
    if e.group == "door":
        result = _s(p.get("result"))
        return Span(f"{_s(p.get('direction'))} {result} ({_s(p.get('reason'))})",
                    Style.BAD if result == "denied" else Style.GOOD if result == "granted" else Style.PLAIN)
    if e.group == "usb":
        device = p.get("device")
        if not isinstance(device, dict):
            device = {}
        name = device.get("name") or f"{_s(device.get('vid'))}:{_s(device.get('pid'))}"
        action = _s(p.get("action"))
        return Span(f"usb {action} {name}",
                    Style.BAD if action in ("blocked", "approval_refused") else Style.PLAIN)
    if e.group == "print":
        action = _s(p.get("action"))
        reason = f" ({p['reason']})" if p.get("reason") else ""
        actor = f" by {p['actor']}" if p.get("actor") else ""
        return Span(f"print #{_s(p.get('job'))} {action}{reason}{actor}",
                    Style.BAD if action == "release_refused" else Style.WARNING if action == "expired" else Style.PLAIN)
    kind = _s(p.get("kind"))
    reason = f" ({p['reason']})" if p.get("reason") else ""
    latency = p.get("latency_ms")
    took = f", {latency:.0f} ms" if isinstance(latency, int | float) and not isinstance(latency, bool) \
        and abs(latency) < 1e9 else ""
    bad = kind in ("lock_failed", "unlocked_without_card", "tailgating", "foreign_card", "reader_lost")
    return Span(f"{kind}{reason}{took}", Style.BAD if bad else Style.PLAIN)


def alarm_cells(a: Alarm, clock: Clock) -> list[Span]:
    severity = Style.CRITICAL if a.severity == "critical" else Style.WARNING if a.severity == "warning" else Style.PLAIN
    return [Span(a.severity.upper() or "?", severity), Span(a.kind or "?"), Span(a.source or "?"),
            Span(f"raised {clock.short(a.raised)}"),
            Span(f"cleared {clock.short(a.cleared)}" if a.cleared else "not cleared"),
            Span(f"acked by {a.acked_by}" if a.acked_by else "NOT ACKED", Style.PLAIN if a.acked_by else Style.BAD),
            Span(a.subject or PLACEHOLDER)]


def door_state_text(state: Payload | None) -> list[Span]:
    if state is None:
        return [Span("not heard from", Style.DIM)]
    alarm = state.get("alarm")
    return [Span(_s(state.get("lock"))), Span(_s(state.get("mode")),
                                             Style.PLAIN if state.get("mode") in (None, "normal") else Style.WARNING),
            Span(f"contact {_s(state.get('contact'))}"),
            Span(f"ALARM {alarm}", Style.CRITICAL) if alarm else Span("no alarm", Style.DIM)]


def node_text(status: Payload | None, clock: Clock) -> Span:
    if status is None:
        return Span("not heard from", Style.DIM)
    state = _s(status.get("state"))
    if state != "online":
        # No time: a last will's ts is when the node connected, not when it went (docs/mqtt.md).
        return Span(state, Style.BAD if state == "offline" else Style.PLAIN)
    return Span(f"online since {clock.short(status.get('started'))}")


def area_text(occupancy: Payload | None) -> str:
    return PLACEHOLDER if occupancy is None else f"{_s(occupancy.get('count'))} inside"


# ----------------------------------------------------------------------------- line mode
def line(msg: Message, site: Site, clock: Clock) -> str:
    """One message as one line: local time, what it is about (``door``, ``desk``, ...), its
    name, what it says. ``| grep entrance`` finds a door's every line."""
    p = msg.payload or {}
    what: list[str]
    name = msg.name
    if msg.group == "alarm":
        a = msg.alarm
        if a is not None:
            name = a.source or name
        if msg.payload is None:
            what = [f"closed {a.kind if a else ''}".rstrip(), f"({msg.name})"]
        else:
            assert a is not None
            cells = [c.text for c in alarm_cells(a, clock)]
            head = "closed: " if msg.closes_alarm else ""
            what = [head + " ".join(cells[:2]), *cells[3:6], f"subject {cells[6]}", f"({msg.name})"]
    elif msg.leaf == "event":
        e = Event(msg.group, msg.name, p)
        what = [event_what(e).text]
        if p.get("subject"):
            what.append(str(p["subject"]))
    elif msg.group == "door":
        what = ["state: " + ", ".join(s.text for s in door_state_text(p))]
    elif msg.group == "desk":
        what = [f"state: {_s(p.get('state'))}"] + ([str(p["subject"])] if p.get("subject") else [])
    elif msg.group == "area":
        subjects = p.get("subjects") if isinstance(p.get("subjects"), list) else []
        what = [area_text(p) + (": " + " ".join(str(s) for s in subjects) if subjects else "")]
    elif msg.group == "node":
        what = [node_text(p, clock).text + (f", sekisho {p['version']}" if p.get("version") else "")]
    elif msg.leaf == "result":
        verdict = "ok" if p.get("ok") else f"refused: {_s(p.get('error'))}"
        what = [f"command {_s(p.get('op'))}: {verdict}", f"(id {_s(p.get('id'))})"]
    else:
        what = [f"command {_s(p.get('op'))} signed by {_s(p.get('key'))}", f"(id {_s(p.get('id'))})"]
    names = max((len(n) for n in (*site.layout.doors, *site.layout.desks, *site.layout.areas)), default=8)
    retained = ["(retained)"] if msg.retained else []
    return clean(GAP.join([clock.full(p.get("ts")), pad(msg.group, 5), pad(name, names), *what, *retained]))


# ----------------------------------------------------------------------------- the screen
def screen(site: Site, clock: Clock, columns: int, rows: int, status: str) -> list[Row]:
    """The whole screen, at most ``rows`` rows, each cut to ``columns``."""
    if rows <= 0 or columns <= 0:
        return []
    out: list[Row] = [(Span(f"sekisho watch · {status} · q quits", Style.TITLE),)]
    alarms = _alarms(site, clock)
    left = rows - len(out)
    out += _cut(alarms, left, "alarms")
    left = rows - len(out)
    summary = [*_doors(site, clock), *_desks(site, clock), *_flow("AREAS", [
        (name, Span(area_text(o))) for name, o in site.areas.items()], columns), *_flow("NODES", [
            (name, node_text(s, clock)) for name, s in site.nodes_offline_first()], columns)]
    free = EVENTS_KEPT_FREE if left >= 2 * EVENTS_KEPT_FREE else 0
    out += _cut(summary, left - free, "lines")
    left = rows - len(out)
    if left > 0:
        out += _events(site, clock, left)
    return [_fit_row(r, columns) for r in out[:rows]]


def _cut(part: list[Row], room: int, what: str) -> list[Row]:
    """``part`` in ``room`` rows: whole, or as much as fits and a row counting the rest."""
    if room <= 0:
        return []
    if len(part) <= room:
        return part
    if room == 1:
        return part[:1]
    return [*part[:room - 1], (Span(f"  … {len(part) - room + 1} more {what}", Style.DIM),)]


def _table(cells: Sequence[Sequence[Span]], indent: str = " ") -> list[Row]:
    """Rows of cells, each column as wide as its widest cell."""
    if not cells:
        return []
    widths = [max(width(clean(r[i].text)) if i < len(r) else 0 for r in cells) for i in range(max(map(len, cells)))]
    out: list[Row] = []
    for r in cells:
        spans = [Span(indent)]
        for i, c in enumerate(r):
            last = i == len(r) - 1
            spans.append(Span(c.text if last else pad(clean(c.text), widths[i]), c.style))
            if not last:
                spans.append(Span(GAP))
        out.append(tuple(spans))
    return out


def _alarms(site: Site, clock: Clock) -> list[Row]:
    alarms = site.open_alarms()
    if not alarms:
        return [(Span("ALARMS", Style.HEADING), Span("  none open", Style.DIM))]
    title = (Span(f"ALARMS ({len(alarms)} open)", Style.HEADING),)
    return [title, *_table([alarm_cells(a, clock) for a in alarms])]


def _doors(site: Site, clock: Clock) -> list[Row]:
    if not site.doors:
        return []
    cells = []
    for name, door in site.doors.items():
        last = door.last
        said = [Span(f"last {clock.short(last.get('ts'))}"), event_what(Event("door", name, last))] if last else \
            [Span("no event yet", Style.DIM)]
        cells.append([Span(name), *door_state_text(door.state), *said])
    return [(Span("DOORS", Style.HEADING),), *_table(cells)]


def _desks(site: Site, clock: Clock) -> list[Row]:
    if not site.desks:
        return []
    cells = []
    for name, d in site.desks.items():
        if d is None:
            cells.append([Span(name), Span("not heard from", Style.DIM)])
            continue
        state = _s(d.get("state"))
        cells.append([Span(name), Span(state, Style.BAD if state == "unlocked" else Style.PLAIN),
                      Span(_s(d.get("subject"))), Span(f"since {clock.short(d.get('since'))}")])
    return [(Span("DESKS", Style.HEADING),), *_table(cells)]


def _flow(label: str, items: Iterable[tuple[str, Span]], columns: int) -> list[Row]:
    """``LABEL name value · name value ...``, wrapped onto as many rows as the width needs."""
    lead = width(label) + 1
    rows: list[list[Span]] = [[Span(label, Style.HEADING), Span(" ")]]
    used, first = lead, True
    for name, value in items:
        w = width(clean(name)) + 1 + width(clean(value.text))
        if not first and used + 3 + w > columns:
            rows.append([Span(" " * lead)])
            used, first = lead, True
        if not first:
            rows[-1].append(Span(" · ", Style.DIM))
            used += 3
        rows[-1] += [Span(f"{name} "), value]
        used += w
        first = False
    if len(rows[0]) == 2:
        rows[0].append(Span(PLACEHOLDER, Style.DIM))
    return [tuple(r) for r in rows]


def _events(site: Site, clock: Clock, room: int) -> list[Row]:
    """The title and the newest ``room - 1`` events, the newest at the bottom."""
    title: Row = (Span("EVENTS", Style.HEADING), Span("  newest at the bottom", Style.DIM))
    shown = list(site.events)[-(room - 1):] if room > 1 else []
    if not site.events:
        return [title, (Span("  none yet", Style.DIM),)][:room]
    cells = []
    for e in shown:
        subject = e.payload.get("subject")
        cells.append([Span(clock.short(e.payload.get("ts"))), Span(e.where), event_what(e),
                      Span(str(subject) if subject else "")])
    return [title, *_table(cells)]


def _fit_row(row: Row, columns: int) -> Row:
    out: list[Span] = []
    left = columns
    for s in row:
        text = clean(s.text)
        if left <= 0:
            break
        piece = fit(text, left)
        out.append(Span(piece, s.style))
        left -= width(piece)
    return tuple(out)


# ----------------------------------------------------------------------------- ANSI
ENTER = "\x1b[?1049h\x1b[?25l"
"""The alternate screen (the shell's screen comes back untouched at the end), cursor hidden."""
LEAVE = "\x1b[0m\x1b[?25h\x1b[?1049l"


def frame(rows: Sequence[Row], height: int, colour: bool) -> str:
    """The screen as one string of escapes: each row at its position, the rest of each line and
    of the screen cleared. Rows are placed, never followed by a newline: the last row of the
    window can never scroll the screen."""
    sgr = SGR_COLOUR if colour else SGR_MONO
    parts = []
    for y, row in enumerate(rows[:height], start=1):
        parts.append(f"\x1b[{y};1H")
        for s in row:
            code = sgr.get(s.style)
            parts.append(f"\x1b[{code}m{s.text}\x1b[0m" if code else s.text)
        parts.append("\x1b[K")
    if len(rows) < height:
        parts.append(f"\x1b[{len(rows) + 1};1H\x1b[J")
    return "".join(parts)
