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
"""Most acknowledged rows kept for a later delete (``pending``): past it, ``sent`` says to
forget now, which bounds both the SQL that skips them and what a crash would send again."""


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
        """Up to ``limit`` rows numbered above ``after``, in order."""
        skip = sorted(n for n in self.pending if n > after)
        rows = self.database.db.conn.execute(
            "SELECT n, topic, payload, qos, retain FROM outbox WHERE n > ?"
            + (f" AND n NOT IN ({','.join('?' * len(skip))})" if skip else "") + " ORDER BY n LIMIT ?",
            [after, *skip, limit]).fetchall()
        return [OutboxRow(n, topic, payload.encode(), qos, bool(retain)) for n, topic, payload, qos, retain in rows]

    def sent(self, ns: Sequence[int]) -> bool:
        """Rows the broker acknowledged: gone from this view now, from the file with the next
        transaction. True when so many wait that ``forget`` should run now."""
        self.pending.update(ns)
        return len(self.pending) >= FORGET_MAX

    def forget(self) -> None:
        """Delete the acknowledged rows no other transaction took along, without a sync."""
        if self.pending:
            with self.database.transaction(durable=False):
                pass  # the delete is the rider's

    def count(self) -> int:
        return max(0, self.database.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] - len(self.pending))

    def _ride(self, conn: sqlite3.Connection) -> Callable[[], None]:
        taken = list(self.pending)
        if taken:
            conn.execute(f"DELETE FROM outbox WHERE n IN ({','.join('?' * len(taken))})", taken)
        return lambda: self.pending.difference_update(taken)
