"""The site recorder's store (issue 15): every event of every node, once, and the holes in each
node's ``seq`` (docs/recorder.md, "Store"), and every step of every alarm. Only storage: the
recorder that feeds it from the broker is daemon/recorder.py.

One interface, two backends, chosen by ``open_store``:
  - SQLite (the stdlib ``sqlite3``), a file in the data dir: WAL, ``synchronous=FULL``, created
    0600, every batch one ``BEGIN IMMEDIATE`` transaction, so two writers queue;
  - PostgreSQL (psycopg 3, Debian's ``python3-psycopg``) for ``postgresql://`` URLs, which several
    recorders may share: each batch is one transaction that locks, per node and in name order
    (no deadlock between two batches), the node's row in ``nodes`` (``SELECT ... FOR UPDATE``)
    before it inserts that node's events and does its gap bookkeeping. Two recorders storing the
    same events therefore store each once and agree on the gaps.

What a batch does, per node:
  - inserts its events with insert-or-ignore on ``(node, seq)``; a repeat is not new, and a
    repeat with another ``id`` than the stored one is returned as a conflict;
  - the events above the node's last stored ``seq`` extend it; whatever ``seq`` between the old
    last and the new one is still missing opens a gap (a range ``[first, last]``, kept in
    ``gaps`` so that it survives a restart);
  - an event below the last ``seq`` that was missing fills its gap: the gap shrinks, splits or
    closes.
And, for the batch as a whole: each person its new events place (a granted pass naming its
area) gets the latest of them as their row in ``whereabouts``, unless the row holds a newer
pass (whereabouts.py; an upsert guarded by the order ``ts``, node, ``seq``). Batches of other
nodes may place one person at once on PostgreSQL: the rows are written in subject order and
the guard is weighed against what the other committed, so the newer pass stays.
The first event ever stored for a node is its baseline: what the node sent before the recorder
first heard of it is not a gap (a recorder added to a running site would otherwise raise a gap
for every node's whole past, which only the node's own store holds).

Bad input (a payload that is not a JSON object, a ``seq`` that is not a positive integer, a node
that is not a topic name, no id or no ``ts``) rejects that event only, with a ``ValueError``
naming the field, in ``Stored.rejected``; the rest of the batch is stored. One malformed
message from one node must not stop the site's records.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config.checker import NAME
from .errors import StoreError
from .store.database import _private_dir
from .timestamps import rfc3339, utc_now
from .whereabouts import Pass, Whereabouts

DB_NAME = "recorder.db"

MIGRATIONS: list[list[str]] = [
    # v1. The same SQL for both backends (SQLite takes BIGINT as INTEGER). Append; never edit one
    # that has shipped.
    [
        "CREATE TABLE events (node TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, topic TEXT NOT NULL, "
        "ts TEXT NOT NULL, payload TEXT NOT NULL, received TEXT NOT NULL, PRIMARY KEY (node, seq))",
        "CREATE INDEX events_ts ON events (ts)",
        "CREATE INDEX events_id ON events (id)",
        # last_seq NULL: the row exists (to be locked) but nothing of the node is stored yet.
        "CREATE TABLE nodes (node TEXT PRIMARY KEY, last_seq BIGINT, updated TEXT NOT NULL)",
        "CREATE TABLE gaps (node TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, "
        "opened TEXT NOT NULL, PRIMARY KEY (node, first_seq))",
    ],
    # v2. Alarm steps: each retained alarm/<id> message, once per (alarm id, its ts).
    [
        "CREATE TABLE alarm_steps (alarm_id TEXT NOT NULL, ts TEXT NOT NULL, node TEXT NOT NULL, "
        "payload TEXT NOT NULL, received TEXT NOT NULL, PRIMARY KEY (alarm_id, ts))",
        "CREATE INDEX alarm_steps_ts ON alarm_steps (ts)",
        "CREATE INDEX alarm_steps_node ON alarm_steps (node, ts)",
    ],
    # v3. Whereabouts: each subject's latest placing pass (whereabouts.py), kept by ``store`` in
    # the batch's transaction; filled from the stored events by the migration (_fill_whereabouts).
    [
        "CREATE TABLE whereabouts (subject TEXT PRIMARY KEY, area TEXT NOT NULL, ts TEXT NOT NULL, "
        "node TEXT NOT NULL, seq BIGINT NOT NULL, door TEXT NOT NULL)",
        # No index on area: it is read whole (one row a person), and each index slows the upsert.
    ],
]
WHEREABOUTS_VERSION = 3
_MIGRATION_LOCK = 0x5EC15400  # PostgreSQL advisory lock key: one recorder migrates at a time


@dataclass(frozen=True)
class Received:
    """One event as it came off the broker: who sent it, its ``seq``, ``id`` and ``ts`` (as in the
    payload), the topic it came on and the payload's JSON text, stored as it came."""
    node: str
    seq: int
    id: str
    topic: str
    ts: str
    payload: str


@dataclass(frozen=True)
class Gap:
    """``seq`` ``first`` to ``last`` (both included) of ``node`` are missing."""
    node: str
    first: int
    last: int


@dataclass(frozen=True)
class Rejected:
    event: Received
    error: ValueError


@dataclass(frozen=True)
class Stored:
    """What one ``store`` did: how many events were new, the gaps it opened, the gaps (as they
    stood before) that it closed completely, the events it refused, and the conflicts: events
    not stored because their node's ``seq`` is already stored with another ``id`` (a node whose
    store was replaced and counts from 1 again, or two nodes with one name)."""
    new: int = 0
    opened: tuple[Gap, ...] = ()
    closed: tuple[Gap, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    conflicts: tuple[Received, ...] = ()


@dataclass(frozen=True)
class AlarmStep:
    """One step of an alarm as published on ``alarm/<alarm_id>`` (raised, cleared, acknowledged,
    docs/mqtt.md): ``node`` is the alarm id up to its first ``.``, ``payload`` the message's JSON
    object, ``received`` when the recorder took it off the broker. A step is known by its alarm
    id and its payload's ``ts``: the retained message that every new subscription delivers
    again is the same step."""
    alarm_id: str
    node: str
    payload: dict[str, Any]
    received: str


def alarm_step(alarm_id: str, text: str | bytes, received: str) -> AlarmStep:
    """The step an ``alarm/<alarm_id>`` message holds, or a ValueError that names what is wrong."""
    node = alarm_id.split(".", 1)[0]
    if not NAME.match(node) or "/" in alarm_id:
        raise ValueError(f"alarm id {alarm_id!r} does not start with a node name (<node>.<source>.<kind>)")
    try:
        payload = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f"alarm {alarm_id}: payload is not JSON: {str(text)[:60]!r}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"alarm {alarm_id}: payload is not a JSON object")
    step = AlarmStep(alarm_id, node, payload, received)
    _step_ts(step)
    return step


def _step_ts(step: AlarmStep) -> str:
    """The step's ``ts`` in the house form, or a ValueError."""
    ts = step.payload.get("ts")
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))  # type: ignore[union-attr]
        if t.tzinfo is None:
            raise ValueError("no zone")
    except (AttributeError, ValueError):
        raise ValueError(f"alarm {step.alarm_id}: ts {ts!r} is not an RFC 3339 time with a zone") from None
    return rfc3339(t)


def check(event: Received) -> Received:
    """The event with its ``ts`` in the house form (UTC, milliseconds, ``Z``), or a ValueError
    that names what is wrong with it."""
    if not isinstance(event.node, str) or not NAME.match(event.node):
        raise ValueError(f"node {event.node!r} is not a topic name (a-z, 0-9 and '-', at most 63)")
    if isinstance(event.seq, bool) or not isinstance(event.seq, int) or event.seq < 1 or event.seq >= 1 << 63:
        raise ValueError(f"seq {event.seq!r} of node {event.node} is not a positive integer")
    if not isinstance(event.id, str) or not event.id:
        raise ValueError(f"event {event.node}/{event.seq} has no id")
    if not isinstance(event.topic, str) or not event.topic:
        raise ValueError(f"event {event.node}/{event.seq} has no topic")
    try:
        t = dt.datetime.fromisoformat(event.ts.replace("Z", "+00:00"))
        if t.tzinfo is None:
            raise ValueError("no zone")
    except (AttributeError, ValueError):
        raise ValueError(f"ts {event.ts!r} of {event.node}/{event.seq} is not an RFC 3339 time with a zone") from None
    try:
        payload = json.loads(event.payload)
    except (TypeError, ValueError):
        raise ValueError(f"payload of {event.node}/{event.seq} is not JSON: {str(event.payload)[:60]!r}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"payload of {event.node}/{event.seq} is not a JSON object")
    if "\x00" in event.id or any(isinstance(v, str) and "\x00" in v for v in payload.values()):
        # PostgreSQL's text takes no NUL: stored, it would fail the batch as if the database were down.
        raise ValueError(f"event {event.node}/{event.seq} holds a NUL character")
    return Received(event.node, event.seq, event.id, event.topic, rfc3339(t), event.payload)


def missing(last: int, seqs: Sequence[int]) -> list[tuple[int, int]]:
    """The ranges above ``last`` and below ``max(seqs)`` that ``seqs`` (sorted, all above
    ``last``) leave out."""
    ranges, expect = [], last + 1
    for s in seqs:
        if s > expect:
            ranges.append((expect, s - 1))
        expect = s + 1
    return ranges


def fill(gaps: Iterable[tuple[int, int]], seqs: set[int]) -> list[tuple[int, int]]:
    """``gaps`` with ``seqs`` taken out of them: what is still missing."""
    left = []
    for first, last in gaps:
        start = first
        for s in sorted(x for x in seqs if first <= x <= last):
            if s > start:
                left.append((start, s - 1))
            start = s + 1
        if start <= last:
            left.append((start, last))
    return left


Key = tuple[str, int]  # (node, seq)


class _Tx(Protocol):
    """The few statements the bookkeeping needs, spelled per backend, each for a whole batch."""
    def lock_nodes(self, nodes: list[str]) -> dict[str, int | None]: ...
    def insert(self, events: list[Received], received: str) -> list[Key]: ...
    def ids(self, keys: list[Key]) -> dict[Key, str]: ...
    def gaps_of(self, nodes: list[str]) -> dict[str, list[tuple[int, int]]]: ...
    def change_gaps(self, drop: list[Key], add: list[tuple[str, int, int]], now: str) -> None: ...
    def set_last(self, last: dict[str, int], now: str) -> None: ...
    def place(self, passes: list[tuple[str, Pass]]) -> None:
        """Each (subject, pass), by subject, where it is newer than the stored one."""


class RecorderStore(abc.ABC):
    """The interface both backends share; ``store`` is the only writer."""

    def store(self, events: Sequence[Received]) -> Stored:
        good: dict[str, list[Received]] = {}
        rejected = []
        for event in events:
            try:
                ok = check(event)
            except ValueError as exc:
                rejected.append(Rejected(event, exc))
                continue
            good.setdefault(ok.node, []).append(ok)
        if not good:
            return Stored(rejected=tuple(rejected))
        with self._transaction(sorted(good)) as tx:
            new, opened, closed, conflicts = _bookkeeping(tx, good, utc_now())
        return Stored(new, tuple(opened), tuple(closed), tuple(rejected), tuple(conflicts))

    def last_seq(self, node: str) -> int | None:
        """The highest ``seq`` stored of ``node``, None before its first event."""
        rows = self._query("SELECT last_seq FROM nodes WHERE node = ?", (node,))
        return rows[0][0] if rows else None

    def gaps(self, node: str | None = None) -> list[Gap]:
        """The open gaps of ``node`` (or of every node), by node and ``seq``."""
        sql = "SELECT node, first_seq, last_seq FROM gaps"
        rows = (self._query(sql + " WHERE node = ? ORDER BY first_seq", (node,)) if node is not None
                else self._query(sql + " ORDER BY node, first_seq", ()))
        return [Gap(*row) for row in rows]

    def events(self, since: dt.datetime, until: dt.datetime, node: str | None = None,
               kind: str | None = None) -> list[Received]:
        """The events with ``since <= ts < until`` (aware datetimes), of one node or all, of one
        kind (the topic's ``door``, ``desk``, ``usb``) or all, in time order (ties by node and
        ``seq``)."""
        sql = "SELECT node, seq, id, topic, ts, payload FROM events WHERE ts >= ? AND ts < ?"
        args: tuple[Any, ...] = (rfc3339(since), rfc3339(until))
        if node is not None:
            sql += " AND node = ?"
            args += (node,)
        if kind is not None:
            if not NAME.match(kind):
                raise ValueError(f"kind {kind!r} is not a topic word")
            sql += " AND topic LIKE ?"  # sekisho/v1/<site>/<kind>/<name>/event; a kind is a-z, 0-9, '-'
            args += (f"%/{kind}/%/event",)
        return [Received(*row) for row in self._query(sql + " ORDER BY ts, node, seq", args)]

    def count(self) -> int:
        return self._query("SELECT count(*) FROM events", ())[0][0]

    def whereabouts(self) -> Whereabouts:
        """Where everyone is now, as the stored events place them: the table the batches keep,
        read in one statement (a batch committed meanwhile is wholly in or wholly out)."""
        rows = self._query("SELECT subject, area, ts, node, seq, door FROM whereabouts", ())
        return Whereabouts({subject: Pass(area, ts, node, seq, door) for subject, area, ts, node, seq, door in rows})

    def store_alarm_steps(self, steps: Sequence[AlarmStep]) -> int:
        """Stores ``steps`` in one transaction, each (alarm id, ``ts``) once; returns how many
        were new. A step without a ``ts`` with a zone, or whose node is not its alarm id's
        first part, is a ValueError before anything is written."""
        rows = []
        for step in steps:
            if step.node != step.alarm_id.split(".", 1)[0] or not NAME.match(step.node):
                raise ValueError(f"alarm {step.alarm_id!r}: node {step.node!r} is not the id's first part")
            rows.append((step.alarm_id, _step_ts(step), step.node, json.dumps(step.payload), step.received))
        return self._insert_steps(rows) if rows else 0

    def alarm_steps(self, since: dt.datetime, until: dt.datetime, node: str | None = None) -> list[AlarmStep]:
        """The alarm steps with ``since <= ts < until`` (aware datetimes), of one node's alarms
        or all, in time order (ties by alarm id)."""
        sql = "SELECT alarm_id, node, payload, received FROM alarm_steps WHERE ts >= ? AND ts < ?"
        args: tuple[Any, ...] = (rfc3339(since), rfc3339(until))
        if node is not None:
            sql += " AND node = ?"
            args += (node,)
        return [AlarmStep(aid, n, json.loads(payload), received)
                for aid, n, payload, received in self._query(sql + " ORDER BY ts, alarm_id", args)]

    @abc.abstractmethod
    def schema_version(self) -> int:
        """Each backend's own."""

    @abc.abstractmethod
    def close(self) -> None:
        """Each backend's own."""

    def __enter__(self) -> RecorderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _transaction(self, nodes: list[str]) -> contextlib.AbstractContextManager[_Tx]:
        """One write transaction for a batch of ``nodes`` (sorted)."""

    @abc.abstractmethod
    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Each backend's own."""

    @abc.abstractmethod
    def _insert_steps(self, rows: list[tuple[str, str, str, str, str]]) -> int:
        """Insert-or-ignore of (alarm_id, ts, node, payload, received) rows in one transaction;
        how many went in."""


def _bookkeeping(tx: _Tx, batch: dict[str, list[Received]],
                 now: str) -> tuple[int, list[Gap], list[Gap], list[Received]]:
    """A batch's insert and gap bookkeeping, under its nodes' locks."""
    lasts = tx.lock_nodes(sorted(batch))  # one lock order for every writer: no deadlock
    events = [e for events in batch.values() for e in events]
    inserted = tx.insert(events, now)
    new: dict[str, list[int]] = {}
    for node, seq in inserted:
        new.setdefault(node, []).append(seq)
    conflicts = []
    if len(inserted) < len(events):
        # The repeats: the same id is a redelivery; another id is a conflict, for an alarm.
        # (Twins in the batch itself: whichever one went in, the other conflicts with it.)
        fresh, seen = set(inserted), collections.Counter((e.node, e.seq) for e in events)
        repeats = [e for e in events if (e.node, e.seq) not in fresh or seen[e.node, e.seq] > 1]
        stored = tx.ids(sorted({(e.node, e.seq) for e in repeats}))
        conflicts = [e for e in repeats if stored.get((e.node, e.seq), e.id) != e.id]
    below: dict[str, set[int]] = {}
    above: dict[str, list[int]] = {}
    for node, seqs in new.items():
        seqs.sort()
        last = lasts[node]
        if last is None:
            last = lasts[node] = seqs[0] - 1  # the baseline: nothing before a node's first event is a gap
        above[node] = [s for s in seqs if s > last]
        below[node] = {s for s in seqs if s <= last}
    opened, closed, drop, add = [], [], [], []
    filling = sorted(node for node, seqs in below.items() if seqs)
    for node, gaps in tx.gaps_of(filling).items() if filling else ():
        # An event below the last seq that is new was missing: it sits in an open gap, which
        # shrinks, splits or closes (or, older than the node's baseline, in none).
        touched = [g for g in gaps if any(g[0] <= s <= g[1] for s in below[node])]
        left = fill(touched, below[node])
        drop += [(node, first) for first, _ in touched]
        add += [(node, *g) for g in left]
        closed += [Gap(node, *g) for g in touched if not any(g[0] <= x[0] <= g[1] for x in left)]
    for node in sorted(above):
        if above[node]:
            holes = missing(lasts[node] or 0, above[node])
            add += [(node, *g) for g in holes]
            opened += [Gap(node, *g) for g in holes]
    if drop or add:
        tx.change_gaps(drop, add, now)
    tops = {node: seqs[-1] for node, seqs in above.items() if seqs}
    if tops:
        tx.set_last(tops, now)
    # Only a new event can move anyone (a repeat was placed when it was first stored, or by the
    # migration); a conflict's twin is not what was stored. One pass per subject: the batch's latest.
    fresh, refused = set(inserted), {id(c) for c in conflicts}
    moved = Whereabouts()
    moved.fold(e for e in events if (e.node, e.seq) in fresh and id(e) not in refused)
    if moved.last:
        tx.place(sorted(moved.last.items()))
    return len(inserted), opened, closed, conflicts


# --- SQLite -----------------------------------------------------------------------------------

class SqliteStore(RecorderStore):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        _private_dir(self.path.parent)  # made 0700, refused when open to others, as the node's store
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=60, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the recorder's store: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone():
            return 0
        return self.conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def _migrate(self) -> None:
        with self._raw_transaction():
            current = self.schema_version()
            _check_version(current, str(self.path))
            _migrate_from(current, self.conn.execute, "?")

    @contextlib.contextmanager
    def _raw_transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock first: two writers queue
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _transaction(self, nodes: list[str]) -> Iterator[_Tx]:
        try:
            with self._raw_transaction() as conn:
                yield _SqliteTx(conn)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: write failed, nothing of the batch was kept: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, args).fetchall()

    def _insert_steps(self, rows: list[tuple[str, str, str, str, str]]) -> int:
        try:
            with self._raw_transaction() as conn:
                return sum(conn.execute("INSERT INTO alarm_steps VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                        row).rowcount for row in rows)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: write failed, no alarm step was kept: {exc}") from exc


class _SqliteTx:
    """BEGIN IMMEDIATE already holds the only write lock: nothing to lock per node."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lock_nodes(self, nodes: list[str]) -> dict[str, int | None]:
        lasts: dict[str, int | None] = dict.fromkeys(nodes)
        for node in nodes:
            row = self.conn.execute("SELECT last_seq FROM nodes WHERE node = ?", (node,)).fetchone()
            lasts[node] = row[0] if row else None
        return lasts

    def insert(self, events: list[Received], received: str) -> list[Key]:
        new = []
        for e in events:
            cur = self.conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                    (e.node, e.seq, e.id, e.topic, e.ts, e.payload, received))
            if cur.rowcount == 1:
                new.append((e.node, e.seq))
        return new

    def ids(self, keys: list[Key]) -> dict[Key, str]:
        ids = {}
        for node, seq in keys:
            row = self.conn.execute("SELECT id FROM events WHERE node = ? AND seq = ?", (node, seq)).fetchone()
            ids[node, seq] = row[0]
        return ids

    def gaps_of(self, nodes: list[str]) -> dict[str, list[tuple[int, int]]]:
        return {node: self.conn.execute("SELECT first_seq, last_seq FROM gaps WHERE node = ?", (node,)).fetchall()
                for node in nodes}

    def change_gaps(self, drop: list[Key], add: list[tuple[str, int, int]], now: str) -> None:
        self.conn.executemany("DELETE FROM gaps WHERE node = ? AND first_seq = ?", drop)
        self.conn.executemany("INSERT INTO gaps VALUES (?, ?, ?, ?)", [(*g, now) for g in add])

    def set_last(self, last: dict[str, int], now: str) -> None:
        self.conn.executemany("INSERT INTO nodes VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET "
                              "last_seq = excluded.last_seq, updated = excluded.updated",
                              [(node, seq, now) for node, seq in last.items()])

    def place(self, passes: list[tuple[str, Pass]]) -> None:
        self.conn.executemany("INSERT INTO whereabouts VALUES (?, ?, ?, ?, ?, ?)" + _newer(""),
                              [(s, p.area, p.ts, p.node, p.seq, p.door) for s, p in passes])


# --- PostgreSQL -------------------------------------------------------------------------------

class PostgresStore(RecorderStore):
    def __init__(self, url: str) -> None:
        import psycopg  # only a site that configures PostgreSQL needs it

        self.url = url
        self._psycopg = psycopg
        self.known: set[str] = set()
        """Nodes whose row in ``nodes`` exists, to be locked."""
        try:
            self.conn = psycopg.connect(url, autocommit=True)
            self._migrate()
        except psycopg.Error as exc:
            # libpq's message runs over lines (the error, then a hint): one line, as every error
            raise StoreError(f"{_safe_url(url)}: cannot open the recorder's store: "
                             f"{' '.join(str(exc).split())}") from None

    def close(self) -> None:
        self.conn.close()

    def schema_version(self) -> int:
        row = self.conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        version = self.conn.execute("SELECT version FROM schema_version").fetchone()
        return version[0] if version else 0

    def _migrate(self) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            current = self.schema_version()
            _check_version(current, _safe_url(self.url))
            _migrate_from(current, self.conn.execute, "%s")

    @contextlib.contextmanager
    def _transaction(self, nodes: list[str]) -> Iterator[_Tx]:
        try:
            unknown = [node for node in nodes if node not in self.known]
            if unknown:
                # A new node's row, committed on its own first, so that the batch only locks rows
                # that exist (two writers meeting a new node both find its row).
                self.conn.execute("INSERT INTO nodes SELECT n, NULL, %s FROM unnest(%s::text[]) AS t(n) "
                                  "ORDER BY n ON CONFLICT DO NOTHING", (utc_now(), unknown))
                self.known.update(unknown)
            with self.conn.transaction():
                yield _PostgresTx(self.conn)
        except self._psycopg.OperationalError as exc:
            raise StoreError(f"{_safe_url(self.url)}: write failed, nothing of the batch was kept: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("?", "%s"), args).fetchall()

    def _insert_steps(self, rows: list[tuple[str, str, str, str, str]]) -> int:
        columns = list(zip(*rows, strict=True))
        try:
            with self.conn.transaction():
                return len(self.conn.execute(
                    "INSERT INTO alarm_steps SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::text[]) ON CONFLICT DO NOTHING RETURNING 1", [list(c) for c in columns]).fetchall())
        except self._psycopg.OperationalError as exc:
            raise StoreError(f"{_safe_url(self.url)}: write failed, no alarm step was kept: {exc}") from exc


class _PostgresTx:
    """Each step one statement for the whole batch: a few round trips per batch, not per node."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def lock_nodes(self, nodes: list[str]) -> dict[str, int | None]:
        # The rows exist (PostgresStore.known); FOR UPDATE locks them in the sort's order, the
        # same for every writer, and waits for a writer that holds one to commit, then reads the
        # last seq that writer left.
        rows = self.conn.execute("SELECT node, last_seq FROM nodes WHERE node = ANY(%s) ORDER BY node FOR UPDATE",
                                 (nodes,)).fetchall()
        return dict(rows)

    def insert(self, events: list[Received], received: str) -> list[Key]:
        rows = self.conn.execute(
            "INSERT INTO events SELECT *, %s FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], "
            "%s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING node, seq",
            (received, [e.node for e in events], [e.seq for e in events], [e.id for e in events],
             [e.topic for e in events], [e.ts for e in events], [e.payload for e in events])).fetchall()
        return [(node, seq) for node, seq in rows]

    def ids(self, keys: list[Key]) -> dict[Key, str]:
        rows = self.conn.execute("SELECT e.node, e.seq, e.id FROM events e JOIN unnest(%s::text[], %s::bigint[]) "
                                 "AS k(node, seq) ON e.node = k.node AND e.seq = k.seq",
                                 ([n for n, _ in keys], [q for _, q in keys])).fetchall()
        return {(node, seq): eid for node, seq, eid in rows}

    def gaps_of(self, nodes: list[str]) -> dict[str, list[tuple[int, int]]]:
        gaps: dict[str, list[tuple[int, int]]] = {node: [] for node in nodes}
        for node, first, last in self.conn.execute("SELECT node, first_seq, last_seq FROM gaps WHERE node = ANY(%s)",
                                                   (nodes,)):
            gaps[node].append((first, last))
        return gaps

    def change_gaps(self, drop: list[Key], add: list[tuple[str, int, int]], now: str) -> None:
        if drop:
            self.conn.execute("DELETE FROM gaps USING unnest(%s::text[], %s::bigint[]) AS d(node, first_seq) "
                              "WHERE gaps.node = d.node AND gaps.first_seq = d.first_seq",
                              ([n for n, _ in drop], [f for _, f in drop]))
        if add:
            self.conn.execute("INSERT INTO gaps SELECT n, f, l, %s FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) "
                              "AS t(n, f, l)", (now, [g[0] for g in add], [g[1] for g in add], [g[2] for g in add]))

    def set_last(self, last: dict[str, int], now: str) -> None:
        self.conn.execute("UPDATE nodes SET last_seq = t.seq, updated = %s FROM unnest(%s::text[], %s::bigint[]) "
                          "AS t(node, seq) WHERE nodes.node = t.node", (now, list(last), list(last.values())))

    def place(self, passes: list[tuple[str, Pass]]) -> None:
        # Two recorders' batches of other nodes may place one subject at once: the rows are taken
        # in subject order (no deadlock), and ON CONFLICT waits for the other's row, then weighs
        # the guard against what it committed, so the newer pass stays whichever commits first.
        # COLLATE "C": the byte order Python's comparison of the same strings uses.
        columns = [[s for s, _ in passes]] + [[getattr(p, f) for _, p in passes]
                                              for f in ("area", "ts", "node", "seq", "door")]
        self.conn.execute("INSERT INTO whereabouts SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
                          "%s::text[], %s::bigint[], %s::text[]) AS t(subject, area, ts, node, seq, door) "
                          "ORDER BY subject" + _newer(' COLLATE "C"'), columns)


def _newer(collate: str) -> str:
    """The upsert's tail that keeps a subject's newer pass: the rule of whereabouts.py, the
    order (ts, node, seq), in SQL; ``collate`` makes the text compare as Python does."""
    new = ", ".join(f"excluded.{c}{collate}" for c in ("ts", "node")) + ", excluded.seq"
    old = ", ".join(f"whereabouts.{c}{collate}" for c in ("ts", "node")) + ", whereabouts.seq"
    return (" ON CONFLICT (subject) DO UPDATE SET area = excluded.area, ts = excluded.ts, node = excluded.node, "
            f"seq = excluded.seq, door = excluded.door WHERE ({new}) > ({old})")


def _fill_whereabouts(execute: Callable[..., Any], placeholder: str) -> None:
    """The whereabouts of a store made before the table: its door events folded, once."""
    where = Whereabouts()
    where.fold(Received(*row) for row in execute(
        f"SELECT node, seq, id, topic, ts, payload FROM events WHERE topic LIKE {placeholder}", ("%/door/%/event",)))
    for subject, p in sorted(where.last.items()):
        execute(f"INSERT INTO whereabouts VALUES ({', '.join([placeholder] * 6)})",
                (subject, p.area, p.ts, p.node, p.seq, p.door))


def _migrate_from(current: int, execute: Callable[..., Any], placeholder: str) -> None:
    """Every migration after ``current``, in the caller's transaction; ``placeholder`` is the
    driver's parameter mark (sqlite3 ``?``, psycopg ``%s``)."""
    for version in range(current + 1, len(MIGRATIONS) + 1):
        for sql in MIGRATIONS[version - 1]:
            execute(sql)
        if version == WHEREABOUTS_VERSION:
            _fill_whereabouts(execute, placeholder)
        if version == 1:
            execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            execute("INSERT INTO schema_version VALUES (1)")
        else:
            execute(f"UPDATE schema_version SET version = {placeholder}", (version,))


def _check_version(current: int, where: str) -> None:
    if current > len(MIGRATIONS):
        raise StoreError(f"{where}: recorder store schema {current} is newer than this sekisho knows "
                         f"({len(MIGRATIONS)}); install a newer sekisho")


def _safe_url(url: str) -> str:
    """The URL without its password, for a message."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def open_store(database: str | None, data_dir: Path) -> RecorderStore:
    """``[recorder] database``: a ``postgresql://`` (or ``postgres://``) URL, or nothing for
    ``recorder.db`` in the data dir."""
    if database and database.startswith(("postgresql://", "postgres://")):
        return PostgresStore(database)
    if database:
        raise StoreError(f"[recorder] database {database!r}: only a postgresql:// URL, or nothing for SQLite in "
                         "the data dir")
    return SqliteStore(Path(data_dir) / DB_NAME)
