"""The door decision: every grant and deny reason, in rule order."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sekisho.policies.access import (
    Attempt,
    Auth,
    AuthWindow,
    DoorRules,
    Holder,
    Level,
    Mode,
    Passback,
    Pin,
    SiteRules,
    decide,
    holds,
    needs_pin,
    refusal,
)
from sekisho.policies.decisions import Decision
from sekisho.policies.schedule import Schedule, TimeRange

TZ = ZoneInfo("Asia/Tokyo")
MON_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
MON_22 = dt.datetime(2026, 11, 23, 22, 0, tzinfo=TZ)
OFFICE = Schedule("office", ((TimeRange.parse("08:00-19:00"),),) * 5 + ((), ()))

SITE = SiteRules(
    doors={"entrance": DoorRules("entrance", Auth.CARD_AND_PIN, area_in="room", area_out="lobby"),
           "lobby": DoorRules("lobby", Auth.CARD, (AuthWindow(OFFICE, Auth.FREE),), area_in="lobby", area_out=""),
           "store": DoorRules("store", Auth.CARD, area_in="store", area_out="corridor")},
    levels={"operators": Level("operators", frozenset({"entrance", "lobby"}), OFFICE),
            "security": Level("security", frozenset({"entrance", "store"}), Schedule.always(), override=True),
            "night": Level("night", frozenset({"store"}), Schedule("never", ((),) * 7))},
    passback={"room": Passback.HARD, "store": Passback.SOFT},
)
ALICE = Holder("alice", levels=frozenset({"operators"}), has_pin=True)


def attempt(**kw) -> Attempt:
    base = dict(door="entrance", direction="in", local=MON_10, holder=ALICE, pin=Pin.OK)
    return Attempt(**{**base, **kw})


def verdict(**kw):
    v = decide(attempt(**kw), SITE)
    return v.decision.value, v.rule, v.reason


def test_card_and_pin_grants_naming_the_level():
    assert verdict() == ("granted", "level:operators", "card_and_pin")


def test_pin_is_asked_only_after_the_level_check():
    assert needs_pin(attempt(pin=Pin.NOT_GIVEN), SITE)
    assert not needs_pin(attempt(pin=Pin.NOT_GIVEN, local=MON_22), SITE)
    assert verdict(pin=Pin.NOT_GIVEN, local=MON_22) == ("denied", "level.schedule", "outside_schedule")
    assert not needs_pin(attempt(pin=Pin.NOT_GIVEN, holder=None), SITE)
    assert not needs_pin(attempt(pin=Pin.NOT_GIVEN, holder=Holder("x", levels=frozenset({"operators"}))), SITE)


@pytest.mark.parametrize("kw, expected", [
    (dict(holder=None), ("denied", "card.unknown", "unknown_card")),
    (dict(holder=Holder("alice", card_active=False, levels=frozenset({"operators"}))), ("denied", "card.revoked", "revoked")),
    (dict(holder=Holder("a", person_active=False, levels=frozenset({"operators"}))),
     ("denied", "card.person-disabled", "person_disabled")),
    (dict(holder=Holder("a", levels=frozenset({"operators"}), valid_until=dt.date(2026, 11, 22))),
     ("denied", "card.expired", "expired")),
    (dict(holder=Holder("a", levels=frozenset({"operators"}), valid_from=dt.date(2026, 11, 24))),
     ("denied", "card.not-yet-valid", "not_yet_valid")),
    (dict(locked_out=True), ("denied", "pin.lockout", "locked_out")),
    (dict(door="store"), ("denied", "level.none", "no_access")),
    (dict(holder=Holder("a", levels=frozenset({"ghost-level"}))), ("denied", "level.none", "no_access")),
    (dict(local=MON_22), ("denied", "level.schedule", "outside_schedule")),
    (dict(mode=Mode.LOCKDOWN), ("denied", "mode.lockdown", "lockdown")),
    (dict(holder=Holder("a", levels=frozenset({"operators"}))), ("denied", "pin.not-set", "no_pin")),
    (dict(pin=Pin.WRONG), ("denied", "pin.wrong", "pin_wrong")),
    (dict(pin=Pin.TIMEOUT), ("denied", "pin.timeout", "pin_timeout")),
    (dict(location="room"), ("denied", "passback:room", "passback")),
    (dict(direction="out", location="lobby"), ("denied", "passback:room", "passback")),
])
def test_every_deny_reason(kw, expected):
    assert verdict(**kw) == expected


def test_validity_dates_are_inclusive():
    h = Holder("a", levels=frozenset({"operators"}), has_pin=True, valid_from=dt.date(2026, 11, 23),
               valid_until=dt.date(2026, 11, 23))
    assert verdict(holder=h)[0] == "granted"


def test_lockdown_override_level_opens():
    guard = Holder("g", levels=frozenset({"security"}), has_pin=True)
    assert verdict(holder=guard, mode=Mode.LOCKDOWN, local=MON_22) == ("granted", "level:security", "card_and_pin")


def test_free_mode_opens_for_anyone_both_ways():
    assert verdict(holder=None, mode=Mode.FREE) == ("granted", "mode.free", "door_open")
    assert verdict(holder=None, mode=Mode.FREE, direction="out") == ("granted", "mode.free", "door_open")


def test_emergency_is_free_egress_not_free_entry():
    # Out: any card, unknown or revoked, passes and is recorded; no PIN is asked for.
    assert verdict(holder=None, mode=Mode.EMERGENCY, direction="out") == ("granted", "mode.emergency",
                                                                        "emergency_egress")
    revoked = Holder("r", card_active=False)
    assert verdict(holder=revoked, mode=Mode.EMERGENCY, direction="out", pin=Pin.NOT_GIVEN)[1] == "mode.emergency"
    # In: the normal rules, PIN included.
    assert verdict(holder=None, mode=Mode.EMERGENCY) == ("denied", "card.unknown", "unknown_card")
    assert verdict(holder=revoked, mode=Mode.EMERGENCY) == ("denied", "card.revoked", "revoked")
    assert verdict(mode=Mode.EMERGENCY, local=MON_22) == ("denied", "level.schedule", "outside_schedule")
    assert verdict(mode=Mode.EMERGENCY) == ("granted", "level:operators", "card_and_pin")
    assert needs_pin(attempt(mode=Mode.EMERGENCY, pin=Pin.NOT_GIVEN), SITE)
    assert not needs_pin(attempt(mode=Mode.EMERGENCY, pin=Pin.NOT_GIVEN, direction="out"), SITE)


def test_auth_window_makes_lobby_free_in_office_hours_only():
    assert verdict(door="lobby", holder=None) == ("granted", "auth.free", "free")
    assert verdict(door="lobby", holder=None, local=MON_22) == ("denied", "card.unknown", "unknown_card")
    assert verdict(door="lobby", local=MON_22)[1] == "level.schedule"


def test_passback_soft_grants_and_flags():
    guard = Holder("g", levels=frozenset({"security"}), has_pin=True)
    assert verdict(door="store", holder=guard, location="store") == ("granted", "passback:store", "passback_flagged")
    # unknown location (first use, or after the daily reset) is never a violation
    assert verdict(door="store", holder=guard, location=None) == ("granted", "level:security", "card")
    # recorded somewhere without anti-passback: nothing to enforce
    assert verdict(door="store", holder=guard, location="room") == ("granted", "level:security", "card")


def test_exit_from_where_you_are_is_granted():
    assert verdict(direction="out", location="room") == ("granted", "level:operators", "card_and_pin")


def test_decision_enum_is_only_decisions():
    assert {d.value for d in Decision} == {"granted", "denied"}


def test_validity_and_levels_in_force_are_one_question_for_doors_desks_and_approvals():
    today = MON_10.date()
    assert refusal(ALICE, today) is None
    assert refusal(None, today).rule == "card.unknown"
    assert refusal(Holder("a", valid_until=today - dt.timedelta(days=1)), today).rule == "card.expired"
    assert refusal(Holder("a", valid_from=today + dt.timedelta(days=1)), today).rule == "card.not-yet-valid"
    assert holds(ALICE, frozenset({"operators"}), SITE, MON_10)
    assert not holds(ALICE, frozenset({"operators"}), SITE, MON_22)  # outside the level's schedule
    assert not holds(ALICE, frozenset({"security"}), SITE, MON_10)  # a level Alice does not hold
    assert not holds(Holder("a", person_active=False, levels=frozenset({"operators"})), frozenset({"operators"}),
                     SITE, MON_10)
    assert not holds(None, frozenset({"operators"}), SITE, MON_10)
