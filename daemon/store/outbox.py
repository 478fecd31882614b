"""The publisher's side of the outbox: the committed messages not yet acknowledged by the broker,
read in order and dropped once acknowledged.

The rows are written by ``Record.record``, in the transaction of the event they carry (that is
the guarantee); this side only reads and deletes them, so the publisher is given this and
nothing that could change the record.

A row the broker acknowledged leaves this view at once (``sent``) and the file lazily: its
DELETE rides along with the next transaction, whatever it writes (``Database.riders``), or,
on a node with nothing else to write, ``forget`` commits it without a sync of its own. So a tap
costs one fsync, its record's, not two. A crash may lose such a delete; the row then goes out
once more after the restart, a duplicate with the same ``id``, which QoS 1 allows and which
subscribers and the recorder drop by ``id``. Nothing committed is lost by it: an event's own
rows are still committed with a full sync before they are offered to the broker.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .database import Database

FORGET_MAX = 500
"""Acknowledged rows kept for a later delete (``pending``) before ``sent`` says to forget now:
what a crash of the daemon would send again, while deletes succeed (one put off on a full disk
keeps its rows pending until one does)."""


@dataclass(frozen=True)
class OutboxRow:
    n: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.pending: set[int] = set()
        """Rows the broker acknowledged that are still in the file: out of every answer here."""
        database.riders.append(self._ride)

    def after(self, after: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` rows numbered above ``after``, in order. The acknowledged ones still in
        the file are skipped here, not in the SQL: however many wait (a delete put off again and
        again on a full disk), no statement outgrows SQLite's limit on parameters."""
        skip = sum(1 for n in self.pending if n > after)
        rows = self.database.db.conn.execute(
            "SELECT n, topic, payload, qos, retain FROM outbox WHERE n > ? ORDER BY n LIMIT ?",
            [after, limit + skip]).fetchall()
        return [OutboxRow(n, topic, payload.encode(), qos, bool(retain))
                for n, topic, payload, qos, retain in rows if n not in self.pending][:limit]

    def sent(self, ns: Sequence[int]) -> bool:
        """Rows the broker acknowledged: gone from this view now, from the file with the next
        transaction. True when so many wait that ``forget`` should run now."""
        self.pending.update(ns)
        return len(self.pending) >= FORGET_MAX

    def forget(self, durable: bool = False) -> None:
        """Delete the acknowledged rows no other transaction took along; without a sync unless
        ``durable`` (at a clean stop, which then sends nothing twice)."""
        if self.pending:
            with self.database.transaction(durable=durable):
                pass  # the delete is the rider's

    def count(self) -> int:
        return max(0, self.database.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] - len(self.pending))

    def _ride(self, conn: sqlite3.Connection) -> Callable[[], None]:
        taken = list(self.pending)
        conn.executemany("DELETE FROM outbox WHERE n = ?", [(n,) for n in taken])
        return lambda: self.pending.difference_update(taken)
