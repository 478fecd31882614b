"""Watching one PC/SC reader on one pcscd context: readers plugged and unplugged, cards put on
and taken off, and what the daemon is told about each.

The watch waits in ``SCardGetStatusChange`` on two entries: the reader and the
``\\\\?PnP?\\Notification`` pseudo-reader, which wakes it when readers are plugged in or out
(and, for pcscd builds without PnP notification, a timeout makes it read the list again).

Per insertion it emits exactly one ``CardPresented`` or ``CardUnreadable``, and per removal
exactly one ``CardRemoved``; a card swapped faster than the watch looks is told apart by the
per-reader event counter pcscd keeps in the upper 16 bits of the reader state. ``ReaderLost``
is emitted once per outage (also when no reader matches at start), and ``ReaderBack`` once when
it ends; a card that was in when the reader went is reported removed, so a desk locks. This
state outlives a context: pcscd restarting is one outage, whatever number of contexts it took.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from typing import Any

from sekisho.policies.events import CardPresented, CardRemoved, CardUnreadable, ReaderBack, ReaderLost

from .base import Emit
from .pcsc_codes import describe
from .pcsc_uid import UidRead, UidReader

log = logging.getLogger(__name__)

PNP = "\\\\?PnP?\\Notification"


class ContextDead(Exception):
    """pcscd went away: this context answers SCARD_E_NO_SERVICE from now on."""


class ReaderWatch:
    """Watches the first reader whose name matches ``pattern``; ``sc`` is ``smartcard.scard``,
    ``send`` the driver's way to the daemon, ``stopping`` the driver's stop flag."""

    def __init__(self, sc: Any, name: str, pattern: str, poll_timeout_ms: int, uids: UidReader, send: Emit,
                 stopping: threading.Event) -> None:
        self.sc = sc
        self.name = name
        self.pattern = pattern
        self.poll_timeout_ms = poll_timeout_ms
        self.uids = uids
        self._send = send
        self._stopping = stopping
        self.healthy = False
        """The current context has answered one wait: it is worth no backoff when it dies."""
        self._reader: str | None = None
        self._reader_state = 0
        self._card: int | None = None
        """pcscd's event counter for the card on the reader; None when the reader is empty."""
        self._lost = False

    def watch(self, ctx: int) -> None:
        """Watch on ``ctx`` until the driver stops; raises ``ContextDead`` when pcscd goes."""
        sc = self.sc
        self.healthy = False
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
                raise ContextDead(describe(sc, hr))
            self.healthy = True
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
            raise ContextDead(describe(sc, hr))
        return list(names)

    def _choose_reader(self, names: list[str]) -> None:
        matches = [n for n in names if fnmatch.fnmatchcase(n, self.pattern)]
        chosen = matches[0] if matches else None
        if chosen is not None and chosen == self._reader:
            return
        if self._reader is not None and chosen != self._reader:
            self.lose(f"reader {self._reader!r} unplugged")
        self._reader = chosen
        self._reader_state = self.sc.SCARD_STATE_UNAWARE
        if chosen is None:
            self.lose(f"no PC/SC reader matches {self.pattern!r} (listed: {', '.join(names) or 'none'})")
            return
        if len(matches) > 1:
            log.warning("%s: %d readers match %r; using %r", self.name, len(matches), self.pattern, chosen)
        log.info("%s: using PC/SC reader %r", self.name, chosen)
        self._back(chosen)

    def _reader_gone(self) -> None:
        if self._reader is not None:
            self.lose(f"reader {self._reader!r} unplugged")
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
            result: UidRead | None = UidRead(None, "no_answer", "no ATR")
        else:
            result = self.uids.read(reader)
        if result is None:
            return  # stopping
        if result.dead:
            raise ContextDead(result.detail)
        # Set only now: a card is "in" (and gets its CardRemoved) once it got its first event.
        self._card = counter
        if result.uid is not None:
            self._send(CardPresented(source=self.name, uid=result.uid, raw=raw))
        else:
            log.info("%s: unreadable card (%s: %s)", self.name, result.reason, result.detail)
            self._send(CardUnreadable(source=self.name, reason=result.reason, raw={**raw, "detail": result.detail}))

    # ------------------------------------------------------------------------- reader health
    def lose(self, reason: str) -> None:
        """The reader (or pcscd) is gone: the card on it is removed, and the outage reported once."""
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
