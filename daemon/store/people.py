"""Who may come in: people, their cards (as keyed hashes), access levels and PIN hashes, the
enrolment data the CLI writes and the door and desk decisions read.

Apart from the record (``record.py``) because it changes for other reasons: an officer enrols
and revokes (with the CLI, or with a tap the daemon takes for enrolment), while the record grows
with every decision. The door, desk and approval controllers only read it. Every change is
audited in its own transaction; a roster's many changes (``apply``, planned by roster.py against
``snapshot``) in one, with an audit row each. How a change is written and audited is in
``enrolment.py``, shared by both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sekisho.policies.access import Holder

from ..errors import DataError, SekishoError
from ..timestamps import utc_now
from . import enrolment
from .audit import append
from .database import Database
from .enrolment import AddPerson, Change, ChangeRefused, Enrolment, Grant


class People:
    def __init__(self, database: Database) -> None:
        self.database = database

    # ------------------------------------------------------------------------- people
    def add_person(self, person_id: str, name: str, actor: str, valid_from: str | None = None,
                   valid_until: str | None = None) -> None:
        with self.database.transaction() as db:
            if db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise SekishoError(f"person {person_id!r} already exists")
            enrolment.write(db, AddPerson(person_id, name, valid_from, valid_until), actor, utc_now())

    def set_person_active(self, person_id: str, active: bool, actor: str) -> None:
        with self.database.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            db.execute("UPDATE people SET active = ? WHERE id = ?", [int(active), person_id])
            append(db, actor, "person.enable" if active else "person.disable", {"person": person_id}, utc_now())

    def people(self) -> list[dict[str, Any]]:
        return list(self.database.db.query(
            "SELECT p.id, p.name, p.active, p.created, p.valid_from, p.valid_until, p.pin_hash IS NOT NULL AS pin, "
            "(SELECT group_concat(level, ' ') FROM person_levels l WHERE l.person_id = p.id) AS levels, "
            "(SELECT count(*) FROM cards c WHERE c.person_id = p.id AND c.active) AS cards "
            "FROM people p ORDER BY p.id"))

    def person(self, person_id: str) -> dict[str, Any] | None:
        rows = list(self.database.db.query("SELECT * FROM people WHERE id = ?", [person_id]))
        return rows[0] if rows else None

    # ------------------------------------------------------------------------- many at once
    def snapshot(self) -> Enrolment:
        """Everyone enrolled, their levels and cards, read in one go: what a roster is planned against."""
        db = self.database.db
        db.execute("BEGIN")  # one read transaction: no write lands between its three queries
        try:
            return enrolment.read(db)
        finally:
            db.execute("ROLLBACK")

    def apply(self, changes: list[Change], actor: str, *, planned_on: Enrolment) -> None:
        """Write ``changes`` in one transaction, each with its audit row, if the enrolment is
        still ``planned_on``; otherwise nothing, and a ``SekishoError`` saying to plan again."""
        with self.database.transaction() as db:
            if enrolment.read(db) != planned_on:
                raise SekishoError("the people or cards changed while the roster was read (another command "
                                   "enrolled, revoked or granted); nothing was imported: run the import again")
            ts = utc_now()
            try:
                for change in changes:
                    enrolment.write(db, change, actor, ts)
            except ChangeRefused as exc:
                raise SekishoError(f"{exc}; nothing was imported") from None

    # ------------------------------------------------------------------------- cards
    def add_card(self, person_id: str, card_hash: str, actor: str, valid_from: str | None = None,
                 valid_until: str | None = None) -> None:
        with self.database.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (add them first: sekisho person add)")
            owner = db.execute("SELECT person_id, active FROM cards WHERE hash = ?", [card_hash]).fetchone()
            if owner and owner[0] != person_id:
                raise SekishoError(f"this card is already enrolled to {owner[0]!r}; revoke it there first")
            if owner and owner[1]:
                raise SekishoError(f"this card is already enrolled to {person_id!r}")
            db.table("cards").upsert({"hash": card_hash, "person_id": person_id, "active": 1, "created": utc_now(),
                                      "revoked": None, "valid_from": valid_from, "valid_until": valid_until}, pk="hash")
            append(db, actor, "card.add", {"person": person_id, "card": card_hash[:12]}, utc_now())

    def revoke_card(self, hash_prefix: str, actor: str) -> str:
        """Revoke the one active card whose hash starts with ``hash_prefix``; returns its hash."""
        with self.database.transaction() as db:
            rows = db.execute("SELECT hash FROM cards WHERE hash LIKE ? AND active", [hash_prefix + "%"]).fetchall()
            if not rows:
                raise DataError(f"no active card whose hash starts with {hash_prefix!r} (see: sekisho card list)")
            if len(rows) > 1:
                raise SekishoError(f"{len(rows)} cards start with {hash_prefix!r}; give more digits")
            card_hash: str = rows[0][0]
            db.execute("UPDATE cards SET active = 0, revoked = ? WHERE hash = ?", [utc_now(), card_hash])
            append(db, actor, "card.revoke", {"card": card_hash[:12]}, utc_now())
            return card_hash

    def cards(self, person_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT hash, person_id, active, created, revoked FROM cards"
        return list(self.database.db.query(
            sql + (" WHERE person_id = ?" if person_id else "") + " ORDER BY person_id, created",
            [person_id] if person_id else []))

    def card_holder(self, card_hash: str) -> Holder | None:
        """Everything the door decision needs about a card and its holder, or None if the card
        was never enrolled; the validity dates are the later start and the earlier end of the
        person's and the card's."""
        row = self.database.db.execute(
            "SELECT c.person_id, c.active, p.active, c.valid_from, c.valid_until, p.valid_from, p.valid_until, "
            "p.pin_hash IS NOT NULL, (SELECT group_concat(level, char(31)) FROM person_levels l "
            "WHERE l.person_id = c.person_id) FROM cards c JOIN people p ON p.id = c.person_id WHERE c.hash = ?",
            [card_hash]).fetchone()
        if row is None:
            return None
        starts = [d for d in (row[3], row[5]) if d]
        ends = [d for d in (row[4], row[6]) if d]
        return Holder(person_id=row[0], card_active=bool(row[1]), person_active=bool(row[2]),
                      levels=frozenset(row[8].split("\x1f")) if row[8] else frozenset(), has_pin=bool(row[7]),
                      valid_from=dt.date.fromisoformat(max(starts)) if starts else None,
                      valid_until=dt.date.fromisoformat(min(ends)) if ends else None)

    # ------------------------------------------------------------------------- levels and PINs
    def grant_level(self, person_id: str, level: str, actor: str, *, revoke: bool = False) -> None:
        with self.database.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            held = db.execute("SELECT 1 FROM person_levels WHERE person_id = ? AND level = ?",
                              [person_id, level]).fetchone()
            if revoke and not held:
                raise SekishoError(f"{person_id!r} does not hold level {level!r}")
            if held and not revoke:
                raise SekishoError(f"{person_id!r} already holds level {level!r}")
            enrolment.write(db, Grant(person_id, level, revoke), actor, utc_now())

    def set_pin_hash(self, person_id: str, pin_hash: str | None, actor: str) -> None:
        with self.database.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            db.execute("UPDATE people SET pin_hash = ? WHERE id = ?", [pin_hash, person_id])
            append(db, actor, "pin.set" if pin_hash else "pin.clear", {"person": person_id}, utc_now())

    def pin_hash(self, person_id: str) -> str | None:
        row = self.database.db.execute("SELECT pin_hash FROM people WHERE id = ?", [person_id]).fetchone()
        return row[0] if row else None
