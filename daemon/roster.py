"""A roster: the site's people as HR keeps them, in a CSV file, read into a plan of changes to the
enrolment (``sekisho person import``) and written from it (``sekisho person export``).

An import is two steps, both pure (no store, no clock, no key file):
  - ``read`` decodes the whole file (UTF-8 with or without a BOM, or Shift_JIS as Windows Excel
    writes it: cp932) and checks the header and every cell;
  - ``plan`` compares the rows with the enrolment as it is (``Enrolment``), the config's levels
    and the site key's hash, and returns the changes (``store/enrolment.py``): all of them, or
    none and every problem, each as ``roster.csv:LINE: what`` (the header is line 1).
The command line applies a plan with ``People.apply``, in one transaction with one audit row
per change; the site-wide recorder can plan the same file against its own copy.

What a roster means (docs/roster.md): the file is the truth for the people it lists, in the
columns it has. A person listed is added or updated; their levels become exactly those listed;
their cards listed are added. A card of theirs that the file does not list is kept unless
``revoke_missing`` (cards are often enrolled with a tap, which HR's file does not know); people
the file does not list are left alone unless ``deactivate_missing``. A column the file does not
have changes nothing, and an empty cell means what a new person gets: no date, no levels, no
cards, active. A card that was revoked stays revoked (a warning): a roster from HR never
reopens a card an officer revoked as lost.

UIDs are read, hashed and dropped: no message, plan or export holds one, not even a malformed one
(a UID with one typo is still most of a card number); a card is named by its place in the cell
and its hash prefix, as ``sekisho card list`` shows it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from .errors import UsageError
from .store.enrolment import (
    CARD_SHOWN,
    HASH_PREFIX_MIN,
    AddCard,
    AddPerson,
    Change,
    Enrolment,
    Grant,
    RevokeCard,
    SetActive,
    UpdatePerson,
)

COLUMNS = ("id", "name", "valid_from", "valid_until", "levels", "cards", "card_hashes", "active")
"""Every column a roster may have, in any order; ``id`` and ``name`` it must have."""
REQUIRED = ("id", "name")
EXPORT_COLUMNS = ("id", "name", "valid_from", "valid_until", "levels", "card_hashes", "active")
SEPARATOR = ";"
"""Between the levels, the cards and the card hashes of one cell (a comma is the CSV's own)."""
YES = ("yes", "y", "true", "1", "有効")
NO = ("no", "n", "false", "0", "無効")
SHIFT_JIS = ("shift_jis", "shift-jis", "sjis", "s_jis", "shiftjis", "ms932", "windows-31j", "cp932")
"""Names a person gives Windows' Japanese encoding; Python's shift_jis lacks what cp932 adds
(髙, ①, ㈱), so each of them reads as cp932."""
_DATE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")


@dataclass(frozen=True)
class Row:
    """One person's line. A column the file does not have is None: it changes nothing."""
    line: int
    id: str
    name: str
    valid_from: str | None = None
    valid_until: str | None = None
    levels: frozenset[str] | None = None
    cards: tuple[bytes, ...] | None = field(default=None, repr=False)
    card_hashes: tuple[str, ...] | None = None
    active: bool | None = None


@dataclass(frozen=True)
class Roster:
    name: str
    """The file as the person named it, which every message starts with."""
    encoding: str
    """How it was read, in words: "UTF-8 with BOM", "UTF-8", "Shift_JIS (cp932)"."""
    columns: tuple[str, ...] = ()
    rows: tuple[Row, ...] = ()
    problems: tuple[str, ...] = ()

    def has(self, column: str) -> bool:
        return column in self.columns


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    """Empty whenever there is a problem: a roster is imported whole or not at all."""
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- read

def _shown(text: str) -> str:
    """A bad cell as a problem quotes it, unless it could be a card UID pasted into the wrong
    column (hex digits only, 4 bytes or more): no message prints a UID."""
    if len(text) >= 8 and all(c in "0123456789abcdefABCDEF:" for c in text):
        return "the value (not shown: it could be a card UID)"
    return repr(text)

def codec(encoding: str) -> str:
    """The codec an ``--encoding`` names; Shift_JIS in any spelling is cp932."""
    if encoding.lower() in SHIFT_JIS:
        return "cp932"
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f"--encoding: no encoding {encoding!r} (e.g. utf-8, cp932)") from None


def decode(data: bytes, name: str, encoding: str | None = None) -> tuple[str, str] | str:
    """The text and how it was read, or a problem. Without ``encoding``: UTF-8 (a BOM says so
    too), else cp932, each strictly: a byte that is neither is a problem, never a guess."""
    if encoding:
        forced = codec(encoding)
        tried = [(forced, "Shift_JIS (cp932)" if forced == "cp932" else forced)]
    elif data.startswith(codecs.BOM_UTF8):
        tried = [("utf-8-sig", "UTF-8 with BOM")]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return f"{name}: UTF-16 text (Excel's \"Unicode text\"); save it as \"CSV UTF-8 (comma delimited)\""
    else:
        tried = [("utf-8", "UTF-8"), ("cp932", "Shift_JIS (cp932)")]
    first: UnicodeDecodeError | None = None
    for codec_name, label in tried:
        try:
            return data.decode(codec_name).removeprefix("\ufeff"), label
        except UnicodeDecodeError as exc:
            first = first or exc
    assert first is not None
    line = data.count(b"\n", 0, first.start) + 1
    what = f"neither {tried[0][1]} nor {tried[1][1]}" if len(tried) > 1 else f"not {tried[0][1]}"
    return (f"{name}:{line}: {what} text (byte 0x{data[first.start]:02x}); save it as CSV UTF-8, or name its "
            "encoding with --encoding")


def read(data: bytes, name: str, encoding: str | None = None) -> Roster:
    """Decode and parse a whole roster, checking the header and every cell; every problem is
    in ``problems``. A row with a bad cell is kept (that cell None) so that ``plan`` names its
    other problems too; a plan with any problem has no changes."""
    decoded = decode(data, name, encoding)
    if isinstance(decoded, str):
        return Roster(name, encoding or "", problems=(decoded,))
    text, label = decoded
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    try:
        header = next(reader, None)
        if header is None or not any(c.strip() for c in header):
            return Roster(name, label, problems=(f"{name}:1: no header row: a roster starts with its column names "
                                                 f"({', '.join(COLUMNS)})",))
        columns = _header(header, name, problems)
        if problems:
            return Roster(name, label, problems=tuple(problems))
        rows: list[Row] = []
        end = reader.line_num
        for record in reader:
            line, end = end + 1, reader.line_num
            if any(c.strip() for c in record):  # Excel ends a sheet with empty rows (",,,,")
                row = _row(record, columns, f"{name}:{line}", line, problems)
                if row is not None:
                    rows.append(row)
    except csv.Error as exc:
        return Roster(name, label, problems=(*problems, f"{name}:{reader.line_num}: not CSV: {exc}"))
    _across_rows(rows, name, problems)
    return Roster(name, label, tuple(columns), tuple(rows), tuple(problems))


def _header(cells: list[str], name: str, problems: list[str]) -> list[str]:
    columns = [c.strip().lower() for c in cells]
    while columns and not columns[-1]:
        columns.pop()  # trailing empty columns, as a spreadsheet writes them
    seen: set[str] = set()
    for i, column in enumerate(columns, 1):
        if not column:
            problems.append(f"{name}:1: column {i} has no name")
        elif column not in COLUMNS:
            problems.append(f"{name}:1: unknown column {column!r} (columns: {', '.join(COLUMNS)})")
        elif column in seen:
            problems.append(f"{name}:1: column {column!r} appears twice")
        seen.add(column)
    problems.extend(f"{name}:1: no {c!r} column (a roster needs {' and '.join(REQUIRED)})"
                    for c in REQUIRED if c not in seen)
    return columns


def _row(record: list[str], columns: list[str], at: str, line: int, problems: list[str]) -> Row | None:
    """The row, also when a cell has a problem (that cell is then None), so that ``plan`` can
    name the row's other problems too; None when its cells cannot be matched to the columns."""
    if len(record) < len(columns) or any(c.strip() for c in record[len(columns):]):
        problems.append(f"{at}: {len(record)} cells, but the header has {len(columns)} columns")
        return None
    cell = {c: v.strip() for c, v in zip(columns, record, strict=False)}
    for column in REQUIRED:
        if not cell[column]:
            problems.append(f"{at}: {column} is empty")
    has = cell.__contains__
    row = Row(line, cell["id"], cell["name"],
              valid_from=_date(cell["valid_from"], f"{at}: valid_from", problems) if has("valid_from") else None,
              valid_until=_date(cell["valid_until"], f"{at}: valid_until", problems) if has("valid_until") else None,
              levels=frozenset(_split(cell["levels"])) if has("levels") else None,
              cards=tuple(_uids(cell["cards"], at, problems)) if has("cards") else None,
              card_hashes=tuple(_prefixes(cell["card_hashes"], at, problems)) if has("card_hashes") else None,
              active=_active(cell["active"], at, problems) if has("active") else None)
    return row


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(SEPARATOR) if part.strip()]


def _date(text: str, at: str, problems: list[str]) -> str | None:
    if not text:
        return None
    m = _DATE.fullmatch(text)
    try:
        if m is None:
            raise ValueError
        return dt.date(int(m[1]), int(m[3]), int(m[4])).isoformat()
    except ValueError:
        problems.append(f"{at}: {_shown(text)} is not a date like 2026-04-01 or 2026/04/01")
        return None


def _uids(text: str, at: str, problems: list[str]) -> Iterable[bytes]:
    from sekisho.drivers.sim import parse_uid
    for i, part in enumerate(_split(text), 1):
        try:
            yield parse_uid(part)
        except ValueError:
            # parse_uid's own words would repeat the UID; only its shape is said here.
            digits = part.replace(":", "").replace(" ", "")
            hexed = all(c in "0123456789abcdefABCDEF" for c in digits) and len(digits) % 2 == 0
            problems.append(f"{at}: cards: card {i} is " + (f"{len(digits) // 2} bytes; a card UID is 4 to 10 bytes"
                                                            if hexed else "not a UID in hex (like 04a1b2c3d4e5f6)"))


def _prefixes(text: str, at: str, problems: list[str]) -> Iterable[str]:
    for i, part in enumerate(_split(text), 1):
        prefix = part.lower()
        if not (HASH_PREFIX_MIN <= len(prefix) <= 64 and all(c in "0123456789abcdef" for c in prefix)):
            problems.append(f"{at}: card_hashes: hash {i} is not the start of a card hash ({HASH_PREFIX_MIN} to 64 "
                            "hex digits, as sekisho card list and person export show it)")
        else:
            yield prefix


def _active(text: str, at: str, problems: list[str]) -> bool | None:
    word = text.lower()
    if not word or word in YES:
        return True
    if word in NO:
        return False
    problems.append(f"{at}: active: {_shown(text)} is neither yes nor no")
    return None


def _across_rows(rows: list[Row], name: str, problems: list[str]) -> None:
    """An id or a card listed twice: each later line names the first."""
    ids: dict[str, int] = {}
    cards: dict[bytes, int] = {}
    for row in rows:
        if row.id and row.id in ids:
            problems.append(f"{name}:{row.line}: id {row.id} is already on line {ids[row.id]}")
        ids.setdefault(row.id, row.line)
        for i, uid in enumerate(row.cards or (), 1):
            if uid in cards:
                where = "earlier on this line" if cards[uid] == row.line else f"on line {cards[uid]}"
                problems.append(f"{name}:{row.line}: cards: card {i} is also listed {where}")
            cards.setdefault(uid, row.line)


# ----------------------------------------------------------------------------- plan
def plan(roster: Roster, enrolment: Enrolment, levels: Collection[str], card_hash: Callable[[bytes], str], *,
         revoke_missing: bool = False, deactivate_missing: bool = False) -> Plan:
    """The changes that make the enrolment what the roster says, or every problem and none."""
    if roster.problems and not roster.rows and not roster.columns:
        return Plan(problems=roster.problems)  # the file itself could not be read
    problems = list(roster.problems)
    warnings: list[str] = []
    changes: list[Change] = []
    if revoke_missing and not (roster.has("cards") or roster.has("card_hashes")):
        problems.append(f"{roster.name}:1: --revoke-missing needs a cards or card_hashes column: without one, "
                        "every card of every person listed would be revoked")
    for row in roster.rows:
        changes.extend(_person(roster, row, enrolment, levels, card_hash, revoke_missing, problems, warnings))
    if deactivate_missing:
        listed = {row.id for row in roster.rows}
        changes.extend(SetActive(p.id, False, "not in the file", source=roster.name)
                       for p in sorted(enrolment.people.values(), key=lambda p: p.id)
                       if p.active and p.id not in listed)
    if problems:
        return Plan(problems=tuple(sorted(problems, key=_line_of(roster.name))), warnings=tuple(warnings))
    return Plan(tuple(changes), (), tuple(warnings))


def _line_of(name: str) -> Callable[[str], int]:
    """A problem's line, to list them in the file's order (the file's own problems first)."""
    prefix = re.compile(re.escape(name) + r":(\d+):")
    return lambda problem: int(m[1]) if (m := prefix.match(problem)) else 0


def _person(roster: Roster, row: Row, enrolment: Enrolment, levels: Collection[str],
            card_hash: Callable[[bytes], str], revoke_missing: bool, problems: list[str],
            warnings: list[str]) -> list[Change]:
    at = f"{roster.name}:{row.line}"
    now = enrolment.people.get(row.id)
    out: list[Change] = []
    # Validity: a date column the file lacks keeps the store's date.
    start = row.valid_from if roster.has("valid_from") else (now.valid_from if now else None)
    end = row.valid_until if roster.has("valid_until") else (now.valid_until if now else None)
    if start and end and end < start:
        problems.append(f"{at}: valid_until {end} is before valid_from {start}")
    if now is None:
        out.append(AddPerson(row.id, row.name, start, end, source=at))
        if row.active is False:
            out.append(SetActive(row.id, False, source=at))
    else:
        fields = tuple(f for f, new, old in (("name", row.name, now.name), ("valid_from", start, now.valid_from),
                                             ("valid_until", end, now.valid_until)) if new != old)
        if fields:
            out.append(UpdatePerson(row.id, row.name, start, end, fields, source=at))
        if row.active is not None and row.active != now.active:
            out.append(SetActive(row.id, row.active, source=at))
    # Levels: exactly those listed, each one the config declares.
    if row.levels is not None:
        for level in sorted(row.levels - set(levels)):
            problems.append(f"{at}: levels: no level {_shown(level)} in the config (levels: "
                            f"{', '.join(levels) or 'none'})")
        held = now.levels if now else frozenset()
        out.extend(Grant(row.id, level, source=at) for level in sorted(row.levels - held))
        out.extend(Grant(row.id, level, revoke=True, source=at) for level in sorted(held - row.levels))
    # Cards: those listed are added; those not listed are revoked only when asked.
    listed: set[str] = set()
    for i, uid in enumerate(row.cards or (), 1):
        digest = card_hash(uid)
        card = enrolment.cards.get(digest)
        shown = digest[:CARD_SHOWN]
        if card is None:
            out.append(AddCard(row.id, digest, source=at))
        elif card.person_id != row.id:
            problems.append(f"{at}: cards: card {i} ({shown}) is enrolled to {card.person_id}"
                            f"{'' if card.active else ' (revoked)'}: a card belongs to one person")
        elif not card.active:
            warnings.append(f"{at}: warning: card {shown} of {row.id} was revoked ({card.revoked}) and stays "
                            f"revoked: an import never re-enables a card (sekisho card add does)")
        listed.add(digest)
    # A prefix is named by its place in the cell, not echoed: a UID pasted there by mistake
    # would otherwise be printed.
    for i, prefix in enumerate(row.card_hashes or (), 1):
        mine = [c for c in enrolment.cards_of(row.id) if c.hash.startswith(prefix)]
        if not mine:
            problems.append(f"{at}: card_hashes: hash {i} is the start of no card of {row.id} "
                            f"(see: sekisho card list --person {row.id})")
        elif len(mine) > 1:
            problems.append(f"{at}: card_hashes: hash {i} starts {len(mine)} cards of {row.id}; give more digits")
        else:
            listed.add(mine[0].hash)
    if revoke_missing and now is not None:
        out.extend(RevokeCard(row.id, c.hash, "not in the file", source=at)
                   for c in sorted(enrolment.cards_of(row.id), key=lambda c: c.hash)
                   if c.active and c.hash not in listed)
    return out


# ----------------------------------------------------------------------------- export
def export_rows(enrolment: Enrolment) -> list[dict[str, str]]:
    """Everyone, by id, in EXPORT_COLUMNS. Cards only as hash prefixes of active cards: UIDs were
    never kept; an import reads the prefixes back as cards kept (card_hashes)."""
    return [{"id": p.id, "name": p.name, "valid_from": p.valid_from or "", "valid_until": p.valid_until or "",
             "levels": SEPARATOR.join(sorted(p.levels)),
             "card_hashes": SEPARATOR.join(sorted(c.hash[:CARD_SHOWN] for c in enrolment.cards_of(p.id) if c.active)),
             "active": "yes" if p.active else "no"}
            for p in sorted(enrolment.people.values(), key=lambda p: p.id)]


def write_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
