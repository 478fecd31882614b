"""The desk decision: every state, every input, and what it asks the daemon to do."""

from __future__ import annotations

import dataclasses

import pytest

from sekisho.policies.desk import (
    Card,
    Desk,
    DeskDecision,
    DeskRules,
    DeskState,
    Kind,
    LockSession,
    Publish,
    RaiseAlarm,
    TailgatingStance,
    UnknownOccupancy,
    UnlockedWithoutCard,
    UnlockSession,
    became_usable,
    decide,
    start,
    tick,
)
from sekisho.policies.events import (
    CardPresented,
    CardRemoved,
    CardUnreadable,
    LeaveSeatPressed,
    NoSessionToLock,
    PinEntered,
    ReaderBack,
    ReaderLost,
    SeatSession,
    SeatSessionsSeen,
    SessionLocked,
    SessionLockFailed,
    SessionTerminated,
)

RULES = DeskRules("desk-01", away_timeout_s=300.0)
ALICE = Card("hash-alice", "alice", allowed=True, entered=True)
ALICE_SPARE = Card("hash-alice-2", "alice", allowed=True, entered=True)
BOB = Card("hash-bob", "bob", allowed=True, entered=True)
UNKNOWN = Card("hash-unknown", None)
NO_ACCESS = Card("hash-nina", "nina", allowed=False, entered=True)

VACANT, IN_USE, AWAY, LOCKED = DeskState.VACANT, DeskState.IN_USE, DeskState.AWAY, DeskState.LOCKED
UNLOCKED = DeskState.UNLOCKED
LOCK = LockSession()
SRC = "desk-01-reader"


def insert(desk: Desk, card: Card, now: float = 10.0, rules: DeskRules = RULES) -> DeskDecision:
    return decide(desk, CardPresented(source=SRC, uid=b"\x04\x01"), now, rules, card)


def feed(desk: Desk, event, now: float = 10.0, rules: DeskRules = RULES) -> DeskDecision:
    return decide(desk, event, now, rules)


def removed() -> CardRemoved:
    return CardRemoved(source=SRC)


def sess(sid: str = "c1", active: bool = True, locked: bool = False, graphical: bool = True) -> SeatSession:
    return SeatSession(sid, active, locked, graphical)


def seen(*sessions: SeatSession) -> SeatSessionsSeen:
    return SeatSessionsSeen(source="logind", seat="seat0", sessions=tuple(sessions))


def listed(desk: Desk, *sessions: SeatSession) -> Desk:
    """The desk once logind's listing showed ``sessions`` (a baseline when it is the first)."""
    return feed(desk, seen(*sessions)).desk


def kinds(d: DeskDecision) -> list[tuple[str, str | None, str]]:
    return [(a.kind.value, a.person_id, a.reason) for a in d.actions if isinstance(a, Publish)]


def others(d: DeskDecision) -> list:
    return [a for a in d.actions if not isinstance(a, Publish)]


# The four states, each reached the way a desk reaches it.
def vacant() -> Desk:
    return start(0.0).desk


def in_use(card: Card = ALICE) -> Desk:
    return insert(vacant(), card, now=1.0).desk


def away() -> Desk:
    return feed(in_use(), LeaveSeatPressed(source="leave-key"), now=2.0).desk


def locked() -> Desk:
    return feed(in_use(), removed(), now=2.0).desk


# ------------------------------------------------------------------------------ start
def test_start_is_vacant_and_locks_because_nobody_is_known_to_hold_the_desk():
    d = start(5.0)
    assert d.state is VACANT and d.desk.person_id is None and d.desk.since == 5.0
    assert d.actions == (LOCK,) and d.rule == "desk.start"


# ------------------------------------------------------------------------------ vacant
def test_vacant_allowed_card_makes_the_desk_in_use_without_unlocking():
    d = insert(vacant(), ALICE, now=7.0, rules=dataclasses.replace(RULES, unlock_on_card=True))
    assert (d.state, d.desk.person_id, d.desk.card_hash) == (IN_USE, "alice", "hash-alice")
    assert d.changed and d.desk.since == 7.0
    assert (d.rule, d.reason) == ("desk.card", "card")
    assert kinds(d) == [("card_inserted", "alice", "card")]
    assert others(d) == []  # the holder signs in or unlocks with their password


@pytest.mark.parametrize("card, rules, rule, reason", [
    (UNKNOWN, RULES, "card.unknown", "unknown_card"),
    (NO_ACCESS, RULES, "desk.level", "no_access"),
    (dataclasses.replace(ALICE, entered=None), dataclasses.replace(RULES, unknown_occupancy=UnknownOccupancy.REFUSE),
     "occupancy.unknown.refuse", "occupancy_unknown"),
], ids=["unknown-card", "no-access", "occupancy-unknown-refuse"])
def test_vacant_refused_card_leaves_the_desk_vacant(card, rules, rule, reason):
    d = insert(vacant(), card, rules=rules)
    assert d.state is VACANT and d.desk.person_id is None and not d.changed
    assert d.desk.slot == card
    assert (d.rule, d.reason) == (rule, reason)
    assert kinds(d) == [("card_inserted", card.person_id, reason)]
    assert others(d) == []


def test_tailgating_refused_raises_the_alarm_and_keeps_the_desk_vacant():
    d = insert(vacant(), dataclasses.replace(ALICE, entered=False))
    assert d.state is VACANT and (d.rule, d.reason) == ("tailgating.refuse", "tailgating")
    assert kinds(d) == [("card_inserted", "alice", "tailgating"), ("tailgating", "alice", "no_entry")]
    assert others(d) == [RaiseAlarm("tailgating", "warning")]


def test_tailgating_flagged_raises_the_alarm_and_lets_the_card_use_the_desk():
    d = insert(vacant(), dataclasses.replace(ALICE, entered=False),
               rules=dataclasses.replace(RULES, tailgating=TailgatingStance.FLAG))
    assert d.state is IN_USE and d.desk.person_id == "alice"
    assert (d.rule, d.reason) == ("tailgating.flag", "tailgating_flagged")
    assert kinds(d) == [("card_inserted", "alice", "tailgating_flagged"), ("tailgating", "alice", "no_entry")]
    assert others(d) == [RaiseAlarm("tailgating", "warning")]


def test_a_recorded_entry_raises_no_alarm():
    d = insert(vacant(), ALICE)
    assert not [a for a in d.actions if isinstance(a, RaiseAlarm)]
    assert "tailgating" not in [k for k, _, _ in kinds(d)]


def test_unknown_occupancy_allowed_is_flagged_in_the_reason_without_an_alarm():
    d = insert(vacant(), dataclasses.replace(ALICE, entered=None))
    assert d.state is IN_USE and (d.rule, d.reason) == ("occupancy.unknown.allow", "occupancy_unknown")
    assert kinds(d) == [("card_inserted", "alice", "occupancy_unknown")]
    assert others(d) == []


@pytest.mark.parametrize("event, rule, kind", [
    (removed(), "desk.removed", "card_removed"),
    (ReaderLost(source=SRC, reason="pcscd gone"), "desk.reader-lost", "reader_lost"),
    (CardUnreadable(source=SRC, reason="no_answer"), "desk.unreadable", "card_inserted"),
    (LeaveSeatPressed(source="leave-key"), "desk.leave-seat", "leave_seat"),
], ids=["removed", "reader-lost", "unreadable", "leave-seat"])
def test_vacant_lock_triggers_lock_and_stay_vacant(event, rule, kind):
    d = feed(vacant(), event)
    assert d.state is VACANT and not d.changed and d.expires_at is None
    assert d.rule == rule and d.actions[0] == LOCK
    assert [k for k, _, _ in kinds(d)] == [kind]


# ------------------------------------------------------------------------------ in use
def test_in_use_card_removed_locks_and_keeps_the_holder():
    d = feed(in_use(), removed(), now=20.0)
    assert (d.state, d.desk.person_id, d.desk.card_hash, d.desk.slot) == (LOCKED, "alice", "hash-alice", None)
    assert d.changed and d.desk.since == 20.0 and d.rule == "desk.removed"
    assert d.actions == (LOCK, Publish(Kind.CARD_REMOVED, "alice", "removed"))


@pytest.mark.parametrize("event, rule, publish", [
    (ReaderLost(source=SRC, reason="pcscd gone"), "desk.reader-lost", ("reader_lost", "alice", "pcscd gone")),
    (ReaderLost(source=SRC), "desk.reader-lost", ("reader_lost", "alice", "reader_lost")),
    (CardUnreadable(source=SRC, reason="status 6A81"), "desk.unreadable",
     ("card_inserted", None, "unreadable: status 6A81")),
], ids=["reader-lost", "reader-lost-no-reason", "unreadable"])
def test_in_use_losing_sight_of_the_card_locks(event, rule, publish):
    d = feed(in_use(), event)
    assert d.state is LOCKED and d.desk.person_id == "alice" and d.desk.slot is None
    assert d.rule == rule and d.actions[0] == LOCK and kinds(d) == [publish]


def test_pcscd_killed_with_the_card_in_locks_and_the_card_seen_again_brings_it_back():
    # The PC/SC driver reports a lost pcscd as the card removed, then the reader lost.
    rules = dataclasses.replace(RULES, unlock_on_card=True)
    d1 = feed(in_use(), removed(), rules=rules)
    d2 = feed(d1.desk, ReaderLost(source=SRC, reason="SCARD_E_NO_SERVICE"), rules=rules)
    assert d2.state is LOCKED and LOCK in d2.actions
    d3 = feed(d2.desk, ReaderBack(source=SRC), rules=rules)
    assert d3.state is LOCKED and kinds(d3) == [("reader_back", "alice", "reader_back")] and others(d3) == []
    d4 = insert(d3.desk, ALICE, rules=rules)
    assert d4.state is IN_USE and UnlockSession() in d4.actions


def test_in_use_leave_seat_locks_marks_away_and_sets_the_expiry():
    d = feed(in_use(), LeaveSeatPressed(source="leave-key"), now=50.0)
    assert d.state is AWAY and d.desk.person_id == "alice" and d.desk.slot == ALICE
    assert d.expires_at == 50.0 + RULES.away_timeout_s and d.changed
    assert d.actions == (LOCK, Publish(Kind.LEAVE_SEAT, "alice", "leave_seat"))


def test_in_use_the_same_card_reported_again_changes_nothing():
    desk = in_use()
    d = insert(desk, ALICE, now=99.0)
    assert d.desk == desk and d.actions == () and d.rule == "desk.duplicate" and not d.changed


@pytest.mark.parametrize("card", [BOB, ALICE_SPARE, UNKNOWN], ids=["other-person", "holders-other-card", "unknown"])
def test_in_use_a_different_card_locks_as_foreign(card):
    d = insert(in_use(), card)
    assert d.state is LOCKED and d.desk.person_id == "alice" and d.desk.slot == card
    assert d.rule == "desk.foreign-card"
    assert d.actions == (LOCK, Publish(Kind.FOREIGN_CARD, card.person_id, "foreign_card"))


def test_in_use_ignores_what_does_not_concern_it():
    desk = listed(in_use(), sess(locked=True))
    for d in (tick(desk, 1e9), feed(desk, seen(sess(locked=False))), feed(desk, NoSessionToLock(source="logind"))):
        assert d.state is IN_USE and d.desk.person_id == "alice" and not d.changed
        assert others(d) == []


def test_reader_back_publishes_only():
    desk = in_use()
    d = feed(desk, ReaderBack(source=SRC))
    assert d.desk == desk and d.actions == (Publish(Kind.READER_BACK, "alice", "reader_back"),)


# ------------------------------------------------------------------------------ lock outcomes
def test_lock_confirmed_is_published_with_its_latency():
    desk = locked()
    d = feed(desk, SessionLocked(source="logind", session="c1", latency_ms=3.5))
    assert d.desk == desk and d.rule == "desk.lock-confirmed"
    assert d.actions == (Publish(Kind.SESSION_LOCKED, "alice", "locked", 3.5),)


def test_lock_failed_is_published_raises_the_alarm_and_the_desk_no_longer_says_locked():
    desk = locked()
    d = feed(desk, SessionLockFailed(source="logind", session="c1", reason="unconfirmed", latency_ms=6000.0))
    assert d.state is UNLOCKED and d.desk.person_id == "alice" and d.rule == "desk.lock-failed" and d.changed
    assert d.actions == (Publish(Kind.LOCK_FAILED, "alice", "unconfirmed", 6000.0),
                         RaiseAlarm("lock_failed", "critical"))


def test_lock_failed_with_the_holders_card_in_keeps_the_state():
    desk = away()
    d = feed(desk, SessionLockFailed(source="logind", session="c1", reason="unconfirmed"))
    assert d.desk == desk and RaiseAlarm("lock_failed", "critical") in d.actions


def test_a_terminated_text_session_is_published():
    desk = locked()
    d = feed(desk, SessionTerminated(source="logind", session="c2", reason="text_session"))
    assert d.desk == desk and d.actions == (Publish(Kind.SESSION_TERMINATED, "alice", "text_session"),)


def test_nothing_to_lock_never_frees_a_desk_with_a_holder():
    # logind may list nothing for reasons of its own; only the seat's listing frees a desk.
    for desk in (locked(), away(), listed(locked(), sess(locked=True))):
        d = feed(desk, NoSessionToLock(source="logind"), now=30.0)
        assert d.desk == desk and d.state is not VACANT and d.desk.person_id == "alice"
        assert d.actions == (Publish(Kind.SESSION_LOCKED, "alice", "no_session"),)
    assert insert(feed(locked(), NoSessionToLock(source="logind")).desk, BOB).rule == "desk.foreign-card"


def test_nothing_to_lock_at_a_vacant_desk_is_recorded():
    desk = vacant()
    d = feed(desk, NoSessionToLock(source="logind"))
    assert d.desk == desk and d.actions == (Publish(Kind.SESSION_LOCKED, None, "no_session"),)


# ------------------------------------------------------------------------------ away
def test_away_tick_before_the_expiry_changes_nothing():
    desk = away()
    d = tick(desk, desk.expires_at - 0.001)
    assert d.desk == desk and d.actions == () and d.rule == "desk.tick"


def test_away_expiry_treats_the_card_as_removed():
    desk = away()
    d = tick(desk, desk.expires_at)
    assert d.state is LOCKED and d.expires_at is None and d.rule == "desk.away-timeout"
    assert d.desk.slot == ALICE  # still physically in; it just no longer counts
    assert d.actions == (LOCK, Publish(Kind.CARD_REMOVED, "alice", "away_timeout"))
    # Pulled out and put back, it is the same card again.
    back = insert(feed(d.desk, removed()).desk, ALICE)
    assert back.state is IN_USE


def test_away_card_removed_locks_and_a_stale_timer_then_does_nothing():
    desk = away()
    d = feed(desk, removed())
    assert d.state is LOCKED and d.expires_at is None and d.actions[0] == LOCK
    late = tick(d.desk, desk.expires_at + 1)
    assert late.desk == d.desk and late.actions == ()


def test_away_holder_returns_by_putting_the_card_back():
    rules = dataclasses.replace(RULES, unlock_on_card=True)
    d = insert(feed(away(), removed(), rules=rules).desk, ALICE, rules=rules)
    assert d.state is IN_USE and d.expires_at is None and d.rule == "desk.same-card"
    assert others(d) == [UnlockSession()]


def test_away_holder_returns_by_password_with_the_card_still_in():
    desk = listed(away(), sess(locked=True))
    d = feed(desk, seen(sess(locked=False)))
    assert d.state is IN_USE and d.expires_at is None and d.rule == "desk.resume"
    assert d.actions == (Publish(Kind.UNLOCKED, "alice", "password"),)


def test_away_leave_seat_again_locks_again_without_extending_the_expiry():
    desk = away()
    d = feed(desk, LeaveSeatPressed(source="leave-key"), now=200.0)
    assert d.state is AWAY and d.expires_at == desk.expires_at and not d.changed
    assert d.actions[0] == LOCK


@pytest.mark.parametrize("event", [ReaderLost(source=SRC), CardUnreadable(source=SRC, reason="no_answer")],
                         ids=["reader-lost", "unreadable"])
def test_away_losing_sight_of_the_card_locks(event):
    d = feed(away(), event)
    assert d.state is LOCKED and d.expires_at is None and d.actions[0] == LOCK


def test_away_a_different_card_locks_as_foreign():
    d = insert(away(), BOB)
    assert d.state is LOCKED and d.expires_at is None
    assert d.actions == (LOCK, Publish(Kind.FOREIGN_CARD, "bob", "foreign_card"))


def test_away_same_card_reported_again_changes_nothing():
    desk = away()
    assert insert(desk, ALICE).desk == desk


def test_away_with_no_session_left_frees_the_desk_when_the_card_leaves():
    desk = listed(listed(away(), sess(locked=True)))  # logged out, the card still in
    assert desk.state is AWAY
    d = feed(desk, removed())
    assert (d.state, d.desk.person_id, d.expires_at) == (VACANT, None, None) and LOCK in d.actions
    assert insert(d.desk, BOB).state is IN_USE  # the next shift


# ------------------------------------------------------------------------------ locked
@pytest.mark.parametrize("unlock_on_card, unlock", [
    (False, []),
    (True, [UnlockSession(), Publish(Kind.UNLOCKED, "alice", "card")]),
], ids=["password-prompt-stays", "unlock-on-card"])
def test_locked_same_card_back_is_in_use_and_unlocks_only_when_configured(unlock_on_card, unlock):
    rules = dataclasses.replace(RULES, unlock_on_card=unlock_on_card)
    d = insert(locked(), ALICE, now=40.0, rules=rules)
    assert d.state is IN_USE and d.changed and d.desk.since == 40.0
    assert (d.rule, d.reason) == ("desk.same-card", "same_card")
    assert list(d.actions) == [Publish(Kind.CARD_INSERTED, "alice", "same_card"), *unlock]


@pytest.mark.parametrize("card", [BOB, ALICE_SPARE, UNKNOWN, NO_ACCESS],
                         ids=["other-person", "holders-other-card", "unknown", "no-access"])
def test_locked_a_different_card_stays_locked_as_foreign(card):
    rules = dataclasses.replace(RULES, unlock_on_card=True)
    d = insert(locked(), card, rules=rules)
    assert d.state is LOCKED and d.desk.person_id == "alice" and not d.changed
    assert d.rule == "desk.foreign-card"
    assert d.actions == (Publish(Kind.FOREIGN_CARD, card.person_id, "foreign_card"),)  # no unlock, no new lock


def test_locked_a_foreign_card_out_and_the_holders_card_in_brings_it_back():
    d = insert(locked(), BOB)
    d = feed(d.desk, removed())
    assert d.state is LOCKED and kinds(d) == [("card_removed", "bob", "removed")]
    assert insert(d.desk, ALICE).state is IN_USE


def test_locked_a_foreign_tailgater_is_foreign_and_raises_the_alarm():
    d = insert(locked(), dataclasses.replace(BOB, entered=False))
    assert d.state is LOCKED
    assert kinds(d) == [("foreign_card", "bob", "foreign_card"), ("tailgating", "bob", "no_entry")]
    assert others(d) == [RaiseAlarm("tailgating", "warning")]


@pytest.mark.parametrize("card, rules, rule", [
    (dataclasses.replace(ALICE, entered=False), RULES, "tailgating.refuse"),
    (dataclasses.replace(ALICE, allowed=False), RULES, "desk.level"),
    (dataclasses.replace(ALICE, entered=None), dataclasses.replace(RULES, unknown_occupancy=UnknownOccupancy.REFUSE),
     "occupancy.unknown.refuse"),
], ids=["tailgating", "access-revoked", "occupancy-unknown"])
def test_locked_the_holders_card_is_checked_again_and_can_be_refused(card, rules, rule):
    d = insert(locked(), card, rules=dataclasses.replace(rules, unlock_on_card=True))
    assert d.state is LOCKED and d.rule == rule
    assert UnlockSession() not in d.actions


def test_locked_holder_back_as_a_flagged_tailgater_is_in_use_with_the_alarm():
    rules = dataclasses.replace(RULES, tailgating=TailgatingStance.FLAG, unlock_on_card=True)
    d = insert(locked(), dataclasses.replace(ALICE, entered=False), rules=rules)
    assert d.state is IN_USE and d.rule == "tailgating.flag"
    assert UnlockSession() in d.actions and RaiseAlarm("tailgating", "warning") in d.actions


@pytest.mark.parametrize("event", [removed(), ReaderLost(source=SRC), LeaveSeatPressed(source="leave-key"),
                                   CardUnreadable(source=SRC, reason="no_answer")],
                         ids=["removed", "reader-lost", "leave-seat", "unreadable"])
def test_locked_every_lock_trigger_locks_again(event):
    desk = locked()
    d = feed(desk, event)
    assert d.state is LOCKED and d.desk.person_id == "alice" and not d.changed
    assert d.actions[0] == LOCK


# ------------------------------------------------------------------------------ what the seat shows
UNLOCKED_ALARM = RaiseAlarm("unlocked_without_card", "critical")


def test_became_usable_against_the_previous_listing():
    assert became_usable(None, (sess(),)) == ()  # the first listing is a baseline
    before = (sess("c1", locked=True), sess("c2", active=False, graphical=False))
    assert became_usable(before, before) == ()
    assert became_usable(before, (sess("c1", locked=False), before[1])) == ((sess("c1"), "unlocked"),)
    assert became_usable(before, (*before, sess("c3"))) == ((sess("c3"), "new_session"),)
    assert became_usable(before, (sess("c1", active=False, locked=True), sess("c2", graphical=False))) == (
        (sess("c2", graphical=False), "activated"),)
    assert became_usable(before, (sess("c1", locked=True), sess("c3", locked=True))) == ()  # locked at login
    # Locked and unlocked again between two listings: only logind's signal tells.
    assert became_usable(before, before, frozenset({"c2"})) == ((before[1], "unlocked"),)
    assert became_usable(before, before, frozenset({"c1"})) == ()  # signalled, but locked by now


def test_locked_a_password_unlock_without_the_card_is_relocked_with_the_alarm():
    desk = listed(locked(), sess(locked=True))
    d = feed(desk, seen(sess(locked=False)), now=20.0)
    assert (d.state, d.desk.person_id, d.changed) == (UNLOCKED, "alice", True)
    assert d.rule == "desk.unlocked-without-card.relock" and d.reason == "unlocked"
    assert d.actions == (LOCK, Publish(Kind.UNLOCKED_WITHOUT_CARD, "alice", "unlocked"), UNLOCKED_ALARM)
    # The relock confirmed: the listing shows it locked, and the desk says locked again.
    back = feed(d.desk, seen(sess(locked=True)))
    assert (back.state, back.desk.person_id, back.rule, back.actions) == (LOCKED, "alice", "desk.locked-again", ())


def test_alarm_only_raises_the_alarm_without_locking_and_never_says_locked():
    rules = dataclasses.replace(RULES, unlocked_without_card=UnlockedWithoutCard.ALARM_ONLY)
    desk = listed(locked(), sess(locked=True))
    d = feed(desk, seen(sess(locked=False)), rules=rules)
    assert d.state is UNLOCKED and d.rule == "desk.unlocked-without-card.alarm-only"
    assert d.actions == (Publish(Kind.UNLOCKED_WITHOUT_CARD, "alice", "unlocked"), UNLOCKED_ALARM)
    assert feed(d.desk, seen(sess(locked=False)), rules=rules).state is UNLOCKED  # no second alarm either
    assert feed(d.desk, seen(sess(locked=False)), rules=rules).actions == ()


def test_vacant_a_password_login_without_a_card_is_locked_again():
    desk = listed(vacant())  # the login screen: no user session
    d = feed(desk, seen(sess("c2")))
    assert (d.state, d.desk.person_id) == (UNLOCKED, None) and d.reason == "new_session"
    assert d.actions == (LOCK, Publish(Kind.UNLOCKED_WITHOUT_CARD, None, "new_session"), UNLOCKED_ALARM)
    assert feed(d.desk, seen(sess("c2", locked=True))).state is VACANT
    # Logged in without a card first, then the card: the desk is theirs (the alarm stays on record).
    assert insert(d.desk, ALICE).state is IN_USE


def test_a_console_coming_to_the_foreground_without_the_card_is_locked_again():
    desk = listed(locked(), sess("c1", locked=True), sess("c2", active=False, graphical=False))
    d = feed(desk, seen(sess("c1", active=False, locked=True), sess("c2", graphical=False)))
    assert d.state is UNLOCKED and d.reason == "activated" and LOCK in d.actions


def test_in_use_the_holder_at_work_changes_nothing():
    desk = listed(in_use(), sess(locked=True))
    d = feed(desk, seen(sess(), sess("c2")))
    assert d.state is IN_USE and d.actions == () and not d.changed


def test_logged_out_a_locked_desk_is_vacant_for_the_next_shift():
    desk = listed(locked(), sess(locked=True))
    d = feed(desk, seen())
    assert (d.state, d.desk.person_id, d.desk.card_hash, d.rule) == (VACANT, None, None, "desk.logged-out")
    assert insert(d.desk, BOB).state is IN_USE


def test_a_foreign_card_at_an_unlocked_desk_keeps_it_unlocked():
    desk = feed(listed(locked(), sess(locked=True)), seen(sess())).desk
    d = insert(desk, BOB)
    assert d.state is UNLOCKED and d.rule == "desk.foreign-card"


# ------------------------------------------------------------------------------ contract
def test_card_presented_without_the_looked_up_card_is_a_programming_error():
    with pytest.raises(TypeError):
        decide(vacant(), CardPresented(source=SRC, uid=b"\x01"), 1.0, RULES)


def test_an_input_the_desk_has_no_rule_for_changes_nothing():
    desk = in_use()
    d = feed(desk, PinEntered(source=SRC, digits="1234"))
    assert d.desk == desk and d.actions == () and d.rule == "desk.ignored"


def test_the_same_inputs_give_the_same_decision():
    # No clock is read: event timestamps differ between the two calls, the decisions do not.
    assert insert(locked(), ALICE, now=3.0) == insert(locked(), ALICE, now=3.0)
    assert feed(in_use(), removed(), now=3.0) == feed(in_use(), removed(), now=3.0)


def test_published_kinds_are_the_contract_words():
    assert {k.value for k in Kind} == {"card_inserted", "card_removed", "session_locked", "lock_failed", "unlocked",
                                       "leave_seat", "tailgating", "foreign_card", "reader_lost", "reader_back",
                                       "unlocked_without_card", "session_terminated"}
    assert {s.value for s in DeskState} == {"vacant", "in_use", "away", "locked", "unlocked"}
