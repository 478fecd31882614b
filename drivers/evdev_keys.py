"""Keys read from a Linux input event device (``/dev/input/event*``) through python-evdev: a USB
numeric keypad serving as a card reader's PIN pad, and a single key serving as a binary input
(a desk's leave-seat key, a door's exit button).

Two classes, because the two uses share the device handling but not their options:
``EvdevPinPad`` collects digits and reports ``PinEntered`` when Enter is pressed; ``EvdevKey``
reports ``InputChanged`` as one configured key goes down and up. Each has its own ``OPTIONS``
table, so a ``key`` given to a PIN pad, or a ``timeout_s`` given to a key, is a config error.

The device is opened with ``EVIOCGRAB`` unless ``grab = false``: while grabbed, its keys reach
no other reader of the device, so the digits of a PIN never arrive in a desktop's focused
window. A device another program has grabbed delivers nothing to us either, so a failed grab
counts as a failed open and is retried, never read ungrabbed.

``device`` is a path (``/dev/input/by-id/usb-…-event-kbd`` stays the same across reboots and
ports, ``eventN`` does not) or a glob; ``name`` narrows the matches to devices whose kernel
name (what ``evtest`` prints) matches an fnmatch pattern. The first match in sorted order that
opens is used.

The file descriptor is watched with ``loop.add_reader``, so keys are handled on the daemon's
loop thread as they arrive. python-evdev's own ``async_read_loop`` is not used: when a read
returns no event (what a hung-up device gives) its callback dies with a TypeError that only the
loop's exception handler sees, and the iteration waits for ever. An unplugged device makes the
read fail (the kernel answers ENODEV; a hung-up tty in the tests reads end-of-file): that is
logged once, the entry under way is dropped, and the device is looked for again with backoff
until it is back. Nothing is emitted for the outage itself: a PIN pad is not its reader, and a
vanished key was not released.

Between a keypad appearing and the grab (at most ``BACKOFF_MAX_S`` after a re-plug, or before
the daemon starts) its keys go where any keyboard's go. A udev rule that sets
``ENV{LIBINPUT_IGNORE_DEVICE}="1"`` for the keypad keeps it from libinput desktops for good.

python-evdev is imported by ``start()`` only: ``sekisho check-config`` imports this module on
nodes that have no python-evdev, to read ``OPTIONS``. PIN digits are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sekisho.policies.events import Event, InputChanged

from .base import DriverError, Emit, check_options
from .options import REQUIRED, Option
from .pin_entry import PinEntry, check_max_digits, check_timeout

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 1.0
"""A re-plugged keypad is grabbed at most this long after it reappears; until then its keys go
wherever the desktop sends them. Looking costs a stat() of the path while it is absent."""

KEY_NAME = re.compile(r"^(KEY|BTN)_[A-Z0-9_]+$")


def _check_device(value: str) -> str | None:
    if value.startswith("/") and value.strip() == value:
        return None
    return "must be an absolute path or glob, e.g. /dev/input/by-id/usb-04d9_1203-event-kbd"


def _check_key(value: str) -> str | None:
    if KEY_NAME.match(value):
        return None
    return "must be a key name as the kernel spells it (evtest shows it), e.g. KEY_PAUSE"


COMMON_OPTIONS: Mapping[str, Option] = {
    "device": Option(str, REQUIRED, "The event device: a path, best under /dev/input/by-id/ (stable across "
                     "reboots and ports), or a glob such as /dev/input/by-id/*-event-kbd", check=_check_device),
    "name": Option(str, "", "Use only a matching device whose kernel name (evtest shows it) matches this "
                   "fnmatch pattern, e.g. \"*Keypad*\"; empty means any"),
    "grab": Option(bool, True, "Take the device for sekisho alone (EVIOCGRAB), so its keys reach no desktop. "
                   "Set false only for a key on a keyboard the desktop needs: grabbing would take the whole "
                   "keyboard away from it"),
}


class _EvdevDevice:
    """Find, open, grab and watch one event device; subclasses get its key events."""

    OPTIONS: ClassVar[Mapping[str, Option]] = COMMON_OPTIONS

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        self.name = name
        self._emit = emit
        self.pattern = str(options["device"])
        self.name_pattern = str(options.get("name", self.OPTIONS["name"].default))
        self.grab = bool(options.get("grab", self.OPTIONS["grab"].default))
        self.device: str | None = None
        """The path being read now; None while no device is open."""
        self.opened = 0
        """Times a device was opened (and grabbed): lets a test wait for a reopen."""
        self._evdev: Any = None
        """The ``evdev`` module, once ``start()`` has imported it."""
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._lost = False
        """An outage is under way and has been logged; repeats go to the debug log."""

    # ------------------------------------------------------------------------- lifecycle
    def _check_options(self) -> list[tuple[str, Any]]:
        return [("device", self.pattern)]

    async def start(self) -> None:
        check_options(self.OPTIONS, self._check_options())
        try:
            import evdev
        except ImportError as exc:
            raise DriverError(f"the evdev driver needs python-evdev >= 1.6 ({exc}); install it with the 'evdev' "
                              "extra (building it needs the kernel headers, linux-libc-dev)") from None
        self._evdev = evdev
        self._prepare(evdev.ecodes)
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"evdev {self.name}")

    async def stop(self) -> None:
        self._running = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._reset()

    # ------------------------------------------------------------------------- for subclasses
    def _prepare(self, ecodes: Any) -> None:
        """Resolve key names to codes with python-evdev's table; raise DriverError if one is unknown."""

    def _key(self, code: int, value: int, path: str) -> None:
        """One EV_KEY event: value 1 is a press, 0 a release, 2 the keyboard's autorepeat."""

    def _dropped(self, path: str) -> None:
        """The kernel's buffer overflowed (SYN_DROPPED): some events between are lost."""

    def _reset(self) -> None:
        """Forget anything under way: the device was lost, or the driver is stopping."""

    def _send(self, event: Event) -> None:
        if self._running:
            self._emit(event)

    # ------------------------------------------------------------------------- the device
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_FIRST_S
        while True:
            device = self._open()
            if device is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_FIRST_S
            gone: asyncio.Future[str] = loop.create_future()
            loop.add_reader(device.fd, self._readable, device, gone)
            try:
                reason = await gone
            finally:
                loop.remove_reader(device.fd)  # already off the loop when it died; not when stopped
                self.device = None
                self._reset()
                device.close()  # also ends the grab
            self._lose(f"{device.path} vanished ({reason})")

    def _candidates(self) -> list[str]:
        if any(c in self.pattern for c in "*?["):
            return sorted(glob.glob(self.pattern))
        return [self.pattern]

    def _open(self) -> Any:
        """The first matching device that opens (and grabs), or None with the reason logged."""
        why = f"no device matches {self.pattern}"
        for path in self._candidates():
            if not os.path.exists(path):
                # Not plugged in (or a by-id link left dangling), the usual reason to wait, so it
                # is not an open error. Not trying the open also spares the tests: under
                # umockdev's preload every failed open of a /dev path leaks one of its 50 slots.
                continue
            try:
                device = self._evdev.InputDevice(path)
            except PermissionError:
                why = f"cannot open {path}: permission denied (the daemon needs read access to input devices)"
                continue
            except OSError as exc:
                why = f"cannot open {path}: {exc.strerror or exc}"
                continue
            if self.name_pattern and not fnmatch.fnmatchcase(device.name, self.name_pattern):
                device.close()
                why = f"no device matching {self.pattern} is named {self.name_pattern!r}"
                continue
            if self.grab:
                try:
                    device.grab()
                except OSError as exc:
                    # EBUSY: another program has it grabbed and gets every key; reading it
                    # ungrabbed would show us nothing and leave the keys with that program.
                    device.close()
                    why = f"cannot grab {path} ({exc.strerror or exc}): another program holds it"
                    continue
            self.device = path
            self.opened += 1
            log.info("%s: reading %s (%s)%s", self.name, path, device.name, ", grabbed" if self.grab else "")
            self._lost = False
            return device
        self._lose(why)
        return None

    def _lose(self, reason: str) -> None:
        if self._lost:
            log.debug("%s: still no device: %s", self.name, reason)
        else:
            self._lost = True
            log.warning("%s: %s; looking for it again", self.name, reason)

    def _readable(self, device: Any, gone: asyncio.Future[str]) -> None:
        try:
            events = list(device.read())
        except BlockingIOError:
            return  # woken with nothing queued: wait for the next wake-up
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            if events:
                self._handle(events, device.path)
                return
            # A live evdev device never reads as end-of-file: it has events or says EAGAIN.
            reason = "end of file"
        # A dead device stays readable for ever: stop the wake-ups before _run gets its turn.
        asyncio.get_running_loop().remove_reader(device.fd)
        gone.set_result(reason)

    def _handle(self, events: list[Any], path: str) -> None:
        ecodes = self._evdev.ecodes
        for event in events:
            if event.type == ecodes.EV_KEY:
                self._key(event.code, event.value, path)
            elif event.type == ecodes.EV_SYN and event.code == ecodes.SYN_DROPPED:
                self._dropped(path)


class EvdevPinPad(_EvdevDevice):
    """A card reader's PIN pad: a USB numeric keypad (or any keyboard). Digits (the top row and
    the keypad's) are collected; Enter or the keypad's Enter reports them as one ``PinEntered``
    whose source is the reader's name; Backspace or Esc clears the entry. An entry with no key
    for ``timeout_s``, or one longer than ``max_digits``, is discarded and reported as nothing
    (``PinEntry``, pin_entry.py, which an OSDP reader's keypad shares)."""

    OPTIONS: ClassVar[Mapping[str, Option]] = {
        **COMMON_OPTIONS,
        "timeout_s": Option(float, 5.0, "Seconds between two keys after which the digits typed so far are "
                            "discarded", check=check_timeout),
        "max_digits": Option(int, 16, "Longest PIN; a longer entry is discarded when Enter is pressed",
                             check=check_max_digits),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        super().__init__(name, options, emit, data_dir=data_dir)
        self.timeout_s = float(options.get("timeout_s", self.OPTIONS["timeout_s"].default))
        self.max_digits = int(options.get("max_digits", self.OPTIONS["max_digits"].default))
        self._digit_of: dict[int, str] = {}
        self._submit: frozenset[int] = frozenset()
        self._clear: frozenset[int] = frozenset()
        self._pin = PinEntry(name, self.timeout_s, self.max_digits, self._send, log)

    @property
    def pending(self) -> int:
        """How many digits the entry under way holds (never which)."""
        return self._pin.pending

    def _check_options(self) -> list[tuple[str, Any]]:
        return [*super()._check_options(), ("timeout_s", self.timeout_s), ("max_digits", self.max_digits)]

    def _prepare(self, ecodes: Any) -> None:
        codes = ecodes.ecodes
        self._digit_of = {codes[f"{prefix}{d}"]: str(d) for d in range(10) for prefix in ("KEY_", "KEY_KP")}
        self._submit = frozenset((codes["KEY_ENTER"], codes["KEY_KPENTER"]))
        self._clear = frozenset((codes["KEY_BACKSPACE"], codes["KEY_ESC"]))

    def _key(self, code: int, value: int, path: str) -> None:
        if value != 1:
            return  # a release, or autorepeat: holding a digit down is one digit
        if code in self._digit_of:
            self._pin.digit(self._digit_of[code])
        elif code in self._submit:
            self._pin.submit({"device": path})
        elif code in self._clear:
            self._pin.clear()

    def _dropped(self, path: str) -> None:
        if self._pin.under_way:
            log.warning("%s: %s dropped events; the PIN entry under way is discarded", self.name, path)
        self._pin.reset()

    def _reset(self) -> None:
        self._pin.reset()


class EvdevKey(_EvdevDevice):
    """One key as a binary input: ``InputChanged(active=True)`` when it goes down, ``active=False``
    when it comes up; the keyboard's autorepeat while it is held reports nothing. As a desk's
    leave_seat input, the press locks the session."""

    OPTIONS: ClassVar[Mapping[str, Option]] = {
        **COMMON_OPTIONS,
        "key": Option(str, REQUIRED, "The key, as the kernel names it (evtest shows it): KEY_PAUSE, KEY_F13, "
                      "BTN_0 ...", check=_check_key),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        super().__init__(name, options, emit, data_dir=data_dir)
        self.key = str(options["key"])
        self.code: int | None = None

    def _check_options(self) -> list[tuple[str, Any]]:
        return [*super()._check_options(), ("key", self.key)]

    def _prepare(self, ecodes: Any) -> None:
        code = ecodes.ecodes.get(self.key)
        if code is None:
            raise DriverError(f"key: no key named {self.key!r} in the kernel's table (evtest shows the names, "
                              "e.g. KEY_PAUSE)")
        self.code = code

    def _key(self, code: int, value: int, path: str) -> None:
        if code == self.code and value in (0, 1):
            self._send(InputChanged(source=self.name, active=value == 1, raw={"device": path}))
