"""The durable store: people, cards, events, the audit log, the outbox, the publish sequence.

SQLite through sqlite-utils, in WAL mode with ``synchronous=FULL``. The rule the rest of the
daemon relies on: an event, its audit row and its outbox row are written in one transaction,
so nothing is published that was not first committed, and nothing committed is lost when the
broker or the daemon dies. Several events that arrive in one loop tick share one transaction
(group commit); that, not weaker sync, is where the throughput comes from.

The audit log is append-only (triggers refuse UPDATE and DELETE) and hash-chained: each row
stores the previous row's hash and SHA-256(previous hash, its own canonical JSON), so
``verify_audit`` can name the first row that was edited or removed.

The CLI opens the same file while the daemon runs; every write takes the write lock up front
(``BEGIN IMMEDIATE``), so two writers queue instead of failing, and the audit chain and the
sequence are always read and extended under that lock.

When the disk or the file fails:
  - A full disk (or any other failed write) is a ``StoreError``: the transaction is rolled back
    whole, and the caller keeps what it meant to write and tries again. The WAL cannot fill a
    small filesystem by itself: it is checkpointed every ``WAL_PAGES`` pages and cut back to
    ``WAL_LIMIT`` (``journal_size_limit``), a new schema is checkpointed at once, and a failed
    write is followed by a TRUNCATE checkpoint that gives back whatever the WAL still holds.
  - A damaged file (SQLite's CORRUPT or NOTADB) is a ``StoreDamaged``, on reads and writes:
    nothing is written past it. The daemon opens the store only after ``PRAGMA quick_check``
    passes, and ``integrity()`` runs the full check for ``audit verify``.
  - The file, its WAL and its shared-memory index are the site's records: created 0600, in a
    data dir that others may not read (refused otherwise, as the site key is).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sqlite3
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from sekisho.policies.access import Holder

from ..errors import DataError, PermissionDenied, SekishoError, StoreDamaged, StoreError
from ..timestamps import utc_now

GENESIS = "0" * 64
DB_NAME = "sekisho.db"
WAL_PAGES = 256
"""Pages in the WAL that start a checkpoint (SQLite's default, 1,000 pages, is 4 MB: a small data
filesystem fills with WAL frames before a checkpoint ever moves them into the database)."""
WAL_LIMIT = WAL_PAGES * 4096
"""Bytes the WAL is cut back to when it restarts (SQLite's default keeps its largest size)."""
_DAMAGE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes; extended ones add high bits)


def is_damage(exc: BaseException) -> bool:
    """Is this SQLite error a damaged file, as opposed to a full disk, a lock or a bug?"""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in _DAMAGE_CODES


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + canonical_json(row)).hexdigest()


# ----------------------------------------------------------------------------- migrations
# Each migration takes the schema from version N-1 to N and runs in its own transaction.
# Append new ones; never edit one that has shipped.

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


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4]


@dataclass(frozen=True)
class NewEvent:
    """An event to record and publish. The store adds ``id``, ``seq``, ``node`` and ``ts`` to
    the payload; ``columns`` are kept beside it for queries (and may name the person, which
    the payload never does)."""

    kind: str
    topic: str
    payload: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    actor: str = "daemon"


@dataclass(frozen=True)
class NewState:
    """A retained state message (door state, occupancy, alarm): an outbox row only. An empty
    ``payload`` clears the retained message. ``ts`` is added unless the payload is empty."""

    topic: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Move:
    """A person entered ``area`` (or left every area: ``area`` empty)."""

    person_id: str
    area: str


@dataclass(frozen=True)
class AlarmChange:
    """An alarm raised (``payload`` set) or cleared (``payload`` None): its row in the alarms
    table, an audit row, and the retained ``alarm/<id>`` message (empty when cleared)."""

    alarm_id: str
    kind: str
    source: str
    severity: str
    topic: str
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class CommandResult:
    """The answer to a signed command: its audit row, the command's row completed (when it was
    claimed), and the ``cmd/<node>/result`` message. ``action`` is ``command.done``,
    ``command.failed`` (the op ran and refused) or ``command.refused`` (it never ran)."""

    action: str
    actor: str
    topic: str
    payload: dict[str, Any]
    detail: dict[str, Any]


@dataclass(frozen=True)
class OutboxRow:
    n: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    rows: int
    problem: str = ""


def _may_write(data_dir: Path, db: Path) -> bool:
    """Whether this process may open the store for writing, as far as the kernel says."""
    if not os.path.isdir(data_dir):
        return True  # not a directory at all: a different problem, which StoreError names
    if not os.access(data_dir, os.W_OK | os.X_OK, effective_ids=True):
        return False
    return not os.path.lexists(db) or os.access(db, os.R_OK | os.W_OK, effective_ids=True)


class Store:
    def __init__(self, data_dir: Path, node: str, *, check: bool = False) -> None:
        """Open (or create) the node's store in ``data_dir``. With ``check``, as the daemon
        opens it, a file that fails ``PRAGMA quick_check`` is refused before anything is
        written to it."""
        self.path = Path(data_dir) / DB_NAME
        self.node = node
        _private_dir(Path(data_dir))
        try:
            # Created 0600 before SQLite sees it: SQLite gives the WAL and the shared-memory
            # file the database file's own mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        except (OSError, sqlite3.Error) as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            # sqlite says only "unable to open database file"; ask the kernel whether it was a
            # missing privilege, which has its own exit status and remedy.
            if isinstance(exc, PermissionError) or not _may_write(Path(data_dir), self.path):
                raise PermissionDenied(str(self.path)) from None
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        if check:
            problems = self.integrity(quick=True)
            if problems:
                self.db.close()
                raise StoreDamaged(f"{self.path}: the store is damaged and was not opened (nothing was written to "
                                   f"it): {problems[0]}" + (f" (and {len(problems) - 1} more problems)"
                                                            if len(problems) > 1 else "")
                                   + "; run `sekisho audit verify` for the whole check, and restore the file from a "
                                     "backup or move it aside")
        try:
            if self._migrate():
                # A new schema is some 30 pages in the WAL; in the database file they take no
                # room the WAL would want back on a disk that fills.
                self.checkpoint()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise

    def damaged_error(self, exc: BaseException) -> StoreDamaged:
        return StoreDamaged(f"{self.path}: the store is damaged ({exc}); nothing more is written to it")

    def close(self) -> None:
        self.db.close()

    def integrity(self, quick: bool = False) -> list[str]:
        """SQLite's own check of every page, table and index (``quick``: without checking that
        each index matches its table); the problems it names, or none."""
        try:
            rows = self.db.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}(100)").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [row[0] for row in rows if row[0] != "ok"]

    def checkpoint(self) -> None:
        """Copy the WAL into the database and cut the WAL to nothing: after a write failed on
        a full disk, the space the WAL held is what lets the next write through."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise StoreError(f"{self.path}: checkpoint failed: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction, holding the write lock from its first statement."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise StoreError(f"{self.path}: cannot write: {exc}") from None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.conn.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a rollback that fails on a damaged or vanished file leaves nothing to undo
            if is_damage(exc):
                raise self.damaged_error(exc) from exc
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"{self.path}: write failed, nothing of it was kept: {exc}") from exc
            raise

    # ------------------------------------------------------------------------- schema
    def schema_version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        return self.db.execute("SELECT version FROM schema_version").fetchone()[0]

    def _migrate(self) -> bool:
        """Bring the schema up to date; whether anything changed."""
        current = self.schema_version()
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.path}: store schema {current} is newer than this sekisho knows "
                             f"({len(MIGRATIONS)}); install a newer sekisho")
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction() as db:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if self.schema_version() >= version:
                    continue
                MIGRATIONS[version - 1](db)
                if version == 1:
                    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    db.execute("INSERT INTO schema_version VALUES (1)")
                else:
                    db.execute("UPDATE schema_version SET version = ?", [version])
        return current < len(MIGRATIONS)

    # ------------------------------------------------------------------------- audit
    def _audit(self, db: sqlite_utils.Database, actor: str, action: str, detail: dict[str, Any],
               ts: str) -> None:
        """Append one audit row. Must run inside ``transaction()``."""
        last = db.execute("SELECT n, hash FROM audit ORDER BY n DESC LIMIT 1").fetchone()
        n, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        body = {"n": n, "ts": ts, "actor": actor, "action": action, "detail": detail}
        digest = chain_hash(prev, body)
        db.table("audit").insert({**body, "detail": json.dumps(detail, sort_keys=True), "prev": prev,
                                  "hash": digest})
        db.table("meta").upsert({"key": "audit_head", "value": f"{n}:{digest}"}, pk="key")

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        with self.transaction() as db:
            self._audit(db, actor, action, detail, utc_now())

    def verify_audit(self) -> AuditReport:
        """Walk the chain from the first row (or from the anchor a retention purge left); name
        the first one that does not hold."""
        anchor = self.db.execute("SELECT value FROM meta WHERE key = 'audit_anchor'").fetchone()
        expected_n, prev = (int(anchor[0].split(":")[0]) + 1, anchor[0].split(":")[1]) if anchor else (1, GENESIS)
        rows = 0
        for row in self.db.query("SELECT * FROM audit ORDER BY n"):
            n = row["n"]
            if n != expected_n:
                return AuditReport(False, rows, f"row {expected_n} is missing (deleted); next present is {n}")
            if row["prev"] != prev:
                return AuditReport(False, rows, f"row {n}: does not follow row {n - 1} (a row was removed or replaced)")
            try:
                detail = json.loads(row["detail"])
            except (TypeError, ValueError):
                return AuditReport(False, rows, f"row {n}: detail is not JSON (edited)")
            body = {"n": n, "ts": row["ts"], "actor": row["actor"], "action": row["action"], "detail": detail}
            if chain_hash(prev, body) != row["hash"]:
                return AuditReport(False, rows, f"row {n}: content does not match its hash (edited)")
            prev, expected_n, rows = row["hash"], n + 1, rows + 1
        head = self.db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if head and head[0] != f"{expected_n - 1}:{prev}" and rows:
            return AuditReport(False, rows, f"the log ends at row {expected_n - 1}, but row {head[0].split(':')[0]} "
                                            "was written (rows removed from the end)")
        if head and not rows:
            return AuditReport(False, 0, "the audit log is empty, but rows were written")
        return AuditReport(True, rows)

    def purge(self, before: str, actor: str) -> tuple[int, int]:
        """Delete events and audit rows older than ``before`` (the store's UTC timestamp text):
        the retention period of the data-protection rules. The audit chain stays verifiable: the
        last purged row's number and hash become its anchor, and the purge is itself audited.
        Returns (events, audit rows) deleted."""
        with self.transaction() as db:
            events = db.execute("DELETE FROM events WHERE ts < ?", [before]).rowcount
            # A command older than this is refused as stale anyway; its id need not be kept.
            db.execute("DELETE FROM commands WHERE received < ?", [before])
            last = db.execute("SELECT n, hash FROM audit WHERE ts < ? ORDER BY n DESC LIMIT 1", [before]).fetchone()
            audit_rows = 0
            if last is not None:
                # The append-only trigger is lifted for this one statement, inside this transaction.
                db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
                audit_rows = db.execute("DELETE FROM audit WHERE n <= ?", [last[0]]).rowcount
                db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
                           "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
                db.table("meta").upsert({"key": "audit_anchor", "value": f"{last[0]}:{last[1]}"}, pk="key")
            if events or audit_rows:  # a purge that found nothing old changes nothing to audit
                self._audit(db, actor, "retention.purge", {"before": before, "events": events,
                                                           "audit_rows": audit_rows}, utc_now())
        return events, audit_rows

    # ------------------------------------------------------------------------- events
    def record(self, items: Sequence[NewEvent | NewState | Move | AlarmChange | CommandResult]) -> None:
        """Commit events (with their audit and outbox rows), state messages and moves, all in
        one transaction, in the order given."""
        if not items:
            return
        with self.transaction() as db:
            row = db.execute("SELECT last FROM sequence WHERE node = ?", [self.node]).fetchone()
            seq = start = row[0] if row else 0
            for item in items:
                ts = utc_now()
                if isinstance(item, Move):
                    if item.area:
                        db.execute("INSERT INTO locations (person_id, area, since) VALUES (?, ?, ?) ON CONFLICT"
                                   "(person_id) DO UPDATE SET area = excluded.area, since = excluded.since",
                                   [item.person_id, item.area, ts])
                    else:
                        db.execute("DELETE FROM locations WHERE person_id = ?", [item.person_id])
                    continue
                if isinstance(item, CommandResult):
                    payload = {**item.payload, "ts": ts}
                    if item.action != "command.refused":
                        db.execute("UPDATE commands SET ok = ?, error = ?, done = ? WHERE id = ?",
                                   [int(payload["ok"]), payload.get("error"), ts, payload["id"]])
                    self._audit(db, item.actor, item.action, item.detail, ts)
                    db.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                               [payload.get("id") or "", item.topic, json.dumps(payload, sort_keys=True,
                                                                                   ensure_ascii=False)])
                    continue
                if isinstance(item, AlarmChange):
                    p = item.payload
                    if p is not None:
                        # An id names a condition, so it comes back after the alarm was closed:
                        # the row is the alarm's latest life, the audit log keeps every one.
                        db.execute("INSERT INTO alarms (id, kind, source, severity, subject, raised, cleared, "
                                   "acked_by, acked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                   "ON CONFLICT(id) DO UPDATE SET "
                                   "kind = excluded.kind, source = excluded.source, severity = excluded.severity, "
                                   "subject = excluded.subject, raised = excluded.raised, cleared = excluded.cleared, "
                                   "acked_by = excluded.acked_by, acked_at = excluded.acked_at, closed = NULL",
                                   [item.alarm_id, item.kind, item.source, item.severity, p.get("subject"),
                                    p.get("raised") or ts, p.get("cleared"), p.get("acked_by"), p.get("acked_at")])
                        action = ("alarm.ack" if p.get("acked_by") else "alarm.clear" if p.get("cleared")
                                  else "alarm.raise")
                    else:
                        db.execute("UPDATE alarms SET cleared = coalesce(cleared, ?), closed = ? WHERE id = ?",
                                   [ts, ts, item.alarm_id])
                        action = "alarm.close"
                    self._audit(db, "daemon", action,
                                {"alarm": item.alarm_id, "kind": item.kind, "source": item.source}, ts)
                    item = NewState(item.topic, item.payload)
                if isinstance(item, NewState):
                    text = json.dumps({**item.payload, "ts": ts}, sort_keys=True, ensure_ascii=False) \
                        if item.payload is not None else ""
                    db.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES ('', ?, ?, 1, 1)",
                               [item.topic, text])
                    continue
                seq += 1
                event_id = str(uuid.uuid4())
                payload = {**item.payload, "id": event_id, "seq": seq, "node": self.node, "ts": ts}
                text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
                db.execute("INSERT INTO events (id, seq, ts, node, kind, payload, " + ", ".join(item.columns) +
                           ") VALUES (?, ?, ?, ?, ?, ?" + ", ?" * len(item.columns) + ")",
                           [event_id, seq, ts, self.node, item.kind, text, *item.columns.values()])
                what = payload.get("result") or payload.get("kind") or payload.get("action") or "event"
                self._audit(db, item.actor, f"{item.kind}.{what}",
                            {"event": event_id, "seq": seq, **item.columns}, ts)
                db.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                           [event_id, item.topic, text])
            if seq != start:
                db.execute("INSERT INTO sequence (node, last) VALUES (?, ?) "
                           "ON CONFLICT(node) DO UPDATE SET last = excluded.last", [self.node, seq])

    def events(self, *, since: str | None = None, until: str | None = None, door: str | None = None,
               person: str | None = None, result: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("door = ?", door),
                              ("person_id = ?", person), ("result = ?", result)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts, seq"
        return list(self.db.query(sql, args))

    def last_seq(self) -> int:
        row = self.db.execute("SELECT last FROM sequence WHERE node = ?", [self.node]).fetchone()
        return row[0] if row else 0

    # ------------------------------------------------------------------------- outbox
    def outbox_after(self, after: int, limit: int) -> list[OutboxRow]:
        rows = self.db.execute("SELECT n, topic, payload, qos, retain FROM outbox WHERE n > ? ORDER BY n LIMIT ?",
                               [after, limit]).fetchall()
        return [OutboxRow(n, topic, payload.encode(), qos, bool(retain)) for n, topic, payload, qos, retain in rows]

    def outbox_sent(self, ns: Sequence[int]) -> None:
        """Drop rows the broker acknowledged; the events table keeps the record."""
        if not ns:
            return
        with self.transaction() as db:
            db.execute(f"DELETE FROM outbox WHERE n IN ({','.join('?' * len(ns))})", list(ns))

    def claim_command(self, command_id: str, key: str, op: str) -> bool:
        """Record a command's id before it runs; False if the id was used before (a replay)."""
        with self.transaction() as db:
            return db.execute("INSERT OR IGNORE INTO commands (id, received, key, op) VALUES (?, ?, ?, ?)",
                              [command_id, utc_now(), key, op]).rowcount == 1

    def outbox_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    # ------------------------------------------------------------------------- people and cards
    def add_person(self, person_id: str, name: str, actor: str, valid_from: str | None = None,
                   valid_until: str | None = None) -> None:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise SekishoError(f"person {person_id!r} already exists")
            db.table("people").insert({"id": person_id, "name": name, "active": 1, "created": utc_now(),
                                       "valid_from": valid_from, "valid_until": valid_until})
            self._audit(db, actor, "person.add", {"person": person_id}, utc_now())

    def set_person_active(self, person_id: str, active: bool, actor: str) -> None:
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            db.execute("UPDATE people SET active = ? WHERE id = ?", [int(active), person_id])
            self._audit(db, actor, "person.enable" if active else "person.disable", {"person": person_id}, utc_now())

    def people(self) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT p.id, p.name, p.active, p.created, p.valid_from, p.valid_until, p.pin_hash IS NOT NULL AS pin, "
            "(SELECT group_concat(level, ' ') FROM person_levels l WHERE l.person_id = p.id) AS levels, "
            "(SELECT count(*) FROM cards c WHERE c.person_id = p.id AND c.active) AS cards "
            "FROM people p ORDER BY p.id"))

    def person(self, person_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM people WHERE id = ?", [person_id]))
        return rows[0] if rows else None

    def add_card(self, person_id: str, card_hash: str, actor: str, valid_from: str | None = None,
                 valid_until: str | None = None) -> None:
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (add them first: sekisho person add)")
            owner = db.execute("SELECT person_id, active FROM cards WHERE hash = ?", [card_hash]).fetchone()
            if owner and owner[0] != person_id:
                raise SekishoError(f"this card is already enrolled to {owner[0]!r}; revoke it there first")
            if owner and owner[1]:
                raise SekishoError(f"this card is already enrolled to {person_id!r}")
            db.table("cards").upsert({"hash": card_hash, "person_id": person_id, "active": 1, "created": utc_now(),
                                      "revoked": None, "valid_from": valid_from, "valid_until": valid_until}, pk="hash")
            self._audit(db, actor, "card.add", {"person": person_id, "card": card_hash[:12]}, utc_now())

    def revoke_card(self, hash_prefix: str, actor: str) -> str:
        """Revoke the one active card whose hash starts with ``hash_prefix``; returns its hash."""
        with self.transaction() as db:
            rows = db.execute("SELECT hash FROM cards WHERE hash LIKE ? AND active", [hash_prefix + "%"]).fetchall()
            if not rows:
                raise DataError(f"no active card whose hash starts with {hash_prefix!r} (see: sekisho card list)")
            if len(rows) > 1:
                raise SekishoError(f"{len(rows)} cards start with {hash_prefix!r}; give more digits")
            card_hash = rows[0][0]
            db.execute("UPDATE cards SET active = 0, revoked = ? WHERE hash = ?", [utc_now(), card_hash])
            self._audit(db, actor, "card.revoke", {"card": card_hash[:12]}, utc_now())
            return card_hash

    def cards(self, person_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT hash, person_id, active, created, revoked FROM cards"
        return list(self.db.query(sql + (" WHERE person_id = ?" if person_id else "") + " ORDER BY person_id, created",
                                  [person_id] if person_id else []))

    def card_holder(self, card_hash: str) -> Holder | None:
        """Everything the door decision needs about a card and its holder, or None if the card
        was never enrolled; the validity dates are the later start and the earlier end of the
        person's and the card's."""
        row = self.db.execute(
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

    # ------------------------------------------------------------------------- access data
    def grant_level(self, person_id: str, level: str, actor: str, *, revoke: bool = False) -> None:
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            held = db.execute("SELECT 1 FROM person_levels WHERE person_id = ? AND level = ?",
                              [person_id, level]).fetchone()
            if revoke:
                if not held:
                    raise SekishoError(f"{person_id!r} does not hold level {level!r}")
                db.execute("DELETE FROM person_levels WHERE person_id = ? AND level = ?", [person_id, level])
            elif held:
                raise SekishoError(f"{person_id!r} already holds level {level!r}")
            else:
                db.execute("INSERT INTO person_levels (person_id, level) VALUES (?, ?)", [person_id, level])
            self._audit(db, actor, "level.revoke" if revoke else "level.grant", {"person": person_id, "level": level},
                        utc_now())

    def set_pin_hash(self, person_id: str, pin_hash: str | None, actor: str) -> None:
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", [person_id]).fetchone():
                raise DataError(f"no person {person_id!r} (see: sekisho person list)")
            db.execute("UPDATE people SET pin_hash = ? WHERE id = ?", [pin_hash, person_id])
            self._audit(db, actor, "pin.set" if pin_hash else "pin.clear", {"person": person_id}, utc_now())

    def pin_hash(self, person_id: str) -> str | None:
        row = self.db.execute("SELECT pin_hash FROM people WHERE id = ?", [person_id]).fetchone()
        return row[0] if row else None

    def locations(self) -> dict[str, tuple[str, str]]:
        """person id -> (area, since) for everyone recorded inside some area."""
        return {r[0]: (r[1], r[2]) for r in self.db.execute("SELECT person_id, area, since FROM locations")}

    def muster(self, area: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT l.area, l.person_id, p.name, l.since FROM locations l JOIN people p ON p.id = l.person_id" +
               (" WHERE l.area = ?" if area else "") + " ORDER BY l.area, p.name")
        return list(self.db.query(sql, [area] if area else []))

    def door_modes(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT door, mode FROM door_modes")}

    def set_door_mode(self, door: str, mode: str, actor: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO door_modes (door, mode, since, actor) VALUES (?, ?, ?, ?) ON CONFLICT(door) "
                       "DO UPDATE SET mode = excluded.mode, since = excluded.since, actor = excluded.actor",
                       [door, mode, utc_now(), actor])
            self._audit(db, actor, "door.mode", {"door": door, "mode": mode}, utc_now())

    def active_alarms(self) -> list[dict[str, Any]]:
        """Alarms not closed: raised, or cleared and waiting for a person."""
        return list(self.db.query("SELECT * FROM alarms WHERE closed IS NULL ORDER BY raised"))


def _private_dir(path: Path) -> None:
    """The data dir holds the records and the site key: made 0700, and refused when others
    may read or enter it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot use the data dir: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(f"{path}: the data dir is open to others (mode {stat.S_IMODE(mode):04o}); "
                         f"run: chmod 700 {path}")
