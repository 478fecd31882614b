"""Wall readers on RS-485 speaking OSDP (IEC 60839-11-5), through libosdp's control panel.

One RS-485 line (a serial device and its baud rate) carries one or more readers, each at its own
OSDP address; each address is a ``[readers.<name>]`` of its own, with its door and direction::

    [readers.entrance-in]
    driver = "osdp"
    line = "/dev/ttyUSB0"
    baud = 9600
    address = 1
    door = "entrance"
    direction = "in"

The readers naming one line share one libosdp control panel (a process cannot open a line
twice): ``OsdpLines``, built once by the composition root and passed to every reader, holds one
``OsdpLine`` per device path. The first reader of a line to start starts the line's panel with
all of its readers; the last to stop stops it. The panel and its supervision live in
osdp_line.py, which imports libosdp at start only, so ``check-config`` reads ``OPTIONS`` on a
node without libosdp.

**Secure channel always.** Every reader runs with libosdp's ``EnforceSecure``: a reader is
online only inside a secure channel opened with its SCBK, which lives in the data dir
(osdp_keys.py; 0600, never logged, never on the bus). A reader with no key stops the start,
naming ``sekisho reader osdp-key READER``, which keys a reader in install mode (and rotates a
key with the Keyset command). A reader that fails the secure channel (a wrong key) stays
offline and is ``ReaderLost`` with that reason.

**What a card read gives** (``CardPresented.uid``, what the site key hashes; the format, the bit
count and the bits as hex stay in ``raw`` for the log):

- raw, unspecified format (``CardFormat.Unspecified``): the bits the reader sends, as bytes.
  A reader set to send the card's serial number (CSN/UID) as raw bits gives the same bytes a
  PC/SC reader reads with GET UID, so the card hashes alike at both.
- ``CardFormat.ASCII``: the characters; hex digits (a reader sending the UID as text) are
  read as the bytes they spell, so again the card's UID; any other text is kept as its bytes.
- ``CardFormat.Wiegand``: the Wiegand frame (parity bits included) packed into bytes, the last
  byte padded with zero bits. That is the credential's number as the reader decoded it, not the
  chip's UID: such a card hashes alike only at readers sending the same Wiegand format, and is
  enrolled from such a reader (tap enrolment).

**Keypad.** Key presses (``Event.KeyPress``: ASCII digits, ``#`` = 0x0D per OSDP or ``#``,
``*`` = 0x7F or ``*``) go through the same PIN collection as the evdev PIN pad (pin_entry.py):
digits then ``#``, ``*`` clears, an inter-key timeout; digits are never logged.

**Feedback.** Each card read and PIN carries ``raw["answer"]`` (daemon/answers.py): the daemon
tells the driver what the event decided, and the driver drives the reader's LED and buzzer
from the ``feedback`` table (granted, denied, PIN wanted, locked out); no controller knows the
reader is an OSDP one.

**The door's mode** (normal, lockdown, free, emergency) is the LED's colour at rest and, on a
reader with a display, a word (``MODES``); it is shown again each time the reader comes online.

**Supervision** (osdp_line.py): a reader that stops answering is ``ReaderLost`` once libosdp
declares it offline and ``ReaderBack`` when it is online again; a tamper report from the reader
is ``ReaderTampered``; the line failing (device unplugged) is retried with backoff and never
stops the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sekisho.policies.events import CardPresented, CardUnreadable, Event, ReaderBack, ReaderLost, ReaderTampered

from .base import DriverError, DriverNotSetUp, Emit, check_options
from .options import REQUIRED, Option, between
from .osdp_keys import KeyFileError, load_scbk
from .pin_entry import PinEntry, check_max_digits, check_timeout

log = logging.getLogger(__name__)

BAUDS = (9600, 19200, 38400, 57600, 115200, 230400)
"""The baud rates OSDP names (osdp_line.py maps each to its termios constant)."""
COLOURS = ("black", "red", "green", "amber", "blue", "magenta", "cyan", "white")
OUTCOMES = ("granted", "denied", "pin_wanted", "locked_out")
FEEDBACK: Mapping[str, Mapping[str, Any]] = {
    "granted": {"led": "green", "seconds": 3.0, "beeps": 1},
    "denied": {"led": "red", "seconds": 3.0, "beeps": 3},
    "pin_wanted": {"led": "amber", "seconds": 10.0, "beeps": 0},
    "locked_out": {"led": "red", "seconds": 5.0, "beeps": 5},
}
"""Sane defaults for the ``feedback`` option: what the reader shows for each outcome. PIN wanted
lasts the door's default ``pin_timeout_s`` (10 s), how long the door waits for the PIN."""
MODES: Mapping[str, tuple[str, str]] = {
    "normal": ("red", "READY"),
    "lockdown": ("magenta", "LOCKDOWN"),
    "free": ("green", "OPEN"),
    "emergency": ("green", "EMERGENCY EXIT"),
}
"""The door's mode at rest: the LED's permanent colour (an outcome's colour shows over it for
its seconds, then the reader returns to this) and what a reader with a display shows."""
RESULTS: Mapping[str, str] = {
    "granted": "granted",
    "denied": "denied",
    # A desk (daemon/desks.py) records its event's kind as the result (policies/desk.py Kind).
    "unlocked": "granted",
    "foreign_card": "denied",
}
"""The outcome a recorded ``result`` shows; green only for a grant, nothing for a result not here."""
SUBMIT_KEYS = frozenset(b"#\r")
CLEAR_KEYS = frozenset(b"*\x7f")


def _check_line(value: str) -> str | None:
    if value.startswith("/") and value.strip() == value:
        return None
    return "must be the serial device's absolute path, e.g. /dev/serial/by-id/usb-FTDI_...-port0 or /dev/ttyUSB0"


def _check_feedback(value: dict) -> str | None:
    for outcome, shown in value.items():
        if outcome not in OUTCOMES:
            return f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})"
        if not isinstance(shown, dict):
            return f"{outcome}: must be a table such as {{ led = \"green\", seconds = 3, beeps = 1 }}"
        for key, v in shown.items():
            if key == "led" and v not in COLOURS:
                return f"{outcome}.led: must be one of {', '.join(COLOURS)}"
            if key == "seconds" and (not isinstance(v, int | float) or not 0 < v <= 25):
                return f"{outcome}.seconds: must be a number between 0 and 25"
            if key == "beeps" and (not isinstance(v, int) or not 0 <= v <= 10):
                return f"{outcome}.beeps: must be a whole number between 0 and 10"
            if key not in ("led", "seconds", "beeps"):
                return f"{outcome}: unknown key {key!r} (known: led, seconds, beeps)"
    return None


def card_uid(event: Mapping[str, Any]) -> bytes:
    """The bytes a card read stands for (module docstring, "What a card read gives")."""
    data = bytes(event.get("data") or b"")
    fmt = event.get("format")
    length = int(event.get("length") or 0)
    if fmt == ASCII_FORMAT:
        text = data.decode("ascii", "replace").strip()
        try:
            return bytes.fromhex(text) if text else data
        except ValueError:
            return data
    if length:
        whole, extra = divmod(length, 8)
        data = data[:whole + (1 if extra else 0)]
        if extra:  # the bits past the count are padding: make them zero, whatever the reader sent
            data = data[:-1] + bytes([data[-1] & (0xFF << (8 - extra)) & 0xFF])
    return data


ASCII_FORMAT = 2
"""libosdp's ``CardFormat.ASCII`` (``OSDP_CARD_FMT_ASCII``), known here without importing it."""


class OsdpLine:
    """One serial device and the readers on it; its panel runs while any of them is started."""

    def __init__(self, path: str, baud: int) -> None:
        self.path = path
        self.baud = baud
        self.readers: dict[int, OsdpReader] = {}
        self.started: set[str] = set()
        self.runner: Any = None
        """The ``LineRunner`` (osdp_line.py) while the line runs."""

    def attach(self, reader: OsdpReader) -> None:
        self.readers.setdefault(reader.address, reader)

    async def start(self, reader: OsdpReader) -> None:
        for other in self.readers.values():
            if other.baud != self.baud:
                raise DriverError(f"line {self.path} runs at {self.baud} baud for reader {self.first.name}, "
                                  f"{other.name} says {other.baud}: one line has one baud rate")
        if (holder := self.readers[reader.address]) is not reader:
            raise DriverError(f"address {reader.address} on {self.path} is reader {holder.name}'s already")
        if self.runner is None:
            keys = {}
            for r in self.readers.values():
                try:
                    key = load_scbk(r.data_dir, r.name)
                except KeyFileError as exc:  # a mode or a content only a person can fix: restarting would loop
                    raise DriverNotSetUp(str(exc)) from None
                if key is None:
                    raise DriverNotSetUp(f"reader {r.name} has no secure channel key yet: put the reader in install "
                                      f"mode and run `sekisho reader osdp-key {r.name}` (with the daemon stopped)")
                keys[r.name] = key
            from . import osdp_line
            try:
                osdp_line.libosdp()
            except ImportError as exc:
                raise DriverError(osdp_line.missing_libosdp(exc)) from None
            if not os.path.exists(self.path):
                log.warning("line %s: no such device yet; looking for it with backoff", self.path)
            runner = osdp_line.LineRunner(self.path, self.baud, list(self.readers.values()), keys)
            runner.start()
            self.runner = runner
        self.started.add(reader.name)

    async def stop(self, reader: OsdpReader) -> None:
        self.started.discard(reader.name)
        if not self.started and self.runner is not None:
            runner, self.runner = self.runner, None
            await asyncio.to_thread(runner.stop)

    @property
    def first(self) -> OsdpReader:
        return next(iter(self.readers.values()))

    def command(self, address: int, command: dict[str, Any]) -> None:
        if self.runner is not None:
            self.runner.command(address, command)


class OsdpLines:
    """Every OSDP line of the node by device path: built once by the composition root
    (daemon/app.py) and passed to each OSDP reader, so readers on one line share its panel."""

    def __init__(self) -> None:
        self.lines: dict[str, OsdpLine] = {}

    def line(self, path: str, baud: int) -> OsdpLine:
        return self.lines.setdefault(os.path.realpath(path) if os.path.exists(path) else path, OsdpLine(path, baud))


class OsdpReader:
    OPTIONS: ClassVar[Mapping[str, Option]] = {
        "line": Option(str, REQUIRED, "The RS-485 line's serial device, best under /dev/serial/by-id/ (stable "
                       "across reboots and ports); readers on one line share it, each at its own address",
                       check=_check_line),
        "baud": Option(int, 9600, "The line's baud rate, the same for every reader on the line: "
                       + ", ".join(map(str, BAUDS)), check=lambda v: None if v in BAUDS else
                       f"must be one of {', '.join(map(str, BAUDS))}"),
        "address": Option(int, REQUIRED, "The reader's OSDP address on its line (set on the reader, 0 to 126)",
                          check=between(0, 126)),
        "timeout_s": Option(float, 5.0, "Seconds between two keypad keys after which the digits typed so "
                            "far are discarded (as the evdev PIN pad's timeout_s; the door's own pin_timeout_s is "
                            "how long it waits for the PIN after the card)", check=check_timeout),
        "max_digits": Option(int, 16, "Longest PIN; a longer entry is discarded when # is pressed",
                             check=check_max_digits),
        "feedback": Option(dict, {}, "What the reader's LED and buzzer show for each outcome, by outcome "
                           "(granted, denied, pin_wanted, locked_out): { led = colour, seconds = how long, "
                           "beeps = how many }; outcomes left out keep their defaults (granted green 3 s 1 "
                           "beep, denied red 3 s 3 beeps, pin_wanted amber 10 s (the door's default pin_timeout_s: set "
                           "it to the door's), locked_out red 5 s 5 beeps)",
                           check=_check_feedback),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path,
                 lines: OsdpLines | None = None) -> None:
        self.name = name
        self.data_dir = Path(data_dir)
        self._emit = emit
        self.path = str(options["line"])
        self.baud = int(options.get("baud", self.OPTIONS["baud"].default))
        self.address = int(options["address"])
        self.timeout_s = float(options.get("timeout_s", self.OPTIONS["timeout_s"].default))
        self.max_digits = int(options.get("max_digits", self.OPTIONS["max_digits"].default))
        given = dict(options.get("feedback") or {})
        self.feedback = {o: {**FEEDBACK[o], **given.get(o, {})} for o in OUTCOMES}
        self.line = (lines or OsdpLines()).line(self.path, self.baud)
        self.line.attach(self)
        self._gate = threading.Lock()
        self._open = False
        self._lost: bool | None = None
        """None until the reader's first status: then whether an outage is under way."""
        self._lost_unsent: ReaderLost | None = None
        """An outage that began before this reader started, its ReaderLost not sent then (the
        line's panel runs from its first reader's start): start() sends it, with its time."""
        self._tampered = False
        self._mode: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pin = PinEntry(name, self.timeout_s, self.max_digits, self._send, log)

    # ------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        check_options(self.OPTIONS, (("line", self.path), ("baud", self.baud), ("address", self.address),
                                     ("timeout_s", self.timeout_s), ("max_digits", self.max_digits),
                                     ("feedback", {o: v for o, v in self.feedback.items()})))
        self._loop = asyncio.get_running_loop()
        with self._gate:
            self._open = True
        try:
            await self.line.start(self)
        except DriverError:
            with self._gate:
                self._open = False
            raise
        with self._gate:
            if self._lost and self._lost_unsent is not None:
                self._emit(self._lost_unsent)
            self._lost_unsent = None

    async def stop(self) -> None:
        with self._gate:
            self._open = False
        await self.line.stop(self)
        self._pin.reset()

    # ------------------------------------------------------------------------- from the line's threads
    def _send(self, event: Event) -> None:
        self._sent(event)

    def _sent(self, event: Event) -> bool:
        """Emit ``event`` if the reader is started; whether it was."""
        with self._gate:
            if self._open:
                self._emit(event)
            return self._open

    def osdp_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == CARD_READ:
            uid = card_uid(event)
            raw = {"format": FORMAT_NAMES.get(int(event.get("format") or 0), str(event.get("format"))),
                   "bits": int(event.get("length") or 0), "data": bytes(event.get("data") or b"").hex(),
                   "address": self.address, "answer": self._answer}
            if uid:
                self._send(CardPresented(source=self.name, uid=uid, raw=raw))
            else:  # recorded, as pcsc records a card it cannot read, and shown as denied at the reader
                self._send(CardUnreadable(source=self.name, reason="empty_card_data",
                                          raw={k: v for k, v in raw.items() if k != "answer"}))
                self.show("denied")
        elif kind == KEY_PRESS:
            keys = bytes(event.get("data") or b"")
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._keys, keys)
        elif kind == STATUS and event.get("type") == STATUS_LOCAL:
            report = bytes(event.get("report") or b"")
            tampered = bool(report[:1] and report[0])
            if tampered != self._tampered:
                self._tampered = tampered
                if tampered:
                    log.warning("%s: the reader reports tamper", self.name)
                self._send(ReaderTampered(source=self.name, active=tampered, raw={"address": self.address}))

    def osdp_status(self, online: bool, reason: str) -> None:
        if online:
            if self._mode is not None:
                self._show_mode(self._mode)
            if self._lost:
                log.info("%s: reader back (address %d on %s)", self.name, self.address, self.path)
                self._send(ReaderBack(source=self.name, raw={"address": self.address, "line": self.path}))
            elif self._lost is None:
                log.info("%s: reader online in a secure channel (address %d on %s)", self.name, self.address,
                         self.path)
            self._lost = False
            self._lost_unsent = None
        elif not self._lost:
            self._lost = True
            log.warning("%s: reader lost: %s", self.name, reason)
            lost = ReaderLost(source=self.name, reason=reason)
            if not self._sent(lost):
                self._lost_unsent = lost
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._pin.reset)

    # ------------------------------------------------------------------------- on the loop
    def show_mode(self, mode: str) -> None:
        """The door's mode (daemon/reader_displays.py): shown now if the line runs, and again each
        time the reader comes online."""
        self._mode = mode
        self._show_mode(mode)

    def _show_mode(self, mode: str) -> None:
        colour, text = MODES.get(mode, MODES["normal"])
        self._led(colour, None)
        # Sent only to a reader that says it has a display (osdp_line.py checks its capability).
        self.line.command(self.address, {
            "command": TEXT_COMMAND, "reader": 0, "control_code": 1, "temp_time": 0, "offset_row": 1,
            "offset_col": 1, "data": text})

    def _keys(self, keys: bytes) -> None:
        for key in keys:
            if 0x30 <= key <= 0x39:
                self._pin.digit(chr(key))
            elif key in SUBMIT_KEYS:
                self._pin.submit({"address": self.address, "answer": self._answer})
            elif key in CLEAR_KEYS:
                self._pin.clear()

    def _answer(self, answer: dict[str, Any]) -> None:
        """What a card or PIN decided (daemon/answers.py), shown on the reader."""
        decided = answer.get("decided") or []
        if decided:
            last = decided[-1]
            found = RESULTS.get(last.get("result"))
            if found is None:  # a result this table does not know: show nothing rather than guess
                return
            outcome = "locked_out" if found == "denied" and last.get("reason") == "locked_out" else found
        elif answer.get("waiting") == "pin":
            outcome = "pin_wanted"
        else:
            return
        self.show(outcome)

    def show(self, outcome: str) -> None:
        """Drive the LED and buzzer as the feedback table says for ``outcome``."""
        shown = self.feedback[outcome]
        self._led(shown["led"], float(shown["seconds"]))
        beeps = int(shown["beeps"])
        if beeps:
            self.line.command(self.address, {
                "command": BUZZER_COMMAND, "reader": 0, "control_code": 2, "on_count": 2, "off_count": 1,
                "rep_count": beeps})

    def _led(self, colour: str, seconds: float | None) -> None:
        """The LED's permanent colour (``seconds`` None: the door's mode at rest) or a temporary one
        for ``seconds``, after which the reader returns to the permanent one."""
        command = {"command": LED_COMMAND, "reader": 0, "led_number": 0, "control_code": 1, "on_count": 1,
                   "off_count": 0, "on_color": COLOURS.index(colour), "off_color": 0, "temporary": False}
        if seconds is not None:  # OSDP timers count in units of 100 ms
            command.update(control_code=2, on_count=5, timer_count=max(1, round(seconds * 10)), temporary=True)
        self.line.command(self.address, command)


# libosdp's enumerations (osdp/constants.py, from osdp_sys), known here without importing it;
# tests/test_osdp_driver.py checks each against libosdp's own.
CARD_READ = 1
KEY_PRESS = 2
STATUS = 4
STATUS_LOCAL = 2
LED_COMMAND = 2
BUZZER_COMMAND = 3
TEXT_COMMAND = 4
FORMAT_NAMES = {0: "raw", 1: "wiegand", ASCII_FORMAT: "ascii"}
