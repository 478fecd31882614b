"""The daemon on a real PC/SC reader (pcscd + vpcd + a fake card): tap-to-enroll, then the same
card opens the door; pcscd restarted under the running daemon."""

from __future__ import annotations

import signal
import subprocess

import pytest

from conftest import SEKISHO, wait_for
from fakecard import READER, FakeCard

UID = "04a1b2c3d4e5f6"
CONFIG = """\
[site]
id = "test"
node = "door-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"

[readers.entrance-in]
driver = "pcsc"
name = "{reader}"
door = "entrance"
direction = "in"
"""


@pytest.fixture
def pcsc_site(site, pcscd):
    site.config.write_text(CONFIG.format(url=site.broker.url, reader=READER))
    yield site, pcscd


def test_enroll_by_tap_then_granted(pcsc_site, subscribe):
    site, pcscd = pcsc_site
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "grant", "p1", "staff")
    sub = subscribe()
    site.start()
    enroll = subprocess.Popen([*SEKISHO, "card", "enroll", "--person", "p1", "--reader", "entrance-in", "--timeout",
                               "20", "--config", str(site.config), "--data-dir", str(site.data_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "to enroll to p1" in site.daemon_log(), what="the daemon waiting for the card")
    card = FakeCard(UID, pcscd.port)
    card.insert()
    out, err = enroll.communicate(timeout=20)
    assert enroll.returncode == 0, err
    assert "enrolled to p1" in out
    card.remove()
    card = FakeCard(UID, pcscd.port)
    card.insert()
    event = wait_for(sub.events, what="the door event")[0]
    assert (event["result"], event["reason"], event["reader"]) == ("granted", "card", "entrance-in")
    card.remove()
    site.stop()


def test_unreadable_card_is_a_denied_attempt_and_the_daemon_carries_on(pcsc_site, subscribe):
    site, pcscd = pcsc_site
    site.enroll("p1", UID)
    sub = subscribe()
    site.start()
    bad = FakeCard(UID, pcscd.port, mode="status", sw=b"\x6a\x81")
    bad.insert()
    event = wait_for(sub.events, what="the unreadable attempt")[0]
    assert (event["result"], event["reason"], event["rule"]) == ("denied", "unreadable", "card.unreadable")
    bad.remove()
    good = FakeCard(UID, pcscd.port)
    good.insert()
    wait_for(lambda: len(sub.events()) == 2, what="the next card")
    assert sub.events()[1]["result"] == "granted"
    good.remove()
    site.stop()


def test_pcscd_restart_under_the_running_daemon(pcsc_site, subscribe):
    site, pcscd = pcsc_site
    site.enroll("p1", UID)
    sub = subscribe()
    site.start()
    wait_for(lambda: "connected to" in site.daemon_log(), what="daemon up")
    pcscd.proc.send_signal(signal.SIGKILL)
    pcscd.proc.wait()
    pcscd.proc = None
    wait_for(lambda: "entrance-in: reader lost" in site.daemon_log(), what="reader lost logged")
    pcscd.start()
    wait_for(lambda: "entrance-in: reader back" in site.daemon_log(), what="reader back logged")
    card = FakeCard(UID, pcscd.port)
    card.insert()
    assert wait_for(sub.events, what="the tap after the restart")[0]["result"] == "granted"
    card.remove()
    assert site.stop() == 0


def test_readers_command_lists_names_and_matches(pcsc_site):
    site, pcscd = pcsc_site
    r = site.cli("readers")
    assert f"{READER}    <- entrance-in" in r.stdout
    site.config.write_text(site.config.read_text().replace(f'name = "{READER}"', 'name = "ACS*"'))
    r = site.cli("readers")
    assert "readers.entrance-in: no reader matches 'ACS*'" in r.stderr
    pcscd.stop()
    r = site.cli("readers", check=False)
    assert r.returncode == 69 and "pcscd" in r.stderr
