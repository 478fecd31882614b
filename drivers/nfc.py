"""FeliCa (and ISO 14443 A/B) cards on readers that nfcpy drives directly: Sony RC-S380 and
kin over USB, PN53x boards over a serial port, and nfcpy's ``udp`` pseudo-device in tests.

One thread per reader runs ``ContactlessFrontend.connect`` in a loop. ``on-connect`` reports
the card and returns True, so nfcpy keeps checking that the card is still there and calls
``on-release`` when it is gone: a card left on the reader is one presentation, and its removal
is one ``CardRemoved``. The UID reported is ``tag.identifier``: the IDm for FeliCa, the UID
for Type A, the PUPI for Type B.

A reader that cannot be opened, or that stops answering (unplugged), is reported as
``ReaderLost`` and opened again with backoff; ``ReaderBack`` follows when it opens. That is
retried rather than raised as a ``DriverError`` so that an unplugged reader comes back without
a daemon restart, the same way the PC/SC driver survives a pcscd restart. Only a missing
nfcpy, or an option nfcpy could never accept, stops the start.

nfcpy is imported by ``start()`` only: ``sekisho check-config`` imports this
module on nodes that have no nfcpy, to read ``OPTIONS``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sekisho.policies.events import CardPresented, CardRemoved, CardUnreadable, ReaderBack, ReaderLost

from .base import DriverError, Emit, ThreadedDriver, check_options
from .options import REQUIRED, Option

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ["212F", "424F", "106A", "106B"]
TARGET = re.compile(r"^(106|212|424)[AB]$|^(212|424)F$")
PATH = re.compile(r"^(usb|tty|com|udp)(:[^:\s]+){0,2}$")
"""The shape only; nfcpy itself tells a wrong vendor id or port when it opens."""
GARBLED = (struct.error, IndexError)
"""What nfcpy raises when a card's answer is shorter than it assumes, building the tag: a FeliCa
SENSF_RES of 18 bytes (it takes 17 or more, then unpacks a 2-byte system code from the last one)
is one. The card is unreadable; the reader is fine and stays open."""
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0
STOP_TIMEOUT_S = 10.0
"""stop() waits for the polling round under way: milliseconds on a USB reader, but the udp
device waits 1 s per target for an answer."""


def _check_path(value: str) -> str | None:
    if PATH.match(value):
        return None
    return ("must be an nfcpy device path: usb, usb:VID:PID (usb:054c:06c3 is the RC-S380), "
            "usb:BUS:DEV, tty:PORT:DRIVER (tty:USB0:pn532) or udp:HOST:PORT")


def _check_targets(value: list[Any]) -> str | None:
    wrong = [t for t in value if not isinstance(t, str) or not TARGET.match(t)]
    if wrong or not value:
        return (f"{wrong!r} not understood; " if wrong else "") + \
            "must list bitrate and type strings from 106A 212A 424A 106B 212B 424B 212F 424F"
    return None


def _check_interval(value: int) -> str | None:
    return None if 10 <= value <= 5000 else "must be between 10 and 5000 (milliseconds)"


class NfcReader(ThreadedDriver):
    OPTIONS = {
        "path": Option(str, REQUIRED, "nfcpy device path, e.g. usb:054c:06c3 (RC-S380) or udp:127.0.0.1:54321",
                              check=_check_path),
        "targets": Option(list, DEFAULT_TARGETS, "What to poll for: 212F/424F FeliCa, 106A ISO 14443 A "
                                 "(MIFARE), 106B ISO 14443 B; each target costs polling time", check=_check_targets),
        "poll_interval_ms": Option(int, 100, "Pause between polling rounds, and between presence checks "
                                          "while a card is there",
                                          check=_check_interval),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None:
        super().__init__(name, emit)
        self.path = str(options["path"])
        self.targets = list(options.get("targets", DEFAULT_TARGETS))
        self.interval_ms = int(options.get("poll_interval_ms", self.OPTIONS["poll_interval_ms"].default))
        self.nfc: Any = None
        """The ``nfc`` module, once ``start()`` has imported it."""
        # Owned by the thread:
        self._card = False
        self._card_garbled = False
        """The card on the reader is one whose answer nfcpy could not make a tag of."""
        self._rounds = 0
        """Calls of ``_pause`` in the ``connect`` under way: one before each polling round."""
        self._lost = False
        self._pauses = 0
        """Calls of ``_pause`` since the device opened: more than one means it got through a
        polling round, so it worked and is worth reopening soon after a failure."""

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        check_options(self.OPTIONS, (("path", self.path), ("targets", self.targets),
                                     ("poll_interval_ms", self.interval_ms)))
        try:
            import nfc
        except (ImportError, OSError) as exc:
            raise DriverError(f"the nfc driver needs nfcpy >= 1.0.4 ({exc}); install it with the 'nfc' extra") from None
        self.nfc = nfc
        self._start_thread(self._run, "nfc")

    async def stop(self) -> None:
        thread = self._close()
        if thread is not None:
            await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
            if thread.is_alive():
                log.error("%s: nfcpy thread did not stop within %.0f s; abandoning it (it emits nothing more)",
                          self.name, STOP_TIMEOUT_S)

    # ------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            clf = self.nfc.ContactlessFrontend()
            try:
                opened = clf.open(self.path)
                why = "no such device"
            except Exception as exc:  # IOError when busy or not permitted; libusb's own errors when it vanishes
                opened, why = False, str(exc) or type(exc).__name__
            if not opened:
                self._lose(f"cannot open {self.path}: {why}")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            log.info("%s: opened %s", self.name, clf)
            self._back()
            self._pauses = 0
            try:
                self._poll(clf)
            except Exception as exc:  # a bug or an nfcpy surprise must not end the reader for good
                log.exception("%s: nfcpy failed; opening the reader again", self.name)
                self._lose(f"driver error ({exc!r})")
            finally:
                try:
                    clf.close()
                except Exception:  # an unplugged device fails its close too; it is gone either way
                    log.debug("%s: close failed", self.name, exc_info=True)
            # A reader that opens and fails at once must not flap lost/back in a tight loop.
            # nfcpy asks terminate once before the first round, so one pause proves nothing.
            backoff = BACKOFF_FIRST_S if self._pauses > 1 else min(backoff * 2, BACKOFF_MAX_S)
            self._stopping.wait(backoff)

    def _poll(self, clf: Any) -> None:
        rdwr = {
            "targets": self.targets,
            "on-connect": self._on_connect,
            "on-release": self._on_release,
            "iterations": 1,
        }
        while not self._stopping.is_set():
            self._rounds = 0
            try:
                result = clf.connect(rdwr=rdwr, terminate=self._pause)
            except GARBLED as exc:
                self._garbled(exc)
                continue
            if result is False:
                # nfcpy returns False when the device raised IOError: unplugged or wedged.
                self._lose(f"reader {self.path} stopped answering")
                return

    def _pause(self) -> bool:
        """nfcpy's ``terminate`` callback, which it calls between polling rounds and between
        presence checks. It doubles as the pause there: nfcpy's own ``interval`` sleeps between
        rounds without looking at ``terminate``, so with it ``stop()`` would wait for several
        rounds; this wait ends the moment ``stop()`` is called."""
        self._pauses += 1
        self._rounds += 1
        if self._card_garbled and self._rounds > 1:
            # nfcpy asks before each polling round; a round that did not fail on the garbled
            # card's answer found no such card: it was taken away.
            self._card_garbled = False
            self._on_release(None)
        return self._stopping.wait(self.interval_ms / 1000)

    def _garbled(self, exc: Exception) -> None:
        """A card answered in a way nfcpy could not make a tag of: reported unreadable once for
        as long as it stays, the reader kept open."""
        if self._card_garbled:
            return
        log.warning("%s: a card's answer could not be read: %r", self.name, exc)
        self._card_garbled = self._card = True  # its removal is reported like any card's
        self._send(CardUnreadable(source=self.name, reason="garbled_answer",
                                  raw={"reader": self.path, "detail": repr(exc)[:200]}))

    def _on_connect(self, tag: Any) -> bool:
        if self._card_garbled:  # the garbled card gave way to a readable one within a round
            self._card_garbled = False
            self._on_release(None)
        uid = bytes(tag.identifier)
        raw = {"reader": self.path, "tag": str(getattr(tag, "type", "")), "product": str(getattr(tag, "product", ""))}
        if 4 <= len(uid) <= 10:
            self._send(CardPresented(source=self.name, uid=uid, raw=raw))
        else:
            # ISO 14443 UIDs are 4, 7 or 10 bytes and a FeliCa IDm is 8: anything else is noise.
            self._send(CardUnreadable(source=self.name, reason="bad_uid_length",
                                      raw={**raw, "detail": f"{len(uid)}-byte UID"}))
        self._card = True
        return True  # stay connected: nfcpy checks presence and calls on-release when it is gone

    def _on_release(self, tag: Any) -> bool:
        if self._card:
            self._card = False
            self._send(CardRemoved(source=self.name, raw={"reader": self.path}))
        return True

    # ------------------------------------------------------------------------- reader health
    def _lose(self, reason: str) -> None:
        self._card_garbled = False
        if self._card:
            self._card = False
            self._send(CardRemoved(source=self.name, raw={"reader": self.path, "why": reason}))
        if not self._lost:
            self._lost = True
            log.warning("%s: reader lost: %s", self.name, reason)
            self._send(ReaderLost(source=self.name, reason=reason))

    def _back(self) -> None:
        if self._lost:
            self._lost = False
            log.info("%s: reader back (%s)", self.name, self.path)
            self._send(ReaderBack(source=self.name, raw={"reader": self.path}))
