"""Who may use a desk, and when its session must lock: the desk decision.

A desk is a card slot bound to a seat. Its state is one of

  ``vacant``  no holder: nobody's card has made the desk theirs
  ``in_use``  the holder's card is in the slot and the session is theirs
  ``away``    the holder pressed leave-seat: the session is locked, the card may still be in
  ``locked``  the holder's card left the slot (or could no longer be seen): locked until the
              same card comes back, or until no user session is left to hold the holder's work
  ``unlocked``  no holder's card is in the slot and a user session on the seat is unlocked
              anyway: a password typed at the locker, a new login, a lock that failed. An alarm
              state; it ends when every user session on the seat is locked again (``locked``,
              or ``vacant`` without a holder) or the holder's card comes back (``in_use``)

``decide(desk, event, now, rules, card)`` maps the current ``Desk`` and one input to a
``DeskDecision``: the next ``Desk``, the actions to carry out in order, and the rule that decided.
It reads no clock: ``now`` is the daemon's monotonic time.

What locks. A card removed, an unreadable card, the reader or pcscd lost, leave-seat, and the
away timeout all ask for ``LockSession``, in every state: locking a locked session costs
nothing, while a lock skipped on a wrong belief about the session is an unlocked, unattended
desk, the leak the desk exists to stop. ``LockSession`` means every user session on the seat,
graphical or text, active or not (the daemon's logind client does that).

What unlocks. Only the holder's own card: the same person *and* the same card hash. A card put
into a ``vacant`` desk makes it ``in_use`` but never unlocks anything (the holder signs in or
unlocks with their password); the same card back in a ``locked`` or ``away`` desk makes it
``in_use`` again, and asks for ``UnlockSession`` only when ``unlock_on_card`` is set.

The card checks, in order, each naming its rule:

  1. ``desk.duplicate``        the holder's card reported again while it is in: nothing changes
  2. ``desk.foreign-card``     a desk with a holder gets any other card: it locks (stays locked)
  3. ``card.unknown``          no person holds the card
  4. ``desk.level``            the holder may not use this desk
  5. ``tailgating.refuse|flag``  the holder has no recorded entry into the desk's area
  6. ``occupancy.unknown.refuse|allow``  nobody knows who is in the area
  7. ``desk.card`` (vacant), ``desk.same-card`` (locked, away): the desk is the holder's

Tailgating is an alarm whatever the stance, and whatever else is decided for the card (a
foreign or a no-access card too); ``flag`` lets the card use the desk all the same.
Every card inserted publishes one ``card_inserted`` or ``foreign_card`` event that carries the
reason; a tailgating card publishes a ``tailgating`` event and raises the alarm besides.

What comes back from logind is an input too (the daemon turns its lock result into events):
``SessionLocked``, ``SessionTerminated`` and ``NoSessionToLock`` are published and change
nothing. ``SessionLockFailed`` is published and raises the ``lock_failed`` alarm; without the
holder's card in the slot the desk turns ``unlocked``, since the session is not known locked.

What the seat shows. ``SeatSessionsSeen`` is logind's fresh listing of the seat's user
sessions after any change. Against the previous listing (the first one is only a baseline: the
start-up lock covers what it shows) a session *became usable* when it is unlocked and is new,
was locked before, or has just become the active one. With the holder's card in the slot that
is the holder at work: an ``away`` desk is ``in_use`` again (``desk.resume``). Without it
(``vacant``, ``locked``, ``unlocked``) the desk turns ``unlocked``, publishes
``unlocked_without_card``, raises that alarm, and, unless the desk's stance is ``alarm_only``,
locks every session again (``desk.unlocked-without-card.relock|alarm-only``). An ``unlocked``
desk whose sessions are all locked again goes back to ``locked`` (``vacant`` without a holder).

Who holds the desk when nobody is logged in. A ``locked`` or ``unlocked`` desk whose seat lists
no user session at all is ``vacant`` (``desk.logged-out``), and a lock trigger at a desk whose
seat listed none frees it the same way: the holder's work is gone, and the next shift's card must
not be refused as foreign forever. Only the listing frees a desk: a lock that found nothing
(``NoSessionToLock``) never does, since logind may list nothing for reasons of its own.

The away timeout. A decision into ``away`` sets ``Desk.expires_at``; the daemon schedules a
call of ``tick(desk, now)`` at that time. ``tick`` treats the card as removed when the
desk is still away by then, and changes nothing otherwise, so a timer that outlived its reason
needs no cancelling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .events import (
    CardPresented,
    CardRemoved,
    CardUnreadable,
    Event,
    LeaveSeatPressed,
    NoSessionToLock,
    ReaderBack,
    ReaderLost,
    SeatSession,
    SeatSessionsSeen,
    SessionLocked,
    SessionLockFailed,
    SessionTerminated,
)


class DeskState(enum.StrEnum):
    VACANT = "vacant"
    IN_USE = "in_use"
    AWAY = "away"
    LOCKED = "locked"
    UNLOCKED = "unlocked"


class Kind(enum.StrEnum):
    """The ``kind`` of a ``desk/<desk>/event`` message (MQTT contract, version 1)."""

    CARD_INSERTED = "card_inserted"
    CARD_REMOVED = "card_removed"
    SESSION_LOCKED = "session_locked"
    LOCK_FAILED = "lock_failed"
    UNLOCKED = "unlocked"
    LEAVE_SEAT = "leave_seat"
    TAILGATING = "tailgating"
    FOREIGN_CARD = "foreign_card"
    READER_LOST = "reader_lost"
    READER_BACK = "reader_back"
    UNLOCKED_WITHOUT_CARD = "unlocked_without_card"
    SESSION_TERMINATED = "session_terminated"


class TailgatingStance(enum.StrEnum):
    REFUSE = "refuse"
    FLAG = "flag"


class UnlockedWithoutCard(enum.StrEnum):
    """What a session that became usable without the holder's card gets, besides the alarm."""

    RELOCK = "relock"
    ALARM_ONLY = "alarm_only"


class UnknownOccupancy(enum.StrEnum):
    ALLOW = "allow"
    """Allow the card and flag it: ``occupancy_unknown`` is the reason on its event."""
    REFUSE = "refuse"


@dataclass(frozen=True)
class DeskRules:
    name: str
    unlock_on_card: bool = False
    tailgating: TailgatingStance = TailgatingStance.REFUSE
    unknown_occupancy: UnknownOccupancy = UnknownOccupancy.ALLOW
    away_timeout_s: float = 600.0
    unlocked_without_card: UnlockedWithoutCard = UnlockedWithoutCard.RELOCK


@dataclass(frozen=True)
class Card:
    """A card in the slot, with what the daemon looked up about it."""

    hash: str
    """The keyed hash of the UID, as the store keeps it."""
    person_id: str | None
    """None: no person holds this card (unknown or revoked)."""
    allowed: bool = False
    """The holder's access levels include this desk."""
    entered: bool | None = None
    """The holder has a recorded entry into the desk's area; None: occupancy is unknown."""


@dataclass(frozen=True)
class Desk:
    state: DeskState = DeskState.VACANT
    person_id: str | None = None
    """The holder; kept while ``locked``, so that only their card unlocks."""
    card_hash: str | None = None
    """The holder's card: the one card that can bring the desk back."""
    slot: Card | None = None
    """What was last reported in the slot; None when empty or unknown (the reader is lost)."""
    since: float = 0.0
    """Monotonic time of the last change of state or holder."""
    expires_at: float | None = None
    """Set only while ``away`` with the card in: when ``tick`` will treat it as removed."""
    seen: tuple[SeatSession, ...] | None = None
    """The seat's user sessions as logind last listed them; None before the first listing."""


# ---------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class LockSession:
    """Lock every user session on the seat through logind (``Manager.LockSession`` each)."""


@dataclass(frozen=True)
class UnlockSession:
    """Unlock it (``Manager.UnlockSession``); asked for only when ``unlock_on_card`` is set."""


@dataclass(frozen=True)
class Publish:
    kind: Kind
    person_id: str | None
    """Whom the event is about; the daemon turns it into the published ``subject``."""
    reason: str
    latency_ms: float | None = None


@dataclass(frozen=True)
class RaiseAlarm:
    kind: str
    severity: str


Action = LockSession | UnlockSession | Publish | RaiseAlarm


@dataclass(frozen=True)
class DeskDecision:
    desk: Desk
    actions: tuple[Action, ...]
    rule: str
    reason: str
    changed: bool = False
    """The state or the holder changed: the daemon publishes the retained desk state."""

    @property
    def state(self) -> DeskState:
        return self.desk.state

    @property
    def expires_at(self) -> float | None:
        return self.desk.expires_at


# ---------------------------------------------------------------------------------- helpers
def _decision(old: Desk, new: Desk, now: float, actions: tuple[Action, ...], rule: str,
              reason: str) -> DeskDecision:
    changed = (new.state, new.person_id) != (old.state, old.person_id)
    if changed:
        new = replace(new, since=now)
    if new.state is not DeskState.AWAY:
        new = replace(new, expires_at=None)
    return DeskDecision(new, actions, rule, reason, changed)


def _holder_present(desk: Desk) -> bool:
    """The holder's own card is in the slot (as last reported)."""
    return desk.slot is not None and desk.card_hash is not None and desk.slot.hash == desk.card_hash


def _logged_out(desk: Desk) -> bool:
    """logind's last listing showed no user session on the seat at all."""
    return desk.seen is not None and not desk.seen


def _lock(desk: Desk, now: float, rule: str, publish: Publish, slot: Card | None) -> DeskDecision:
    """A lock trigger: a desk in use locks; any other keeps its state and locks again."""
    state = DeskState.LOCKED if desk.state in (DeskState.IN_USE, DeskState.AWAY) else desk.state
    new = replace(desk, state=state, slot=slot)
    if state is DeskState.LOCKED and _logged_out(desk):
        # Nobody's work is on the seat: the card that leaves frees the desk for the next shift.
        new = replace(new, state=DeskState.VACANT, person_id=None, card_hash=None)
    return _decision(desk, new, now, (LockSession(), publish), rule, publish.reason)


def _nothing(desk: Desk, rule: str, reason: str, *actions: Action) -> DeskDecision:
    return DeskDecision(desk, actions, rule, reason, False)


# ---------------------------------------------------------------------------------- decisions
def start(now: float, seen: tuple[SeatSession, ...] | None = None) -> DeskDecision:
    """The desk when the daemon starts: nobody is known to hold it, so its sessions lock. A card
    already in the slot is reported by the driver's first look and makes the desk ``in_use``.
    ``seen``: the seat's listing when the watch made one before the start (its baseline)."""
    return DeskDecision(Desk(since=now, seen=seen), (LockSession(),), "desk.start", "start", True)


def decide(desk: Desk, event: Event, now: float, rules: DeskRules, card: Card | None = None) -> DeskDecision:
    """The next desk and what to do, for one input. ``card`` is required with ``CardPresented``."""
    holder = desk.person_id
    match event:
        case CardPresented():
            if card is None:
                raise TypeError("CardPresented needs the card the daemon looked up")
            return _card(desk, card, now, rules)
        case CardRemoved():
            removed = desk.slot.person_id if desk.slot is not None else None
            return _lock(desk, now, "desk.removed", Publish(Kind.CARD_REMOVED, removed, "removed"), None)
        case CardUnreadable(reason=why):
            return _lock(desk, now, "desk.unreadable", Publish(Kind.CARD_INSERTED, None, f"unreadable: {why}"),
                         None)
        case ReaderLost(reason=why):
            return _lock(desk, now, "desk.reader-lost", Publish(Kind.READER_LOST, holder, why or "reader_lost"),
                         None)
        case ReaderBack():
            # The slot stays unknown until the driver reports what is in it.
            return _nothing(desk, "desk.reader-back", "reader_back", Publish(Kind.READER_BACK, holder, "reader_back"))
        case LeaveSeatPressed():
            return _leave_seat(desk, now, rules)
        case SessionLocked(latency_ms=ms):
            return _nothing(desk, "desk.lock-confirmed", "locked",
                            Publish(Kind.SESSION_LOCKED, holder, "locked", ms))
        case SessionLockFailed(reason=why, latency_ms=ms):
            actions = (Publish(Kind.LOCK_FAILED, holder, why, ms), RaiseAlarm("lock_failed", "critical"))
            if desk.state in (DeskState.VACANT, DeskState.LOCKED):
                # Not known locked, and no holder's card in: the state must not say locked.
                new = replace(desk, state=DeskState.UNLOCKED)
                return _decision(desk, new, now, actions, "desk.lock-failed", why)
            return _nothing(desk, "desk.lock-failed", why, *actions)
        case SessionTerminated(reason=why):
            return _nothing(desk, "desk.terminated", why, Publish(Kind.SESSION_TERMINATED, holder, why))
        case NoSessionToLock():
            # Recorded only: who holds the desk follows the seat's listing (SeatSessionsSeen).
            return _nothing(desk, "desk.no-session", "no_session", Publish(Kind.SESSION_LOCKED, holder, "no_session"))
        case SeatSessionsSeen(sessions=sessions, signalled=signalled):
            return _seen(desk, sessions, signalled, now, rules)
    return _nothing(desk, "desk.ignored", type(event).__name__)


def tick(desk: Desk, now: float) -> DeskDecision:
    """Called at ``desk.expires_at``: an away desk whose time is up counts its card as removed."""
    if desk.state is not DeskState.AWAY or desk.expires_at is None or now < desk.expires_at:
        return _nothing(desk, "desk.tick", "not_due")
    # The card is still physically in, so ``slot`` keeps it; only the state says it no longer counts.
    return _lock(desk, now, "desk.away-timeout", Publish(Kind.CARD_REMOVED, desk.person_id, "away_timeout"),
                 desk.slot)


def _leave_seat(desk: Desk, now: float, rules: DeskRules) -> DeskDecision:
    publish = Publish(Kind.LEAVE_SEAT, desk.person_id, "leave_seat")
    if desk.state is DeskState.IN_USE:
        new = replace(desk, state=DeskState.AWAY, expires_at=now + rules.away_timeout_s)
        return _decision(desk, new, now, (LockSession(), publish), "desk.leave-seat", "leave_seat")
    # Pressed again while away the timeout is not extended: the card left in stays bounded.
    return _decision(desk, desk, now, (LockSession(), publish), "desk.leave-seat", "leave_seat")


def became_usable(before: tuple[SeatSession, ...] | None, now: tuple[SeatSession, ...],
                  signalled: frozenset[str] = frozenset()) -> tuple[tuple[SeatSession, str], ...]:
    """The sessions of ``now`` that someone can use and could not before, each with how:
    ``new_session`` (a login), ``unlocked`` (``LockedHint`` turned false, or logind signalled
    so since the previous listing), ``activated`` (an unlocked session came to the foreground).
    Nothing against no previous listing."""
    if before is None:
        return ()
    old = {s.id: s for s in before}
    usable = []
    for s in now:
        if s.locked:
            continue
        prev = old.get(s.id)
        if prev is None:
            usable.append((s, "new_session"))
        elif prev.locked:
            usable.append((s, "unlocked"))
        elif s.active and not prev.active:
            usable.append((s, "activated"))
        elif s.id in signalled:
            usable.append((s, "unlocked"))
    return tuple(usable)


def _seen(desk: Desk, sessions: tuple[SeatSession, ...], signalled: frozenset[str], now: float,
          rules: DeskRules) -> DeskDecision:
    usable = became_usable(desk.seen, sessions, signalled)
    seen = replace(desk, seen=sessions)
    holder = desk.person_id
    if desk.state is DeskState.IN_USE:
        return _decision(desk, seen, now, (), "desk.seen", "in_use")
    if desk.state is DeskState.AWAY and _holder_present(desk):
        if not usable:
            return _decision(desk, seen, now, (), "desk.seen", "away")
        # The holder came back and typed their password with their card still in.
        new = replace(seen, state=DeskState.IN_USE)
        return _decision(desk, new, now, (Publish(Kind.UNLOCKED, holder, "password"),), "desk.resume", "password")
    if usable:
        how = usable[0][1]
        actions: tuple[Action, ...] = (Publish(Kind.UNLOCKED_WITHOUT_CARD, holder, how),
                                       RaiseAlarm("unlocked_without_card", "critical"))
        rule = f"desk.unlocked-without-card.{rules.unlocked_without_card.value.replace('_', '-')}"
        if rules.unlocked_without_card is UnlockedWithoutCard.RELOCK:
            actions = (LockSession(), *actions)
        return _decision(desk, replace(seen, state=DeskState.UNLOCKED), now, actions, rule, how)
    if desk.state in (DeskState.LOCKED, DeskState.UNLOCKED) and not sessions:
        # Logged out: no session holds the holder's work, so the next shift starts afresh.
        new = replace(seen, state=DeskState.VACANT, person_id=None, card_hash=None)
        return _decision(desk, new, now, (), "desk.logged-out", "logged_out")
    if desk.state is DeskState.UNLOCKED and all(s.locked for s in sessions):
        back = DeskState.LOCKED if holder is not None else DeskState.VACANT
        return _decision(desk, replace(seen, state=back), now, (), "desk.locked-again", "locked_again")
    return _decision(desk, seen, now, (), "desk.seen", desk.state.value)


def _card(desk: Desk, card: Card, now: float, rules: DeskRules) -> DeskDecision:
    # An unlocked desk may have no holder (a login without a card): any allowed card may take it.
    has_holder = desk.person_id is not None
    same = has_holder and card.hash == desk.card_hash and card.person_id == desk.person_id
    if same and desk.state in (DeskState.IN_USE, DeskState.AWAY):
        # In use and away always hold the holder's card in the slot, so this is a repeat report.
        return _nothing(desk, "desk.duplicate", "already_in")

    # A known person without a recorded entry is in the room whatever this desk then decides.
    alarms: tuple[Action, ...] = ()
    if card.person_id is not None and card.entered is False:
        alarms = (Publish(Kind.TAILGATING, card.person_id, "no_entry"), RaiseAlarm("tailgating", "warning"))

    if has_holder and not same:
        # An unlocked desk stays so until the listing shows its sessions locked again.
        state = DeskState.UNLOCKED if desk.state is DeskState.UNLOCKED else DeskState.LOCKED
        new = replace(desk, state=state, slot=card)
        actions: tuple[Action, ...] = (Publish(Kind.FOREIGN_CARD, card.person_id, "foreign_card"),)
        if desk.state is not DeskState.LOCKED:
            actions = (LockSession(), *actions)
        return _decision(desk, new, now, actions + alarms, "desk.foreign-card", "foreign_card")

    refused = _refusal(card, rules)
    if refused is not None:
        rule, reason = refused
        actions = (Publish(Kind.CARD_INSERTED, card.person_id, reason),) + alarms
        return _decision(desk, replace(desk, slot=card), now, actions, rule, reason)

    if card.entered is False:
        rule, reason = "tailgating.flag", "tailgating_flagged"
    elif card.entered is None:
        rule, reason = "occupancy.unknown.allow", "occupancy_unknown"
    elif same:
        rule, reason = "desk.same-card", "same_card"
    else:
        rule, reason = "desk.card", "card"
    unlock: tuple[Action, ...] = ()
    if same and rules.unlock_on_card:
        unlock = (UnlockSession(), Publish(Kind.UNLOCKED, card.person_id, "card"))
    new = replace(desk, state=DeskState.IN_USE, person_id=card.person_id, card_hash=card.hash, slot=card)
    actions = (Publish(Kind.CARD_INSERTED, card.person_id, reason),) + unlock + alarms
    return _decision(desk, new, now, actions, rule, reason)


def _refusal(card: Card, rules: DeskRules) -> tuple[str, str] | None:
    """(rule, reason) when the card may not make the desk its holder's; None when it may."""
    if card.person_id is None:
        return "card.unknown", "unknown_card"
    if not card.allowed:
        return "desk.level", "no_access"
    if card.entered is False and rules.tailgating is TailgatingStance.REFUSE:
        return "tailgating.refuse", "tailgating"
    if card.entered is None and rules.unknown_occupancy is UnknownOccupancy.REFUSE:
        return "occupancy.unknown.refuse", "occupancy_unknown"
    return None
