"""The supervisor-at-the-desk approval, as a pure policy: each way it asks, confirms or refuses."""

from __future__ import annotations

from sekisho.policies import approval as p
from sekisho.policies.approval import ApprovalRules, Ask, Candidate, Hold, Refuse, Supervisor

SUE = Supervisor("sue", "hash-sue", entered=True, has_pin=True)
FLASH = Candidate("/sys/devices/usb1/1-2", blocked_at=100.0)
CARD = ApprovalRules(window_s=120, confirm_s=30, confirm="card")
PIN = ApprovalRules(window_s=120, confirm_s=30, confirm="pin")


def kinds(step) -> list:
    return [type(o).__name__ if not isinstance(o, Refuse) else f"Refuse:{o.reason}" for o in step[1]]


def asked(rules=CARD, now=110.0):
    pending, outcomes = p.card(None, SUE.card_hash, SUE, FLASH, True, now, rules)
    assert outcomes == (Ask(pending),) and pending.confirm == rules.confirm
    return pending


def test_card_out_and_in_again_grants_that_device():
    pending = asked()
    pending, out = p.removed(pending, 112.0, CARD)
    assert out == (Hold(),) and pending.card_out
    granted, out = p.card(pending, SUE.card_hash, SUE, FLASH, True, 115.0, CARD)
    assert kinds((granted, out)) == ["Grant"] and out[0].pending.device == FLASH
    # The card leaving after the grant is the approval's too, not a card_removed at the desk.
    assert p.removed(granted, 116.0, CARD) == (None, (Hold(),))


def test_the_card_reported_again_without_leaving_does_not_confirm():
    pending = asked()
    assert p.card(pending, SUE.card_hash, SUE, FLASH, True, 111.0, CARD) == (pending, (Hold(),))


def test_pin_confirms_and_a_wrong_pin_ends_it():
    pending = asked(PIN)
    assert kinds(p.pin(pending, True, 120.0, PIN)) == ["Grant"]
    assert kinds(p.pin(pending, False, 120.0, PIN)) == ["Refuse:pin_wrong"]
    assert p.pin(pending, False, 120.0, PIN)[0] is None
    # In PIN mode the card out and in again confirms nothing.
    out_again = p.removed(pending, 112.0, PIN)[0]
    assert kinds(p.card(out_again, SUE.card_hash, SUE, FLASH, True, 113.0, PIN)) == ["Hold"]


def test_a_pin_with_no_approval_pending_is_the_desks():
    assert kinds(p.pin(None, True, 1.0, PIN)) == ["Pass"]
    assert kinds(p.pin(asked(CARD), True, 111.0, CARD)) == ["Pass"]


def test_a_locked_out_card_approves_nothing():
    out = Supervisor("sue", "hash-sue", entered=True, has_pin=True, locked_out=True)
    assert kinds(p.card(None, out.card_hash, out, FLASH, True, 110.0, PIN)) == ["Refuse:locked_out", "Pass"]


def test_a_supervisor_without_a_pin_cannot_approve_in_pin_mode():
    nopin = Supervisor("sam", "hash-sam", entered=True, has_pin=False)
    assert kinds(p.card(None, nopin.card_hash, nopin, FLASH, True, 110.0, PIN)) == ["Refuse:no_pin", "Pass"]


def test_not_an_approval_passes_to_the_desk():
    assert kinds(p.card(None, "hash-bob", None, FLASH, True, 110.0, CARD)) == ["Pass"]  # not a supervisor
    assert kinds(p.card(None, SUE.card_hash, SUE, None, True, 110.0, CARD)) == ["Pass"]  # nothing blocked
    assert kinds(p.card(None, SUE.card_hash, SUE, FLASH, True, 221.0, CARD)) == ["Pass"]  # blocked too long ago
    assert kinds(p.card(None, SUE.card_hash, SUE, FLASH, False, 110.0, CARD)) == ["Pass"]  # vacant, in use, hers
    assert kinds(p.removed(None, 110.0, CARD)) == ["Pass"]


def test_a_supervisor_not_inside_is_refused_and_the_desk_sees_the_card():
    outside = Supervisor("sue", "hash-sue", entered=False, has_pin=True)
    assert kinds(p.card(None, outside.card_hash, outside, FLASH, True, 110.0, CARD)) == ["Refuse:not_in_area", "Pass"]
    unknown = Supervisor("sue", "hash-sue", entered=None, has_pin=True)
    assert kinds(p.card(None, unknown.card_hash, unknown, FLASH, True, 110.0, CARD)) == \
        ["Refuse:occupancy_unknown", "Pass"]


def test_another_card_ends_the_approval_and_goes_to_the_desk():
    pending = p.removed(asked(), 112.0, CARD)[0]
    step = p.card(pending, "hash-bob", None, FLASH, True, 113.0, CARD)
    assert step[0] is None and kinds(step) == ["Refuse:other_card", "Pass"]


def test_expiry_by_tick_and_by_a_late_confirmation():
    pending = asked()
    assert p.tick(pending, 139.0, CARD) == (pending, ())
    assert kinds(p.tick(pending, 140.0, CARD)) == ["Refuse:expired"]
    out = p.removed(pending, 135.0, CARD)[0]
    late = p.card(out, SUE.card_hash, SUE, FLASH, True, 141.0, CARD)
    # Too late to confirm: the old approval is refused, and the card asks afresh (the device is
    # still within its window).
    assert kinds(late) == ["Refuse:expired", "Ask"] and late[0].started == 141.0
    assert kinds(p.pin(asked(PIN), True, 141.0, PIN)) == ["Refuse:expired"]


def test_reader_trouble_ends_an_approval():
    assert kinds(p.lost(asked())) == ["Refuse:reader", "Pass"]
    assert kinds(p.lost(None)) == ["Pass"]


def test_after_a_grant_the_next_card_is_a_new_story():
    pending = p.removed(asked(), 112.0, CARD)[0]
    granted = p.card(pending, SUE.card_hash, SUE, FLASH, True, 115.0, CARD)[0]
    assert kinds(p.card(granted, "hash-bob", None, FLASH, True, 200.0, CARD)) == ["Pass"]
    assert isinstance(p.card(granted, SUE.card_hash, SUE, FLASH, True, 116.0, CARD)[1][0], Ask)
    assert p.tick(granted, 1000.0, CARD)[1] == ()  # a granted approval never expires as refused


def test_a_desks_ports_cover_the_hubs_behind_them_and_nothing_else():
    ports = ("1-2", "3-1.4")
    assert [port for port in ("1-2", "1-2.1", "1-2.1.3", "3-1.4", "3-1.4.2") if p.on_ports(port, ports)] == [
        "1-2", "1-2.1", "1-2.1.3", "3-1.4", "3-1.4.2"]
    # A prefix of the name is not a hub behind the port: 1-20 is another port of bus 1.
    assert not any(p.on_ports(port, ports) for port in ("1-20", "1-3", "2-2", "3-1", "3-1.40", "usb1"))
    assert not p.on_ports("1-2", ())
