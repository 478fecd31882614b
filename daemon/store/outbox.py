"""The publisher's side of the outbox: the committed messages not yet acknowledged by the broker,
read in order and dropped once acknowledged.

The rows are written by ``Record.record``, in the transaction of the event they carry (that is
the guarantee); this side only reads and deletes them, so the publisher is given this and
nothing that could change the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .database import Database


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

    def after(self, after: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` rows numbered above ``after``, in order."""
        rows = self.database.db.execute("SELECT n, topic, payload, qos, retain FROM outbox WHERE n > ? ORDER BY n "
                                        "LIMIT ?", [after, limit]).fetchall()
        return [OutboxRow(n, topic, payload.encode(), qos, bool(retain)) for n, topic, payload, qos, retain in rows]

    def sent(self, ns: Sequence[int]) -> None:
        """Drop rows the broker acknowledged; the events table keeps the record."""
        if not ns:
            return
        with self.database.transaction() as db:
            db.execute(f"DELETE FROM outbox WHERE n IN ({','.join('?' * len(ns))})", list(ns))

    def count(self) -> int:
        return self.database.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
