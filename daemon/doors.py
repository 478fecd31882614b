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

from sekisho.policies import access
from sekisho.policies.access import Attempt, Holder, Mode, NeedPin, Pin
from sekisho.policies.decisions import Decision, Verdict

from .config import Config, ReaderConfig
from .keys import SiteKey
from .pins import verify_pin
from .store import AlarmChange, Move, NewEvent, NewState, Store, utc_now
from .topics import Topics

log = logging.getLogger("sekisho.doors")

Item = NewEvent | NewState | Move | AlarmChange


@dataclass
class PendingPin:
    card_hash: str
    holder: dict[str, Any]
    attempt: Attempt
    timer: asyncio.TimerHandle


class Doors:
    def __init__(self, config: Config, store: Store, key: SiteKey, topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[Item], None]) -> None:
        self.config = config
        self.rules = config.rules
        self.store = store
        self.key = key
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.tz = ZoneInfo(config.site.timezone)
        self.modes = {door: Mode(store.door_modes().get(door, Mode.NORMAL.value)) for door in config.doors}
        self.pending: dict[str, PendingPin] = {}
        self.wrong_pins: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}
        self.locations = store.locations()

    def startup(self) -> None:
        """Publish the current occupancy of every area, and clear alarms a previous run left
        raised: the conditions behind them (lockouts) did not survive the restart."""
        for alarm in self.store.active_alarms():
            self.queue(AlarmChange(alarm["id"], alarm["kind"], alarm["source"], alarm["severity"],
                                   self.topics.alarm(alarm["id"]), None))
        for area in self.config.areas:
            self.queue(self._occupancy(area))

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
        attempt = Attempt(door=reader.door, direction=reader.direction, local=dt.datetime.now(self.tz),
                          holder=_holder(holder), locked_out=self._locked_out(card_hash),
                          location=self._passback_location(holder), mode=self.modes[reader.door])
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
        if ok:
            self.wrong_pins.pop(card, None)
        else:
            self.wrong_pins[card] = self.wrong_pins.get(card, 0) + 1
            if self.wrong_pins[card] >= self.config.site.pin_max_wrong:
                self._lock_out(reader, card)
        attempt = dataclasses.replace(pending.attempt, pin=Pin.OK if ok else Pin.WRONG)
        verdict = access.decide(attempt, self.rules)
        assert not isinstance(verdict, NeedPin)  # a PIN was given
        self._record(reader, verdict, pending.holder, card)

    def _pin_timed_out(self, reader: ReaderConfig) -> None:
        pending = self.pending.pop(reader.name, None)
        if pending is not None:
            verdict = access.decide(dataclasses.replace(pending.attempt, pin=Pin.TIMEOUT), self.rules)
            assert not isinstance(verdict, NeedPin)
            self._record(reader, verdict, pending.holder, pending.card_hash)

    # ------------------------------------------------------------------------- lockouts
    def _locked_out(self, card_hash: str | None) -> bool:
        return card_hash is not None and self.locked_until.get(card_hash, 0.0) > self.loop.time()

    def _lock_out(self, reader: ReaderConfig, card_hash: str) -> None:
        self.wrong_pins.pop(card_hash, None)
        seconds = self.config.site.pin_lockout_s
        self.locked_until[card_hash] = self.loop.time() + seconds
        alarm_id = f"pin-lockout-{uuid.uuid4().hex[:12]}"
        log.warning("%s: card locked out for %d s after %d wrong PINs (alarm %s)", reader.door,
                    seconds, self.config.site.pin_max_wrong, alarm_id)
        self.raise_alarm(alarm_id, "pin_lockout", reader.door, "warning")
        self.loop.call_later(seconds, self._lockout_over, card_hash, alarm_id, reader.door)

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

    # ------------------------------------------------------------------------- where people are
    def _last_reset(self) -> str:
        """The latest daily anti-passback reset, as the store's UTC timestamp text."""
        now = dt.datetime.now(self.tz)
        reset = dt.datetime.combine(now.date(), dt.time.fromisoformat(self.config.site.passback_reset), self.tz)
        if reset > now:
            reset -= dt.timedelta(days=1)
        return reset.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _passback_location(self, holder: dict[str, Any] | None) -> str | None:
        if holder is None or holder["person_id"] not in self.locations:
            return None
        area, since = self.locations[holder["person_id"]]
        return area if since >= self._last_reset() else None

    def _occupancy(self, area: str) -> NewState:
        inside = sorted(self._subject_of(p) for p, (a, _) in self.locations.items() if a == area)
        return NewState(self.topics.area_occupancy(area), {"count": len(inside), "subjects": inside})

    def _move(self, person_id: str, door: str, direction: str) -> None:
        _, entered = access.areas(self.rules.doors[door], direction)
        before = self.locations.get(person_id, ("", ""))[0]
        if entered:
            self.locations[person_id] = (entered, utc_now())
        else:
            self.locations.pop(person_id, None)
        self.queue(Move(person_id, entered))
        for area in sorted({before, entered} - {""}):
            self.queue(self._occupancy(area))

    # ------------------------------------------------------------------------- records
    def _subject_of(self, person_id: str) -> str:
        if self.config.site.publish_names:
            person = self.store.person(person_id)
            return person["name"] if person else person_id
        return self.key.pseudonym(person_id)

    def _subject(self, holder: dict[str, Any] | None) -> str | None:
        return self._subject_of(holder["person_id"]) if holder else None

    def _record(self, reader: ReaderConfig, verdict: Verdict, holder: dict[str, Any] | None,
                card_hash: str | None) -> None:
        person_id = holder["person_id"] if holder else None
        subject = self._subject(holder)
        columns = {"door": reader.door, "reader": reader.name, "direction": reader.direction, "person_id": person_id,
                   "result": verdict.decision.value, "reason": verdict.reason, "rule": verdict.rule,
                   "card": card_hash[:16] if card_hash else None}
        payload = {"door": reader.door, "reader": reader.name, "direction": reader.direction,
                   "result": verdict.decision.value, "reason": verdict.reason, "rule": verdict.rule,
                   "subject": subject}
        log.info("%s %s at %s (%s, rule %s)", verdict.decision.value, subject or "unknown card", reader.name,
                 verdict.reason, verdict.rule)
        self.queue(NewEvent(kind="door", topic=self.topics.door_event(reader.door), payload=payload, columns=columns))
        if verdict.granted and person_id is not None:
            self._move(person_id, reader.door, reader.direction)


def _holder(row: dict[str, Any] | None) -> Holder | None:
    if row is None:
        return None
    dates = {k: dt.date.fromisoformat(row[k]) if row[k] else None for k in ("valid_from", "valid_until")}
    return Holder(person_id=row["person_id"], card_active=row["card_active"], person_active=row["person_active"],
                  levels=row["levels"], has_pin=row["has_pin"], **dates)
