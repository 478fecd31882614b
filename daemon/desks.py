"""The desk controller: card slots, leave-seat buttons and logind, per desk.

Decisions come from ``sekisho.policies.desk``; this module looks up what a decision needs (who
holds the card, whether their levels allow this desk now, whether they are recorded inside the
desk's area) and carries out the actions: lock or unlock the seat's session through logind,
record and publish desk events, publish the retained desk state, raise alarms.

Locks for one desk never overlap: a lock asked for while one is running runs once more when it
ends, so the last word is always a lock. A lock covers every user session on the desk's seat;
what logind answered comes back to the policy as events, one per session (``SessionLocked``,
``SessionLockFailed``, ``SessionTerminated``; ``NoSessionToLock`` for none), and is published
from there. What the seat watch (``logind_watch.SeatWatch``) lists after each change of the
seat's sessions goes to the policy as ``SeatSessionsSeen``: an unlock without the holder's card
is noticed there and undone by the lock it asks for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sekisho.policies import access
from sekisho.policies import desk as policy
from sekisho.policies.desk import Card, Desk, DeskDecision, DeskRules, LockSession, Publish, RaiseAlarm, UnlockSession
from sekisho.policies.events import CardPresented, Event, SeatSessionsSeen, SessionLocked

from .alarms import Alarms
from .config import Config, DeskConfig
from .errors import SekishoDBusError
from .logind import Logind
from .logind_commands import TERMINATE
from .presence import Presence
from .rules_in_force import RulesInForce
from .store.people import People
from .store.record import NewEvent, NewState
from .timestamps import rfc3339
from .topics import Topics

log = logging.getLogger(__name__)


class Desks:
    def __init__(self, config: Config, people: People, topics: Topics, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[Any], None], *, logind: Logind, presence: Presence, alarms: Alarms,
                 rules: RulesInForce, on_change: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.site_rules = rules
        self.people = people
        self.topics = topics
        self.loop = loop
        self.queue = queue
        self.logind = logind
        self.presence = presence
        self.alarms = alarms
        self.on_change = on_change
        """Called after a desk's state changed (USB control decides held devices then)."""
        self.tz = ZoneInfo(config.site.timezone)
        self.rules = {name: DeskRules(name, d.unlock_on_card, policy.TailgatingStance(d.tailgating),
                                      policy.UnknownOccupancy(d.unknown_occupancy), d.away_timeout_s,
                                      policy.UnlockedWithoutCard(d.unlocked_without_card))
                      for name, d in config.desks.items()}
        self.desks: dict[str, Desk] = {name: Desk() for name in config.desks}
        """Before ``startup`` only the seat watch's first listing (the baseline) is kept here."""
        self.locking: set[str] = set()
        self.relock: dict[str, float] = {}
        self.tasks: set[asyncio.Task] = set()

    def startup(self) -> None:
        """Nobody is known to hold a desk at start, so every desk's session locks; a card in the
        slot is reported by its reader and makes the desk in_use again."""
        for name in self.config.desks:
            self._apply(name, policy.start(self.loop.time(), self.desks[name].seen), self.loop.time())

    # ------------------------------------------------------------------------- inputs
    def event(self, desk: str, event: Event, card_hash: str | None = None) -> None:
        card = self._card(desk, card_hash) if isinstance(event, CardPresented) and card_hash else None
        decision = policy.decide(self.desks[desk], event, self.loop.time(), self.rules[desk], card)
        self._apply(desk, decision, event.mono)

    def seat_seen(self, event: SeatSessionsSeen) -> None:
        """The seat watch's report: the user sessions on a seat after a change, for its desks."""
        for name, cfg in self.config.desks.items():
            if cfg.seat == event.seat:
                self.event(name, event)

    def state(self, desk: str) -> Desk:
        return self.desks[desk]

    def _card(self, desk: str, card_hash: str) -> Card:
        holder = self.people.card_holder(card_hash)
        if holder is None or not holder.card_active or not holder.person_active:
            return Card(card_hash, None)
        cfg = self.config.desks[desk]
        allowed = access.holds(holder, cfg.levels, self.site_rules.current, dt.datetime.now(self.tz))
        entered = self.presence.entered(holder.person_id, cfg.area) if cfg.area else True
        return Card(card_hash, holder.person_id, allowed, entered)

    # ------------------------------------------------------------------------- actions
    def _apply(self, desk: str, decision: DeskDecision, trigger: float) -> None:
        before = self.desks[desk]
        self.desks[desk] = decision.desk
        quiet = not decision.actions and not decision.changed
        log.log(logging.DEBUG if quiet else logging.INFO, "%s: %s (%s, rule %s)", desk, decision.state.value,
                decision.reason, decision.rule)
        actions = list(decision.actions)
        about = decision.desk.person_id  # whom an alarm is about: the person of the event before it, or the holder
        while actions:
            action = actions.pop(0)
            match action:
                case LockSession():
                    self._lock(desk, trigger)
                case UnlockSession():
                    # Its "unlocked" event is published only once logind has done it.
                    follow = actions[0] if actions else None
                    if isinstance(follow, Publish):
                        actions.pop(0)
                    else:
                        follow = None
                    self._spawn(self._unlock(desk, decision, follow))
                case Publish():
                    self._publish(desk, decision, action)
                    about = action.person_id or about
                case RaiseAlarm(kind=kind, severity=severity):
                    self.alarms.raise_(kind, desk, severity, self.presence.subject_of(about) if about else None,
                                      incident=True)
        if decision.changed or before.state != decision.desk.state:
            self._publish_state(desk)
            self.on_change()
        if decision.expires_at is not None:
            self.loop.call_at(decision.expires_at, self._tick, desk)

    def _tick(self, desk: str) -> None:
        self._apply(desk, policy.tick(self.desks[desk], self.loop.time()), self.loop.time())

    def _publish(self, desk: str, decision: DeskDecision, p: Publish) -> None:
        subject = self.presence.subject_of(p.person_id) if p.person_id else None
        payload = {"desk": desk, "area": self.config.desks[desk].area or None, "kind": p.kind.value,
                   "subject": subject, "reason": p.reason,
                   "rule": decision.rule, "latency_ms": round(p.latency_ms, 2) if p.latency_ms is not None else None}
        columns = {"reader": desk, "person_id": p.person_id, "reason": p.reason, "rule": decision.rule,
                   "result": p.kind.value}
        self.queue(NewEvent(kind="desk", topic=self.topics.desk_event(desk), payload=payload, columns=columns))

    def _publish_state(self, desk: str) -> None:
        d = self.desks[desk]
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=max(0.0, self.loop.time() - d.since))
        self.queue(NewState(self.topics.desk_state(desk), {
            "state": d.state.value, "subject": self.presence.subject_of(d.person_id) if d.person_id else None,
            "since": rfc3339(since)}))

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _lock(self, desk: str, trigger: float) -> None:
        if desk in self.locking:
            self.relock[desk] = min(trigger, self.relock.get(desk, trigger))
            return
        self.locking.add(desk)
        self._spawn(self._run_locks(desk, trigger))

    async def _run_locks(self, desk: str, trigger: float) -> None:
        cfg: DeskConfig = self.config.desks[desk]
        fallback = list(cfg.lock_fallback_command) or (TERMINATE if cfg.lock_fallback == "terminate" else None)
        try:
            while True:
                result = await self.logind.lock(cfg.seat, confirm_timeout=cfg.lock_confirm_s,
                                                retries=cfg.lock_retries, fallback=fallback,
                                                text_fallback=TERMINATE if cfg.tty_lock == "terminate" else None,
                                                confirm_command=list(cfg.lock_confirm_command) or None)
                for outcome in result.events(desk):
                    if isinstance(outcome, SessionLocked):
                        # From the trigger (the card leaving, as the driver saw it), not from the call.
                        confirmed = next(s.at for s in result.result(outcome.session).steps
                                         if s.step.value == "lock_confirmed")
                        outcome = dataclasses.replace(outcome, latency_ms=(confirmed - trigger) * 1000)
                    self._apply(desk, policy.decide(self.desks[desk], outcome, self.loop.time(), self.rules[desk]),
                                trigger)
                if desk not in self.relock:
                    return
                trigger = self.relock.pop(desk)
        finally:
            self.locking.discard(desk)

    async def _unlock(self, desk: str, decision: DeskDecision, follow: Publish | None) -> None:
        try:
            session = await self.logind.unlock(self.config.desks[desk].seat)
        except SekishoDBusError as exc:
            log.error("%s: unlock failed: %s; the holder unlocks with their password", desk, exc)
            return
        if session is not None and follow is not None:
            self._publish(desk, decision, follow)

    def describe(self) -> list[dict[str, Any]]:
        """For ``sekisho desk list`` (local, so the person's id, not the pseudonym). ``sessions``
        is the seat's user sessions as the watch last listed them (None before its first)."""
        return [{"desk": name, "state": d.state.value, "person_id": d.person_id,
                 "since_s": round(self.loop.time() - d.since, 1), "sessions": _sessions(d)}
                for name, d in self.desks.items()]


def _sessions(desk: Desk) -> str | None:
    if desk.seen is None:
        return None
    return ", ".join(f"{s.id} {'locked' if s.locked else 'unlocked'}{' active' if s.active else ''}"
                     for s in desk.seen) or "none"


