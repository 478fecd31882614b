"""The door state machine: strike, forced and held-open alarms, modes, fire; on exact times."""

from __future__ import annotations

from sekisho.policies.access import Mode
from sekisho.policies.doorstate import (
    FORCED,
    HELD_OPEN,
    Alarm,
    DoorSpec,
    DoorState,
    Strike,
    WakeAt,
    contact,
    fire,
    release,
    set_mode,
    tick,
)

SPEC = DoorSpec("d", unlock_s=5, held_open_s=30)
EXIT = DoorSpec("d", unlock_s=5, held_open_s=30, fire_exit=True)
CLOSED = DoorState(contact="closed")


def test_grant_releases_then_relocks_after_unlock_time():
    st, acts = release(SPEC, CLOSED, 100.0)
    assert acts == [Strike(True), WakeAt(105.0)]
    assert st.lock(SPEC, 104.9) == "unlocked"
    st, acts = tick(SPEC, st, 105.0)
    assert acts == [Strike(False)] and st.lock(SPEC, 105.0) == "locked"


def test_open_and_close_after_grant_relocks_at_once_without_alarm():
    st, _ = release(SPEC, CLOSED, 100.0)
    st, acts = contact(SPEC, st, True, 101.0)
    assert acts == [WakeAt(105.0), WakeAt(131.0)] and st.alarm is None
    st, acts = contact(SPEC, st, False, 103.0)
    assert acts == [Strike(False)]
    assert st.lock(SPEC, 103.0) == "locked"


def test_forced_door_raises_and_clears_on_close():
    st, acts = contact(SPEC, CLOSED, True, 50.0)
    assert st.alarm == FORCED and Alarm(FORCED, True) in acts
    st, acts = contact(SPEC, st, False, 60.0)
    assert acts == [Alarm(FORCED, False)] and st.alarm is None


def test_held_open_after_its_time_and_clears_on_close():
    st, _ = release(SPEC, CLOSED, 0.0)
    st, _ = contact(SPEC, st, True, 1.0)
    st, acts = tick(SPEC, st, 5.0)
    assert acts == [Strike(False), WakeAt(31.0)] and st.alarm is None
    st, acts = tick(SPEC, st, 30.9)
    assert st.alarm is None
    st, acts = tick(SPEC, st, 31.0)
    assert st.alarm == HELD_OPEN and acts == [Alarm(HELD_OPEN, True)]
    st, acts = contact(SPEC, st, False, 40.0)
    assert acts == [Alarm(HELD_OPEN, False)]


def test_contact_bounce_is_one_change():
    st, _ = release(SPEC, CLOSED, 0.0)
    st, first = contact(SPEC, st, True, 1.0)
    st, again = contact(SPEC, st, True, 1.01)
    assert first and again == []


def test_free_mode_stands_open_without_alarms():
    st, acts = set_mode(SPEC, CLOSED, Mode.FREE, 0.0)
    assert acts == [Strike(True)]
    st, acts = contact(SPEC, st, True, 1.0)
    st, acts = tick(SPEC, st, 1000.0)
    assert st.alarm is None and acts == []
    st, acts = set_mode(SPEC, st, Mode.NORMAL, 1001.0)
    assert Strike(False) in acts


def test_lockdown_cancels_a_pending_release():
    st, _ = release(SPEC, CLOSED, 0.0)
    st, acts = set_mode(SPEC, st, Mode.LOCKDOWN, 1.0)
    assert acts == [Strike(False)] and st.lock(SPEC, 1.0) == "locked"


def test_fire_releases_fire_exits_until_reset():
    st, acts = fire(EXIT, CLOSED, True, 0.0)
    assert st.mode is Mode.EMERGENCY and acts == [Strike(True)]
    st, acts = fire(EXIT, st, False, 10.0)
    assert st.mode is Mode.EMERGENCY and acts == [] and st.lock(EXIT, 10.0) == "unlocked"
    st, acts = set_mode(EXIT, st, Mode.NORMAL, 20.0)
    assert acts == [Strike(False)]


def test_fire_leaves_other_doors_alone():
    st, acts = fire(SPEC, CLOSED, True, 0.0)
    assert st.mode is Mode.NORMAL and acts == [] and st.fire


def test_monotonic_times_only():
    # A release computed at monotonic 1000 is judged only against monotonic times: a wall-clock
    # step backwards has no way in.
    st, _ = release(SPEC, CLOSED, 1000.0)
    assert st.unlocked_until == 1005.0
