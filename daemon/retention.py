"""Retention: what is older than the site keeps (``[site] retention_days``) is deleted at start
and once a day after, a day of the monotonic clock; a wall clock set forward purges at once
(``Daemon._clock_stepped``), so that a day forward does not keep too-old records another day."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from .config import Config
from .errors import StoreError
from .store.record import Record
from .timestamps import rfc3339

log = logging.getLogger(__name__)

PURGE_EVERY_S = 24 * 3600


def purge_before(config: Config) -> str:
    """The store timestamp before which records are past the site's retention period."""
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=config.site.retention_days)
    return rfc3339(cutoff)


class Retention:
    def __init__(self, config: Config, record: Record, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.record = record
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None

    def purge(self) -> None:
        """Delete what is past retention now, and again in a day."""
        self.stop()
        try:
            events, audit_rows = self.record.purge(purge_before(self.config), "daemon")
        except StoreError as exc:
            log.error("retention purge failed: %s", exc)
        else:
            if events or audit_rows:
                log.info("retention: deleted %d events and %d audit rows older than %d days", events, audit_rows,
                         self.config.site.retention_days)
        self.timer = self.loop.call_later(PURGE_EVERY_S, self.purge)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
