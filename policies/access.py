"""Who may pass which door, when, and how: the door decision.

Rules are tried in a fixed order and the first that decides wins; when none grants, the
explicit default deny does, so every verdict names a rule and a reason a person can read:

  1. ``mode.free``    the door is in ``free`` mode: it stands open, any pass is recorded
     ``mode.emergency`` the door is in ``emergency`` mode and the card is going out: egress is
                      free for any card, known or not, and recorded; going in follows the rules
                      below as in ``normal`` mode
  2. ``auth.free``    the door's authentication for this time is ``free``
  3. ``card.*``       unknown card, revoked card, disabled person, validity dates
  4. ``pin.lockout``  too many wrong PINs lately
  5. ``level:<name>`` the holder's access levels: door, schedule, lockdown override
  6. ``pin.*``        card and PIN doors: the PIN is wrong, too late, or not set. The door flow
                      asks ``needs_pin`` first and waits for the PIN; ``decide`` is then called
                      once, with the PIN's outcome
  7. ``passback:<area>`` entering an area you are in, or leaving one you are not in
  8. ``level:<name>``  granted by that level

Only steps 1, 2 and 8 grant (and 7 when the area's anti-passback is soft), so whatever no rule
grants is denied. A level check comes before the PIN, so a person without access is never asked
for one.

The modes, for a person reading them aloud (docs/doors.md has the same table):

  mode       strike                                in                   out
  normal     locked; released per grant            the rules            the rules
  lockdown   locked; released per grant            override levels only override levels only
  free       held released                         granted, recorded    granted, recorded
  emergency  held released at a fire exit, else    the rules            granted to any card,
             locked and released per grant                              recorded

Emergency is free *egress*: people must get out of a room on fire, but an emergency is no moment
to let strangers in, so the in-direction keeps its rules even where the strike stands open.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .decisions import Decision, Verdict
from .schedule import Schedule


class Auth(enum.StrEnum):
    CARD = "card"
    CARD_AND_PIN = "card_and_pin"
    FREE = "free"


class Mode(enum.StrEnum):
    NORMAL = "normal"
    LOCKDOWN = "lockdown"
    FREE = "free"
    EMERGENCY = "emergency"


class Passback(enum.StrEnum):
    OFF = "off"
    SOFT = "soft"
    HARD = "hard"


class Pin(enum.StrEnum):
    NOT_GIVEN = "not_given"
    OK = "ok"
    WRONG = "wrong"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Level:
    name: str
    doors: frozenset[str]
    schedule: Schedule
    override: bool = False
    """Opens its doors in lockdown too (security staff, fire wardens)."""


@dataclass(frozen=True)
class AuthWindow:
    schedule: Schedule
    auth: Auth


@dataclass(frozen=True)
class DoorRules:
    name: str
    auth: Auth = Auth.CARD
    windows: tuple[AuthWindow, ...] = ()
    """The first window whose schedule is active sets the authentication; else ``auth``."""
    area_in: str = ""
    area_out: str = ""
    auth_out: Auth | None = None
    """Authentication at the out-reader when it differs (leaving by card alone); None: ``auth``."""

    def auth_at(self, local: dt.datetime, holidays: frozenset[dt.date], direction: str = "in") -> Auth:
        for window in self.windows:
            if window.schedule.active(local, holidays):
                return window.auth
        if direction == "out" and self.auth_out is not None:
            return self.auth_out
        return self.auth


@dataclass(frozen=True)
class SiteRules:
    doors: Mapping[str, DoorRules]
    levels: Mapping[str, Level]
    passback: Mapping[str, Passback] = field(default_factory=dict)
    """Per area; an area not named here has no anti-passback."""
    holidays: frozenset[dt.date] = frozenset()
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    """The schedules the config defines, by name. A level or a door's window that names another
    holds a schedule that is never active (``Schedule.never_until_known``) until the enrolment
    snapshot brings one of that name (``with_policy``)."""

    def with_policy(self, schedules: Mapping[str, Schedule], holidays: frozenset[dt.date]) -> SiteRules:
        """These rules with the enrolment snapshot's policy: its holidays added to these, and its
        schedules for the names these do not define (a name both define keeps this one: the
        node's config is reviewed where it is installed, and wins). A name neither defines stays
        never active. Always from the config's own rules, so a schedule the next snapshot no
        longer has closes again."""
        def pick(schedule: Schedule) -> Schedule:
            if schedule.name in self.schedules:
                return schedule
            return schedules.get(schedule.name, Schedule.never_until_known(schedule.name))

        levels = {name: replace(lv, schedule=pick(lv.schedule)) for name, lv in self.levels.items()}
        doors = {name: replace(d, windows=tuple(replace(w, schedule=pick(w.schedule)) for w in d.windows))
                 for name, d in self.doors.items()}
        return replace(self, doors=MappingProxyType(doors), levels=MappingProxyType(levels),
                       holidays=self.holidays | holidays)


@dataclass(frozen=True)
class Holder:
    """What the store knows of a card and the person it belongs to."""

    person_id: str
    card_active: bool = True
    person_active: bool = True
    levels: frozenset[str] = frozenset()
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    """Inclusive; the later of the person's and the card's dates, as the store merges them."""
    has_pin: bool = False


@dataclass(frozen=True)
class Attempt:
    door: str
    direction: str
    """``in`` or ``out``."""
    local: dt.datetime
    """When, in the site's time zone."""
    holder: Holder | None
    pin: Pin = Pin.NOT_GIVEN
    locked_out: bool = False
    location: str | None = None
    """The area the holder was last recorded entering; None when unknown."""
    mode: Mode = Mode.NORMAL


_STRICTNESS = {Passback.OFF: 0, Passback.SOFT: 1, Passback.HARD: 2}


def _deny(rule: str, reason: str) -> Verdict:
    return Verdict(Decision.DENIED, rule, reason)


def _grant(rule: str, reason: str) -> Verdict:
    return Verdict(Decision.GRANTED, rule, reason)


def areas(door: DoorRules, direction: str) -> tuple[str, str]:
    """(area left, area entered) by passing ``door`` in ``direction``."""
    return (door.area_out, door.area_in) if direction == "in" else (door.area_in, door.area_out)


def refusal(h: Holder | None, today: dt.date) -> Verdict | None:
    """Is the card good today: known, not revoked, its holder enabled, within its dates? The
    deny verdict when not, None when it is. Doors, desks and approvals all ask this."""
    if h is None:
        return _deny("card.unknown", "unknown_card")
    if not h.card_active:
        return _deny("card.revoked", "revoked")
    if not h.person_active:
        return _deny("card.person-disabled", "person_disabled")
    if h.valid_from is not None and today < h.valid_from:
        return _deny("card.not-yet-valid", "not_yet_valid")
    if h.valid_until is not None and today > h.valid_until:
        return _deny("card.expired", "expired")
    return None


def levels_in_force(h: Holder, site: SiteRules, local: dt.datetime, among: frozenset[str] | None = None) -> list[Level]:
    """The holder's levels (``among`` these, when given) whose schedule is in force at ``local``,
    by name."""
    return [site.levels[name] for name in sorted(h.levels if among is None else h.levels & among)
            if name in site.levels and site.levels[name].schedule.active(local, site.holidays)]


def holds(h: Holder | None, among: frozenset[str], site: SiteRules, local: dt.datetime) -> bool:
    """Is the card good today and does its holder hold one of ``among`` in force now? (A desk's
    levels, the supervisors' levels.)"""
    return h is not None and refusal(h, local.date()) is None and bool(levels_in_force(h, site, local, among))


def needs_pin(a: Attempt, site: SiteRules) -> bool:
    """Should the door wait for a PIN before it decides? Only when the door asks for one now
    and nothing before the PIN would refuse the card: a person without access is never asked
    for a PIN, and a refusal is never kept waiting."""
    if a.pin is not Pin.NOT_GIVEN:
        return False
    door = site.doors[a.door]
    if door.auth_at(a.local, site.holidays, a.direction) is not Auth.CARD_AND_PIN:
        return False
    return _before_pin(a, site) is None and a.holder is not None and a.holder.has_pin


def _before_pin(a: Attempt, site: SiteRules) -> Verdict | None:
    """Steps 1 to 5: a verdict that needs no PIN (a grant by mode or a free door, or a refusal),
    or None when the holder's levels open this door now (their first such level decides the
    rule of a grant: see ``_level``)."""
    if a.mode is Mode.FREE:
        return _grant("mode.free", "door_open")
    if a.mode is Mode.EMERGENCY and a.direction == "out":
        return _grant("mode.emergency", "emergency_egress")
    if site.doors[a.door].auth_at(a.local, site.holidays, a.direction) is Auth.FREE:
        return _grant("auth.free", "free")
    if (refused := refusal(a.holder, a.local.date())) is not None:
        return refused
    if a.locked_out:
        return _deny("pin.lockout", "locked_out")
    assert a.holder is not None  # refusal() said so
    if not any(a.door in lv.doors for name in a.holder.levels if (lv := site.levels.get(name))):
        return _deny("level.none", "no_access")
    in_time = [lv for lv in levels_in_force(a.holder, site, a.local) if a.door in lv.doors]
    if not in_time:
        return _deny("level.schedule", "outside_schedule")
    if a.mode is Mode.LOCKDOWN and not any(lv.override for lv in in_time):
        return _deny("mode.lockdown", "lockdown")
    return None


def _level(a: Attempt, site: SiteRules) -> Level:
    """The level a grant at this door is by: the first by name in force here (in lockdown, the
    first that overrides it)."""
    assert a.holder is not None
    return next(lv for lv in levels_in_force(a.holder, site, a.local)
                if a.door in lv.doors and (a.mode is not Mode.LOCKDOWN or lv.override))


def decide(a: Attempt, site: SiteRules) -> Verdict:
    """The door's verdict on one attempt, once its PIN (if the door wants one) is in ``a.pin``."""
    if (verdict := _before_pin(a, site)) is not None:
        return verdict
    assert a.holder is not None
    door = site.doors[a.door]
    auth = door.auth_at(a.local, site.holidays, a.direction)
    level_rule = f"level:{_level(a, site).name}"

    if auth is Auth.CARD_AND_PIN:
        if not a.holder.has_pin:
            return _deny("pin.not-set", "no_pin")
        if a.pin is Pin.TIMEOUT:
            return _deny("pin.timeout", "pin_timeout")
        if a.pin is Pin.WRONG:
            return _deny("pin.wrong", "pin_wrong")
        if a.pin is Pin.NOT_GIVEN:
            return _deny("pin.not-given", "pin_not_given")  # needs_pin() was not asked first

    left, entered = areas(door, a.direction)
    if a.location is not None:
        # Entering where you already are, or leaving where you are not: one fact seen from two
        # areas, so the stricter of their stances applies.
        wrong = [area for area, broken in ((entered, a.location == entered), (left, a.location != left))
                 if area and broken]
        strictest = max(wrong, key=lambda area: _STRICTNESS[site.passback.get(area, Passback.OFF)], default=None)
        stance = site.passback.get(strictest, Passback.OFF) if strictest else Passback.OFF
        if stance is Passback.HARD:
            return _deny(f"passback:{strictest}", "passback")
        if stance is Passback.SOFT:
            return _grant(f"passback:{strictest}", "passback_flagged")
    return _grant(level_rule, auth.value)
