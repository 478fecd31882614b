"""The desk lock through the daemon, against dbusmock's logind: the session locks when the card
leaves, only the same card brings the desk back, tailgating, leave-seat, failed locks."""

from __future__ import annotations

import pytest

from conftest import wait_for
from fakecard import READER, FakeCard

CONFIG = """\
[site]
id = "test"
node = "desk-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]
desks = ["desk-01"]

[doors.entrance]
area_in = "room"

[desks.desk-01]
area = "room"
lock_confirm_s = 2.0
lock_retries = 1
{desk_extra}

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.desk-01]
{desk_reader}
desk = "desk-01"

[inputs.leave-01]
driver = "sim"
kind = "leave_seat"
desk = "desk-01"
"""
ALICE, BOB = "04a1a1a1", "04b0b0b0"


def write(site, desk_extra: str = "", desk_reader: str = 'driver = "sim"') -> None:
    site.config.write_text(CONFIG.format(url=site.broker.url, desk_extra=desk_extra, desk_reader=desk_reader))


@pytest.fixture
def desk(site, subscribe, logind):
    """A site whose desk-01 has a graphical session c1 on seat0; Alice and Bob hold cards."""
    write(site)
    site.enroll("alice", ALICE)
    site.enroll("bob", BOB)
    logind.add_session("c1", seat="seat0", user="alice")
    logind.patch_lock()
    sub = subscribe()
    return site, sub, logind


def desk_events(sub) -> list[tuple[str, str]]:
    return [(m.json["kind"], m.json["reason"]) for m in sub.on("/desk/desk-01/event")]


def desk_state(sub) -> str | None:
    msgs = sub.on("/desk/desk-01/state")
    return msgs[-1].json["state"] if msgs else None


def enter_room(site, sub, uid: str) -> None:
    n = len(sub.events())
    site.tap(uid)
    wait_for(lambda: len(sub.events()) > n, what="the door event")


def started(site, sub, logind) -> None:
    site.start()
    # At start nobody holds the desk, so its session is locked once.
    wait_for(lambda: ("session_locked", "locked") in desk_events(sub), what="the start-up lock")
    logind.obj.ClearCalls(dbus_interface="org.freedesktop.DBus.Mock")


def test_card_out_locks_exactly_that_session(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use")
    assert sub.on("/desk/desk-01/state")[-1].json["subject"] == sub.events()[0]["subject"]
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: logind.calls("LockSession") == [["c1"]], what="LockSession(c1)")
    assert logind.calls("LockSessions") == []
    wait_for(lambda: desk_state(sub) == "locked", what="locked")
    locked = wait_for(lambda: [m.json for m in sub.on("/desk/desk-01/event") if m.json["kind"] == "session_locked"
                               and m.json["latency_ms"] is not None][1:], what="session_locked with latency")[0]
    assert 0 < locked["latency_ms"] < 5000 and set(locked) >= {"id", "seq", "kind", "subject", "latency_ms"}
    assert ("card_removed", "removed") in desk_events(sub)
    site.stop()


def test_same_card_back_unlocks_when_configured_foreign_card_stays_locked(desk):
    site, sub, logind = desk
    write(site, desk_extra="unlock_on_card = true")
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    enter_room(site, sub, BOB)
    site.tap(ALICE, reader="desk-01")
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: desk_state(sub) == "locked", what="locked")
    site.tap(BOB, reader="desk-01")
    wait_for(lambda: ("foreign_card", "foreign_card") in desk_events(sub), what="foreign card")
    assert desk_state(sub) == "locked" and logind.calls("UnlockSession") == []
    site.sim("desk-01", {"op": "pull"})
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use again")
    wait_for(lambda: logind.calls("UnlockSession") == [["c1"]], what="UnlockSession(c1)")
    wait_for(lambda: ("unlocked", "card") in desk_events(sub), what="unlocked event")
    site.stop()


def test_without_unlock_on_card_the_password_prompt_stays(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    site.sim("desk-01", {"op": "pull"})
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: [k for k, _ in desk_events(sub)].count("card_inserted") == 2, what="second insert")
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use")
    assert logind.calls("UnlockSession") == []
    site.stop()


def test_tailgating_alarm_and_refusal(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    site.tap(BOB, reader="desk-01")  # Bob never badged in
    wait_for(lambda: ("tailgating", "no_entry") in desk_events(sub), what="tailgating event")
    alarm = wait_for(lambda: [m for m in sub.messages if "/alarm/" in m.topic and m.payload], what="alarm")[0]
    assert alarm.json["kind"] == "tailgating" and alarm.json["source"] == "desk-01"
    assert ("card_inserted", "tailgating") in desk_events(sub)
    assert desk_state(sub) == "vacant"
    site.sim("desk-01", {"op": "pull"})
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="Alice, who came in by the door")
    assert len([m for m in sub.messages if "/alarm/" in m.topic and m.payload]) == 1
    site.stop()


def test_lock_not_confirmed_retries_then_fallback_and_alarm(desk):
    site, sub, logind = desk
    write(site, desk_extra='lock_fallback = "terminate"')
    logind.reset()
    logind.add_session("c1", seat="seat0", user="alice")  # LockSession left a no-op: LockedHint stays false
    site.start()
    wait_for(lambda: ("lock_failed", "unconfirmed") in desk_events(sub), timeout=15, what="lock_failed")
    assert logind.calls("LockSession") == [["c1"], ["c1"]]  # the first try and one retry
    assert logind.calls("TerminateSession") == [["c1"]]
    alarm = wait_for(lambda: [m for m in sub.messages if "/alarm/" in m.topic and m.payload], what="alarm")[0]
    assert alarm.json["kind"] == "lock_failed" and alarm.json["severity"] == "critical"
    site.stop()


def test_no_graphical_session_nothing_to_lock_no_crash(desk):
    site, sub, logind = desk
    logind.reset()
    logind.add_session("g1", seat="seat0", user="gdm", session_class="greeter")
    site.start()
    wait_for(lambda: ("session_locked", "no_session") in desk_events(sub), what="nothing to lock recorded")
    assert logind.calls("LockSession") == []
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: desk_events(sub).count(("session_locked", "no_session")) == 2, what="second no_session")
    assert site.proc.poll() is None
    site.stop()


def test_leave_seat_locks_and_marks_away(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use")
    assert "desk-01  in_use  alice" in site.cli("desk", "list").stdout
    site.sim("leave-01", {"op": "press"})
    wait_for(lambda: desk_state(sub) == "away", what="away")
    wait_for(lambda: logind.calls("LockSession") == [["c1"]], what="locked")
    assert ("leave_seat", "leave_seat") in desk_events(sub)
    site.stop()


def test_pcsc_desk_reader_card_removed_and_pcscd_killed(desk, pcscd):
    site, sub, logind = desk
    write(site, desk_reader=f'driver = "pcsc"\nname = "{READER}"')
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    card = FakeCard(ALICE, pcscd.port)
    card.insert()
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use on a real reader")
    card.remove()
    wait_for(lambda: logind.calls("LockSession") == [["c1"]], what="LockSession after removal at vpcd")
    card = FakeCard(ALICE, pcscd.port)
    card.insert()
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use again")
    pcscd.kill()
    wait_for(lambda: len(logind.calls("LockSession")) >= 2, what="locked when pcscd died")
    wait_for(lambda: desk_state(sub) == "locked", what="locked state")
    assert ("reader_lost", "SCARD_F_COMM_ERROR") in desk_events(sub) or any(
        k == "reader_lost" for k, _ in desk_events(sub))
    site.stop()


DESK_ONLY = """\
[site]
id = "test"
node = "desk-b"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
desks = ["desk-01"]

[desks.desk-01]
area = "room"
unknown_occupancy = "{stance}"

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""


def publish_retained(broker, topic: str, payload: dict) -> None:
    import json

    import paho.mqtt.publish as publish
    publish.single(topic, json.dumps(payload), qos=1, retain=True, hostname="127.0.0.1", port=broker.port)


def test_desk_node_learns_who_is_inside_from_the_bus(site, subscribe, logind):
    """A desk node runs no door: the door node's retained occupancy tells it who came in."""
    from sekisho.daemon.keys import SiteKey
    site.config.write_text(DESK_ONLY.format(url=site.broker.url, stance="refuse"))
    site.enroll("alice", ALICE)
    site.enroll("bob", BOB)
    alice = SiteKey.load_or_create(site.data_dir / "site.key").pseudonym("alice")
    publish_retained(site.broker, "sekisho/v1/test/area/room/occupancy", {"count": 1, "subjects": [alice]})
    logind.add_session("c1")
    logind.patch_lock()
    sub = subscribe()
    site.start()
    # Ready is not enough: the retained occupancy reaches the daemon some time after it starts.
    wait_for(lambda: site.control({"op": "desk.list"})["occupancy"] == {"room": 1},
             what="the desk node to have the door node's retained occupancy")
    site.tap(BOB, reader="desk-01")
    wait_for(lambda: ("tailgating", "no_entry") in desk_events(sub), what="Bob is not inside")
    site.sim("desk-01", {"op": "pull"})
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="Alice is inside by the door node's word")
    site.stop()


def test_unknown_occupancy_stance(site, subscribe, logind):
    site.config.write_text(DESK_ONLY.format(url=site.broker.url, stance="allow"))
    site.enroll("alice", ALICE)
    logind.add_session("c1")
    logind.patch_lock()
    sub = subscribe()
    site.start()
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: ("card_inserted", "occupancy_unknown") in desk_events(sub), what="allowed and flagged")
    assert desk_state(sub) == "in_use"
    site.stop()
    site.config.write_text(DESK_ONLY.format(url=site.broker.url, stance="refuse"))
    site.start()
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_events(sub).count(("card_inserted", "occupancy_unknown")) == 2, what="refused")
    assert desk_state(sub) == "vacant"
    site.stop()
