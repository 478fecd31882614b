"""OSDP lines under the running daemon (libosdp's own peripheral device as each reader, over a
pty pair: osdpfake.py): two readers at two addresses share one line; a reader with the wrong
SCBK stays offline with a reader_lost alarm saying why; a tamper report is an alarm; the line
unplugged is retried with backoff, and the daemon keeps running."""

from __future__ import annotations

import os

import osdp
import pytest

from conftest import wait_for
from osdpfake import OsdpBus, osdp_config
from sekisho.drivers.osdp_keys import new_scbk, store_scbk

ALARMS = "sekisho/v1/test/alarm/#"


@pytest.fixture
def bus():
    b = OsdpBus()
    yield b
    b.close()


def _keys(site, *names):
    site.data_dir.mkdir(mode=0o700, exist_ok=True)
    keys = {name: new_scbk() for name in names}
    for name, key in keys.items():
        store_scbk(site.data_dir, name, key)
    return keys


def _open_alarms(sub):
    """The alarms open now, by id, from the retained messages (an empty one closes its alarm)."""
    state = {}
    for m in sub.on(""):
        state[m.topic.rsplit("/", 1)[1]] = m.json if m.payload else None
    return {k: v for k, v in state.items() if v is not None}


def test_two_readers_on_one_line_at_two_addresses(site, bus, subscribe):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1, "entrance-out": 2}))
    keys = _keys(site, "entrance-in", "entrance-out")
    site.enroll("p1", "04a1b2c3d4e5f6")
    inside, outside = bus.reader(1, keys["entrance-in"]).start(), bus.reader(2, keys["entrance-out"]).start()
    sub = subscribe()
    site.start()
    wait_for(lambda: inside.secure and outside.secure, what="both secure channels")
    inside.card(bytes.fromhex("04a1b2c3d4e5f6"))
    wait_for(lambda: len(sub.events()) == 1, what="the first door event")
    outside.card(bytes.fromhex("04a1b2c3d4e5f6"))
    wait_for(lambda: len(sub.events()) == 2, what="the second door event")
    assert [(e["reader"], e["direction"], e["result"]) for e in sub.events()] == [
        ("entrance-in", "in", "granted"), ("entrance-out", "out", "granted")]
    assert site.stop() == 0


def test_a_wrong_scbk_keeps_the_reader_offline_and_raises_the_alarm(site, bus, subscribe):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}))
    _keys(site, "entrance-in")
    reader = bus.reader(1, new_scbk()).start()  # not the key sekisho holds
    alarms = subscribe(ALARMS)
    site.start()
    alarm = wait_for(lambda: _open_alarms(alarms).get("door-a.entrance-in.reader-lost"), what="the alarm")
    assert alarm["kind"] == "reader_lost" and alarm["severity"] == "warning"
    assert alarm["reason"].startswith("secure channel failed at address 1 on ")
    assert "sekisho reader osdp-key entrance-in" in alarm["reason"]
    reader.card(bytes.fromhex("04a1b2c3d4e5f6"))
    assert not reader.secure
    assert site.stop() == 0


def test_a_tamper_report_is_an_alarm_until_it_ends(site, bus, subscribe):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}))
    keys = _keys(site, "entrance-in")
    reader = bus.reader(1, keys["entrance-in"]).start()
    alarms = subscribe(ALARMS)
    site.start()
    wait_for(lambda: reader.secure, what="the secure channel")
    reader.tamper(True)
    alarm = wait_for(lambda: _open_alarms(alarms).get("door-a.entrance-in.reader-tamper"), what="the tamper alarm")
    assert (alarm["kind"], alarm["severity"], alarm["cleared"]) == ("reader_tamper", "critical", None)
    reader.tamper(False)
    wait_for(lambda: _open_alarms(alarms)["door-a.entrance-in.reader-tamper"]["cleared"], what="the alarm cleared")
    assert site.stop() == 0


def test_the_line_unplugged_is_retried_and_the_daemon_keeps_running(site, bus, subscribe, tmp_path):
    line = tmp_path / "ttyRS485"  # as /dev/serial/by-id/... is: a link to the adapter's device
    os.symlink(bus.path, line)
    site.config.write_text(osdp_config(site.broker.url, str(line), {"entrance-in": 1}))
    keys = _keys(site, "entrance-in")
    site.enroll("p1", "04a1b2c3d4e5f6")
    bus.reader(1, keys["entrance-in"]).start()
    alarms = subscribe(ALARMS)
    sub = subscribe()
    site.start()
    wait_for(lambda: "reader online in a secure channel" in site.daemon_log(), what="the reader online")

    bus.close()  # the adapter unplugged: its device hangs up, then is gone
    line.unlink()
    alarm = wait_for(lambda: _open_alarms(alarms).get("door-a.entrance-in.reader-lost"), what="the alarm")
    assert alarm["reason"].startswith(f"line {line}")

    again = OsdpBus()  # plugged in again
    try:
        os.symlink(again.path, line)
        reader = again.reader(1, keys["entrance-in"]).start()
        wait_for(lambda: reader.secure, 20, what="the secure channel on the line plugged in again")
        wait_for(lambda: _open_alarms(alarms)["door-a.entrance-in.reader-lost"]["cleared"], what="the alarm cleared")
        reader.card(bytes.fromhex("04a1b2c3d4e5f6"))
        wait_for(lambda: sub.events(), what="the door event")
        assert sub.events()[0]["result"] == "granted"
        assert site.stop() == 0
    finally:
        again.close()


def test_the_door_mode_shows_at_its_readers_as_each_can(site, bus, subscribe):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1, "entrance-out": 2}))
    keys = _keys(site, "entrance-in", "entrance-out")
    site.enroll("p1", "04a1b2c3d4e5f6")
    display = bus.reader(1, keys["entrance-in"]).start()
    plain = bus.reader(2, keys["entrance-out"], display=False).start()
    sub = subscribe()
    site.start()
    wait_for(lambda: display.secure and plain.secure, what="both secure channels")
    for reader in (display, plain):
        led = reader.next(osdp.Command.LED)
        assert (led["on_color"], led["temporary"]) == (osdp.CommandLEDColor.Red, False)  # normal, at rest
    assert display.next(osdp.Command.Text)["data"] == "READY"

    site.cli("door", "mode", "entrance", "lockdown")
    for reader in (display, plain):
        assert reader.next(osdp.Command.LED)["on_color"] == osdp.CommandLEDColor.Magenta
    assert display.next(osdp.Command.Text)["data"] == "LOCKDOWN"
    # The reader without a display was sent no text (it would NAK it, and libosdp would take it
    # offline): it still reads cards.
    plain.card(bytes.fromhex("04a1b2c3d4e5f6"))
    [event] = wait_for(lambda: sub.events(), what="the door event")
    assert (event["reader"], event["result"], event["reason"]) == ("entrance-out", "denied", "lockdown")
    assert all(c["command"] != osdp.Command.Text for c in iter(lambda: plain.command(0.2), None))
    assert site.stop() == 0
