"""Door access: a card (and, where the door asks for one, its PIN) at a reader, decided and
recorded.

For each card the door flow is explicit: ``access.needs_pin`` says whether to wait for a PIN
(only when nothing before the PIN would refuse the card), the card then waits at its reader for
``pin_timeout_s``, and ``access.decide`` is called once, with the PIN's outcome, against the
world as it is when the PIN arrives: the card may have been revoked, its holder disabled, the
door locked down or the card locked out while the PIN was being typed. Another card at the
reader abandons the wait (recorded as ``pin_abandoned``).

What it gathers comes from its collaborators: the card's holder from the store, where the
holder is from ``Presence``, lockouts from ``Lockouts``, the door's mode from ``DoorStates``. A
grant releases the door (``DoorStates.release``) and moves the holder (``Presence.move``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sekisho.policies import access
from sekisho.policies.access import Attempt, Holder, Pin
from sekisho.policies.decisions import Decision, Verdict

from .config import Config, InputConfig, ReaderConfig
from .door_states import DoorStates
from .lockouts import Lockouts
from .pins import verify_pin
from .presence import Presence
from .rules_in_force import RulesInForce
from .store.people import People
from .store.record import NewEvent
from .topics import Topics

log = logging.getLogger(__name__)


@dataclass
class PendingPin:
    card_hash: str
    person_id: str
    timer: asyncio.TimerHandle


class Doors:
    def __init__(self, config: Config, people: People, topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[NewEvent], None], *, states: DoorStates, presence: Presence,
                 lockouts: Lockouts, rules: RulesInForce) -> None:
        self.config = config
        self.site_rules = rules
        """Read at each decision: an enrolment snapshot may bring new schedules or holidays."""
        self.people = people
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.states = states
        self.presence = presence
        self.lockouts = lockouts
        self.tz = ZoneInfo(config.site.timezone)
        self.pending: dict[str, PendingPin] = {}
        """Reader name -> the card waiting there for its PIN."""

    def card(self, reader: ReaderConfig, card_hash: str | None, unreadable: str = "") -> None:
        abandoned = self.pending.pop(reader.name, None)
        if abandoned is not None:
            abandoned.timer.cancel()
            if abandoned.card_hash != card_hash:
                self._record(reader, Verdict(Decision.DENIED, "pin.abandoned", "pin_abandoned"),
                             abandoned.person_id, abandoned.card_hash)
        if unreadable or card_hash is None:
            self._record(reader, Verdict(Decision.DENIED, "card.unreadable", "unreadable"), None, None)
            return
        holder = self.people.card_holder(card_hash)
        attempt = self._attempt(reader, holder, card_hash)
        if holder is not None and access.needs_pin(attempt, self.site_rules.current):
            timeout = self.config.doors[reader.door].pin_timeout_s
            timer = self.loop.call_later(timeout, self._pin_timed_out, reader)
            self.pending[reader.name] = PendingPin(card_hash, holder.person_id, timer)
            log.info("%s: waiting %d s for the PIN of %s", reader.name, timeout,
                     self.presence.subject_of(holder.person_id))
            return
        self._decide(reader, attempt, card_hash)

    def pin(self, reader: ReaderConfig, digits: str) -> None:
        pending = self.pending.pop(reader.name, None)
        if pending is None:
            self._record(reader, Verdict(Decision.DENIED, "pin.no-card", "no_card"), None, None)
            return
        pending.timer.cancel()
        self.loop.create_task(self._check_pin(reader, pending, digits))

    def exit_pressed(self, cfg: InputConfig) -> None:
        """A request to exit opens from inside without a card; it is recorded as a pass."""
        _, outside = access.areas(self.site_rules.current.doors[cfg.door], "out")
        self.queue(self._door_event(cfg.door, cfg.name, "out", Verdict(Decision.GRANTED, "input.exit", "exit_button"),
                                    None, None, outside))
        self.states.release(cfg.door)

    async def _check_pin(self, reader: ReaderConfig, pending: PendingPin, digits: str) -> None:
        stored = self.people.pin_hash(pending.person_id) or ""
        ok = await self.loop.run_in_executor(None, verify_pin, digits, stored)
        holder = self.people.card_holder(pending.card_hash)  # the world as it is now
        attempt = self._attempt(reader, holder, pending.card_hash, Pin.OK if ok else Pin.WRONG)
        self.lockouts.count(pending.card_hash, ok, reader.door, self.presence.subject_of(pending.person_id))
        self._decide(reader, attempt, pending.card_hash)

    def _pin_timed_out(self, reader: ReaderConfig) -> None:
        pending = self.pending.pop(reader.name, None)
        if pending is not None:
            holder = self.people.card_holder(pending.card_hash)
            self._decide(reader, self._attempt(reader, holder, pending.card_hash, Pin.TIMEOUT), pending.card_hash)

    def _attempt(self, reader: ReaderConfig, holder: Holder | None, card_hash: str,
                 pin: Pin = Pin.NOT_GIVEN) -> Attempt:
        location = self.presence.passback_area(holder.person_id) if holder else None
        return Attempt(door=reader.door, direction=reader.direction, local=dt.datetime.now(self.tz), holder=holder,
                       pin=pin, locked_out=self.lockouts.locked_out(card_hash), location=location,
                       mode=self.states.mode(reader.door))

    def _decide(self, reader: ReaderConfig, attempt: Attempt, card_hash: str) -> None:
        verdict = access.decide(attempt, self.site_rules.current)
        self._record(reader, verdict, attempt.holder.person_id if attempt.holder else None, card_hash)

    def _record(self, reader: ReaderConfig, verdict: Verdict, person_id: str | None, card_hash: str | None) -> None:
        _, entered = access.areas(self.site_rules.current.doors[reader.door], reader.direction)
        self.queue(self._door_event(reader.door, reader.name, reader.direction, verdict, person_id, card_hash,
                                    entered if verdict.granted else None))
        if verdict.granted:
            self.states.release(reader.door)
            if person_id is not None:
                self.presence.move(person_id, entered)

    def _door_event(self, door: str, reader: str, direction: str, verdict: Verdict, person_id: str | None,
                    card_hash: str | None, area: str | None) -> NewEvent:
        """``area``: where a granted pass leads (empty: out of every area), so that the recorder
        knows where the passer is without this node's door config; None for a denial."""
        subject = self.presence.subject_of(person_id) if person_id else None
        columns = {"door": door, "reader": reader, "direction": direction, "person_id": person_id,
                   "result": verdict.decision.value, "reason": verdict.reason, "rule": verdict.rule,
                   "card": card_hash[:16] if card_hash else None}
        payload = {"kind": "access", "door": door, "reader": reader, "direction": direction,
                   "result": verdict.decision.value, "reason": verdict.reason, "rule": verdict.rule,
                   "subject": subject, "area": area or None}
        # DEBUG: the event on the bus and in the store is the record; a line per tap at INFO cost
        # a tenth of the tap's own time.
        log.debug("%s %s at %s (%s, rule %s)", verdict.decision.value, subject or "no card", reader, verdict.reason,
                  verdict.rule)
        return NewEvent(kind="door", topic=self.topics.door_event(door), payload=payload, columns=columns)
