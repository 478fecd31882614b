"""Each door's physical state carried out: its mode, its strike, its contact and its alarms.

The state machine is ``sekisho.policies.doorstate`` (pure, on the monotonic clock); this module
feeds it the contact, the fire input, the mode a person sets and the releases the door's access
decisions ask for, and does what it answers: drives the strike, raises and clears alarms, wakes
up when a time is due, keeps the mode in the store (so lockdown, free and an emergency release
survive a restart) and publishes the retained ``door/<door>/state``.

Fail-secure at both ends: at start every strike is told what its mode calls for, unconditionally
(a daemon killed inside an unlock window left its strike released, and nothing in memory says
so), before any reader starts; at stop every door its mode does not hold open is locked. A
strike that fails raises ``strike_failed``; it is never retried in a loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from sekisho.policies import doorstate
from sekisho.policies.access import Mode
from sekisho.policies.doorstate import Alarm, DoorSpec, DoorState, Strike, WakeAt

from .alarms import Alarms
from .config import Config, InputConfig
from .errors import SekishoError
from .reader_displays import ReaderDisplays
from .store.record import NewEvent, NewState, Record
from .strikes import Strike as StrikeDriver
from .strikes import StrikeError
from .topics import Topics

log = logging.getLogger(__name__)


class DoorStates:
    def __init__(self, config: Config, record: Record, topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[NewEvent | NewState], None], alarms: Alarms,
                 strikes: dict[str, StrikeDriver], displays: ReaderDisplays | None = None) -> None:
        self.record = record
        self.displays = displays
        """Where a mode changed is shown at the door's readers."""
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.alarms = alarms
        self.strikes = strikes
        self.drives: set[asyncio.Task[None]] = set()
        """Strike commands under way; the stop waits for them before it locks."""
        self.closed = False
        self.specs = {name: DoorSpec(name, d.unlock_s, d.held_open_s, d.fire_exit) for name, d in config.doors.items()}
        modes = record.door_modes()
        self.states = {name: DoorState(mode=Mode(modes.get(name, Mode.NORMAL.value))) for name in config.doors}
        if displays:
            for name, st in self.states.items():
                displays.door_mode(name, st.mode.value)
        self.published: dict[str, tuple[str, ...]] = {}
        self.fire_active: dict[str, bool] = {}

    async def startup(self) -> None:
        """Drive every strike to what its door's mode calls for and publish every door's state."""
        targets = {door: st.mode_open(self.specs[door]) for door, st in self.states.items()}
        for door, released in targets.items():
            self.states[door] = dataclasses.replace(self.states[door], strike_released=released)
        await asyncio.gather(*(self._drive(door, released) for door, released in targets.items()))
        for door in self.states:
            self._publish_state(door)

    async def shutdown(self) -> None:
        """Lock every door, unconditionally, except one its mode holds open (free, or a fire exit
        in emergency), which stays as a person set it; then let go of the strikes' hardware."""
        self.closed = True  # a timer or a late release drives no strike from now on
        if self.drives:
            await asyncio.wait(list(self.drives), timeout=10)
        for door, st in self.states.items():
            if not st.mode_open(self.specs[door]):
                try:
                    await self.strikes[door].set(False)
                except StrikeError as exc:
                    log.error("at stop: %s", exc)
            self.strikes[door].close()

    # ------------------------------------------------------------------------- what changes a door
    def mode(self, door: str) -> Mode:
        return self.states[door].mode

    def release(self, door: str, seconds: float | None = None) -> None:
        """A grant, an exit request, or (with ``seconds``) an operator's momentary unlock."""
        self._apply(door, doorstate.release(self.specs[door], self.states[door], self.loop.time(), seconds))

    def contact(self, door: str, is_open: bool) -> None:
        self._apply(door, doorstate.contact(self.specs[door], self.states[door], is_open, self.loop.time()))

    def set_mode(self, door: str, mode: Mode, actor: str) -> None:
        self.check_door(door)
        log.info("%s: mode %s by %s", door, mode.value, actor)
        self._apply(door, doorstate.set_mode(self.specs[door], self.states[door], mode, self.loop.time()), actor)

    def unlock(self, door: str, seconds: float, actor: str) -> None:
        """An operator's momentary release, audited."""
        self.check_door(door)
        self.record.audit(actor, "door.unlock", {"door": door, "seconds": seconds})
        log.info("%s: released for %g s by %s", door, seconds, actor)
        self.release(door, seconds)

    def fire(self, cfg: InputConfig, active: bool) -> None:
        """A fire input changed: recorded at every door of this node (each record says whether
        that door now stands released), and one ``fire`` alarm for as long as the input is active.
        A reset clears the alarm's condition; the fire exits stay released until a person sets
        their mode back."""
        if active == self.fire_active.get(cfg.name, False):
            return  # an input reports its value at start and after a reconnect: a fact, not a change
        self.fire_active[cfg.name] = active
        log.warning("fire input %s %s", cfg.name, "ACTIVE: releasing fire exits" if active else "reset")
        now = self.loop.time()
        for door in self.states:
            self._apply(door, doorstate.fire(self.specs[door], self.states[door], active, now), f"input:{cfg.name}")
            released = self.states[door].mode_open(self.specs[door])
            payload = {"kind": "fire", "door": door, "input": cfg.name, "state": "active" if active else "reset",
                       "released": released}
            columns = {"door": door, "reader": cfg.name, "result": "fire", "reason": payload["state"],
                       "rule": "input.fire"}
            self.queue(NewEvent(kind="door", topic=self.topics.door_event(door), payload=payload, columns=columns))
        if active:
            self.alarms.raise_("fire", cfg.name, "critical")
        else:
            self.alarms.clear("fire", cfg.name)

    def check_door(self, door: str) -> None:
        if door not in self.states:
            raise SekishoError(f"no door {door!r} (doors: {', '.join(self.states)})")

    # ------------------------------------------------------------------------- what it says
    def describe(self) -> list[dict[str, Any]]:
        return [self.describe_one(door) for door in self.states]

    def describe_one(self, door: str) -> dict[str, Any]:
        st = self.states[door]
        return {"door": door, "lock": st.lock(self.specs[door], self.loop.time()), "mode": st.mode.value,
                "contact": st.contact, "alarm": st.alarm}

    # ------------------------------------------------------------------------- carrying it out
    def _apply(self, door: str, result: tuple[DoorState, list[doorstate.Action]], actor: str = "daemon") -> None:
        before, (after, actions) = self.states[door], result
        self.states[door] = after
        if after.mode is not before.mode:
            self.record.set_door_mode(door, after.mode.value, actor)
            if self.displays:
                self.displays.door_mode(door, after.mode.value)
        for action in actions:
            match action:
                case Strike(released=released) if not self.closed:
                    task = self.loop.create_task(self._drive(door, released))
                    self.drives.add(task)
                    task.add_done_callback(self.drives.discard)
                case Alarm(kind=kind, raised=True):
                    self.alarms.raise_(kind, door, "critical" if kind == doorstate.FORCED else "warning")
                case Alarm(kind=kind, raised=False):
                    self.alarms.clear(kind, door)
                case WakeAt(at=at):
                    self.loop.call_at(at, self._tick, door)
        self._publish_state(door)

    def _tick(self, door: str) -> None:
        self._apply(door, doorstate.tick(self.specs[door], self.states[door], self.loop.time()))

    async def _drive(self, door: str, released: bool) -> None:
        try:
            await self.strikes[door].set(released)
        except StrikeError as exc:
            log.error("%s", exc)
            self.alarms.raise_("strike_failed", door, "critical", incident=True)

    def _publish_state(self, door: str) -> None:
        view = self.describe_one(door)
        key = tuple(str(v) for v in view.values())
        if self.published.get(door) != key:
            self.published[door] = key
            self.queue(NewState(self.topics.door_state(door), {k: v for k, v in view.items() if k != "door"}))
