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
lock_confirm_s = 5.0
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
    assert 0 < locked["latency_ms"] < 60_000 and set(locked) >= {"id", "seq", "kind", "subject", "latency_ms"}
    assert locked["area"] == "room"  # the desk's area, for the recorder's site-wide report
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
    wait_for(lambda: ("lock_failed", "unconfirmed") in desk_events(sub), timeout=40, what="lock_failed")
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


def test_sim_tap_and_pull_at_a_desk_print_what_the_desk_decided(desk):
    """`sekisho sim` answers with the desk's decision as it does with a door's (daemon/answers.py)."""
    site, sub, logind = desk
    started(site, sub, logind)
    enter_room(site, sub, ALICE)
    assert site.cli("sim", "tap", "desk-01", ALICE).stdout == "desk-01: card_inserted (card, rule desk.card)\n"
    assert site.cli("sim", "pull", "desk-01").stdout == "desk-01: card_removed (removed, rule desk.removed)\n"
    wait_for(lambda: desk_state(sub) == "locked", what="locked")
    site.stop()


# ------------------------------------------------------------------------------ fail secure (issue 11)
def alarms(sub, kind: str) -> list[dict]:
    return [m.json for m in sub.messages if "/alarm/" in m.topic and m.payload and m.json["kind"] == kind]


def desk_states(sub) -> list[str]:
    return [m.json["state"] for m in sub.on("/desk/desk-01/state")]


def seen_by_the_watch(site, *sessions: str) -> None:
    """Wait until the daemon's seat watch lists ``sessions`` ("c1 locked", "c2 unlocked active")."""
    wait_for(lambda: all(s in site.cli("desk", "list").stdout for s in sessions), what=f"the watch seeing {sessions}")


def at_work(site, sub, logind) -> None:
    """Alice's card in and her password typed at the locker (c1 was locked at start)."""
    enter_room(site, sub, ALICE)
    site.tap(ALICE, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="in_use")
    logind.unlock_by_password("c1")
    seen_by_the_watch(site, "c1 unlocked active")


def in_use_then_pulled(site, sub, logind) -> None:
    """Alice at work, then her card out: the desk locked and c1 confirmed locked, calls cleared."""
    at_work(site, sub, logind)
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: logind.calls("LockSession") == [["c1"]] and logind.locked_hint("c1"), what="c1 locked")
    wait_for(lambda: desk_state(sub) == "locked", what="locked")
    logind.obj.ClearCalls(dbus_interface="org.freedesktop.DBus.Mock")


def test_a_password_unlock_after_the_pull_is_relocked_with_the_alarm(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    in_use_then_pulled(site, sub, logind)
    logind.unlock_by_password("c1")  # the password typed at the locker, no card in the slot
    wait_for(lambda: ("unlocked_without_card", "unlocked") in desk_events(sub), what="unlocked_without_card")
    wait_for(lambda: logind.calls("LockSession") == [["c1"]] and logind.locked_hint("c1"), what="c1 relocked")
    alarm = wait_for(lambda: alarms(sub, "unlocked_without_card"), what="the alarm")[0]
    assert alarm["severity"] == "critical" and alarm["source"] == "desk-01"
    event = next(m.json for m in sub.on("/desk/desk-01/event") if m.json["kind"] == "unlocked_without_card")
    assert event["subject"] == sub.events()[0]["subject"]  # Alice, as her pseudonym
    assert event["rule"] == "desk.unlocked-without-card.relock"
    # While c1 was unlocked the desk said so; once relocked it says locked again, still Alice's.
    wait_for(lambda: desk_states(sub)[-3:] == ["locked", "unlocked", "locked"], what="unlocked, then locked")
    assert sub.on("/desk/desk-01/state")[-1].json["subject"] == event["subject"]
    site.stop()


def test_alarm_only_raises_the_alarm_and_the_desk_says_unlocked(desk):
    import threading
    site, sub, logind = desk
    write(site, desk_extra='unlocked_without_card = "alarm_only"')
    started(site, sub, logind)
    in_use_then_pulled(site, sub, logind)
    logind.unlock_by_password("c1")
    wait_for(lambda: alarms(sub, "unlocked_without_card"), what="the alarm")
    wait_for(lambda: desk_state(sub) == "unlocked", what="state unlocked")
    assert ("unlocked_without_card", "unlocked") in desk_events(sub)
    threading.Event().wait(1.0)  # a relock would have been asked for in the same decision
    assert logind.calls("LockSession") == [] and not logind.locked_hint("c1")
    # The person at the desk locks it themselves: the desk says locked again.
    logind.bus.get_object("org.freedesktop.login1", "/org/freedesktop/login1/session/c1").SetLockedHint(
        True, dbus_interface="org.freedesktop.login1.Session")
    wait_for(lambda: desk_state(sub) == "locked", what="locked again")
    site.stop()


def test_a_vacant_desk_relocks_a_password_login_made_without_a_card(site, subscribe, logind):
    write(site)
    site.enroll("alice", ALICE)
    logind.add_session("g1", user="gdm", session_class="greeter")  # the login screen
    logind.patch_lock()
    sub = subscribe()
    site.start()
    # Nothing to lock at start: the watch's first listing came before this start-up lock.
    wait_for(lambda: ("session_locked", "no_session") in desk_events(sub), what="start-up lock")
    assert desk_state(sub) == "vacant"
    logind.add_session("c2", user="alice", active=True)  # a password login at the greeter, no card
    wait_for(lambda: ("unlocked_without_card", "new_session") in desk_events(sub), what="unlocked_without_card")
    wait_for(lambda: logind.calls("LockSession") == [["c2"]] and logind.locked_hint("c2"), what="c2 locked")
    assert wait_for(lambda: alarms(sub, "unlocked_without_card"), what="alarm")[0]["severity"] == "critical"
    wait_for(lambda: desk_states(sub)[-2:] == ["unlocked", "vacant"], what="unlocked, then vacant again")
    site.stop()


def test_a_vacant_desk_relocks_its_session_unlocked_by_password_without_a_card(desk):
    site, sub, logind = desk
    started(site, sub, logind)  # nobody's card: c1 locked at start, the desk vacant
    assert desk_state(sub) == "vacant" and logind.locked_hint("c1")
    logind.unlock_by_password("c1")
    wait_for(lambda: ("unlocked_without_card", "unlocked") in desk_events(sub), what="unlocked_without_card")
    wait_for(lambda: logind.calls("LockSession") == [["c1"]] and logind.locked_hint("c1"), what="c1 relocked")
    event = next(m.json for m in sub.on("/desk/desk-01/event") if m.json["kind"] == "unlocked_without_card")
    assert event["subject"] is None  # nobody held the desk
    wait_for(lambda: desk_states(sub)[-2:] == ["unlocked", "vacant"], what="unlocked, then vacant again")
    site.stop()


def test_a_console_in_the_foreground_at_the_pull_is_locked_and_the_graphical_session_too(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    at_work(site, sub, logind)
    logind.add_session("c2", user="alice", type="tty", active=True)  # Ctrl-Alt-F3 and a login there
    seen_by_the_watch(site, "c2 unlocked active")  # while her card is in: Alice at work
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: sorted(logind.calls("LockSession")) == [["c1"], ["c2"]], what="both sessions asked")
    wait_for(lambda: logind.locked_hint("c1"), what="the graphical session locked")
    # No locker confirms a console's lock: tty_lock's default ends it.
    wait_for(lambda: logind.calls("TerminateSession") == [["c2"]], timeout=30, what="the console terminated")
    wait_for(lambda: ("session_terminated", "text_session") in desk_events(sub), what="session_terminated")
    assert logind.session_ids() == ["c1"]
    assert desk_state(sub) == "locked" and alarms(sub, "lock_failed") == []
    site.stop()


def test_tty_lock_alarm_only_leaves_the_console_open_with_the_alarm_and_the_desk_says_unlocked(desk):
    site, sub, logind = desk
    write(site, desk_extra='tty_lock = "alarm_only"')
    started(site, sub, logind)
    at_work(site, sub, logind)
    logind.add_session("c2", user="alice", type="tty", active=True)
    seen_by_the_watch(site, "c2 unlocked active")
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: ("lock_failed", "text_session_unconfirmed") in desk_events(sub), timeout=30, what="lock_failed")
    assert logind.locked_hint("c1") and logind.calls("TerminateSession") == []
    assert sorted(logind.calls("LockSession")) == [["c1"], ["c2"]]  # the console asked once, no retry
    assert wait_for(lambda: alarms(sub, "lock_failed"), what="alarm")[0]["severity"] == "critical"
    wait_for(lambda: desk_state(sub) == "unlocked", what="the desk says unlocked")
    site.stop()


def test_a_confirmation_command_that_disagrees_escalates_as_a_failed_lock(desk, tmp_path):
    import sys
    site, sub, logind = desk
    seen = tmp_path / "confirm-args"
    script = tmp_path / "confirm.py"
    script.write_text("import sys\nopen(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')\n"
                      "sys.exit('no screen locker process in session ' + sys.argv[2])\n")
    write(site, desk_extra=f'lock_fallback = "terminate"\n'
                           f'lock_confirm_command = ["{sys.executable}", "{script}", "{seen}", "{{session}}", '
                           f'"{{user}}"]')
    site.start()  # c1's LockedHint turns true at once; the command does not agree
    reason = "confirm_command_failed: exit 1: no screen locker process in session c1"
    wait_for(lambda: ("lock_failed", reason) in desk_events(sub), timeout=40, what="lock_failed")
    assert logind.calls("LockSession") == [["c1"], ["c1"]]  # retried like an unconfirmed lock
    assert logind.calls("TerminateSession") == [["c1"]]      # then the fallback
    assert seen.read_text() == "c1 alice\nc1 alice\n"
    alarm = wait_for(lambda: alarms(sub, "lock_failed"), what="alarm")[0]
    assert alarm["severity"] == "critical"
    assert ("session_locked", "locked") not in desk_events(sub)
    site.stop()


def test_a_pull_with_the_login_screen_in_front_locks_the_session_behind_it_and_keeps_the_holder(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    enter_room(site, sub, BOB)
    at_work(site, sub, logind)
    # "Switch user": the greeter comes to the front, Alice's session stays unlocked behind it.
    logind.add_session("g1", uid=120, user="gdm", session_class="greeter", active=True)
    # c1 no longer active; the greeter is no user session of the seat's.
    wait_for(lambda: "c1 unlocked active" not in (out := site.cli("desk", "list").stdout) and "c1 unlocked" in out,
             what="the watch seeing c1 in the background")
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: logind.calls("LockSession") == [["c1"]] and logind.locked_hint("c1"), what="c1 locked")
    wait_for(lambda: desk_state(sub) == "locked", what="locked")
    site.tap(BOB, reader="desk-01")
    wait_for(lambda: ("foreign_card", "foreign_card") in desk_events(sub), what="Bob's card is foreign")
    assert desk_state(sub) == "locked" and "vacant" not in desk_states(sub)[1:]
    site.stop()


def test_a_holder_who_logged_out_leaves_the_desk_to_the_next_shift(desk):
    site, sub, logind = desk
    started(site, sub, logind)
    in_use_then_pulled(site, sub, logind)
    enter_room(site, sub, BOB)
    logind.logout("c1")  # Alice's session ends (logged out from the locker's menu, or terminated)
    wait_for(lambda: desk_state(sub) == "vacant", what="vacant once no user session is left")
    site.tap(BOB, reader="desk-01")
    wait_for(lambda: desk_state(sub) == "in_use", what="Bob's card takes the desk")
    assert ("foreign_card", "foreign_card") not in desk_events(sub)
    site.stop()
