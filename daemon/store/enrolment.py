"""Who is enrolled, as one value, and the changes a bulk edit makes to it, each written with its
audit row.

``Enrolment`` is the people, their levels and their cards (as keyed hashes) read in one go
(``read``, ``People.snapshot``). A roster import (``daemon/roster.py``) is planned against it by
a pure function into a list of changes (``AddPerson``, ``Grant``, ``AddCard``, ...), which
``People.apply`` writes in one transaction, one audit row per change. The plan is values, apart
from the SQL, so that the site-wide recorder can plan the same import against its own copy and
show it before anything is written.

Failure model: a plan is right only for the state it was made from. ``People.apply`` reads the
enrolment again under the write lock and writes nothing when it is not the one planned against
(another command enrolled, revoked or granted in between); ``write`` raises on any row that is
not as the plan expects, which rolls the whole transaction back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import sqlite_utils

from .audit import append

CARD_SHOWN = 12
"""Hex digits of a card's hash shown to a person, as ``sekisho card list`` shows them."""
HASH_PREFIX_MIN = 8
"""Hex digits that name one card by the start of its hash (``sekisho card revoke``, a roster's
card_hashes): 8 make a slip onto another card about 1 in 4 billion."""


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    active: bool
    valid_from: str | None
    valid_until: str | None
    levels: frozenset[str]


@dataclass(frozen=True)
class Card:
    hash: str
    person_id: str
    active: bool
    revoked: str | None


@dataclass(frozen=True)
class Enrolment:
    people: Mapping[str, Person]
    cards: Mapping[str, Card]
    """By hash."""

    def cards_of(self, person_id: str) -> list[Card]:
        return self._by_person.get(person_id, [])

    @cached_property
    def _by_person(self) -> dict[str, list[Card]]:
        # Once, not a scan per person: a roster of thousands asks for every person's cards.
        by_person: dict[str, list[Card]] = {}
        for c in self.cards.values():
            by_person.setdefault(c.person_id, []).append(c)
        return by_person


def read(db: sqlite_utils.Database) -> Enrolment:
    levels: dict[str, set[str]] = {}
    for person_id, level in db.execute("SELECT person_id, level FROM person_levels"):
        levels.setdefault(person_id, set()).add(level)
    people = {r[0]: Person(r[0], r[1], bool(r[2]), r[3], r[4], frozenset(levels.get(r[0], ())))
              for r in db.execute("SELECT id, name, active, valid_from, valid_until FROM people")}
    cards = {r[0]: Card(r[0], r[1], bool(r[2]), r[3])
             for r in db.execute("SELECT hash, person_id, active, revoked FROM cards")}
    return Enrolment(people, cards)


# ----------------------------------------------------------------------------- changes
# Each names the audit action it is recorded as (the same words the single commands use) and
# says in one line what it does, for a plan a person reads before it is applied. ``source`` is
# where the change came from (``roster.csv:12``), kept in the audit row's detail.

@dataclass(frozen=True)
class AddPerson:
    action: ClassVar[str] = "person.add"
    person: str
    name: str
    valid_from: str | None = None
    valid_until: str | None = None
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        return f"add person {self.person} ({self.name})" + _validity(self.valid_from, self.valid_until)

    def detail(self) -> dict[str, Any]:
        dates = {"valid_from": self.valid_from, "valid_until": self.valid_until}
        return {"person": self.person, **{k: v for k, v in dates.items() if v}}


@dataclass(frozen=True)
class UpdatePerson:
    """A new name or new validity dates; ``fields`` says which of the three changed."""
    action: ClassVar[str] = "person.update"
    person: str
    name: str
    valid_from: str | None
    valid_until: str | None
    fields: tuple[str, ...]
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        said = [f"name {self.name}" if f == "name" else f"{f} {getattr(self, f) or 'none'}" for f in self.fields]
        return f"update person {self.person}: " + ", ".join(said)

    def detail(self) -> dict[str, Any]:
        # The name stays out of the audit log, as person.add leaves it out; the dates go in.
        return {"person": self.person, "fields": list(self.fields),
                **{f: getattr(self, f) for f in self.fields if f != "name"}}


@dataclass(frozen=True)
class SetActive:
    person: str
    active: bool
    why: str = ""
    source: str = field(default="", compare=False)

    @property
    def action(self) -> str:
        return "person.enable" if self.active else "person.disable"

    def describe(self) -> str:
        return f"{'enable' if self.active else 'disable'} person {self.person}" + (f" ({self.why})" if self.why else "")

    def detail(self) -> dict[str, Any]:
        return {"person": self.person}


@dataclass(frozen=True)
class Grant:
    person: str
    level: str
    revoke: bool = False
    source: str = field(default="", compare=False)

    @property
    def action(self) -> str:
        return "level.revoke" if self.revoke else "level.grant"

    def describe(self) -> str:
        return f"{'revoke' if self.revoke else 'grant'} level {self.level} {'from' if self.revoke else 'to'} " \
               f"{self.person}"

    def detail(self) -> dict[str, Any]:
        return {"person": self.person, "level": self.level}


@dataclass(frozen=True)
class AddCard:
    action: ClassVar[str] = "card.add"
    person: str
    card: str
    """The card's keyed hash; never its UID."""
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        return f"add card {self.card[:CARD_SHOWN]} to {self.person}"

    def detail(self) -> dict[str, Any]:
        return {"person": self.person, "card": self.card[:CARD_SHOWN]}


@dataclass(frozen=True)
class RevokeCard:
    action: ClassVar[str] = "card.revoke"
    person: str
    card: str
    why: str = ""
    source: str = field(default="", compare=False)

    def describe(self) -> str:
        return f"revoke card {self.card[:CARD_SHOWN]} of {self.person}" + (f" ({self.why})" if self.why else "")

    def detail(self) -> dict[str, Any]:
        return {"person": self.person, "card": self.card[:CARD_SHOWN]}


Change = AddPerson | UpdatePerson | SetActive | Grant | AddCard | RevokeCard


def _validity(start: str | None, end: str | None) -> str:
    if not start and not end:
        return ""
    return ", valid " + (f"from {start}" if start else "") + (" " if start and end else "") + \
        (f"until {end}" if end else "")


class ChangeRefused(Exception):
    """A row is not as the plan expected: a bug in the plan, or the store changed under it."""


def write(db: sqlite_utils.Database, change: Change, actor: str, ts: str) -> None:
    """Write one change and its audit row. Must run inside ``Database.transaction()``; raises
    ``ChangeRefused`` (rolling the whole transaction back) on a row that is not as expected."""
    match change:
        case AddPerson():
            db.table("people").insert({"id": change.person, "name": change.name, "active": 1, "created": ts,
                                       "valid_from": change.valid_from, "valid_until": change.valid_until})
        case UpdatePerson():
            _one(db.execute("UPDATE people SET name = ?, valid_from = ?, valid_until = ? WHERE id = ?",
                            [change.name, change.valid_from, change.valid_until, change.person]), change)
        case SetActive():
            _one(db.execute("UPDATE people SET active = ? WHERE id = ? AND active = ?",
                            [int(change.active), change.person, int(not change.active)]), change)
        case Grant(revoke=False):
            db.execute("INSERT INTO person_levels (person_id, level) VALUES (?, ?)", [change.person, change.level])
        case Grant(revoke=True):
            _one(db.execute("DELETE FROM person_levels WHERE person_id = ? AND level = ?",
                            [change.person, change.level]), change)
        case AddCard():
            db.table("cards").insert({"hash": change.card, "person_id": change.person, "active": 1, "created": ts,
                                      "revoked": None, "valid_from": None, "valid_until": None})
        case RevokeCard():
            _one(db.execute("UPDATE cards SET active = 0, revoked = ? WHERE hash = ? AND person_id = ? AND active",
                            [ts, change.card, change.person]), change)
    detail = change.detail()
    if change.source:
        detail["source"] = change.source
    append(db, actor, change.action, detail, ts)


def _one(cursor: Any, change: Change) -> None:
    if cursor.rowcount != 1:
        raise ChangeRefused(f"{change.describe()}: the store is not as planned")
