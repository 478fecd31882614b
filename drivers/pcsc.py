"""Contactless card readers through pcscd (ACR122U, RC-S300 via libccid, any CCID reader).

One thread per configured reader runs a ``ReaderWatch`` (pcsc_watch.py) on a pcscd context;
the card's UID is read by a ``UidReader`` (pcsc_uid.py). pyscard's CardMonitor is not used: it
stops for good when pcscd restarts, and a desk whose reader silently stopped reporting is a desk
that never locks.

pcscd restarts are normal (package upgrades, socket activation with ``--auto-exit``). A pending
call then returns ``SCARD_F_COMM_ERROR`` and the context answers ``SCARD_E_NO_SERVICE`` for
ever, so the thread releases it, reports the reader lost (and the card removed, if one was in,
so a desk locks), and establishes a new context with backoff. When the reader is listed again
the watch reports ``ReaderBack`` and reads whatever card is on it.

pyscard is imported by ``start()`` only: ``sekisho check-config`` imports this module on
nodes that have no pyscard, to read ``OPTIONS``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import DriverError, Emit, ThreadedDriver, check_options
from .options import REQUIRED, Option
from .pcsc_codes import describe
from .pcsc_uid import UidReader
from .pcsc_watch import ContextDead, ReaderWatch

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 1.0
"""pcscd is local: retrying once a second costs nothing and bounds how long a desk stays
without its reader after pcscd is back."""
STOP_TIMEOUT_S = 5.0


def _positive_ms(value: int) -> str | None:
    return None if 0 < value <= 600_000 else "must be between 1 and 600000 (milliseconds)"


def _pattern(value: str) -> str | None:
    return None if value.strip() else "must name a reader (an fnmatch pattern such as \"ACS ACR122U*\")"


class PcscReader(ThreadedDriver):
    OPTIONS = {
        "name": Option(str, REQUIRED, "PC/SC reader name as pcscd lists it (pcsc_scan shows it), an fnmatch "
                              "pattern such as \"ACS ACR122U*\"; the first listed reader that matches is used",
                              check=_pattern),
        "poll_timeout_ms": Option(int, 2000, "Longest wait in one SCardGetStatusChange; on timeout the reader "
                                         "list is read again, a fallback for pcscd builds without PnP notification",
                                         check=_positive_ms),
        "read_timeout_ms": Option(int, 2000, "A card that has not answered GET UID by then is reported "
                                         "unreadable (no_answer)", check=_positive_ms),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None:
        super().__init__(name, emit)
        self.pattern = str(options["name"])
        self.poll_timeout_ms = int(options.get("poll_timeout_ms", self.OPTIONS["poll_timeout_ms"].default))
        self.read_timeout_s = int(options.get("read_timeout_ms", self.OPTIONS["read_timeout_ms"].default)) / 1000
        self._ctx_lock = threading.Lock()
        self._ctx: int | None = None
        self.sc: Any = None
        """The ``smartcard.scard`` module, once ``start()`` has imported it."""
        self._watch: ReaderWatch | None = None
        """Built at the first ``start()``; kept across restarts, as what it has reported is."""

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        check_options(self.OPTIONS, (("name", self.pattern), ("poll_timeout_ms", self.poll_timeout_ms),
                                     ("read_timeout_ms", round(self.read_timeout_s * 1000))))
        try:
            from smartcard import scard
        except (ImportError, OSError) as exc:
            raise DriverError(f"the pcsc driver needs pyscard >= 2.3 ({exc}); install it with the 'pcsc' extra "
                              "(building it needs swig and libpcsclite-dev), and run pcscd") from None
        self.sc = scard
        if self._watch is None:
            uids = UidReader(scard, self.name, self.read_timeout_s, self._stopping)
            self._watch = ReaderWatch(scard, self.name, self.pattern, self.poll_timeout_ms, uids, self._send,
                                      self._stopping)
        self._start_thread(self._run, "pcsc")

    async def stop(self) -> None:
        thread = self._close()
        if thread is not None:
            await asyncio.to_thread(self._cancel_and_join, thread)

    def _cancel_and_join(self, thread: threading.Thread) -> None:
        # SCardCancel only interrupts a call that is already waiting, so keep cancelling until
        # the thread is out: it may be between calls when stop() starts.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while thread.is_alive():
            with self._ctx_lock:
                if self._ctx is not None:
                    self.sc.SCardCancel(self._ctx)
            thread.join(0.05)
            if time.monotonic() > deadline:
                log.error("%s: PC/SC thread did not stop within %.0f s; abandoning it (it emits nothing more)",
                          self.name, STOP_TIMEOUT_S)
                return

    # ------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        sc, watch = self.sc, self._watch
        assert watch is not None
        backoff = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
            if hr != sc.SCARD_S_SUCCESS:
                watch.lose(f"pcscd not reachable ({describe(sc, hr)})")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            with self._ctx_lock:
                self._ctx = ctx
            try:
                watch.watch(ctx)
            except ContextDead as exc:
                watch.lose(f"pcscd connection lost ({exc})")
            except Exception as exc:  # a bug here must not end the reader for the daemon's lifetime
                log.exception("%s: PC/SC watcher failed; starting over with a new context", self.name)
                watch.lose(f"driver error ({exc!r})")
            finally:
                with self._ctx_lock:
                    self._ctx = None
                # A dead context answers NO_SERVICE here; the client side frees it either way.
                sc.SCardReleaseContext(ctx)
            if watch.healthy:
                backoff = BACKOFF_FIRST_S
            else:
                # A context that failed before one successful wait: do not spin on it.
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)


def list_readers() -> list[str]:
    """The reader names pcscd lists now, for ``sekisho readers``. Raises DriverError when
    pyscard is missing or pcscd does not answer."""
    try:
        from smartcard import scard as sc
    except ImportError:
        raise DriverError("pyscard is not installed (pip install pyscard)") from None
    hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if hr != sc.SCARD_S_SUCCESS:
        raise DriverError(f"pcscd does not answer ({sc.SCardGetErrorMessage(hr).strip()}); is pcscd running?")
    try:
        hr, names = sc.SCardListReaders(ctx, [])
        if hr == sc.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hr != sc.SCARD_S_SUCCESS:
            raise DriverError(f"pcscd could not list readers: {sc.SCardGetErrorMessage(hr).strip()}")
        return list(names)
    finally:
        sc.SCardReleaseContext(ctx)
