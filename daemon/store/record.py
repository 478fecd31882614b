"""What happened on this node, in order: events with their audit and outbox rows, moves, door
modes, alarms and signed commands, the retention purge, and the state a restart reads back.

The rule the rest of the daemon relies on: an event, its audit row and its outbox row are
written in one transaction (``Record.record``), so nothing is published that was not first
committed, and nothing committed is lost when the broker or the daemon dies. Several events that
arrive in one loop tick share one transaction (group commit, ``daemon/commits.py``); that, not
weaker sync, is where the throughput comes from. The row types below are what the controllers
queue for that transaction.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..timestamps import utc_now
from .audit import append, cut
from .database import Database


@dataclass(frozen=True)
class NewEvent:
    """An event to record and publish. ``Record.record`` adds ``id``, ``seq``, ``node`` and ``ts``
    to the payload; ``columns`` are kept beside it for queries (and may name the person, which
    the payload never does)."""

    kind: str
    topic: str
    payload: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    actor: str = "daemon"
    audit: str = ""
    """The audit row's action where the contract names it (``print.release``); empty: ``<kind>.<what>``."""


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
    """One step of an alarm's life (alarms.py): its row in the alarms table (the id's latest
    life), an audit row (``action`` by ``actor``: ``alarm.raise``, ``alarm.clear``, ``alarm.ack``),
    and the retained ``alarm/<id>`` message: ``payload``, or empty once ``closed``."""

    alarm_id: str
    kind: str
    source: str
    severity: str
    topic: str
    payload: dict[str, Any]
    action: str = "alarm.raise"
    actor: str = "daemon"
    closed: bool = False


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


Item = NewEvent | NewState | Move | AlarmChange | CommandResult
"""Anything ``Record.record`` commits."""


Span = tuple[int, int]
"""Seqs ``first`` to ``last``, both included."""


@dataclass(frozen=True)
class Replayed:
    """What ``Record.replay`` did with a range of seqs: how many events it queued, and the spans
    of those it did not, by why."""

    queued: int
    last_seq: int
    """The node's last seq when it replayed."""
    purged: tuple[Span, ...]
    """At most ``last_seq`` but no longer in the store: deleted by the retention purge."""
    beyond: tuple[Span, ...]
    """After ``last_seq``: never recorded (none or one span)."""
    unreplayable: tuple[Span, ...]
    """In the store, from before it kept topics, with a topic that cannot be told."""


class _Spans:
    """Seqs gathered in increasing order, as spans (a purge takes whole stretches of time)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def add(self, first: int, last: int) -> None:
        if first > last:
            return
        if self.spans and self.spans[-1][1] + 1 == first:
            self.spans[-1] = (self.spans[-1][0], last)
        else:
            self.spans.append((first, last))


def _retain(conn: sqlite3.Connection, topic: str, states: Sequence[dict[str, Any] | None], ts: str) -> None:
    """Retained messages for the outbox, in order; None is the empty message that clears a topic."""
    for state in states:
        text = json.dumps({**state, "ts": ts}, sort_keys=True, ensure_ascii=False) if state is not None else ""
        conn.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES ('', ?, ?, 1, 1)",
                     [topic, text])


class Record:
    def __init__(self, database: Database, node: str) -> None:
        self.database = database
        self.node = node
        """Whose events these are: the ``node`` of each payload, and whose sequence ``seq`` continues."""

    def record(self, items: Sequence[Item]) -> None:
        """Commit events (with their audit and outbox rows), state messages and moves, all in
        one transaction, in the order given."""
        if not items:
            return
        with self.database.transaction() as db:
            # Plain statements on sqlite3's own connection, prepared once and kept by it: this is
            # the tap path. sqlite-utils keeps the schema, the migrations and the command line.
            conn = db.conn
            row = conn.execute("SELECT last FROM sequence WHERE node = ?", [self.node]).fetchone()
            seq = start = row[0] if row else 0
            for item in items:
                ts = utc_now()
                if isinstance(item, Move):
                    if item.area:
                        conn.execute("INSERT INTO locations (person_id, area, since) VALUES (?, ?, ?) ON CONFLICT"
                                   "(person_id) DO UPDATE SET area = excluded.area, since = excluded.since",
                                   [item.person_id, item.area, ts])
                    else:
                        conn.execute("DELETE FROM locations WHERE person_id = ?", [item.person_id])
                    continue
                if isinstance(item, CommandResult):
                    payload = {**item.payload, "ts": ts}
                    if item.action != "command.refused":
                        conn.execute("UPDATE commands SET ok = ?, error = ?, done = ? WHERE id = ?",
                                   [int(payload["ok"]), payload.get("error"), ts, payload["id"]])
                    append(db, item.actor, item.action, item.detail, ts)
                    conn.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                               [payload.get("id") or "", item.topic, json.dumps(payload, sort_keys=True,
                                                                                   ensure_ascii=False)])
                    continue
                if isinstance(item, AlarmChange):
                    p = item.payload
                    # An id names a condition, so it comes back after the alarm was closed: the
                    # row is the alarm's latest life, the audit log keeps every one.
                    conn.execute("INSERT INTO alarms (id, kind, source, severity, subject, raised, cleared, acked_by, "
                               "acked_at, ack_note, closed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                               "ON CONFLICT(id) DO UPDATE SET "
                               "kind = excluded.kind, source = excluded.source, severity = excluded.severity, "
                               "subject = excluded.subject, raised = excluded.raised, cleared = excluded.cleared, "
                               "acked_by = excluded.acked_by, acked_at = excluded.acked_at, "
                               "ack_note = excluded.ack_note, closed = excluded.closed",
                               [item.alarm_id, item.kind, item.source, item.severity, p.get("subject"),
                                p.get("raised") or ts, p.get("cleared"), p.get("acked_by"), p.get("acked_at"),
                                p.get("ack_note"), ts if item.closed else None])
                    detail: dict[str, Any] = {"alarm": item.alarm_id, "kind": item.kind, "source": item.source}
                    if item.action == "alarm.ack" and p.get("ack_note"):
                        detail["note"] = p["ack_note"]
                    if item.closed:
                        detail["closed"] = True
                    append(db, item.actor, item.action, detail, ts)
                    # A closing step is still said (who acknowledged it, when it cleared) before
                    # the empty retained message takes the alarm off the broker.
                    _retain(conn, item.topic, [p, None] if item.closed else [p], ts)
                    continue
                if isinstance(item, NewState):
                    _retain(conn, item.topic, [item.payload], ts)
                    continue
                seq += 1
                event_id = str(uuid.uuid4())
                payload = {**item.payload, "id": event_id, "seq": seq, "node": self.node, "ts": ts}
                text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
                conn.execute("INSERT INTO events (id, seq, ts, node, kind, topic, payload, " + ", ".join(item.columns) +
                           ") VALUES (?, ?, ?, ?, ?, ?, ?" + ", ?" * len(item.columns) + ")",
                           [event_id, seq, ts, self.node, item.kind, item.topic, text, *item.columns.values()])
                what = payload.get("result") or payload.get("kind") or payload.get("action") or "event"
                append(db, item.actor, item.audit or f"{item.kind}.{what}",
                            {"event": event_id, "seq": seq, **item.columns}, ts)
                conn.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                           [event_id, item.topic, text])
            if seq != start:
                conn.execute("INSERT INTO sequence (node, last) VALUES (?, ?) "
                           "ON CONFLICT(node) DO UPDATE SET last = excluded.last", [self.node, seq])

    def events(self, *, since: str | None = None, until: str | None = None, door: str | None = None,
               person: str | None = None, result: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("door = ?", door),
                              ("person_id = ?", person), ("result = ?", result)):
            if value is not None:
                where.append(clause)
                args.append(value)
        # In seq order, the order they happened in: after the wall clock steps back, ts does not
        # say it (docs/time.md).
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        return list(self.database.db.query(sql, args))

    def replay(self, first: int, last: int, topic_of: Callable[[str, str], str | None], actor: str) -> Replayed:
        """Queue this node's events ``first`` to ``last`` (seqs, inclusive) in the outbox again, in
        seq order, each with the payload and id it was recorded with: the publisher sends them as
        it sends everything. No seq is taken and no event's audit row is written again; the replay
        itself is one audit row (``outbox.replay``), in the same transaction. ``topic_of`` names
        the topic of an event recorded before the store kept topics (kind, payload text), or
        None when it cannot be told."""
        ts = utc_now()
        with self.database.transaction() as db:
            row = db.execute("SELECT last FROM sequence WHERE node = ?", [self.node]).fetchone()
            last_seq = row[0] if row else 0
            purged, unreplayable = _Spans(), _Spans()
            expected, queued = first, 0
            rows = db.execute("SELECT seq, id, kind, topic, payload FROM events WHERE node = ? AND seq BETWEEN ? AND ? "
                              "ORDER BY seq", [self.node, first, min(last, last_seq)])
            for seq, event_id, kind, topic, payload in rows:
                if seq < expected:
                    continue  # a seq held twice (a store put together by hand): sent once
                purged.add(expected, seq - 1)
                expected = seq + 1
                topic = topic or topic_of(kind, payload)
                if topic is None:
                    unreplayable.add(seq, seq)
                    continue
                db.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                           [event_id, topic, payload])
                queued += 1
            purged.add(expected, min(last, last_seq))
            append(db, actor, "outbox.replay", {"from_seq": first, "to_seq": last, "queued": queued}, ts)
        beyond = (max(first, last_seq + 1), last) if last > last_seq else None
        return Replayed(queued=queued, last_seq=last_seq, purged=tuple(purged.spans),
                        beyond=(beyond,) if beyond else (), unreplayable=tuple(unreplayable.spans))

    def last_seq(self) -> int:
        row = self.database.db.execute("SELECT last FROM sequence WHERE node = ?", [self.node]).fetchone()
        return row[0] if row else 0

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        """An audited action that is no event and changes nothing else (an operator's momentary
        unlock, a minute's count of refused commands)."""
        with self.database.transaction() as db:
            append(db, actor, action, detail, utc_now())

    def claim_command(self, command_id: str, key: str, op: str) -> bool:
        """Record a command's id before it runs; False if the id was used before (a replay)."""
        with self.database.transaction() as db:
            return db.execute("INSERT OR IGNORE INTO commands (id, received, key, op) VALUES (?, ?, ?, ?)",
                              [command_id, utc_now(), key, op]).rowcount == 1

    def purge(self, before: str, actor: str) -> tuple[int, int]:
        """Delete events and audit rows older than ``before`` (the store's UTC timestamp text):
        the retention period of the data-protection rules. The audit chain stays verifiable
        (``audit.cut`` leaves its anchor), and the purge is itself audited. Returns (events,
        audit rows) deleted."""
        with self.database.transaction() as db:
            events = db.execute("DELETE FROM events WHERE ts < ?", [before]).rowcount
            # A command older than this is refused as stale anyway; its id need not be kept.
            db.execute("DELETE FROM commands WHERE received < ?", [before])
            audit_rows = cut(db, before)
            if events or audit_rows:  # a purge that found nothing old changes nothing to audit
                append(db, actor, "retention.purge", {"before": before, "events": events,
                                                      "audit_rows": audit_rows}, utc_now())
        return events, audit_rows

    # ------------------------------------------------------------------------- what a restart reads back
    def locations(self) -> dict[str, tuple[str, str]]:
        """person id -> (area, since) for everyone recorded inside some area."""
        return {r[0]: (r[1], r[2]) for r in self.database.db.execute("SELECT person_id, area, since FROM locations")}

    def muster(self, area: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT l.area, l.person_id, p.name, l.since FROM locations l JOIN people p ON p.id = l.person_id" +
               (" WHERE l.area = ?" if area else "") + " ORDER BY l.area, p.name")
        return list(self.database.db.query(sql, [area] if area else []))

    def print_job_held(self, job: int, submitted: str) -> bool:
        """Was this print job (its CUPS id and when CUPS took it: ids start again with a new
        spool) published ``held`` before? A restart then does not say it again."""
        return self.database.db.execute(
            "SELECT 1 FROM events WHERE kind = 'print' AND result = 'held' AND ts >= ? AND "
            "json_extract(payload, '$.job') = ? AND json_extract(payload, '$.submitted') = ? LIMIT 1",
            [submitted, job, submitted]).fetchone() is not None

    def door_modes(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.database.db.execute("SELECT door, mode FROM door_modes")}

    def set_door_mode(self, door: str, mode: str, actor: str) -> None:
        with self.database.transaction() as db:
            db.execute("INSERT INTO door_modes (door, mode, since, actor) VALUES (?, ?, ?, ?) ON CONFLICT(door) "
                       "DO UPDATE SET mode = excluded.mode, since = excluded.since, actor = excluded.actor",
                       [door, mode, utc_now(), actor])
            append(db, actor, "door.mode", {"door": door, "mode": mode}, utc_now())

    def active_alarms(self) -> list[dict[str, Any]]:
        """Alarms not closed: raised, or cleared and waiting for a person."""
        return self.alarms(open_only=True)

    def alarms(self, *, open_only: bool = False, since: str | None = None) -> list[dict[str, Any]]:
        """Each alarm id's latest life, oldest raised first: the open ones only, or those raised
        since a store timestamp. Every earlier life is in the audit log."""
        where, params = ["1"], []
        if open_only:
            where.append("closed IS NULL")
        if since:
            where.append("raised >= ?")
            params.append(since)
        return list(self.database.db.query(f"SELECT * FROM alarms WHERE {' AND '.join(where)} ORDER BY raised, id",
                                           params))
