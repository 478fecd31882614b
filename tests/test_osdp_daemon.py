"""The daemon on OSDP readers: libosdp's own peripheral-device mode as the wall reader, on one end
of a pty pair whose other end the daemon opens as its RS-485 line (osdpfake.py). A card read is
granted at the door; card then keypad PIN granted, a wrong PIN denied; the reader is told the
outcome with its LED and buzzer; a reader with no key is refused at start."""

from __future__ import annotations

import osdp
import pytest

from conftest import wait_for
from osdpfake import OsdpBus, osdp_config
from sekisho.drivers.osdp_keys import load_scbk, new_scbk, store_scbk

UID = "04a1b2c3d4e5f6"


@pytest.fixture
def bus():
    b = OsdpBus()
    yield b
    b.close()


def _site(site, bus, auth="card"):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}, auth))
    key = new_scbk()
    site.data_dir.mkdir(mode=0o700)
    store_scbk(site.data_dir, "entrance-in", key)
    return key


def test_a_card_read_at_the_reader_is_granted_at_the_door_and_shown_green(site, bus, subscribe):
    key = _site(site, bus)
    site.enroll("p1", UID)
    reader = bus.reader(1, key).start()
    sub = subscribe()
    site.start()
    wait_for(lambda: reader.secure, what="the secure channel")
    assert reader.next(osdp.Command.Text)["data"] == "READY"  # the door's mode, after its LED at rest
    reader.card(bytes.fromhex(UID))
    [event] = wait_for(lambda: sub.events(), what="the door event")
    assert (event["result"], event["reader"], event["direction"]) == ("granted", "entrance-in", "in")
    led = reader.command()
    assert led is not None and led["command"] == osdp.Command.LED and led["on_color"] == osdp.CommandLEDColor.Green
    buzzer = reader.command()
    assert buzzer is not None and buzzer["command"] == osdp.Command.Buzzer and buzzer["rep_count"] == 1

    reader.card(bytes.fromhex("0badcafe"))  # not enrolled
    wait_for(lambda: len(sub.events()) == 2, what="the second door event")
    assert sub.events()[1]["result"] == "denied"
    led = reader.command()
    assert led is not None and led["on_color"] == osdp.CommandLEDColor.Red
    buzzer = reader.command()
    assert buzzer is not None and buzzer["rep_count"] == 3
    log = site.daemon_log()
    assert key.hex() not in log and UID not in log
    assert site.stop() == 0


def test_card_then_keypad_pin(site, bus, subscribe):
    key = _site(site, bus, auth="card_and_pin")
    site.enroll("p1", UID)
    site.cli("person", "pin", "p1", input_text="2468\n")
    reader = bus.reader(1, key).start()
    sub = subscribe()
    site.start()
    wait_for(lambda: reader.secure, what="the secure channel")
    assert reader.next(osdp.Command.Text)["data"] == "READY"
    reader.card(bytes.fromhex(UID))
    assert reader.next(osdp.Command.LED)["on_color"] == osdp.CommandLEDColor.Amber  # PIN wanted
    reader.keys("24")
    reader.keys("68#")
    [event] = wait_for(lambda: sub.events(), what="the door event")
    assert (event["result"], event["reason"]) == ("granted", "card_and_pin")
    assert reader.next(osdp.Command.LED)["on_color"] == osdp.CommandLEDColor.Green

    reader.card(bytes.fromhex(UID))
    assert reader.next(osdp.Command.LED)["on_color"] == osdp.CommandLEDColor.Amber
    reader.keys("99*")  # cleared: 99 never counts
    reader.keys("1111#")
    wait_for(lambda: len(sub.events()) == 2, what="the second door event")
    assert (sub.events()[1]["result"], sub.events()[1]["reason"]) == ("denied", "pin_wrong")
    assert reader.next(osdp.Command.LED)["on_color"] == osdp.CommandLEDColor.Red
    assert "2468" not in site.daemon_log() and "1111" not in site.daemon_log()
    assert site.stop() == 0


def test_a_reader_without_a_key_is_refused_at_start_naming_the_command(site, bus):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}))
    r = site.cli("run", check=False)
    assert r.returncode == 78  # a config error: the unit does not restart it (RestartPreventExitStatus)
    assert ("readers.entrance-in: reader entrance-in has no secure channel key yet: put the reader in install "
            "mode and run `sekisho reader osdp-key entrance-in`") in r.stderr


def test_keying_a_reader_in_install_mode_then_rotating_its_key(site, bus):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}))
    reader = bus.reader(1, None).start()  # install mode: SCBK-D
    r = site.cli("reader", "osdp-key", "entrance-in")
    assert "keyed" in r.stdout
    key = load_scbk(site.data_dir, "entrance-in")
    assert key is not None and key.hex() not in r.stdout + r.stderr
    assert (site.data_dir / "osdp" / "entrance-in.scbk").stat().st_mode & 0o077 == 0
    assert reader.secure
    assert reader.next(osdp.Command.Keyset)["data"] == key  # what the reader was given is what is stored

    # Keyed now: install mode again is refused, and says what to do instead.
    r = site.cli("reader", "osdp-key", "entrance-in", "--timeout", "5", check=False)
    assert r.returncode != 0 and "--rotate" in r.stderr
    assert load_scbk(site.data_dir, "entrance-in") == key

    r = site.cli("reader", "osdp-key", "entrance-in", "--rotate")
    rotated = load_scbk(site.data_dir, "entrance-in")
    assert rotated is not None and rotated != key
    assert reader.next(osdp.Command.Keyset)["data"] == rotated
