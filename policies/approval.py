"""A supervisor allows a blocked USB device at the desk, by card: what asks, what confirms.

An operator plugs in a device the rules block; a supervisor comes to the desk and, without a
console:

  1. presents their card at the desk's reader, within ``window_s`` of the block. The device
     blocked last on the desk's own USB ports is named (``Ask``: the event ``approval_pending``).
  2. confirms within ``confirm_s``, as the site chose: ``pin``, their PIN on the desk reader's
     PIN pad (a supervisor without a PIN cannot approve), or ``card``, by taking the card out and
     presenting it again.
  3. The daemon then grants a timed exception for that one device (``Grant``).

An approval happens only at a desk that waits for another person: ``locked`` or ``away``, its
holder someone else. That is the scene it is for (the operator took their card out, the
supervisor came over), and it keeps a supervisor's own sign-in, and the habit of putting a card
in again when nothing seems to happen, from ever approving anything. What is not an approval
is the desk's business (``Pass``): a card that is not a supervisor's, a supervisor's card with
nothing blocked to allow, any card at a desk that is vacant, in use, or the supervisor's own.
While an approval is pending, the supervisor's card going out and coming back and the PINs
belong to it (``Hold``); any other card ends it (``Refuse``) and goes to the desk. A supervisor
not recorded inside the desk's area cannot approve: the card is refused here and goes to the
desk, whose tailgating rule then speaks.

``now`` is the daemon's monotonic time; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


def on_ports(port: str, ports: tuple[str, ...]) -> bool:
    """Is the device at ``port`` plugged into one of ``ports``, or into a hub behind one? A
    desk's approval offers only a device on its own ports (``[desks.<name>] usb_ports``)."""
    return any(port == p or port.startswith(p + ".") for p in ports)


@dataclass(frozen=True)
class Candidate:
    """The device an approval would allow: the one blocked last."""

    device: str
    """The device's sys path: it, and nothing plugged later, is what an approval allows."""
    blocked_at: float


@dataclass(frozen=True)
class Supervisor:
    person_id: str
    card_hash: str
    entered: bool | None
    """Recorded inside the desk's area (True also for a desk with no area); None: unknown."""
    has_pin: bool
    locked_out: bool = False
    """Too many wrong PINs lately (at a door or here): the card approves nothing for a while."""


@dataclass(frozen=True)
class ApprovalRules:
    window_s: float = 120.0
    confirm_s: float = 30.0
    confirm: str = "card"
    """``pin`` or ``card``."""


@dataclass(frozen=True)
class Pending:
    supervisor: Supervisor
    device: Candidate
    started: float
    confirm: str
    """``pin`` or ``card``."""
    card_out: bool = False
    granted: bool = False
    """Granted; kept only to hold the supervisor's card leaving the slot afterwards."""


# ---------------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Pass:
    """The event is the desk's."""


@dataclass(frozen=True)
class Hold:
    """The event belongs to a pending approval; nothing to publish."""


@dataclass(frozen=True)
class Ask:
    pending: Pending


@dataclass(frozen=True)
class Grant:
    pending: Pending


@dataclass(frozen=True)
class Refuse:
    reason: str
    """``not_in_area``, ``occupancy_unknown``, ``locked_out``, ``no_pin``, ``other_card``, ``pin_wrong``,
    ``expired``, ``reader``, ``device_gone``."""
    supervisor: Supervisor
    device: Candidate


Outcome = Pass | Hold | Ask | Grant | Refuse
Step = tuple[Pending | None, tuple[Outcome, ...]]


def _expired(pending: Pending, now: float, rules: ApprovalRules) -> bool:
    return not pending.granted and now >= pending.started + rules.confirm_s


def card(pending: Pending | None, card_hash: str, supervisor: Supervisor | None, device: Candidate | None,
         desk_waiting: bool, now: float, rules: ApprovalRules) -> Step:
    """A card presented at the desk's reader. ``supervisor`` is set when the card's holder may
    approve now; ``device`` is the device blocked last, if any; ``desk_waiting``: the desk is
    locked or away, and its holder is not the card's."""
    before: tuple[Outcome, ...] = ()
    if pending is not None and pending.granted:
        pending = None  # the next card after a grant is a new story
    if pending is not None and _expired(pending, now, rules):
        before, pending = (Refuse("expired", pending.supervisor, pending.device),), None
    if pending is not None:
        if card_hash != pending.supervisor.card_hash:
            return None, (Refuse("other_card", pending.supervisor, pending.device), Pass())
        if pending.confirm == "card" and pending.card_out:
            return replace(pending, granted=True), (Grant(pending),)
        return pending, (Hold(),)
    if supervisor is None or device is None or not desk_waiting or now - device.blocked_at > rules.window_s:
        return None, before + (Pass(),)
    if supervisor.locked_out:
        return None, before + (Refuse("locked_out", supervisor, device), Pass())
    if supervisor.entered is not True:
        reason = "not_in_area" if supervisor.entered is False else "occupancy_unknown"
        return None, before + (Refuse(reason, supervisor, device), Pass())
    if rules.confirm == "pin" and not supervisor.has_pin:
        return None, before + (Refuse("no_pin", supervisor, device), Pass())
    pending = Pending(supervisor, device, now, rules.confirm)
    return pending, before + (Ask(pending),)


def removed(pending: Pending | None, now: float, rules: ApprovalRules) -> Step:
    """The card left the desk's reader."""
    if pending is None:
        return None, (Pass(),)
    if pending.granted:
        return None, (Hold(),)
    if _expired(pending, now, rules):
        return None, (Refuse("expired", pending.supervisor, pending.device), Pass())
    return replace(pending, card_out=True), (Hold(),)


def pin(pending: Pending | None, correct: bool, now: float, rules: ApprovalRules) -> Step:
    """A PIN typed on the desk reader's PIN pad, already checked against the supervisor's."""
    if pending is None or pending.granted or pending.confirm != "pin":
        return pending, (Pass(),)
    if _expired(pending, now, rules):
        return None, (Refuse("expired", pending.supervisor, pending.device),)
    if not correct:
        return None, (Refuse("pin_wrong", pending.supervisor, pending.device),)
    return replace(pending, granted=True), (Grant(pending),)


def lost(pending: Pending | None) -> Step:
    """The reader went away or read a card it could not make sense of: no approval survives it."""
    if pending is None or pending.granted:
        return None, (Pass(),)
    return None, (Refuse("reader", pending.supervisor, pending.device), Pass())


def tick(pending: Pending | None, now: float, rules: ApprovalRules) -> Step:
    """Called at ``started + confirm_s``; ends an approval nobody confirmed."""
    if pending is not None and _expired(pending, now, rules):
        return None, (Refuse("expired", pending.supervisor, pending.device),)
    return pending, ()
