"""The audit chain: how a row is appended, how a retention purge cuts the oldest rows off, and
how the whole chain is checked.

The audit log is append-only (triggers refuse UPDATE and DELETE) and hash-chained: each row
stores the previous row's hash and SHA-256(previous hash, its own canonical JSON), so ``verify``
can name the first row that was edited or removed. The writer, the cut and the check live in one
module because they must agree on that form, byte for byte; ``People`` and ``Record`` append
inside their own transactions, so every change and its audit row are committed together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

GENESIS = "0" * 64


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + canonical_json(row)).hexdigest()


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    rows: int
    problem: str = ""


def append(db: sqlite_utils.Database, actor: str, action: str, detail: dict[str, Any], ts: str) -> None:
    """Append one audit row. Must run inside ``Database.transaction()``."""
    # Plain statements on the connection, which sqlite3 prepares once and keeps: sqlite-utils'
    # insert and upsert look the table up and open a savepoint on every call, on every tap.
    conn = db.conn
    last = conn.execute("SELECT n, hash FROM audit ORDER BY n DESC LIMIT 1").fetchone()
    n, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    body = {"n": n, "ts": ts, "actor": actor, "action": action, "detail": detail}
    digest = chain_hash(prev, body)
    conn.execute("INSERT INTO audit (n, ts, actor, action, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [n, ts, actor, action, json.dumps(detail, sort_keys=True), prev, digest])
    conn.execute("INSERT INTO meta (key, value) VALUES ('audit_head', ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [f"{n}:{digest}"])


def cut(db: sqlite_utils.Database, before: str) -> int:
    """Delete the rows older than ``before``, keeping the chain verifiable: the last deleted
    row's number and hash become its anchor. Must run inside ``Database.transaction()``; the
    number of rows deleted."""
    last = db.execute("SELECT n, hash FROM audit WHERE ts < ? ORDER BY n DESC LIMIT 1", [before]).fetchone()
    if last is None:
        return 0
    # The append-only trigger is lifted for this one statement, inside this transaction.
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    rows: int = db.execute("DELETE FROM audit WHERE n <= ?", [last[0]]).rowcount
    db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    db.table("meta").upsert({"key": "audit_anchor", "value": f"{last[0]}:{last[1]}"}, pk="key")
    return rows


def verify(db: sqlite_utils.Database) -> AuditReport:
    """Walk the chain from the first row (or from the anchor a retention purge left); name
    the first one that does not hold."""
    anchor = db.execute("SELECT value FROM meta WHERE key = 'audit_anchor'").fetchone()
    expected_n, prev = (int(anchor[0].split(":")[0]) + 1, anchor[0].split(":")[1]) if anchor else (1, GENESIS)
    rows = 0
    for row in db.query("SELECT * FROM audit ORDER BY n"):
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
    head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if head and head[0] != f"{expected_n - 1}:{prev}" and rows:
        return AuditReport(False, rows, f"the log ends at row {expected_n - 1}, but row {head[0].split(':')[0]} "
                                        "was written (rows removed from the end)")
    if head and not rows:
        return AuditReport(False, 0, "the audit log is empty, but rows were written")
    return AuditReport(True, rows)
