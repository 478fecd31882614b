"""The recorder's side of the enrolment transport: notice that people, cards, levels or PINs
changed in the recorder node's store, and sign them out to every node over MQTT
(docs/enrolment.md, "Over MQTT").

People are enrolled with the command line (`sekisho person`, `card`, `person import`), which
writes the store from another process; the daemon sees it in the audit log, whose every
enrolment change (``person.*``, ``card.*``, ``pin.*``, ``level.*``) is one row. It looks a few
times a second (one indexed query on the loop), and when such a row came, reads the whole
enrolment again (a worker thread, its own connection: 0.7 s at 100,000 people) and compares it
with what the nodes were last sent:

  - when every difference is a delta op (a revoke, a disable, a grant...), a signed delta goes
    out at once, QoS 1, not retained: a revoked card reaches every online door within the poll
    and one message;
  - the full snapshot follows, retained (the chunks on their own topics, then the manifest, then
    empty retained messages on the chunk topics it no longer uses), once the changes have paused
    for ``QUIET_S`` and at most ``MAX_BEHIND_S`` after the first change it does not yet hold: a
    burst of changes is one snapshot, and a node that was away, is new or missed a delta catches
    up from what the broker retains, never far behind the last delta.

Failure model: the version counter lives in the store's ``meta`` table (``enrolment.version``)
and is written, with the content it stands for, before anything of that version is published:
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
import hashlib
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

POLL_S = 0.1
"""How often the audit log is looked at: a revocation's delay at the recorder, at most."""
QUIET_S = 1.0
"""A snapshot waits until the changes have paused this long..."""
MAX_BEHIND_S = 5.0
"""... but no longer than this after the first change the retained snapshot does not hold."""
PUBLISHED = "enrolment.published"
"""The last snapshot sent, in the data dir: said again on each connection."""
ENROLMENT_ACTIONS = "action GLOB 'person.*' OR action GLOB 'card.*' OR action GLOB 'pin.*' OR action GLOB 'level.*'"


def content(snapshot: es.Snapshot) -> str:
    """What a snapshot enrols, without its version and time: equal when two enrol the same."""
    return hashlib.sha256(replace(snapshot, version=0, created="").body()).hexdigest()


@dataclass(frozen=True)
class Enrolment:
    """The store's enrolment as read once, and the hash of what it enrols."""
    snapshot: es.Snapshot
    digest: str


class EnrolmentPublisher:
    def __init__(self, database: Database, data_dir: Path, *, site: str, key: Ed25519PrivateKey, key_name: str,
                 topics: Topics, publish: Callable[[str, bytes, bool], bool], loop: asyncio.AbstractEventLoop,
                 on_version: Callable[[int], None], chunk_bytes: int = es.CHUNK_BYTES) -> None:
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
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="enrolment")
        self.reader: People | None = None
        """The worker's own connection: a read of the whole enrolment never holds the loop's."""
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
        self.worker.shutdown(wait=True)
        if self.reader:
            self.reader.database.close()

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
            changed = self.database.db.execute(f"SELECT 1 FROM audit WHERE n > ? AND ({ENROLMENT_ACTIONS}) LIMIT 1",
                                               [self.audit_n]).fetchone()
            self.audit_n = n
            if changed:
                await self._changed()
        now = self.loop.time()
        if self.behind_since is not None and (now - self.last_change >= QUIET_S
                                              or now - self.behind_since >= MAX_BEHIND_S):
            await self._snapshot()

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
        await self._snapshot(current)

    async def _changed(self) -> None:
        assert self.sent is not None
        # Read and compared in the worker: at 100,000 people each is most of a second.
        now, changes = await self.loop.run_in_executor(self.worker, self._compare, self.sent)
        if changes == []:
            return
        self.last_change = self.loop.time()
        if self.behind_since is None:
            self.behind_since = self.last_change
        if changes is None:
            return  # only a snapshot carries it: on its way once the changes pause
        version = self.version + 1
        self._record_version(version, now.digest)
        payload = ed.sign(self.site, version, changes, self.key, self.key_name)
        self.publish(self.topics.enrolment_delta(), payload, False)
        self.sent = now
        self.on_version(version)
        log.info("enrolment: delta %d sent (%d changes)", version, len(changes))

    async def _snapshot(self, current: Enrolment | None = None) -> None:
        version = self.version + 1
        started = self.loop.time()
        if current is None or not current.digest:
            current = await self.loop.run_in_executor(self.worker, self._build, version)
        self._record_version(version, current.digest)
        snapshot = replace(current.snapshot, version=version)
        signed = await self.loop.run_in_executor(self.worker, self._sign_and_keep, snapshot)
        self.signed, self.sent, self.behind_since = signed, current, None
        self._send(signed)
        self.on_version(version)
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
        snapshot = es.build(self.reader, self.site, max(version, 1))
        return Enrolment(snapshot, content(snapshot))

    def _compare(self, sent: Enrolment) -> tuple[Enrolment, list[dict[str, Any]] | None]:
        if self.reader is None:
            self.reader = People(Database(self.data_dir))
        # No digest here (half a second at 100,000 people, on a revocation's way): a delta's
        # version is recorded without one, and a restart before the next snapshot makes a new one.
        now = Enrolment(es.build(self.reader, self.site, 1), "")
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
