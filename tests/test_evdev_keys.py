"""The evdev PIN pad and key drivers against umockdev: the real python-evdev, reading a device
node in a umockdev testbed (issues 5 and 6).

There is no /dev/uinput here, so the keypad is umockdev's: a device added to the testbed whose
node (``/dev/input/eventN`` and its ``by-id`` link) is a pty. The test writes ``struct
input_event`` records to the pty's other end, the way the kernel queues them, and umockdev's
preload answers python-evdev's ioctls (EVIOCGID, EVIOCGNAME, EVIOCGBIT, ..., EVIOCGRAB) from
an ioctl record that ``Keypad`` writes from a key list. Unplugging is the node removed and the
pty hung up: the driver's read then ends, as it fails with ENODEV on real hardware.

What umockdev cannot show: EVIOCGRAB is answered "done" without any effect, so that another
reader is really shut out is the kernel's part and is not tested; the grab is checked by
watching the ioctl go out (``UMOCKDEV_DEBUG=ioctl`` in a child process). A Python ioctl handler
(``UMockdev.IoctlBase``) in this process would deadlock: python-evdev holds the GIL during its
ioctls, and the handler runs on the testbed's thread.

Run under umockdev's preload: ``umockdev-wrapper .venv/bin/python -m pytest tests/test_evdev_keys.py``.
Without it the tests that need a device fail, by design: a missing test double is a failure,
never a skip.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from sekisho.daemon import config
from sekisho.daemon.errors import ConfigError
from sekisho.drivers import evdev_keys, registry
from sekisho.drivers.base import DriverError
from sekisho.drivers.evdev_keys import EvdevKey, EvdevPinPad
from sekisho.policies.events import InputChanged, PinEntered

KEYPAD = "USB Numeric Keypad"
KEYPAD_LINK = "/dev/input/by-id/usb-04d9_1203-event-kbd"
DIGITS = [f"KEY_{d}" for d in range(10)] + [f"KEY_KP{d}" for d in range(10)]
KEYPAD_KEYS = DIGITS + ["KEY_ENTER", "KEY_KPENTER", "KEY_BACKSPACE", "KEY_ESC", "KEY_NUMLOCK", "KEY_KPDOT",
                        "KEY_KPPLUS", "KEY_PAUSE"]
EVIOCGRAB = (1 << 30) | (4 << 16) | (ord("E") << 8) | 0x90
"""_IOW('E', 0x90, int), as umockdev's debug log prints it: 40044590."""


@pytest.fixture
def tb():
    if "umockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        pytest.fail("tests/test_evdev_keys.py needs umockdev's preload: run `umockdev-wrapper .venv/bin/python -m "
                    "pytest tests/test_evdev_keys.py` (in CI a missing test double is a failure, not a skip)")
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev
    bed = UMockdev.Testbed.new()
    yield bed
    del bed
    gc.collect()  # finalizes the testbed now: its directory goes, its preload state is reset


def _bits(codes: list[int], size: int) -> str:
    mask = bytearray(size)
    for code in codes:
        mask[code // 8] |= 1 << (code % 8)
    return mask.hex().upper()


class Keypad:
    """A USB keypad in the testbed, playing the kernel's part: what it sends is what a real
    keypad sends (MSC_SCAN, EV_KEY, SYN_REPORT per key change)."""

    def __init__(self, tb: Any, tmp_path: Path, *, name: str = KEYPAD, link: str = KEYPAD_LINK,
                 keys: list[str] = KEYPAD_KEYS) -> None:
        from evdev import ecodes
        self.tb, self.name, self.link, self.e = tb, name, link, ecodes
        self.root = Path(tb.get_root_dir())
        self.record = tmp_path / f"{link.rsplit('/', 1)[-1]}.ioctl"
        self.record.write_text(self._ioctls([ecodes.ecodes[k] for k in keys]))
        self.sys_path: str | None = None
        self.node: str | None = None
        self.fd = -1
        self._linked = False

    def _ioctls(self, keys: list[int]) -> str:
        """python-evdev's requests at the sizes it asks (name 256 bytes, bitmaps of KEY_MAX bits),
        answered the way the kernel's evdev answers them for a USB HID keypad (result: bytes
        copied). umockdev matches the size too, so a request of another size would find nothing."""
        e = self.e
        name = self.name.encode()
        phys = b"usb-0000:00:14.0-3/input0"
        return "\n".join([
            "# EVIOCG* answers of a USB HID keypad, for umockdev's ioctl tree (NAME RESULT HEXDATA)",
            "EVIOCGVERSION 0 " + struct.pack("<i", 0x010001).hex().upper(),
            "EVIOCGID 0 " + struct.pack("<HHHH", e.BUS_USB, 0x04D9, 0x1203, 0x0110).hex().upper(),
            f"EVIOCGNAME(0) {len(name) + 1} " + name.ljust(256, b"\0").hex().upper(),
            f"EVIOCGPHYS(0) {len(phys) + 1} " + phys.ljust(256, b"\0").hex().upper(),
            "EVIOCGUNIQ(0) 1 " + bytes(256).hex().upper(),
            "EVIOCGPROP(0) 4 " + bytes(4).hex().upper(),
            "EVIOCGBIT(0) 4 " + _bits([e.EV_SYN, e.EV_KEY, e.EV_MSC, e.EV_LED, e.EV_REP], 4),
            f"EVIOCGBIT({e.EV_KEY}) 96 " + _bits(keys, 96),
            f"EVIOCGBIT({e.EV_MSC}) 96 " + _bits([e.MSC_SCAN], 96),
            f"EVIOCGBIT({e.EV_LED}) 96 " + _bits([e.LED_NUML, e.LED_CAPSL, e.LED_SCROLLL], 96),
            "EVIOCGEFFECTS 0 00000000",
            "",
        ])

    def plug(self, number: int = 7) -> Keypad:
        assert self.node is None, "unplug first"
        node, parent = f"input/event{number}", f"/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/input/input{number}"
        self.tb.add_from_string(
            f"P: {parent}/event{number}\nN: {node}\nE: DEVNAME=/dev/{node}\nE: SUBSYSTEM=input\n"
            f"E: ID_INPUT=1\nE: ID_INPUT_KEY=1\nE: ID_INPUT_KEYBOARD=1\nA: dev=13:{64 + number}\n\n"
            f"P: {parent}\nE: SUBSYSTEM=input\nE: NAME=\"{self.name}\"\nA: name={self.name}\n")
        self.sys_path, self.node = f"/sys{parent}/event{number}", f"/dev/{node}"
        # udev's by-id link, relative as udev makes it; python-evdev opens it by that name, and
        # umockdev picks the ioctl answers by the name opened, so the link gets them too.
        link = self.root / self.link.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f"../event{number}")
        self.tb.load_ioctl(self.node, str(self.record))
        if not self._linked:
            self.tb.load_ioctl(self.link, str(self.record))  # one handler per name; it stays for the re-plug
            self._linked = True
        self.fd = self.tb.get_dev_fd(self.node)
        assert self.fd >= 0
        return self

    def unplug(self) -> None:
        """The kernel's part: node and link gone, and the open device reads as dead."""
        assert self.sys_path and self.node
        pty = os.readlink(self.root / self.node.lstrip("/"))  # /dev/pts/N
        self.tb.remove_device(self.sys_path)
        (self.root / self.link.lstrip("/")).unlink()  # udev removes it; umockdev leaves it dangling
        # Hang the pty up by putting /dev/null in place of its master side: closing the fd
        # instead would let the testbed close a reused fd number when it is finalized.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, self.fd)
        os.close(devnull)
        # umockdev keeps a pty-to-device map entry that remove_device leaves behind; the next
        # device would get the freed pty number and umockdev would abort on the stale entry.
        (self.root / "dev" / ".ptymap" / pty.replace("/", "_")).unlink()
        self.sys_path = self.node = None
        self.fd = -1

    def send(self, *events: tuple[int, int, int]) -> None:
        """One report: the events given, then SYN_REPORT, in one write as the kernel queues them."""
        records = [struct.pack("llHHi", 0, 0, t, c, v) for t, c, v in events]
        os.write(self.fd, b"".join(records) + struct.pack("llHHi", 0, 0, self.e.EV_SYN, self.e.SYN_REPORT, 0))

    def key(self, name: str, value: int) -> None:
        code = self.e.ecodes[name]
        self.send((self.e.EV_MSC, self.e.MSC_SCAN, 0x70000 + code), (self.e.EV_KEY, code, value))

    def tap(self, *names: str) -> None:
        for name in names:
            self.key(name, 1)
            self.key(name, 0)

    def type(self, text: str, keypad: bool = False) -> None:
        """Digits, and "\\n" for Enter: top row, or the numeric block with ``keypad``."""
        prefix = "KEY_KP" if keypad else "KEY_"
        self.tap(*[(prefix + "ENTER") if ch == "\n" else f"{prefix}{ch}" for ch in text])


class Run:
    """A driver on its own asyncio loop, with what it emitted and any exception the loop saw."""

    def __init__(self, driver: Any, events: list[Any]) -> None:
        self.driver, self.events = driver, events
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))

    def start(self) -> Run:
        self.loop.run_until_complete(self.driver.start())
        return self

    def until(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.loop.run_until_complete(asyncio.sleep(0.002))

    def opened(self, times: int = 1) -> Run:
        self.until(lambda: self.driver.opened >= times and self.driver.device, what=f"open number {times}")
        return self

    def pins(self, count: int) -> list[str]:
        self.until(lambda: len(self.events) >= count, what=f"{count} event(s), have {self.events}")
        return [e.digits for e in self.events]

    def stop(self) -> float:
        """Stop the driver; returns how long that took."""
        t0 = time.monotonic()
        self.loop.run_until_complete(self.driver.stop())
        return time.monotonic() - t0

    def close(self) -> None:
        if self.driver._task is not None:
            self.stop()
        self.loop.run_until_complete(asyncio.sleep(0))  # callbacks already scheduled run, so their errors show
        self.loop.close()
        assert not self.loop_errors, self.loop_errors


@pytest.fixture
def run(tb, tmp_path):
    """``run(cls, **options)``: the driver, named ``source`` (``front-in``, a reader's name), started."""
    runs: list[Run] = []

    def make(cls: type = EvdevPinPad, source: str = "front-in", start: bool = True, **options: Any) -> Run:
        options.setdefault("device", KEYPAD_LINK)
        events: list[Any] = []
        r = Run(cls(source, options, events.append, data_dir=tmp_path), events)
        runs.append(r)
        return r.start() if start else r
    yield make
    for r in runs:
        r.close()


@pytest.fixture
def keypad(tb, tmp_path):
    return Keypad(tb, tmp_path).plug()


# ----------------------------------------------------------------------------- the PIN pad
def test_digits_then_enter_are_one_pin_from_the_reader(keypad, run):
    r = run().opened()
    assert r.driver.device == KEYPAD_LINK
    keypad.type("1234\n")
    assert r.pins(1) == ["1234"]
    pin = r.events[0]
    assert isinstance(pin, PinEntered) and pin.source == "front-in" and pin.raw == {"device": KEYPAD_LINK}
    keypad.type("0\n")
    assert r.pins(2) == ["1234", "0"]


def test_keypad_digits_and_keypad_enter(keypad, run):
    r = run().opened()
    keypad.type("9876543210\n", keypad=True)
    keypad.tap("KEY_KP4", "KEY_2", "KEY_KPENTER")  # the two rows mixed, either Enter
    assert r.pins(2) == ["9876543210", "42"]


def test_backspace_and_esc_clear_the_entry(keypad, run):
    r = run().opened()
    keypad.type("12")
    keypad.tap("KEY_BACKSPACE")
    keypad.type("34\n")
    keypad.type("56")
    keypad.tap("KEY_ESC", "KEY_ENTER")  # Enter on an empty entry reports nothing
    keypad.type("7\n")
    assert r.pins(2) == ["34", "7"]


def test_autorepeat_releases_and_other_keys_add_no_digit(keypad, run):
    r = run().opened()
    keypad.key("KEY_1", 1)
    for _ in range(5):
        keypad.key("KEY_1", 2)  # the keyboard's autorepeat while 1 is held
    keypad.key("KEY_1", 0)
    keypad.tap("KEY_NUMLOCK", "KEY_KPDOT", "KEY_KPPLUS")
    keypad.type("2\n")
    assert r.pins(1) == ["12"]


def test_a_pause_longer_than_the_timeout_discards_the_digits(keypad, run, caplog):
    caplog.set_level(logging.INFO, logger="sekisho.drivers.evdev_keys")
    r = run(timeout_s=0.3).opened()
    t0 = time.monotonic()
    keypad.type("12")
    # From the log, not by watching two digits pending: that lasts 0.3 s, which a busy machine
    # may not let the test see.
    r.until(lambda: "no key for 0.3 s; the PIN entry under way is discarded" in caplog.text,
            what="the entry to time out")
    assert time.monotonic() - t0 >= 0.3 and r.driver.pending == 0
    keypad.type("34\n")
    assert r.pins(1) == ["34"]


def test_each_key_restarts_the_timeout(keypad, run):
    # Gaps of 2 s against a timeout of 5 s: 6 s in all, longer than the timeout, while each gap
    # stays seconds inside it however slowly a busy machine lets the test type.
    r = run(timeout_s=5.0).opened()
    for digit in "123":
        keypad.type(digit)
        r.until(lambda: r.driver.pending == int(digit), what=f"digit {digit}")
        t0 = time.monotonic()
        r.until(lambda: time.monotonic() - t0 > 2.0, what="2 s to pass")
    keypad.type("\n")
    assert r.pins(1) == ["123"]


def test_an_entry_longer_than_max_digits_is_discarded(keypad, run, caplog):
    r = run(max_digits=4).opened()
    keypad.type("12345\n")
    keypad.type("1234\n")
    assert r.pins(1) == ["1234"]
    assert "PIN longer than 4 digits discarded" in caplog.text
    assert "12345" not in caplog.text and "1234" not in caplog.text  # digits never reach a log


def test_dropped_events_discard_the_entry(keypad, run):
    r = run().opened()
    keypad.type("12")
    e = keypad.e
    keypad.send((e.EV_SYN, e.SYN_DROPPED, 0))  # the kernel's buffer overflowed: keys in between are lost
    keypad.type("3\n")
    assert r.pins(1) == ["3"]


# ----------------------------------------------------------------------------- the key input
def test_a_key_input_reports_press_and_release(keypad, run):
    r = run(EvdevKey, source="desk-01-leave", key="KEY_PAUSE").opened()
    keypad.key("KEY_PAUSE", 1)
    keypad.key("KEY_PAUSE", 2)  # autorepeat while held: no event
    keypad.type("12\n")  # other keys: no event
    keypad.key("KEY_PAUSE", 0)
    r.until(lambda: len(r.events) >= 2, what="press and release")
    assert [(type(e), e.source, e.active) for e in r.events] == [(InputChanged, "desk-01-leave", True),
                                                                (InputChanged, "desk-01-leave", False)]
    assert r.events[0].raw == {"device": KEYPAD_LINK}


# ----------------------------------------------------------------------------- finding the device
def test_a_glob_and_a_name_pick_the_keypad_among_keyboards(tb, tmp_path, run):
    Keypad(tb, tmp_path, name="Logitech USB Keyboard", link="/dev/input/by-id/usb-046d_c31c-event-kbd").plug(3)
    keypad = Keypad(tb, tmp_path).plug(7)
    r = run(device="/dev/input/event*", name="*Keypad*").opened()
    assert r.driver.device == "/dev/input/event7"
    keypad.type("5\n")
    assert r.pins(1) == ["5"]


def test_no_matching_name_is_reported_and_retried(keypad, run, caplog, monkeypatch):
    monkeypatch.setattr(evdev_keys, "BACKOFF_FIRST_S", 0.01)
    r = run(device="/dev/input/event*", name="*Foot pedal*")
    r.until(lambda: "is named '*Foot pedal*'" in caplog.text, what="the warning")
    assert r.driver.device is None and r.driver.opened == 0


# ----------------------------------------------------------------------------- the grab
GRAB_CHILD = """
import asyncio, sys, time
from sekisho.drivers.evdev_keys import EvdevKey
async def main():
    d = EvdevKey("k", {"device": sys.argv[1], "key": "KEY_PAUSE", "grab": sys.argv[2] == "true"}, print)
    await d.start()
    deadline = time.monotonic() + 10
    while d.device is None:
        assert time.monotonic() < deadline, "never opened"
        await asyncio.sleep(0.005)
    print("opened", file=sys.stderr, flush=True)
    await d.stop()
asyncio.run(main())
"""


@pytest.mark.parametrize("grab", [True, False])
def test_the_device_is_grabbed_unless_told_not_to(tb, keypad, grab):
    """In a child process sharing the testbed, with umockdev's ioctl log on: the EVIOCGRAB the
    driver sends reaches the device (umockdev answers it with success and no other effect)."""
    env = dict(os.environ, UMOCKDEV_DIR=tb.get_root_dir(), UMOCKDEV_DEBUG="ioctl")
    r = subprocess.run([sys.executable, "-c", GRAB_CHILD, KEYPAD_LINK, str(grab).lower()], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = r.stderr.splitlines()
    opened = log.index("opened")
    fd = next(line.split()[2] for line in log if line.startswith("ioctl_emulate_open fd") and KEYPAD_LINK in line)
    grabs = [line for line in log[:opened] if line.startswith(f"ioctl fd {fd} request {EVIOCGRAB:X}:")]
    assert grabs == ([f"ioctl fd {fd} request {EVIOCGRAB:X}: emulated, result 0"] if grab else []), log


# ----------------------------------------------------------------------------- unplugged
def test_unplugged_keypad_is_reported_and_read_again_when_back(tb, keypad, run, caplog, monkeypatch):
    monkeypatch.setattr(evdev_keys, "BACKOFF_FIRST_S", 0.02)
    monkeypatch.setattr(evdev_keys, "BACKOFF_MAX_S", 0.1)
    caplog.set_level(logging.DEBUG, logger="sekisho.drivers.evdev_keys")
    r = run().opened()
    keypad.type("12")
    r.until(lambda: r.driver.pending == 2, what="two digits pending")
    keypad.unplug()
    r.until(lambda: r.driver.device is None, what="the driver to notice")
    assert r.driver.pending == 0  # half a PIN does not survive the keypad
    assert f"{KEYPAD_LINK} vanished" in caplog.text
    r.until(lambda: f"still no device: no device matches {KEYPAD_LINK}" in caplog.text, what="a retry")
    keypad.plug(8)  # the kernel gives a re-plugged device a new number; by-id stays
    r.opened(2)
    keypad.type("99\n")
    assert r.pins(1) == ["99"]
    assert r.stop() < 5  # a stop caught on the device read again would not return at all


def test_stop_is_prompt_while_waiting_for_a_device(tb, tmp_path, run, caplog, monkeypatch):
    monkeypatch.setattr(evdev_keys, "BACKOFF_FIRST_S", 60.0)
    r = run()  # nothing plugged: it finds nothing, then waits a minute before it looks again
    r.until(lambda: f"no device matches {KEYPAD_LINK}" in caplog.text, what="the warning")
    assert r.stop() < 30
    Keypad(tb, tmp_path).plug().type("1\n")
    r.loop.run_until_complete(asyncio.sleep(0.05))
    assert r.events == [] and r.driver.device is None


def test_a_keypad_plugged_after_start_is_found(tb, tmp_path, run, monkeypatch):
    monkeypatch.setattr(evdev_keys, "BACKOFF_FIRST_S", 0.02)
    r = run()
    r.until(lambda: r.driver._task is not None, what="the start")
    keypad = Keypad(tb, tmp_path).plug()
    r.opened()
    keypad.type("7\n")
    assert r.pins(1) == ["7"]


def test_stop_while_reading_emits_nothing_more(keypad, run):
    r = run(timeout_s=60.0).opened()  # the entry under way would time out only after a minute
    keypad.type("12")
    r.until(lambda: r.driver.pending == 2, what="two digits pending")
    assert r.stop() < 30
    assert r.driver.pending == 0 and r.driver.device is None
    keypad.type("\n")
    r.loop.run_until_complete(asyncio.sleep(0.05))
    assert r.events == []


# ----------------------------------------------------------------------------- start and options
def test_start_without_python_evdev_is_a_driver_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "evdev", None)  # what `import evdev` meets on a node without it
    pad = EvdevPinPad("front-in", {"device": KEYPAD_LINK}, lambda e: None, data_dir=tmp_path)
    with pytest.raises(DriverError, match=r"needs python-evdev >= 1\.6 .*'evdev' extra"):
        asyncio.run(pad.start())


@pytest.mark.parametrize("cls, options, message", [
    (EvdevKey, {"key": "KEY_NO_SUCH"}, "key: no key named 'KEY_NO_SUCH' in the kernel's table"),
    (EvdevKey, {"key": "pause"}, "key: must be a key name as the kernel spells it"),
    (EvdevKey, {"key": "KEY_PAUSE", "device": "input/event3"}, "device: must be an absolute path or glob"),
    (EvdevPinPad, {"timeout_s": 0}, "timeout_s: must be between 0.1 and 300"),
    (EvdevPinPad, {"max_digits": 0}, "max_digits: must be between 1 and 64"),
])
def test_bad_options_stop_the_start(tmp_path, cls, options, message):
    driver = cls("x", {"device": KEYPAD_LINK, **options}, lambda e: None, data_dir=tmp_path)
    with pytest.raises(DriverError) as exc:
        asyncio.run(driver.start())
    assert str(exc.value).startswith(message)


def test_importing_the_driver_and_checking_config_load_no_evdev(tmp_path):
    path = tmp_path / "desk.toml"
    path.write_text(DESK_CONFIG)
    probe = ("import sys; from sekisho.daemon import config; from sekisho.drivers import registry; "
             "registry.load('evdev', registry.PIN_PADS); config.load(sys.argv[1]); print('evdev' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


DESK_CONFIG = """\
[site]
id = "t"
node = "n1"

[desks.desk-01]

[readers.desk-01-slot]
driver = "sim"
desk = "desk-01"

[inputs.desk-01-leave]
driver = "evdev"
kind = "leave_seat"
desk = "desk-01"
device = "/dev/input/by-id/usb-04d9_1203-event-kbd"
key = "KEY_PAUSE"
"""


def test_a_leave_seat_key_is_an_evdev_input_in_the_config(tmp_path):
    path = tmp_path / "desk.toml"
    path.write_text(DESK_CONFIG)
    leave = config.load(path).inputs["desk-01-leave"]
    assert (leave.driver, leave.kind, leave.desk) == ("evdev", "leave_seat", "desk-01")
    assert dict(leave.options) == {"device": KEYPAD_LINK, "name": "", "grab": True, "key": "KEY_PAUSE"}
    assert registry.load(leave.driver, registry.INPUTS) is EvdevKey


@pytest.mark.parametrize("change, expected", [
    (('key = "KEY_PAUSE"', 'key = "pause"'), "inputs.desk-01-leave.key: must be a key name as the kernel spells it"),
    (('key = "KEY_PAUSE"\n', ''), "inputs.desk-01-leave.key: missing (required)"),
    (('key = "KEY_PAUSE"', 'key = "KEY_PAUSE"\ngrab = "yes"'), "inputs.desk-01-leave.grab: must be true or false"),
    (('key = "KEY_PAUSE"', 'key = "KEY_PAUSE"\ntimeout_s = 5'), "inputs.desk-01-leave.timeout_s: unknown key"),
])
def test_bad_evdev_input_config_names_the_key(tmp_path, change, expected):
    path = tmp_path / "desk.toml"
    path.write_text(DESK_CONFIG.replace(*change))
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert f"desk.toml: {expected}" in str(exc.value)
