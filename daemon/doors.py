"""The door controller: turns reader events into door decisions and records them.

It keeps what a door decision needs beyond the store: the card waiting for its PIN at each
reader, wrong-PIN counts and lockouts (in memory, on the monotonic clock, so a clock step does
not shorten a lockout; a restart forgets them), where each person is (for anti-passback and
occupancy; in the store), and each door's mode. Decisions are made by
``sekisho.policies.access``; this module only gathers the inputs and carries out the verdict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from zoneinfo import ZoneInfo

from sekisho.policies import access, doorstate
from sekisho.policies.access import Attempt, Holder, Mode, NeedPin, Pin
from sekisho.policies.decisions import Decision, Verdict
from sekisho.policies.doorstate import Alarm, DoorSpec, DoorState, Strike, WakeAt

from .config import Config, InputConfig, ReaderConfig
from .errors import SekishoError
from .keys import SiteKey
from .pins import verify_pin
from .store import AlarmChange, Move, NewEvent, NewState, Store
from .strikes import Strike as StrikeDriver
from .strikes import StrikeError
from .timestamps import rfc3339, utc_now
from .topics import Topics

log = logging.getLogger(__name__)

Item = NewEvent | NewState | Move | AlarmChange


@dataclass
class PendingPin:
    card_hash: str
    holder: dict[str, Any]
    attempt: Attempt
    timer: asyncio.TimerHandle


class Doors:
    def __init__(self, config: Config, store: Store, key: SiteKey, topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[Item], None], strikes: dict[str, StrikeDriver]) -> None:
        self.config = config
        self.rules = config.rules
        self.store = store
        self.key = key
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.tz = ZoneInfo(config.site.timezone)
        self.strikes = strikes
        self.drives: set[asyncio.Task[None]] = set()
        """Strike commands under way; the stop waits for them before it locks."""
        self.closed = False
        self.specs = {name: DoorSpec(name, d.unlock_s, d.held_open_s, d.fire_exit) for name, d in config.doors.items()}
        modes = store.door_modes()
        self.states = {name: DoorState(mode=Mode(modes.get(name, Mode.NORMAL.value))) for name in config.doors}
        self.published: dict[str, tuple[str, ...]] = {}
        self.alarm_ids: dict[tuple[str, str], str] = {}
        self.pending: dict[str, PendingPin] = {}
        self.wrong_pins: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}
        self.locations = store.locations()
        # Who is in each area, kept up to date on every move: rebuilding it from ``locations``
        # on each grant cost one HMAC per person inside, on the tap path, before the strike.
        self.inside: dict[str, set[str]] = {}
        for person_id, (area, _) in self.locations.items():
            self.inside.setdefault(area, set()).add(person_id)
        self.subjects: dict[str, str] = {}
        self.changed_areas: set[str] = set()
        self.fire_active: dict[str, bool] = {}

    async def startup(self) -> None:
        """Drive every strike to what its door's mode calls for, publish the current occupancy
        of every area, and clear alarms a previous run left raised: the conditions behind them
        (lockouts) did not survive the restart. The daemon starts no reader before this returns."""
        for alarm in self.store.active_alarms():
            self.queue(AlarmChange(alarm["id"], alarm["kind"], alarm["source"], alarm["severity"],
                                   self.topics.alarm(alarm["id"]), None))
        # Only the areas this node's doors lead into: a desk-only node knows nothing of who is
        # inside, and its word must not overwrite the door node's retained occupancy.
        for area in sorted({a for d in self.config.doors.values() for a in (d.area_in, d.area_out) if a}):
            self.queue(self._occupancy(area))
        # Told unconditionally, never "only if it differs": a daemon killed inside an unlock
        # window left its strike released, and nothing in memory remembers that.
        targets = {door: st.mode_open(self.specs[door]) for door, st in self.states.items()}
        for door, released in targets.items():
            self.states[door] = dataclasses.replace(self.states[door], strike_released=released)
        await asyncio.gather(*(self._drive(door, released) for door, released in targets.items()))
        for door in self.states:
            self._publish_state(door)

    # ------------------------------------------------------------------------- inputs
    def card(self, reader: ReaderConfig, card_hash: str | None, unreadable: str = "") -> None:
        abandoned = self.pending.pop(reader.name, None)
        if abandoned is not None:
            abandoned.timer.cancel()
            if abandoned.card_hash != card_hash:
                self._record(reader, Verdict(Decision.DENIED, "pin.abandoned", "pin_abandoned"), abandoned.holder,
                             abandoned.card_hash)
        if unreadable:
            self._record(reader, Verdict(Decision.DENIED, "card.unreadable", "unreadable"), None, None)
            return
        holder = self.store.card_holder(card_hash) if card_hash else None
        attempt = self._attempt(reader, holder, card_hash)
        verdict = access.decide(attempt, self.rules)
        if isinstance(verdict, NeedPin):
            timeout = self.config.doors[reader.door].pin_timeout_s
            timer = self.loop.call_later(timeout, self._pin_timed_out, reader)
            self.pending[reader.name] = PendingPin(card_hash, holder, attempt, timer)
            log.info("%s: waiting %d s for the PIN of %s", reader.name, timeout, self._subject(holder))
            return
        self._record(reader, verdict, holder, card_hash)

    def pin(self, reader: ReaderConfig, digits: str) -> None:
        pending = self.pending.pop(reader.name, None)
        if pending is None:
            self._record(reader, Verdict(Decision.DENIED, "pin.no-card", "no_card"), None, None)
            return
        pending.timer.cancel()
        self.loop.create_task(self._check_pin(reader, pending, digits))

    async def _check_pin(self, reader: ReaderConfig, pending: PendingPin, digits: str) -> None:
        stored = self.store.pin_hash(pending.holder["person_id"]) or ""
        ok = await self.loop.run_in_executor(None, verify_pin, digits, stored)
        card = pending.card_hash
        # Judged against the world as it is now, not as it was at the tap: the card may have
        # been revoked, its holder disabled, the door locked down or the card locked out while
        # the PIN was being typed.
        holder = self.store.card_holder(card)
        attempt = self._attempt(reader, holder, card, Pin.OK if ok else Pin.WRONG)
        self.count_pin(card, ok, reader.door)
        verdict = access.decide(attempt, self.rules)
        assert not isinstance(verdict, NeedPin)  # a PIN was given
        self._record(reader, verdict, holder, card)

    def _attempt(self, reader: ReaderConfig, holder: dict[str, Any] | None, card_hash: str | None,
                 pin: Pin = Pin.NOT_GIVEN) -> Attempt:
        return Attempt(door=reader.door, direction=reader.direction, local=dt.datetime.now(self.tz),
                       holder=_holder(holder), pin=pin, locked_out=self.locked_out(card_hash),
                       location=self._passback_location(holder), mode=self.states[reader.door].mode)

    def _pin_timed_out(self, reader: ReaderConfig) -> None:
        pending = self.pending.pop(reader.name, None)
        if pending is not None:
            verdict = access.decide(dataclasses.replace(pending.attempt, pin=Pin.TIMEOUT), self.rules)
            assert not isinstance(verdict, NeedPin)
            self._record(reader, verdict, pending.holder, pending.card_hash)

    # ------------------------------------------------------------------------- lockouts
    def count_pin(self, card_hash: str, ok: bool, source: str) -> None:
        """A PIN typed with this card, right or wrong: at a door, or at a desk approving a USB
        device. ``pin_max_wrong`` wrong ones in a row lock the card out, wherever they were typed."""
        if ok:
            self.wrong_pins.pop(card_hash, None)
            return
        self.wrong_pins[card_hash] = self.wrong_pins.get(card_hash, 0) + 1
        if self.wrong_pins[card_hash] >= self.config.site.pin_max_wrong:
            self._lock_out(source, card_hash)

    def locked_out(self, card_hash: str | None) -> bool:
        return card_hash is not None and self.locked_until.get(card_hash, 0.0) > self.loop.time()

    def _lock_out(self, source: str, card_hash: str) -> None:
        self.wrong_pins.pop(card_hash, None)
        seconds = self.config.site.pin_lockout_s
        self.locked_until[card_hash] = self.loop.time() + seconds
        alarm_id = f"pin-lockout-{uuid.uuid4().hex[:12]}"
        log.warning("%s: card locked out for %d s after %d wrong PINs (alarm %s)", source,
                    seconds, self.config.site.pin_max_wrong, alarm_id)
        self.raise_alarm(alarm_id, "pin_lockout", source, "warning")
        self.loop.call_later(seconds, self._lockout_over, card_hash, alarm_id, source)

    def _lockout_over(self, card_hash: str, alarm_id: str, door: str) -> None:
        if self.locked_until.get(card_hash, 0.0) <= self.loop.time():
            self.locked_until.pop(card_hash, None)
        self.clear_alarm(alarm_id, "pin_lockout", door, "warning")

    # ------------------------------------------------------------------------- alarms
    def raise_alarm(self, alarm_id: str, kind: str, source: str, severity: str) -> None:
        self.queue(AlarmChange(alarm_id, kind, source, severity, self.topics.alarm(alarm_id),
                               {"kind": kind, "source": source, "severity": severity, "acked_by": None}))

    def clear_alarm(self, alarm_id: str, kind: str, source: str, severity: str) -> None:
        self.queue(AlarmChange(alarm_id, kind, source, severity, self.topics.alarm(alarm_id), None))

    # ------------------------------------------------------------------------- the door itself
    def input(self, cfg: InputConfig, active: bool) -> None:
        now = self.loop.time()
        if cfg.kind == "contact":
            self._apply(cfg.door, doorstate.contact(self.specs[cfg.door], self.states[cfg.door], active, now))
        elif cfg.kind == "exit" and active:
            # A request to exit opens from inside without a card; it is recorded as a pass.
            self.queue(self._door_event(cfg.door, cfg.name, "out",
                                        Verdict(Decision.GRANTED, "input.exit", "exit_button"), None, None))
            self._apply(cfg.door, doorstate.release(self.specs[cfg.door], self.states[cfg.door], now))
        elif cfg.kind == "fire":
            self._fire(cfg, active, now)

    def _fire(self, cfg: InputConfig, active: bool, now: float) -> None:
        """A fire input changed: recorded at every door of this node (each record says whether
        that door now stands released), and one ``fire`` alarm for as long as the input is active.
        A reset clears the alarm's condition; the fire exits stay released until a person sets
        their mode back."""
        if active == self.fire_active.get(cfg.name, False):
            return  # an input reports its value at start and after a reconnect: a fact, not a change
        self.fire_active[cfg.name] = active
        log.warning("fire input %s %s", cfg.name, "ACTIVE: releasing fire exits" if active else "reset")
        for door in self.states:
            self._apply(door, doorstate.fire(self.specs[door], self.states[door], active, now), f"input:{cfg.name}")
            released = self.states[door].mode_open(self.specs[door])
            payload = {"kind": "fire", "door": door, "input": cfg.name, "state": "active" if active else "reset",
                       "released": released}
            columns = {"door": door, "reader": cfg.name, "result": "fire", "reason": payload["state"],
                       "rule": "input.fire"}
            self.queue(NewEvent(kind="door", topic=self.topics.door_event(door), payload=payload, columns=columns))
        if active:
            alarm_id = f"{cfg.name}-fire-{uuid.uuid4().hex[:8]}"
            self.alarm_ids[(cfg.name, "fire")] = alarm_id
            self.raise_alarm(alarm_id, "fire", cfg.name, "critical")
        elif alarm_id := self.alarm_ids.pop((cfg.name, "fire"), None):
            self.clear_alarm(alarm_id, "fire", cfg.name, "critical")

    def set_mode(self, door: str, mode: Mode, actor: str) -> None:
        self._check_door(door)
        log.info("%s: mode %s by %s", door, mode.value, actor)
        self._apply(door, doorstate.set_mode(self.specs[door], self.states[door], mode, self.loop.time()), actor)

    def unlock(self, door: str, seconds: float, actor: str) -> None:
        """An operator's momentary release, audited."""
        self._check_door(door)
        self.store.audit(actor, "door.unlock", {"door": door, "seconds": seconds})
        log.info("%s: released for %g s by %s", door, seconds, actor)
        self._apply(door, doorstate.release(self.specs[door], self.states[door], self.loop.time(), seconds))

    def describe(self) -> list[dict[str, Any]]:
        return [self.describe_one(door) for door in self.states]

    def _check_door(self, door: str) -> None:
        if door not in self.states:
            raise SekishoError(f"no door {door!r} (doors: {', '.join(self.states)})")

    def _apply(self, door: str, result: tuple[DoorState, list[doorstate.Action]], actor: str = "daemon") -> None:
        before, (after, actions) = self.states[door], result
        self.states[door] = after
        if after.mode is not before.mode:
            # Kept in the store, so lockdown, free or an emergency release survive a restart.
            self.store.set_door_mode(door, after.mode.value, actor)
        for action in actions:
            match action:
                case Strike(released=released) if not self.closed:
                    task = self.loop.create_task(self._drive(door, released))
                    self.drives.add(task)
                    task.add_done_callback(self.drives.discard)
                case Alarm(kind=kind, raised=True):
                    alarm_id = f"{door}-{kind.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
                    self.alarm_ids[(door, kind)] = alarm_id
                    log.warning("%s: alarm %s", door, kind)
                    self.raise_alarm(alarm_id, kind, door, "critical" if kind == doorstate.FORCED else "warning")
                case Alarm(kind=kind, raised=False):
                    if alarm_id := self.alarm_ids.pop((door, kind), None):
                        self.clear_alarm(alarm_id, kind, door, "warning")
                case WakeAt(at=at):
                    self.loop.call_at(at, self._tick, door)
        self._publish_state(door)

    def _tick(self, door: str) -> None:
        self._apply(door, doorstate.tick(self.specs[door], self.states[door], self.loop.time()))

    async def shutdown(self) -> None:
        """At the daemon's stop: lock every door (fail-secure), unconditionally, except one its
        mode holds open (free, or a fire exit in emergency), which stays as a person set it;
        then let go of the strikes' hardware."""
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

    async def _drive(self, door: str, released: bool) -> None:
        try:
            await self.strikes[door].set(released)
        except StrikeError as exc:
            log.error("%s", exc)
            self.raise_alarm(f"{door}-strike-failed-{uuid.uuid4().hex[:8]}", "strike_failed", door, "critical")

    def _publish_state(self, door: str) -> None:
        view = self.describe_one(door)
        key = tuple(str(v) for v in view.values())
        if self.published.get(door) != key:
            self.published[door] = key
            self.queue(NewState(self.topics.door_state(door), {k: v for k, v in view.items() if k != "door"}))

    def describe_one(self, door: str) -> dict[str, Any]:
        st = self.states[door]
        return {"door": door, "lock": st.lock(self.specs[door], self.loop.time()), "mode": st.mode.value,
                "contact": st.contact, "alarm": st.alarm}

    # ------------------------------------------------------------------------- where people are
    def _last_reset(self) -> str:
        """The latest daily anti-passback reset, as the store's UTC timestamp text."""
        now = dt.datetime.now(self.tz)
        reset = dt.datetime.combine(now.date(), dt.time.fromisoformat(self.config.site.passback_reset), self.tz)
        if reset > now:
            reset -= dt.timedelta(days=1)
        return rfc3339(reset)

    def _passback_location(self, holder: dict[str, Any] | None) -> str | None:
        if holder is None or holder["person_id"] not in self.locations:
            return None
        area, since = self.locations[holder["person_id"]]
        return area if since >= self._last_reset() else None

    def _occupancy(self, area: str) -> NewState:
        inside = sorted(self.subject_of(p) for p in self.inside.get(area, ()))
        return NewState(self.topics.area_occupancy(area), {"count": len(inside), "subjects": inside})

    def _move(self, person_id: str, door: str, direction: str) -> None:
        _, entered = access.areas(self.rules.doors[door], direction)
        before = self.locations.get(person_id, ("", ""))[0]
        if entered:
            self.locations[person_id] = (entered, utc_now())
        else:
            self.locations.pop(person_id, None)
        self.queue(Move(person_id, entered))
        if before == entered:
            return  # who is inside changed only when the area did
        self.inside.get(before, set()).discard(person_id)
        if entered:
            self.inside.setdefault(entered, set()).add(person_id)
        if not self.changed_areas:
            # After this tick's strike and record: a burst of grants shares one message per area.
            self.loop.call_soon(self._publish_occupancy)
        self.changed_areas |= {before, entered} - {""}

    def _publish_occupancy(self) -> None:
        areas, self.changed_areas = self.changed_areas, set()
        for area in sorted(areas):
            self.queue(self._occupancy(area))

    # ------------------------------------------------------------------------- records
    def subject_of(self, person_id: str) -> str:
        """How a person appears on the bus; computed once per person (an HMAC, or a store read)."""
        subject = self.subjects.get(person_id)
        if subject is None:
            if self.config.site.publish_names:
                person = self.store.person(person_id)
                subject = person["name"] if person else person_id
            else:
                subject = self.key.pseudonym(person_id)
            self.subjects[person_id] = subject
        return subject

    def _subject(self, holder: dict[str, Any] | None) -> str | None:
        return self.subject_of(holder["person_id"]) if holder else None

    def _door_event(self, door: str, reader: str, direction: str, verdict: Verdict, holder: dict[str, Any] | None,
                    card_hash: str | None) -> NewEvent:
        person_id = holder["person_id"] if holder else None
        subject = self._subject(holder)
        columns = {"door": door, "reader": reader, "direction": direction, "person_id": person_id,
                   "result": verdict.decision.value, "reason": verdict.reason, "rule": verdict.rule,
                   "card": card_hash[:16] if card_hash else None}
        payload = {"kind": "access", "door": door, "reader": reader, "direction": direction,
                   "result": verdict.decision.value,
                   "reason": verdict.reason, "rule": verdict.rule, "subject": subject}
        log.info("%s %s at %s (%s, rule %s)", verdict.decision.value, subject or "no card", reader, verdict.reason,
                 verdict.rule)
        return NewEvent(kind="door", topic=self.topics.door_event(door), payload=payload, columns=columns)

    def _record(self, reader: ReaderConfig, verdict: Verdict, holder: dict[str, Any] | None,
                card_hash: str | None) -> None:
        self.queue(self._door_event(reader.door, reader.name, reader.direction, verdict, holder, card_hash))
        if verdict.granted:
            door = reader.door
            self._apply(door, doorstate.release(self.specs[door], self.states[door], self.loop.time()))
            if holder is not None:
                self._move(holder["person_id"], door, reader.direction)


def _holder(row: dict[str, Any] | None) -> Holder | None:
    if row is None:
        return None
    dates = {k: dt.date.fromisoformat(row[k]) if row[k] else None for k in ("valid_from", "valid_until")}
    return Holder(person_id=row["person_id"], card_active=row["card_active"], person_active=row["person_active"],
                  levels=row["levels"], has_pin=row["has_pin"], **dates)
