"""The OSDP driver's parts without a line: libosdp's numbers it knows without importing libosdp,
what each card format gives as the UID the site key hashes, the LED and buzzer each outcome
drives, and the config and start-up errors of readers sharing a line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import osdp
import pytest

from sekisho.daemon import config
from sekisho.daemon.errors import ConfigError
from sekisho.drivers import osdp as driver
from sekisho.drivers.base import DriverError, DriverNotSetUp
from sekisho.drivers.osdp_keys import key_path, new_scbk, store_scbk
from sekisho.policies.events import CardUnreadable, ReaderLost


def test_the_libosdp_numbers_the_driver_knows_are_libosdps():
    assert (driver.CARD_READ, driver.KEY_PRESS, driver.STATUS) == (
        osdp.Event.CardRead, osdp.Event.KeyPress, osdp.Event.Status)
    assert driver.STATUS_LOCAL == osdp.StatusReportType.Local
    assert (driver.LED_COMMAND, driver.BUZZER_COMMAND, driver.TEXT_COMMAND) == (
        osdp.Command.LED, osdp.Command.Buzzer, osdp.Command.Text)
    assert driver.FORMAT_NAMES == {osdp.CardFormat.Unspecified: "raw", osdp.CardFormat.Wiegand: "wiegand",
                                   osdp.CardFormat.ASCII: "ascii"}
    assert [getattr(osdp.CommandLEDColor, c.capitalize()) for c in driver.COLOURS] == list(range(8))


@pytest.mark.parametrize("event, uid", [
    # A reader sending the card's UID as raw bits: the UID a PC/SC reader reads.
    ({"format": osdp.CardFormat.Unspecified, "length": 56, "data": bytes.fromhex("04a1b2c3d4e5f6")},
     "04a1b2c3d4e5f6"),
    # The UID as hex text, and other text as its bytes.
    ({"format": osdp.CardFormat.ASCII, "length": 8, "data": b"04A1B2C3"}, "04a1b2c3"),
    ({"format": osdp.CardFormat.ASCII, "length": 5, "data": b"HELLO"}, b"HELLO".hex()),
    # 26-bit Wiegand: four bytes, the six bits past the count made zero whatever the reader sent.
    ({"format": osdp.CardFormat.Wiegand, "length": 26, "data": bytes.fromhex("8123457f")}, "81234540"),
])
def test_what_each_card_format_gives(event, uid):
    assert driver.card_uid(event).hex() == uid


class Commands:
    def __init__(self):
        self.sent = []

    def command(self, address, command):
        self.sent.append((address, command))


def _reader(tmp_path: Path, **options) -> tuple[driver.OsdpReader, Commands]:
    r = driver.OsdpReader("r1", {"line": "/dev/ttyUSB9", "address": 3, **options}, lambda e: None, data_dir=tmp_path)
    r.line.runner = Commands()
    return r, r.line.runner


@pytest.mark.parametrize("answer, colour, beeps", [
    ({"decided": [{"result": "granted", "reason": "enrolled", "rule": "level:staff"}]}, "green", 1),
    ({"decided": [{"result": "denied", "reason": "unknown_card", "rule": "card.unknown"}]}, "red", 3),
    ({"decided": [{"result": "denied", "reason": "locked_out", "rule": "pin.lockout"}]}, "red", 5),
    ({"decided": [], "waiting": "pin"}, "amber", 0),
])
def test_each_outcome_drives_the_led_and_buzzer_as_the_table_says(tmp_path, answer, colour, beeps):
    r, line = _reader(tmp_path)
    r._answer(answer)
    led = line.sent[0][1]
    assert line.sent[0][0] == 3 and led["command"] == osdp.Command.LED
    assert led["on_color"] == getattr(osdp.CommandLEDColor, colour.capitalize()) and led["temporary"]
    buzzer = [c for _, c in line.sent if c["command"] == osdp.Command.Buzzer]
    assert [c["rep_count"] for c in buzzer] == ([beeps] if beeps else [])


def test_the_feedback_table_overrides_one_outcome_and_keeps_the_others(tmp_path):
    r, line = _reader(tmp_path, feedback={"granted": {"led": "blue", "beeps": 0}})
    r.show("granted")
    r.show("denied")
    assert [c["on_color"] for _, c in line.sent if c["command"] == osdp.Command.LED] == [
        osdp.CommandLEDColor.Blue, osdp.CommandLEDColor.Red]
    assert [c["rep_count"] for _, c in line.sent if c["command"] == osdp.Command.Buzzer] == [3]


def test_nothing_decided_and_nothing_awaited_shows_nothing(tmp_path):
    r, line = _reader(tmp_path)
    r._answer({"decided": [], "waiting": None})
    assert line.sent == []


SITE = """\
[site]
id = "t"
node = "n1"

[doors.entrance]

[readers.r1]
driver = "osdp"
line = "/dev/ttyUSB0"
address = 1
door = "entrance"
direction = "in"
"""


@pytest.mark.parametrize("extra, expected", [
    ("baud = 1234\n", "readers.r1.baud: must be one of 9600, 19200, 38400, 57600, 115200, 230400"),
    ("feedback = { granted = { led = \"pink\" } }\n",
     "readers.r1.feedback: granted.led: must be one of black, red, green, amber, blue, magenta, cyan, white"),
    ("feedback = { opened = {} }\n",
     "readers.r1.feedback: unknown outcome 'opened' (known: granted, denied, pin_wanted, locked_out)"),
    ("feedback = { denied = { beeps = 11 } }\n", "readers.r1.feedback: denied.beeps: must be a whole number"),
    ("", "readers.r2.line: missing"),
])
def test_config_errors(tmp_path, extra, expected):
    """One problem at a time, each naming its key."""
    path = tmp_path / "node.toml"
    path.write_text(SITE.replace('address = 1\n', 'address = 1\n' + extra)
                    + ('\n[readers.r2]\ndriver = "osdp"\naddress = 1\ndoor = "entrance"\ndirection = "out"\n'
                       if not extra else ""))
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert expected in str(e.value)


def test_readers_sharing_a_line_need_one_baud_rate_and_addresses_of_their_own(tmp_path):
    lines = driver.OsdpLines()

    def make(name, **o):
        return driver.OsdpReader(name, {"line": "/dev/ttyUSB7", "address": 1, **o}, lambda e: None,
                                 data_dir=tmp_path, lines=lines)

    a, b, c = make("a"), make("b", address=2, baud=19200), make("c")
    assert a.line is b.line is c.line
    with pytest.raises(DriverError, match="line /dev/ttyUSB7 runs at 9600 baud for reader a, b says 19200"):
        asyncio.run(a.start())
    b.baud = 9600
    with pytest.raises(DriverError, match="address 1 on /dev/ttyUSB7 is reader a's already"):
        asyncio.run(c.start())
    with pytest.raises(DriverError, match="reader a has no secure channel key yet: .*`sekisho reader osdp-key a`"):
        asyncio.run(a.start())


@pytest.mark.parametrize("second, expected", [
    ('address = 2\nbaud = 19200\n', "readers.r2.baud: 19200, where reader r1 on the same line /dev/ttyUSB0 says 9600: "
                                     "a line has one baud rate"),
    ('address = 1\n', "readers.r2.address: 1 on /dev/ttyUSB0 is reader r1's already: each reader on a line has an "
                      "address of its own"),
])
def test_readers_sharing_a_line_are_checked_with_the_config(tmp_path, second, expected):
    path = tmp_path / "node.toml"
    path.write_text(SITE + '\n[readers.r2]\ndriver = "osdp"\nline = "/dev/ttyUSB0"\ndoor = "entrance"\n'
                    'direction = "out"\n' + second)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert expected in str(e.value)


def test_a_line_link_and_its_device_are_one_line_to_check_config(tmp_path):
    """The driver shares a panel by the device's real path: check-config must see a by-id link
    and the device it names as one line, clashing addresses and all."""
    device = tmp_path / "ttyUSB0"
    device.write_text("")
    link = tmp_path / "usb-FTDI-port0"
    link.symlink_to(device)
    path = tmp_path / "node.toml"
    path.write_text(SITE.replace("/dev/ttyUSB0", str(link)) + f'\n[readers.r2]\ndriver = "osdp"\nline = "{device}"\n'
                    'door = "entrance"\ndirection = "out"\naddress = 1\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert f"readers.r2.address: 1 on {device} is reader r1's already" in str(e.value)


def test_a_key_file_that_cannot_be_used_is_not_set_up(tmp_path):
    """A key file with a wrong mode or content is for a person to fix: DriverNotSetUp (exit 78,
    which the unit does not restart), not a DriverError that would restart the daemon in a loop."""
    store_scbk(tmp_path, "r1", new_scbk())
    key_path(tmp_path, "r1").chmod(0o644)
    r = driver.OsdpReader("r1", {"line": "/dev/ttyUSB9", "address": 3}, lambda e: None, data_dir=tmp_path)
    with pytest.raises(DriverNotSetUp, match="readable by others .*chmod 600"):
        asyncio.run(r.start())


def test_a_reader_lost_before_it_started_is_lost_when_it_starts(tmp_path):
    """Readers start one by one, and the line's panel runs from the first one's start: a reader
    lost before its own start (the adapter missing, a wrong key) has its ReaderLost sent then."""
    lines = driver.OsdpLines()
    got: dict[str, list] = {"a": [], "b": []}
    a, b = (driver.OsdpReader(n, {"line": "/dev/ttyUSB8", "address": i}, got[n].append, data_dir=tmp_path,
                              lines=lines) for i, n in enumerate("ab", 1))
    a.line.runner = Commands()  # the line runs: a started it

    async def run() -> None:
        await a.start()
        for reader in (a, b):
            reader.osdp_status(False, "line /dev/ttyUSB8: cannot open (No such file or directory)")
        assert [type(e) for e in got["a"]] == [ReaderLost] and got["b"] == []
        await b.start()
    asyncio.run(run())
    assert [(type(e), e.source, e.reason) for e in got["b"]] == [
        (ReaderLost, "b", "line /dev/ttyUSB8: cannot open (No such file or directory)")]


def test_a_reader_lost_and_back_before_it_started_starts_quietly(tmp_path):
    got: list = []
    r, _ = _reader(tmp_path)
    r._emit = got.append
    r.osdp_status(False, "no answer")
    r.osdp_status(True, "")
    asyncio.run(r.start())
    assert got == []


@pytest.mark.parametrize("result, reason, colour", [
    ("unlocked", "card", "green"),          # a desk's unlock is its grant
    ("foreign_card", "foreign_card", "red"),
    ("card_inserted", "card", None),         # a desk's other kinds: nothing, and never green
    ("session_locked", "card_removed", None),
    ("fire", "alarm", None),
])
def test_a_desks_results_show_as_granted_denied_or_nothing(tmp_path, result, reason, colour):
    r, line = _reader(tmp_path)
    r._answer({"decided": [{"result": result, "reason": reason, "rule": "desk"}]})
    leds = [c["on_color"] for _, c in line.sent if c["command"] == osdp.Command.LED]
    assert leds == ([getattr(osdp.CommandLEDColor, colour.capitalize())] if colour else [])


def test_a_card_read_with_no_data_is_unreadable_and_shown_as_denied(tmp_path):
    got: list = []
    r, line = _reader(tmp_path)
    r._emit = got.append
    r._open = True
    r.osdp_event({"event": driver.CARD_READ, "format": osdp.CardFormat.Unspecified, "length": 0, "data": b""})
    [event] = got
    assert isinstance(event, CardUnreadable) and event.reason == "empty_card_data" and event.source == "r1"
    assert event.raw == {"format": "raw", "bits": 0, "data": "", "address": 3}
    assert [c["on_color"] for _, c in line.sent if c["command"] == osdp.Command.LED] == [osdp.CommandLEDColor.Red]
