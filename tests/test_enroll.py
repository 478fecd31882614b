"""Tap-to-enroll, through the running daemon and without one (sim readers here; the PC/SC
path is in test_pcsc_enroll.py)."""

from __future__ import annotations

import subprocess

from conftest import SEKISHO, wait_for

UID = "04a1b2c3d4e5f6"


def start_enroll(site, person: str, reader: str = "entrance-in", timeout: str = "20") -> subprocess.Popen:
    return subprocess.Popen([*SEKISHO, "card", "enroll", "--person", person, "--reader", reader, "--timeout", timeout,
                             "--config", str(site.config), "--data-dir", str(site.data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_enroll_through_daemon_then_granted(site, subscribe):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "grant", "p1", "staff")
    sub = subscribe()
    site.start()
    proc = start_enroll(site, "p1")
    wait_for(lambda: "to enroll to p1" in site.daemon_log(), what="the daemon waiting for the card")
    site.tap(UID)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.startswith("card ") and out.strip().endswith("enrolled to p1")
    assert not sub.events(), "the enrollment tap must not be a door event"
    site.tap(UID)
    event = wait_for(sub.events, what="door event")[0]
    assert event["result"] == "granted"
    site.stop()


def test_enroll_refuses_a_card_held_by_someone_else(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "add", "--id", "p2", "--name", "B")
    site.cli("card", "add", "--person", "p1", "--uid", UID)
    site.start()
    proc = start_enroll(site, "p2")
    wait_for(lambda: "to enroll to p2" in site.daemon_log(), what="the daemon waiting for the card")
    site.tap(UID)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == "sekisho: this card is already enrolled to 'p1'; revoke it there first"
    site.stop()


def test_enroll_times_out_clearly(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.start()
    proc = start_enroll(site, "p1", timeout="1")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "no card was presented at entrance-in within 1 s" in err
    site.stop()


def test_enroll_unknown_person_fails_before_waiting(site):
    site.start()
    proc = start_enroll(site, "ghost")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 65 and "no person 'ghost'" in err
    site.stop()


def test_enroll_without_daemon_opens_the_reader_itself(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    proc = start_enroll(site, "p1", reader="entrance-out")
    sock = site.data_dir / "sim" / "entrance-out.sock"
    wait_for(lambda: site.sim_answers("entrance-out"), what="the enroll command's own sim reader to answer")
    assert site.sim("entrance-out", {"op": "tap", "uid": UID}) == {"ok": True}
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "enrolled to p1" in out
    assert not sock.exists()
    assert "active" in site.cli("card", "list").stdout
