"""Group commit: what the controllers queue in one turn of the loop is committed in one
transaction, and only then offered to the publisher, so nothing is published that is not on
disk first; batching, not weaker sync, is where the throughput comes from.

When the store refuses:
  - a full disk (``StoreError``): everything stays in memory, in order, and is tried again every
    ``RETRY_S``, after a checkpoint that gives back whatever the WAL holds;
  - a damaged file (``StoreDamaged``): nothing more is tried; ``on_damaged`` tells the daemon,
    which stops;
  - a bug (anything else): the batch is recorded item by item, so one item the store cannot take
    never stops the record of everything after it; that item alone is logged and dropped.
At the stop, ``flush_at_stop`` keeps trying for ``STOP_RETRY_S`` and journals what is still not
committed (``records_lost``); the next start's ``report_lost`` raises the alarm for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from .alarms import Alarms
from .errors import StoreDamaged, StoreError
from .records_lost import forget_lost, lost_before, write_lost
from .store.database import Database
from .store.record import Item, Record

log = logging.getLogger(__name__)

RETRY_S = 1.0
STOP_RETRY_S = 10.0
"""At stop, how long to keep trying a store that refuses writes before journaling what it refused."""


class GroupCommit:
    def __init__(self, record: Record, database: Database, loop: asyncio.AbstractEventLoop, data_dir: Path, *,
                 committed: Callable[[], None], on_damaged: Callable[[BaseException], None]) -> None:
        self.record = record
        self.database = database
        """Checkpointed after a failed write, to give back the room the WAL held."""
        self.loop = loop
        self.data_dir = data_dir
        self.committed = committed
        """Called after each commit: the publisher hands the new outbox rows to the broker."""
        self.on_damaged = on_damaged
        self.pending: list[Item] = []
        self.retry: asyncio.TimerHandle | None = None
        self.damaged = False

    def queue(self, item: Item) -> None:
        if not self.pending and self.retry is None:
            self.loop.call_soon(self.flush)
        self.pending.append(item)

    def flush(self) -> None:
        self.retry = None
        if self.pending and not self.commit() and not self.damaged:
            self.retry = self.loop.call_later(RETRY_S, self.flush)

    def commit(self) -> bool:
        """Commit what is pending in one transaction; False when something is left to retry."""
        batch = self.pending
        try:
            self.record.record(batch)
        except StoreDamaged as exc:
            self._damaged(exc)  # kept in memory: journaled at the stop
            return False
        except StoreError as exc:
            log.error("%s; %d events kept in memory, retrying in %.0f s", exc, len(batch), RETRY_S)
            try:
                self.database.checkpoint()
            except StoreDamaged as damage:
                self._damaged(damage)
            except StoreError as checkpoint_failed:
                log.debug("%s", checkpoint_failed)
            return False
        except Exception:
            log.exception("the store refused a batch of %d; recording them one by one", len(batch))
            self.pending = self._record_each(batch)
            self.committed()
            return not self.pending
        self.pending = []
        self.committed()
        return True

    async def flush_at_stop(self) -> bool:
        """Keep trying within ``STOP_RETRY_S``; journal and count what still cannot be committed.
        Whether everything was committed."""
        deadline = self.loop.time() + STOP_RETRY_S
        while self.pending and not self.damaged and not self.commit() and self.loop.time() < deadline:
            await asyncio.sleep(RETRY_S / 2)
        if not self.pending:
            return True
        write_lost(self.data_dir, self.pending)
        self.pending = []
        return False

    def report_lost(self, alarms: Alarms, node: str) -> None:
        """An earlier stop could not commit some records: say so, once, in the record itself."""
        count = lost_before(self.data_dir)
        if not count:
            return
        change = alarms.raised("records_lost", node, "critical", incident=True, count=count)
        try:
            self.record.record([change])
        except StoreError as exc:
            log.error("%s; the records_lost alarm (%d records) is raised at the next start", exc, count)
            return
        forget_lost(self.data_dir)
        log.error("an earlier stop could not commit %d records (see its journal); alarm %s raised", count,
                  change.alarm_id)
        self.committed()

    def _damaged(self, exc: BaseException) -> None:
        self.damaged = True
        self.on_damaged(exc)

    def _record_each(self, batch: list[Item]) -> list[Item]:
        """Record items one at a time; returns those to retry (the disk), drops what is broken."""
        retry = []
        for item in batch:
            try:
                self.record.record([item])
            except StoreError:
                retry.append(item)
            except Exception:
                log.exception("dropped an item the store cannot record: %r", item)
        return retry
