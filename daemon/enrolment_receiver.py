"""A node's side of the enrolment transport: take the recorder's signed snapshots and deltas
from the broker, check them, apply them, and say what was refused (docs/enrolment.md, "Over
MQTT").

Chunks are put together as they come, the latest per index (the topic names it): a broker's
redelivery, or the same retained chunk again after a reconnect, replaces what was there and is
never a ``chunk duplicated``. Once a manifest newer than this node's version has every chunk of
its version, the worker thread checks and applies it (enrolment_snapshot.py: the checks, the one
transaction, the copy kept on disk) with its own connection, so that the loop goes on deciding
taps meanwhile (about 2 s of work at 100,000 cards). A manifest whose chunks have not all come
within ``ASSEMBLY_S`` is checked with what came, and refused as the check finds it (``chunk
missing``, ``chunk mismatch``). Deltas go through the same worker, in the order they came.

Not a refusal, and ignored without a word: the snapshot or delta of the version this node has
(every reconnect brings the retained snapshot again; QoS 1 may bring a delta twice), and a
retained snapshot between the last snapshot this node applied and its version now (deltas took
it past the snapshot the recorder had not yet replaced). Everything else that fails a check is a
refusal: one audit row (``enrolment.refused``: what, reason, detail, version) and an
``enrolment_refused`` alarm (warning, an incident, source the node), once per message (a
retained one refused again after a reconnect is not said again). A refusal changes nothing: the
node goes on deciding with what it has, also while the broker or the recorder is away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sekisho.policies.schedule import Schedule

from . import enrolment_delta as ed
from . import enrolment_snapshot as es
from .alarms import Alarms
from .config import CommandsConfig
from .errors import StoreError
from .store.database import Database
from .store.record import Record
from .topics import Topics

log = logging.getLogger(__name__)

ASSEMBLY_S = 30.0
"""How long a manifest waits for its chunks before it is checked with what came."""
REPORTED_MAX = 1000
"""Refusals remembered so that a retained message is not reported at every reconnect."""


def _peek(payload: bytes, name: str) -> Any:
    """One field of a JSON object, or None: only to decide whether a message needs checking at
    all; the checks themselves read it again, strictly."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = obj.get(name) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class EnrolmentReceiver:
    def __init__(self, database: Database, data_dir: Path, *, site: str, node: str, commands: CommandsConfig,
                 topics: Topics, alarms: Alarms, record: Record, loop: asyncio.AbstractEventLoop,
                 on_version: Callable[[int], None], config_schedules: Collection[str],
                 on_policy: Callable[[dict[str, Schedule], frozenset[dt.date]], None]) -> None:
        self.data_dir = Path(data_dir)
        self.site = site
        self.node = node
        self.topics = topics
        self.alarms = alarms
        self.record = record
        self.loop = loop
        self.on_version = on_version
        self.config_schedules = frozenset(config_schedules)
        """The schedules this node's config defines: they win over the snapshot's of the same name."""
        self.on_policy = on_policy
        """Called on the loop after each snapshot applied, with the policy now stored: the rules
        the doors decide by are replaced before the next tap (rules_in_force.py)."""
        self.keys, self.permitted = es.trusted(commands, es.OP)
        self.delta_permitted = es.trusted(commands, ed.OP)[1]
        self.database = database
        self.current = es.current_version(database, site)
        kept = es.kept(self.data_dir)
        self.kept_version = int(es.manifest_field(kept, "version") or 0) if kept else 0
        """The version of the last snapshot applied: a retained one between it and ``current`` is no news."""
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="enrolment")
        self.writer: Database | None = None
        """The worker's own connection."""
        self.manifest: bytes | None = None
        self.chunks: dict[int, tuple[int | None, bytes]] = {}
        """Index -> (the version its header names, the message): the latest per index."""
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None
        self.reported: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def topic_filters(self) -> tuple[str, str, str]:
        return self.topics.enrolment_manifest(), self.topics.enrolment_chunks, self.topics.enrolment_delta()

    async def stop(self) -> None:
        if self.timer:
            self.timer.cancel()
        for task in list(self.tasks):
            try:
                await task  # an apply under way finishes: its transaction is whole either way
            except Exception:
                pass
        self.worker.shutdown(wait=True)
        if self.writer:
            self.writer.close()

    # ------------------------------------------------------------------------- messages, on the loop
    def manifest_heard(self, topic: str, payload: bytes) -> None:
        if not payload:
            self.manifest = None
            return
        if self._no_news(_peek(payload, "version"), snapshot=True):
            return
        try:
            # Its own checks at once (one signature): a forged manifest is refused now, not
            # after ASSEMBLY_S of waiting for chunks of a version that does not exist.
            es.check_manifest(payload, site=self.site, keys=self.keys, permitted=self.permitted, current=self.current)
        except es.SnapshotRefused as exc:
            self._refused("snapshot", payload, exc)
            return
        log.info("enrolment snapshot %s: manifest heard, %d chunks held", _peek(payload, "version"), len(self.chunks))
        self.manifest = payload
        self._try()

    def chunk_heard(self, topic: str, payload: bytes) -> None:
        index = self.topics.chunk_index(topic)
        if index is None:
            return
        if not payload:
            self.chunks.pop(index, None)  # cleared by the recorder: its snapshots have fewer chunks now
            return
        self.chunks[index] = (_peek(payload.split(b"\n", 1)[0], "version"), payload)
        self._try()

    def delta_heard(self, topic: str, payload: bytes) -> None:
        if self._no_news(_peek(payload, "version"), snapshot=False):
            return
        self._spawn(self._delta(payload))

    def _no_news(self, version: int | None, *, snapshot: bool) -> bool:
        if version is None:
            return False  # malformed: the check says so
        return version == self.current or (snapshot and self.kept_version <= version < self.current)

    def _try(self) -> None:
        if self.busy or self.manifest is None:
            return
        version, count = _peek(self.manifest, "version"), _peek(self.manifest, "chunks")
        if version is None or count is None or all(
                self.chunks.get(i, (None, b""))[0] == version for i in range(count)):
            self._go()
        elif self.timer is None:
            self.timer = self.loop.call_later(ASSEMBLY_S, self._go)

    def _go(self) -> None:
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if self.busy or self.manifest is None:
            return
        count = _peek(self.manifest, "chunks") or 0
        log.info("enrolment snapshot %s: %d of %d chunks, checking", _peek(self.manifest, "version"),
                 sum(1 for i in self.chunks if i < count), count)
        signed = es.Signed(self.manifest, tuple(self.chunks[i][1] for i in sorted(self.chunks) if i < count))
        self.manifest, self.busy = None, True
        self._spawn(self._snapshot(signed))

    def _spawn(self, work: Any) -> None:
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------------- checks and apply
    async def _snapshot(self, signed: es.Signed) -> None:
        try:
            applied = await self.loop.run_in_executor(self.worker, self._apply_snapshot, signed)
        except es.SnapshotRefused as exc:
            self._refused("snapshot", signed.manifest, exc)
        except StoreError as exc:
            log.error("enrolment: %s", exc)
        else:
            self.current = self.kept_version = applied.version
            try:
                self.on_policy(*es.stored_policy(self.database, self.site))
            except StoreError as err:
                log.error("enrolment: %s", err)
            self.on_version(applied.version)
            log.info("enrolment snapshot %d applied (was %d): %d people, %d cards, %d schedules, %d holidays",
                     applied.version, applied.previous, applied.people, applied.cards, applied.schedules,
                     applied.holidays)
            if applied.shadowed:
                log.warning("enrolment snapshot %d: schedules %s are defined in this node's config too; the "
                            "config's decide", applied.version, ", ".join(applied.shadowed))
        finally:
            self.busy = False
            self._try()

    async def _delta(self, payload: bytes) -> None:
        try:
            version, count = await self.loop.run_in_executor(self.worker, self._apply_delta, payload)
        except es.SnapshotRefused as exc:
            self._refused("delta", payload, exc)
        except StoreError as exc:
            log.error("enrolment: %s", exc)
        else:
            self.current = version
            self.on_version(version)
            log.info("enrolment delta %d applied (%d changes)", version, count)

    def _db(self) -> Database:
        if self.writer is None:
            self.writer = Database(self.data_dir)
        return self.writer

    def _apply_snapshot(self, signed: es.Signed) -> es.Applied:
        db = self._db()
        started = time.perf_counter()
        verified = es.verify(signed, site=self.site, keys=self.keys, permitted=self.permitted,
                             current=es.current_version(db, self.site))
        checked = time.perf_counter()
        applied = es.apply(db, verified, self.config_schedules)
        log.info("enrolment snapshot %d: checked in %.2f s, applied in %.2f s", applied.version, checked - started,
                 time.perf_counter() - checked)
        return applied

    def _apply_delta(self, payload: bytes) -> tuple[int, int]:
        db = self._db()
        verified = ed.verify(payload, site=self.site, keys=self.keys, permitted=self.delta_permitted,
                             current=es.current_version(db, self.site))
        return verified.version, ed.apply(db, verified)

    def _refused(self, what: str, payload: bytes, exc: es.SnapshotRefused) -> None:
        version = _peek(payload, "version")
        self.current = es.current_version(self.database, self.site)  # `sekisho enrolment apply` may have moved it
        if exc.reason == "older version" and self._no_news(version, snapshot=what == "snapshot"):
            return  # overtaken while it waited for the worker: no news, not a refusal
        seen = f"{what}:{exc.reason}:{hashlib.sha256(payload).hexdigest()}"
        if seen in self.reported:
            return
        if len(self.reported) >= REPORTED_MAX:
            self.reported.clear()
        self.reported.add(seen)
        detail = str(exc).split(": ", 2)[-1]
        log.warning("enrolment %s%s refused: %s: %s", what, f" {version}" if version is not None else "",
                    exc.reason, detail)
        try:
            self.record.audit("mqtt", "enrolment.refused", {"what": what, "reason": exc.reason, "detail": detail,
                                                            "version": version, "current": self.current})
        except StoreError as err:
            log.error("enrolment: the refusal could not be audited: %s", err)
        self.alarms.raise_("enrolment_refused", self.node, "warning", incident=True, what=what, reason=exc.reason,
                           detail=detail, version=version)
