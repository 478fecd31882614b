"""The recorder's side of the enrolment transport: notice that people, cards, levels or PINs
changed in the recorder node's store, and sign them out to every node over MQTT
(docs/enrolment.md, "Over MQTT").

People are enrolled with the command line (`sekisho person`, `card`, `person import`), which
writes the store from another process; the daemon sees it in the audit log, whose every
enrolment change (``person.*``, ``card.*``, ``pin.*``, ``level.*``) is one row. It looks ten
times a second (one indexed query on the loop), and when such rows came, reads what they changed
in a worker thread with its own connection (only the rows they name when each is a revocation,
a person enabled or disabled or a level granted or revoked: a few queries; the whole enrolment
otherwise, 0.7 s at 100,000 people) and compares it with what the nodes were last sent:

  - when every difference is a delta op (a revoke, a disable, a grant...), a signed delta goes
    out at once, QoS 1, not retained: a revoked card reaches every online door within the poll
    and one message;
  - the full snapshot follows, retained (the chunks on their own topics, then the manifest, then
    empty retained messages on the chunk topics it no longer uses), once the changes have paused
    for ``QUIET_S`` and at most ``MAX_BEHIND_S`` after the first change it does not yet hold
    (both longer when snapshots are costly): a burst of changes is one snapshot, and a node that
    was away, is new or missed a delta catches up from what the broker retains, never far behind
    the last delta. Deltas have a worker and a connection of their own: they wait for a
    snapshot only while one that takes a new version is made (docs/enrolment.md says why).

Failure model: the version counter lives in the store's ``meta`` table (``enrolment.version``)
and is written, with the hash of the content it stands for (a snapshot's; none for a delta),
before anything of that version is published:
it only grows, across restarts. The last snapshot sent is kept in the data dir
(``enrolment.published``, the node's kept-copy format) and said again on each connection, so a
broker that lost its retained messages has them back; at start a new snapshot is made unless the
kept one is of the latest version and the store still enrols exactly that. While the broker is
away nothing is sent: a delta made then is not said, but the snapshot that follows it within
``MAX_BEHIND_S`` is kept, and the kept one is said on the next connection. A failure to read,
sign or keep is logged and tried again at the next turn; it stops nothing else of the daemon.
Names never travel: the snapshot's body has none (enrolment_snapshot.py).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import enrolment_delta as ed
from . import enrolment_snapshot as es
from .store.database import Database
from .store.people import People
from .topics import Topics

log = logging.getLogger(__name__)

TARGETED = {"card.revoke", "person.enable", "person.disable", "level.grant", "level.revoke"}
"""Audit actions whose rows name what they changed well enough to read only that."""
TARGETED_MAX = 1000
"""More enrolment audit rows than this in one look: the whole enrolment is read instead."""
READ_TRIES = 5
"""How often a snapshot is read again because a delta went out meanwhile, before deltas wait for it."""
POLL_S = 0.1
"""How often the audit log is looked at: a revocation's delay at the recorder, at most."""
QUIET_S = 1.0
"""A snapshot waits until the changes have paused this long (or three times what the last
snapshot took to read and sign, if more)..."""
MAX_BEHIND_S = 5.0
"""... but no longer than this (or ten times what the last one took) after the first change the
retained snapshot does not hold."""
PUBLISHED = "enrolment.published"
"""The last snapshot sent, in the data dir: said again on each connection."""
ENROLMENT_ACTIONS = "action GLOB 'person.*' OR action GLOB 'card.*' OR action GLOB 'pin.*' OR action GLOB 'level.*'"


def content(snapshot: es.Snapshot) -> str:
    """What a snapshot enrols, without its version and time: equal when two enrol the same."""
    return hashlib.sha256(replace(snapshot, version=0, created="").body()).hexdigest()


def _find(rows: tuple[Any, ...], key: str, attr: str) -> Any:
    """The row of a snapshot's sorted tuple (people by id, cards by hash) with this key, or None."""
    i = bisect.bisect_left(rows, key, key=lambda r: getattr(r, attr))
    return rows[i] if i < len(rows) and getattr(rows[i], attr) == key else None


def _targeted(database: Database, sent: es.Snapshot, rows: list[tuple[str, str]]
              ) -> tuple[es.Snapshot, list[dict[str, Any]]] | None:
    """When every audit row is a change a delta op carries and names its person or card: the
    enrolment after them, read from those rows only, and the changes; None when the whole
    enrolment must be read (anything else, or something the nodes were never sent)."""
    people: set[str] = set()
    prefixes: set[str] = set()
    for action, raw in rows:
        detail = json.loads(raw) if action in TARGETED else None
        if not isinstance(detail, dict):
            return None
        if action == "card.revoke":
            card = detail.get("card")
            if not isinstance(card, str) or not card or card.strip("0123456789abcdef"):
                return None  # the hash prefix goes into a GLOB: hex digits only
            prefixes.add(card)
        elif isinstance(detail.get("person"), str):
            people.add(detail["person"])
        else:
            return None
    db = database.db
    fresh_people: dict[str, es.SnapshotPerson] = {}
    fresh_cards: dict[str, es.SnapshotCard] = {}
    db.execute("BEGIN")  # one read: the rows as of one moment
    try:
        for pid in people:
            found = db.execute("SELECT id, active, valid_from, valid_until, pin_hash FROM people WHERE id = ?",
                               [pid]).fetchall()
            if not found:
                return None
            levels = tuple(r[0] for r in db.execute("SELECT level FROM person_levels WHERE person_id = ? "
                                                    "ORDER BY level", [pid]).fetchall())
            r = found[0]
            fresh_people[pid] = es.SnapshotPerson(r[0], bool(r[1]), r[2], r[3], r[4], levels)
        for prefix in prefixes:
            for r in db.execute("SELECT hash, person_id, active, valid_from, valid_until, revoked FROM cards "
                                "WHERE hash GLOB ?", [prefix + "*"]).fetchall():
                fresh_cards[r[0]] = es.SnapshotCard(r[0], r[1], bool(r[2]), r[3], r[4], r[5])
    finally:
        db.execute("ROLLBACK")
    was_people = [_find(sent.people, pid, "id") for pid in sorted(fresh_people)]
    was_cards = [_find(sent.cards, h, "hash") for h in sorted(fresh_cards)]
    if None in was_people or None in was_cards:
        return None
    changes = ed.between(replace(sent, people=tuple(was_people), cards=tuple(was_cards)),
                         replace(sent, people=tuple(fresh_people[p] for p in sorted(fresh_people)),
                                 cards=tuple(fresh_cards[h] for h in sorted(fresh_cards))))
    if changes is None:
        return None
    return replace(sent, people=tuple(fresh_people.get(p.id, p) for p in sent.people),
                   cards=tuple(fresh_cards.get(c.hash, c) for c in sent.cards)), changes


@dataclass(frozen=True)
class Enrolment:
    """The store's enrolment as read once, and the hash of what it enrols."""
    snapshot: es.Snapshot
    digest: str


class EnrolmentPublisher:
    def __init__(self, database: Database, data_dir: Path, *, site: str, key: Ed25519PrivateKey, key_name: str,
                 topics: Topics, publish: Callable[[str, bytes, bool], bool], loop: asyncio.AbstractEventLoop,
                 on_version: Callable[[int], None], policy: es.Policy, chunk_bytes: int = es.CHUNK_BYTES) -> None:
        self.database = database
        self.data_dir = Path(data_dir)
        self.site = site
        self.key = key
        self.key_name = key_name
        self.topics = topics
        self.publish = publish
        """``publish(topic, payload, retain)`` at QoS 1, straight to the broker (publisher.py);
        nothing while the broker is away (False): the snapshot is said again on the next connection."""
        self.loop = loop
        self.on_version = on_version
        self.chunk_bytes = chunk_bytes
        self.policy = policy
        """The site's schedules and holidays (es.site_policy of this node's config): in every
        snapshot. A new config is a new content, so the snapshot made at start takes a new version."""
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="enrolment")
        self.reader: People | None = None
        """The worker's own connection: a read of the whole enrolment never holds the loop's."""
        self.fast = ThreadPoolExecutor(1, thread_name_prefix="enrolment-delta")
        self.fast_reader: Database | None = None
        """The deltas' worker and connection: a revocation never waits for a snapshot being read."""
        self.deltas_may_go = asyncio.Event()
        self.deltas_may_go.set()
        """Cleared while a snapshot of a new version is signed: a delta then would come before
        a snapshot that does not hold it."""
        self.snapshotting: asyncio.Task[None] | None = None
        self.deltas_sent = 0
        """Deltas published since the start: a snapshot read while one went out is read again."""
        self.version = 0
        self.sent: Enrolment | None = None
        """What the nodes were last sent (by snapshot or delta): what the next delta is against."""
        self.signed: es.Signed | None = None
        """The last snapshot made, as it goes out."""
        self.broker_chunks = 0
        """Chunk topics the broker may retain from what was said before: those past the new
        snapshot's count are cleared."""
        self.audit_n = 0
        self.behind_since: float | None = None
        """When the first change the retained snapshot does not hold was seen; None when it holds all."""
        self.last_change = 0.0
        self.last_was_delta = False
        """The last version published was a delta's: a snapshot of exactly its state may share it."""
        self.snapshot_s = 0.0
        """How long the last snapshot took to read and sign."""
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.task = self.loop.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if self.snapshotting:
            self.snapshotting.cancel()
            try:
                await self.snapshotting
            except asyncio.CancelledError:
                pass
        for worker in (self.fast, self.worker):
            worker.shutdown(wait=True)
        if self.reader:
            self.reader.database.close()
        if self.fast_reader:
            self.fast_reader.close()

    def connected(self) -> None:
        """Say the last snapshot again: a broker that lost its retained messages has them back,
        and a node that has this version ignores it."""
        if self.signed is not None:
            self._send(self.signed)

    # ------------------------------------------------------------------------- the loop
    async def _run(self) -> None:
        try:
            self.audit_n = self._audit_n()
            await self._catch_up()
        except Exception:
            log.exception("enrolment: cannot start publishing; enrolment changes are not sent until a restart")
            return
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self._tick()
            except Exception:  # one bad turn (a full disk, a locked store) must not end the watch
                log.exception("enrolment: publishing failed; trying again")
                await asyncio.sleep(1)

    def _audit_n(self) -> int:
        row = self.database.db.execute("SELECT max(n) FROM audit").fetchone()
        return int(row[0] or 0)

    async def _tick(self) -> None:
        n = self._audit_n()
        if n != self.audit_n:
            rows = self.database.db.execute(f"SELECT action, detail FROM audit WHERE n > ? AND n <= ? AND "
                                            f"({ENROLMENT_ACTIONS}) ORDER BY n LIMIT {TARGETED_MAX + 1}",
                                            [self.audit_n, n]).fetchall()
            self.audit_n = n
            if rows:
                await self._changed(rows if len(rows) <= TARGETED_MAX else None)
        now = self.loop.time()
        # At 100,000 people a snapshot costs seconds at the recorder and at every node, and a
        # delta waits while it is read, signed or applied: the pause it waits for and its
        # greatest delay grow with what the last one cost.
        quiet, behind_max = max(QUIET_S, 3 * self.snapshot_s), max(MAX_BEHIND_S, 10 * self.snapshot_s)
        if self.behind_since is not None and (now - self.last_change >= quiet
                                              or now - self.behind_since >= behind_max) \
                and (self.snapshotting is None or self.snapshotting.done()):
            self.snapshotting = self.loop.create_task(self._snapshot_in_background())

    async def _catch_up(self) -> None:
        """At start: the version and the snapshot last sent; a new snapshot unless that one is
        the latest version and the store still enrols exactly it."""
        self.version = int(self._meta("enrolment.version") or 0)
        try:
            kept: es.Signed | None = es.unpack((self.data_dir / PUBLISHED).read_bytes())
        except (FileNotFoundError, es.SnapshotRefused):
            kept = None
        current = await self.loop.run_in_executor(self.worker, self._build, 0)
        if kept is not None and es.manifest_field(kept, "version") == self.version \
                and self._meta("enrolment.content") == current.digest:
            self.signed, self.sent, self.broker_chunks = kept, current, len(kept.chunks)
            self.on_version(self.version)
            self.connected()
            log.info("enrolment: version %d is what the nodes were sent", self.version)
            return
        self.sent = current
        self.broker_chunks = len(kept.chunks) if kept else 0
        await self._snapshot(current, bump=True)

    async def _changed(self, rows: list[tuple[str, str]] | None) -> None:
        await self.deltas_may_go.wait()
        assert self.sent is not None
        # Read and compared in a worker: the rows the audit names when it names them all (a
        # revocation: the deltas' own worker, never behind a snapshot), else the whole enrolment
        # (most of a second at 100,000 people, behind whatever the snapshots' worker does).
        sent = self.sent
        targeted = await self.loop.run_in_executor(self.fast, self._targeted_read, sent, rows) \
            if rows is not None else None
        changes: list[dict[str, Any]] | None
        if targeted is not None:
            now, changes = Enrolment(targeted[0], ""), targeted[1]
        else:
            now, changes = await self.loop.run_in_executor(self.worker, self._compare, sent)
        if not self.deltas_may_go.is_set() or self.sent is not sent:
            # A snapshot took a new version meanwhile, and holds what changed: compare again.
            await self._changed(rows)
            return
        if changes == []:
            return
        self.last_change = self.loop.time()
        if self.behind_since is None:
            self.behind_since = self.last_change
        if changes is None:
            return  # only a snapshot carries it: on its way once the changes pause
        for piece in ed.pieces(changes):
            version = self.version + 1
            self._record_version(version, now.digest)
            payload = ed.sign(self.site, version, piece, self.key, self.key_name)
            self.publish(self.topics.enrolment_delta(), payload, False)
            self.deltas_sent += 1
            log.info("enrolment: delta %d sent (%d changes)", version, len(piece))
        self.sent, self.last_was_delta = now, True
        self.on_version(self.version)

    async def _snapshot_in_background(self) -> None:
        try:
            await self._snapshot()
        except Exception:  # as a turn of the watch: logged, and the next turn tries again
            log.exception("enrolment: the snapshot failed; trying again")

    async def _snapshot(self, current: Enrolment | None = None, *, bump: bool = False) -> None:
        """The retained snapshot of the store now. When it holds exactly what the deltas since
        the last one left, it takes the last delta's version: a node that has that version
        ignores it (no 100,000-card apply at every door after each revocation), and a node
        that does not takes it and then ignores that delta; deltas go on meanwhile. Otherwise
        (``bump``, or a change no delta carried) it takes the next version, and deltas wait
        until it is out."""
        started = self.loop.time()
        try:
            for attempt in range(READ_TRIES + 1):
                # A delta that went out while the store was read may have been read before it or
                # after it: read again, until one read saw no delta go out (or, after READ_TRIES,
                # with deltas held). A read is never patched with deltas: one read earlier than
                # it would take back what it saw (a person disabled, enabled again).
                if attempt == READ_TRIES:
                    self.deltas_may_go.clear()
                told = self.deltas_sent
                if attempt or current is None or not current.digest:
                    current = await self.loop.run_in_executor(self.worker, self._build, self.version + 1)
                assert self.sent is not None
                sent = self.sent
                digest = sent.digest or await self.loop.run_in_executor(self.worker, content, sent.snapshot)
                if self.deltas_sent == told:
                    break
            assert current is not None  # READ_TRIES >= 0: the loop ran and read
            if not bump and digest == current.digest and not self.last_was_delta:
                self.behind_since = None  # changed and changed back: nothing to say
                return
            bump = bump or digest != current.digest
            version = self.version + 1 if bump else self.version
            if bump:
                self.deltas_may_go.clear()
            self._record_version(version, current.digest)
            snapshot = replace(current.snapshot, version=version)
            signed = await self.loop.run_in_executor(self.worker, self._sign_and_keep, snapshot)
        finally:
            self.deltas_may_go.set()  # whatever happened: deltas never stay held
        self.signed = signed
        if self.version == version:  # no delta since: the snapshot is what the nodes are sent
            self.sent, self.behind_since, self.last_was_delta = current, None, False
        self.snapshot_s = self.loop.time() - started
        self._send(signed)
        self.on_version(self.version)
        log.info("enrolment: snapshot %d sent (%d people, %d cards, %d chunks; read and signed in %.2f s)", version,
                 len(snapshot.people), len(snapshot.cards), len(signed.chunks), self.loop.time() - started)

    def _send(self, signed: es.Signed) -> None:
        # The chunks before the manifest: a node that has the manifest finds its chunks there
        # (it also waits for chunks that come later, for a broker that reorders).
        if not all([self.publish(self.topics.enrolment_chunk(i), chunk, True) for i, chunk in enumerate(signed.chunks)]
                   + [self.publish(self.topics.enrolment_manifest(), signed.manifest, True)]):
            return  # the broker is away: said again on the next connection
        for i in range(len(signed.chunks), self.broker_chunks):
            self.publish(self.topics.enrolment_chunk(i), b"", True)  # an empty retained message clears it
        self.broker_chunks = len(signed.chunks)

    # ------------------------------------------------------------------------- the worker's
    def _build(self, version: int) -> Enrolment:
        if self.reader is None:
            self.reader = People(Database(self.data_dir))
        snapshot = es.build(self.reader, self.site, max(version, 1), policy=self.policy)
        return Enrolment(snapshot, content(snapshot))

    def _targeted_read(self, sent: Enrolment, rows: list[tuple[str, str]]
                       ) -> tuple[es.Snapshot, list[dict[str, Any]]] | None:
        if self.fast_reader is None:
            self.fast_reader = Database(self.data_dir)
        return _targeted(self.fast_reader, sent.snapshot, rows)

    def _compare(self, sent: Enrolment) -> tuple[Enrolment, list[dict[str, Any]] | None]:
        if self.reader is None:
            self.reader = People(Database(self.data_dir))
        # No digest here (half a second at 100,000 people, on a revocation's way): a delta's
        # version is recorded without one, and a restart before the next snapshot makes a new one.
        now = Enrolment(es.build(self.reader, self.site, 1, policy=self.policy), "")
        return now, ed.between(sent.snapshot, now.snapshot)

    def _sign_and_keep(self, snapshot: es.Snapshot) -> es.Signed:
        signed = es.sign(snapshot, self.key, self.key_name, self.chunk_bytes)
        es.keep(self.data_dir / PUBLISHED, signed)
        return signed

    # ------------------------------------------------------------------------- the counter
    def _meta(self, key: str) -> str | None:
        row = self.database.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _record_version(self, version: int, digest: str) -> None:
        """The counter and what it stands for, on disk before anything of the version is said."""
        with self.database.transaction() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('enrolment.version', ?), ('enrolment.content', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [str(version), digest])
        self.version = version
