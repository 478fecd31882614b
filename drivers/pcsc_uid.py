"""Reading a contactless card's UID through pcscd, and telling a garbled answer from a UID.

The UID is read with the PC/SC part 3 pseudo-APDU ``FF CA 00 00 00``, which the reader answers
itself for any contactless card. The read runs in a short-lived thread with its own context:
a card that never answers would otherwise hold the watching thread (pcsc-lite serialises the
calls on one context, and vpcd has no transmit timeout), and removals, restarts and ``stop()``
must still be seen. Whatever goes wrong, a read ends as a ``UidRead`` with a reason for
``CardUnreadable``, never as an exception in the watching thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from .pcsc_codes import DEAD_NAMES, NO_ANSWER_NAMES, REMOVED_NAMES, codes, describe

log = logging.getLogger(__name__)

GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]


@dataclass(frozen=True)
class UidRead:
    uid: bytes | None
    """None: unreadable, and ``reason`` says why."""
    reason: str = ""
    detail: str = ""
    dead: bool = False
    """pcscd went away during the read: the watcher's context is dead too."""


class UidReader:
    """Reads the UID of the card on a reader within ``timeout_s``; ``sc`` is ``smartcard.scard``.
    ``stopping`` set gives up the wait at once."""

    def __init__(self, sc: Any, name: str, timeout_s: float, stopping: threading.Event) -> None:
        self.sc = sc
        self.name = name
        self.timeout_s = timeout_s
        self._stopping = stopping

    def read(self, reader: str) -> UidRead | None:
        """The card's UID or why there is none; None when the driver is stopping."""
        box: list[UidRead] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(self._transact(reader))
            except Exception as exc:  # reported as an unreadable card, never a dead thread
                log.exception("%s: reading the UID failed", self.name)
                box.append(UidRead(None, "error", repr(exc)))
            finally:
                done.set()

        threading.Thread(target=work, name=f"pcsc read {self.name}", daemon=True).start()
        deadline = time.monotonic() + self.timeout_s
        while not done.wait(0.05):
            if self._stopping.is_set():
                return None
            if time.monotonic() > deadline:
                # The late answer, if any, is dropped with its thread.
                return UidRead(None, "no_answer", f"no reply in {self.timeout_s * 1000:.0f} ms")
        return box[0]

    def _transact(self, reader: str) -> UidRead:
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
                return parse(bytes(response))
            finally:
                sc.SCardDisconnect(card, sc.SCARD_LEAVE_CARD)
        finally:
            sc.SCardReleaseContext(ctx)

    def _failed(self, step: str, hr: int) -> UidRead:
        sc = self.sc
        detail = f"{step}: {describe(sc, hr)}"
        if hr in codes(sc, DEAD_NAMES):
            return UidRead(None, "pcscd_lost", detail, dead=True)
        if hr in codes(sc, REMOVED_NAMES):
            return UidRead(None, "removed_during_read", detail)
        if hr in codes(sc, NO_ANSWER_NAMES):
            return UidRead(None, "no_answer", detail)
        if hr == sc.SCARD_E_SHARING_VIOLATION:
            return UidRead(None, "reader_busy", detail)
        return UidRead(None, f"error {hr & 0xFFFFFFFF:08X}", detail)


def parse(response: bytes) -> UidRead:
    """The reader's answer to GET UID: the UID, or why it is not one."""
    if not response:
        return UidRead(None, "no_answer", "empty response")
    if len(response) < 2:
        return UidRead(None, "short_answer", f"response {response.hex()}")
    if response[-2:] != b"\x90\x00":
        return UidRead(None, f"status {response[-2:].hex().upper()}", f"{len(response)}-byte response")
    uid = response[:-2]
    if not 4 <= len(uid) <= 10:
        # ISO 14443 UIDs are 4, 7 or 10 bytes and a FeliCa IDm is 8: anything else is noise.
        return UidRead(None, "bad_uid_length", f"{len(uid)}-byte UID")
    return UidRead(uid)
