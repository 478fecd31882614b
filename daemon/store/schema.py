"""The schema's history: each migration takes the store from version N-1 to N.

Kept apart from the code that opens the file (``database.py``, which runs them, each in its own
transaction) because this list only grows: append new ones; never edit one that has shipped,
since a store created by it is already out there.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db.table("people").create({"id": str, "name": str, "active": int, "created": str}, pk="id")
    db.table("cards").create({"hash": str, "person_id": str, "active": int, "created": str, "revoked": str},
                             pk="hash", foreign_keys=[("person_id", "people", "id")])
    db.table("cards").create_index(["person_id"])
    db.table("events").create({"id": str, "seq": int, "ts": str, "node": str, "kind": str, "door": str,
                               "reader": str, "direction": str, "person_id": str, "result": str, "reason": str,
                               "rule": str, "card": str, "payload": str}, pk="id")
    for cols in (["ts"], ["person_id", "ts"], ["door", "ts"]):
        db.table("events").create_index(cols)
    db.table("audit").create({"n": int, "ts": str, "actor": str, "action": str, "detail": str, "prev": str,
                              "hash": str}, pk="n")
    db.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    # AUTOINCREMENT: a row number is never reused after the outbox empties, so the publisher's
    # "rows after n" cursor can never skip a new row.
    db.execute("CREATE TABLE outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, "
               "topic TEXT NOT NULL, payload TEXT NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)")
    db.table("sequence").create({"node": str, "last": int}, pk="node")
    db.table("meta").create({"key": str, "value": str}, pk="key")


def _v2(db: sqlite_utils.Database) -> None:
    """Doors: validity dates, PINs, access levels, where people are, door modes, alarms."""
    for table in ("people", "cards"):
        db.table(table).add_column("valid_from", str)
        db.table(table).add_column("valid_until", str)
    db.table("people").add_column("pin_hash", str)
    db.table("person_levels").create({"person_id": str, "level": str}, pk=("person_id", "level"),
                                     foreign_keys=[("person_id", "people", "id")])
    db.table("locations").create({"person_id": str, "area": str, "since": str}, pk="person_id",
                                 foreign_keys=[("person_id", "people", "id")])
    db.table("door_modes").create({"door": str, "mode": str, "since": str, "actor": str}, pk="door")
    db.table("alarms").create({"id": str, "kind": str, "source": str, "severity": str, "raised": str, "cleared": str,
                               "acked_by": str}, pk="id")


def _v3(db: sqlite_utils.Database) -> None:
    """Signed commands: every id ever run, so that a replay is refused even after a restart."""
    db.table("commands").create({"id": str, "received": str, "key": str, "op": str, "ok": int, "error": str,
                                 "done": str}, pk="id")
    db.table("commands").create_index(["received"])


def _v4(db: sqlite_utils.Database) -> None:
    """Alarms with a life cycle: whom an alarm is about, when it was acknowledged and closed."""
    for column in ("subject", "acked_at", "closed"):
        db.table("alarms").add_column(column, str)
    db.execute("UPDATE alarms SET closed = cleared WHERE cleared IS NOT NULL")  # cleared was closed until now


def _v5(db: sqlite_utils.Database) -> None:
    """Alarms wait for a person: what they noted when they acknowledged it."""
    db.table("alarms").add_column("ack_note", str)


def _v6(db: sqlite_utils.Database) -> None:
    """Enrolment from the recorder: the signed snapshot this node decides with, by site (one row;
    keyed by site so that a node moved to another site starts again from version 0)."""
    db.table("enrolment_version").create({"site": str, "version": int, "key": str, "sha256": str, "created": str,
                                          "applied": str}, pk="site")


def _v7(db: sqlite_utils.Database) -> None:
    """Replay (``outbox.replay``): the topic each event was first published on, beside its payload.
    Left empty for the events from before: their topic is derived from the row when one is
    replayed (daemon/outbox_replay.py), since the site's id, the first part of every topic, is the
    config's and not the store's."""
    db.table("events").add_column("topic", str)
    db.table("events").create_index(["node", "seq"])


def _v8(db: sqlite_utils.Database) -> None:
    """The site's policy from the enrolment snapshot (format 2): its schedules by name and its
    holidays, as the snapshot's JSON, by site (one row), written in the apply's transaction."""
    db.table("enrolment_policy").create({"site": str, "schedules": str, "holidays": str}, pk="site")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
