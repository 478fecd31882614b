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
from sekisho.drivers.base import DriverError


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
