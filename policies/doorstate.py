"""A door's physical state: strike, contact, alarms and mode, as a pure state machine.

Each function takes the door's spec, its current state and the monotonic time, and returns the
new state with the actions the daemon must carry out (drive the strike, raise or clear an
alarm, wake up at a time). Nothing here reads a clock or touches hardware, so the timing rules
are tested exactly, and a wall-clock step can never unlock or relock a door.

The rules:
  - The strike is released while the mode says so (free; emergency at a fire exit) or until
    ``unlocked_until`` after a grant or an exit request.
  - The strike locks again when that time is up, or as soon as the door closes after opening
    (so one grant lets one person through, not whoever follows within the unlock time).
  - The contact opening while the strike is locked is a forced door; a door open longer than
    ``held_open_s`` is held open. Both alarms clear when the door closes. Free and emergency
    doors are meant to stand open and raise neither.
  - The fire input puts fire exits into emergency mode; it stays until a person resets the
    mode, even after the fire input clears.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .access import Mode

FORCED = "forced"
HELD_OPEN = "held_open"


@dataclass(frozen=True)
class DoorSpec:
    name: str
    unlock_s: float = 5.0
    held_open_s: float = 30.0
    fire_exit: bool = False


@dataclass(frozen=True)
class DoorState:
    mode: Mode = Mode.NORMAL
    contact: str = "unknown"
    """``open``, ``closed``, or ``unknown`` (no contact input, or not reported yet)."""
    unlocked_until: float = 0.0
    opened_at: float | None = None
    alarm: str | None = None
    fire: bool = False
    strike_released: bool = False
    """What the strike was last told; the next action is only a change from it."""

    def released(self, spec: DoorSpec, now: float) -> bool:
        return self.mode_open(spec) or now < self.unlocked_until

    def mode_open(self, spec: DoorSpec) -> bool:
        return self.mode is Mode.FREE or (self.mode is Mode.EMERGENCY and spec.fire_exit)

    def lock(self, spec: DoorSpec, now: float) -> str:
        return "unlocked" if self.released(spec, now) else "locked"


@dataclass(frozen=True)
class Strike:
    released: bool


@dataclass(frozen=True)
class Alarm:
    kind: str
    raised: bool


@dataclass(frozen=True)
class WakeAt:
    at: float


Action = Strike | Alarm | WakeAt


def _settle(spec: DoorSpec, before: DoorState, after: DoorState, now: float) -> tuple[DoorState, list[Action]]:
    """The actions that bring the world from ``before`` to ``after``."""
    actions: list[Action] = []
    target = after.released(spec, now)
    if target != before.strike_released:
        actions.append(Strike(target))
        after = dataclasses.replace(after, strike_released=target)
    if before.alarm != after.alarm:
        if before.alarm:
            actions.append(Alarm(before.alarm, False))
        if after.alarm:
            actions.append(Alarm(after.alarm, True))
    if after.unlocked_until > now and not after.mode_open(spec):
        actions.append(WakeAt(after.unlocked_until))
    if after.opened_at is not None and after.alarm is None and not after.mode_open(spec):
        actions.append(WakeAt(after.opened_at + spec.held_open_s))
    return after, actions


def release(spec: DoorSpec, st: DoorState, now: float, seconds: float | None = None) -> tuple[DoorState, list[Action]]:
    """A grant, an exit request, or an operator's momentary unlock."""
    until = max(st.unlocked_until, now + (spec.unlock_s if seconds is None else seconds))
    return _settle(spec, st, dataclasses.replace(st, unlocked_until=until), now)


def contact(spec: DoorSpec, st: DoorState, is_open: bool, now: float) -> tuple[DoorState, list[Action]]:
    if is_open:
        if st.contact == "open":
            return st, []
        alarm = st.alarm
        if not st.released(spec, now) and alarm is None:
            alarm = FORCED
        return _settle(spec, st, dataclasses.replace(st, contact="open", opened_at=now, alarm=alarm), now)
    if st.contact == "closed":
        return st, []
    # Closing ends both alarms and spends the grant: the next person needs their own card.
    return _settle(spec, st, dataclasses.replace(st, contact="closed", opened_at=None, alarm=None,
                                                 unlocked_until=0.0 if st.contact == "open" else st.unlocked_until),
                   now)


def tick(spec: DoorSpec, st: DoorState, now: float) -> tuple[DoorState, list[Action]]:
    """The time has come for whatever a WakeAt asked for."""
    after = st
    if st.unlocked_until and now >= st.unlocked_until:
        after = dataclasses.replace(after, unlocked_until=0.0)
    if (after.opened_at is not None and after.alarm is None and not after.mode_open(spec)
            and now - after.opened_at >= spec.held_open_s):
        after = dataclasses.replace(after, alarm=HELD_OPEN)
    return _settle(spec, st, after, now)


def set_mode(spec: DoorSpec, st: DoorState, mode: Mode, now: float) -> tuple[DoorState, list[Action]]:
    after = dataclasses.replace(st, mode=mode)
    if after.mode_open(spec):
        after = dataclasses.replace(after, alarm=None)
    elif mode is Mode.LOCKDOWN:
        after = dataclasses.replace(after, unlocked_until=0.0)
    return _settle(spec, st, after, now)


def fire(spec: DoorSpec, st: DoorState, active: bool, now: float) -> tuple[DoorState, list[Action]]:
    after = dataclasses.replace(st, fire=active)
    if active and spec.fire_exit:
        after = dataclasses.replace(after, mode=Mode.EMERGENCY, alarm=None)
    return _settle(spec, st, after, now)
