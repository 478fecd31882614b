"""Contactless card readers through pcscd (ACR122U, RC-S300 via libccid, any CCID reader).

One thread per configured reader waits in ``SCardGetStatusChange`` on two entries: the reader
and the ``\\\\?PnP?\\Notification`` pseudo-reader, which wakes it when readers are plugged in or
out. pyscard's CardMonitor is not used: it stops for good when pcscd restarts, and a desk whose
reader silently stopped reporting is a desk that never locks.

pcscd restarts are normal (package upgrades, socket activation with ``--auto-exit``). A pending
call then returns ``SCARD_F_COMM_ERROR`` and the context answers ``SCARD_E_NO_SERVICE`` for
ever, so the thread releases it, reports the reader lost (and the card removed, if one was in,
so a desk locks), and establishes a new context with backoff. When the reader is listed again
it reports ``ReaderBack`` and reads whatever card is on it.

The UID is read with the PC/SC part 3 pseudo-APDU ``FF CA 00 00 00``, which the reader answers
itself for any contactless card. The read runs in a short-lived thread with its own context:
a card that never answers would otherwise hold the watching thread (pcsc-lite serialises the
calls on one context, and vpcd has no transmit timeout), and removals, restarts and ``stop()``
must still be seen.

Per insertion the driver emits exactly one ``CardPresented`` or ``CardUnreadable``, and per
removal exactly one ``CardRemoved``; a card swapped faster than the watcher looks is told
apart by the per-reader event counter pcscd keeps in the upper 16 bits of the reader state.
``ReaderLost`` is emitted once per outage (also when no reader matches at start), and
``ReaderBack`` once when it ends.

pyscard is imported by ``start()`` only: ``sekisho check-config`` imports this module on
nodes that have no pyscard, to read ``OPTIONS``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sekisho.policies.events import CardPresented, CardRemoved, CardUnreadable, ReaderBack, ReaderLost

from .base import DriverError, Emit, ThreadedDriver, check_options
from .options import REQUIRED, Option

log = logging.getLogger(__name__)

PNP = "\\\\?PnP?\\Notification"
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 1.0
"""pcscd is local: retrying once a second costs nothing and bounds how long a desk stays
without its reader after pcscd is back."""
STOP_TIMEOUT_S = 5.0

# Codes after which a context is dead for good (notes/testing-without-hardware.md, section 1).
_DEAD_NAMES = ("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_F_COMM_ERROR")
_NO_ANSWER_NAMES = ("SCARD_W_UNRESPONSIVE_CARD", "SCARD_W_UNPOWERED_CARD", "SCARD_E_NOT_TRANSACTED",
                    "SCARD_E_PROTO_MISMATCH", "SCARD_E_TIMEOUT")
_REMOVED_NAMES = ("SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_RESET_CARD")


def _positive_ms(value: int) -> str | None:
    return None if 0 < value <= 600_000 else "must be between 1 and 600000 (milliseconds)"


def _pattern(value: str) -> str | None:
    return None if value.strip() else "must name a reader (an fnmatch pattern such as \"ACS ACR122U*\")"


class _ContextDead(Exception):
    """pcscd went away: this context answers SCARD_E_NO_SERVICE from now on."""


@dataclass(frozen=True)
class _Read:
    uid: bytes | None
    reason: str = ""
    detail: str = ""
    dead: bool = False


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
        # Owned by the watching thread:
        self._reader: str | None = None
        self._reader_state = 0
        self._card: int | None = None
        """pcscd's event counter for the card on the reader; None when the reader is empty."""
        self._lost = False
        self._healthy = False

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
        sc = self.sc
        backoff = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
            if hr != sc.SCARD_S_SUCCESS:
                self._lose(f"pcscd not reachable ({self._describe(hr)})")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            with self._ctx_lock:
                self._ctx = ctx
            self._healthy = False
            try:
                self._watch(ctx)
            except _ContextDead as exc:
                self._lose(f"pcscd connection lost ({exc})")
            except Exception as exc:  # a bug here must not end the reader for the daemon's lifetime
                log.exception("%s: PC/SC watcher failed; starting over with a new context", self.name)
                self._lose(f"driver error ({exc!r})")
            finally:
                with self._ctx_lock:
                    self._ctx = None
                # A dead context answers NO_SERVICE here; the client side frees it either way.
                sc.SCardReleaseContext(ctx)
            if self._healthy:
                backoff = BACKOFF_FIRST_S
            else:
                # A context that failed before one successful wait: do not spin on it.
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _watch(self, ctx: int) -> None:
        sc = self.sc
        self._reader = None
        pnp_state = sc.SCARD_STATE_UNAWARE
        relist = True
        while not self._stopping.is_set():
            if relist:
                self._choose_reader(self._list(ctx))
                relist = False
            states = [(PNP, pnp_state)]
            if self._reader is not None:
                states.append((self._reader, self._reader_state))
            hr, out = sc.SCardGetStatusChange(ctx, self.poll_timeout_ms, states)
            if hr == sc.SCARD_E_TIMEOUT:
                relist = True
                continue
            if hr == sc.SCARD_E_CANCELLED:
                continue  # stop() asked; the loop condition ends it
            if hr in (sc.SCARD_E_UNKNOWN_READER, sc.SCARD_E_READER_UNAVAILABLE):
                self._reader_gone()
                relist = True
                continue
            if hr != sc.SCARD_S_SUCCESS:
                raise _ContextDead(self._describe(hr))
            self._healthy = True
            for name, state, atr in out:
                if name == PNP:
                    if state & sc.SCARD_STATE_CHANGED:
                        relist = True
                    pnp_state = state & ~sc.SCARD_STATE_CHANGED
                elif state & (sc.SCARD_STATE_UNKNOWN | sc.SCARD_STATE_IGNORE):
                    self._reader_gone()
                    relist = True
                else:
                    self._reader_state = state & ~sc.SCARD_STATE_CHANGED
                    self._card_state(name, state, atr)

    def _list(self, ctx: int) -> list[str]:
        sc = self.sc
        hr, names = sc.SCardListReaders(ctx, [])
        if hr == sc.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hr != sc.SCARD_S_SUCCESS:
            raise _ContextDead(self._describe(hr))
        return list(names)

    def _choose_reader(self, names: list[str]) -> None:
        matches = [n for n in names if fnmatch.fnmatchcase(n, self.pattern)]
        chosen = matches[0] if matches else None
        if chosen is not None and chosen == self._reader:
            return
        if self._reader is not None and chosen != self._reader:
            self._lose(f"reader {self._reader!r} unplugged")
        self._reader = chosen
        self._reader_state = self.sc.SCARD_STATE_UNAWARE
        if chosen is None:
            self._lose(f"no PC/SC reader matches {self.pattern!r} (listed: {', '.join(names) or 'none'})")
            return
        if len(matches) > 1:
            log.warning("%s: %d readers match %r; using %r", self.name, len(matches), self.pattern, chosen)
        log.info("%s: using PC/SC reader %r", self.name, chosen)
        self._back(chosen)

    def _reader_gone(self) -> None:
        if self._reader is not None:
            self._lose(f"reader {self._reader!r} unplugged")
            self._reader = None
        # The reader list may still name it for a moment; do not spin on that.
        self._stopping.wait(0.05)

    # ------------------------------------------------------------------------- cards
    def _card_state(self, reader: str, state: int, atr: list[int]) -> None:
        sc = self.sc
        present = bool(state & sc.SCARD_STATE_PRESENT)
        counter = state >> 16
        if self._card is not None and (not present or counter != self._card):
            self._card = None
            self._send(CardRemoved(source=self.name, raw={"reader": self._reader}))
        if not present or self._card is not None:
            return
        raw = {"reader": self._reader, "atr": bytes(atr).hex()}
        if state & sc.SCARD_STATE_MUTE:
            result: _Read | None = _Read(None, "no_answer", "no ATR")
        else:
            result = self._read_uid(reader)
        if result is None:
            return  # stopping
        if result.dead:
            raise _ContextDead(result.detail)
        # Set only now: a card is "in" (and gets its CardRemoved) once it got its first event.
        self._card = counter
        if result.uid is not None:
            self._send(CardPresented(source=self.name, uid=result.uid, raw=raw))
        else:
            log.info("%s: unreadable card (%s: %s)", self.name, result.reason, result.detail)
            self._send(CardUnreadable(source=self.name, reason=result.reason, raw={**raw, "detail": result.detail}))

    def _read_uid(self, reader: str) -> _Read | None:
        box: list[_Read] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(self._transact(reader))
            except Exception as exc:  # reported as an unreadable card, never a dead thread
                log.exception("%s: reading the UID failed", self.name)
                box.append(_Read(None, "error", repr(exc)))
            finally:
                done.set()

        threading.Thread(target=work, name=f"pcsc read {self.name}", daemon=True).start()
        deadline = time.monotonic() + self.read_timeout_s
        while not done.wait(0.05):
            if self._stopping.is_set():
                return None
            if time.monotonic() > deadline:
                # The late answer, if any, is dropped with its thread.
                return _Read(None, "no_answer", f"no reply in {self.read_timeout_s * 1000:.0f} ms")
        return box[0]

    def _transact(self, reader: str) -> _Read:
        sc = self.sc
        hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        if hr != sc.SCARD_S_SUCCESS:
            return self._failed("establish", hr)
        try:
            hr, card, protocol = sc.SCardConnect(ctx, reader, sc.SCARD_SHARE_SHARED,
                                                 sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
            if hr != sc.SCARD_S_SUCCESS:
                return self._failed("connect", hr)
            try:
                hr, response = sc.SCardTransmit(card, protocol, GET_UID)
                if hr != sc.SCARD_S_SUCCESS:
                    return self._failed("transmit", hr)
                return self._parse(bytes(response))
            finally:
                sc.SCardDisconnect(card, sc.SCARD_LEAVE_CARD)
        finally:
            sc.SCardReleaseContext(ctx)

    @staticmethod
    def _parse(response: bytes) -> _Read:
        if not response:
            return _Read(None, "no_answer", "empty response")
        if len(response) < 2:
            return _Read(None, "short_answer", f"response {response.hex()}")
        if response[-2:] != b"\x90\x00":
            return _Read(None, f"status {response[-2:].hex().upper()}", f"{len(response)}-byte response")
        uid = response[:-2]
        if not 4 <= len(uid) <= 10:
            # ISO 14443 UIDs are 4, 7 or 10 bytes and a FeliCa IDm is 8: anything else is noise.
            return _Read(None, "bad_uid_length", f"{len(uid)}-byte UID")
        return _Read(uid)

    def _failed(self, step: str, hr: int) -> _Read:
        sc = self.sc
        detail = f"{step}: {self._describe(hr)}"
        if hr in self._codes(_DEAD_NAMES):
            return _Read(None, "pcscd_lost", detail, dead=True)
        if hr in self._codes(_REMOVED_NAMES):
            return _Read(None, "removed_during_read", detail)
        if hr in self._codes(_NO_ANSWER_NAMES):
            return _Read(None, "no_answer", detail)
        if hr == sc.SCARD_E_SHARING_VIOLATION:
            return _Read(None, "reader_busy", detail)
        return _Read(None, f"error {hr & 0xFFFFFFFF:08X}", detail)

    def _codes(self, names: tuple[str, ...]) -> set[int]:
        return {getattr(self.sc, n) for n in names if hasattr(self.sc, n)}

    def _describe(self, hr: int) -> str:
        return f"0x{hr & 0xFFFFFFFF:08X} {self.sc.SCardGetErrorMessage(hr)}"

    # ------------------------------------------------------------------------- reader health
    def _lose(self, reason: str) -> None:
        if self._card is not None:
            self._card = None
            self._send(CardRemoved(source=self.name, raw={"reader": self._reader, "why": reason}))
        if not self._lost:
            self._lost = True
            log.warning("%s: reader lost: %s", self.name, reason)
            self._send(ReaderLost(source=self.name, reason=reason))

    def _back(self, reader: str) -> None:
        if self._lost:
            self._lost = False
            log.info("%s: reader back (%s)", self.name, reader)
            self._send(ReaderBack(source=self.name, raw={"reader": reader}))


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
