"""Supervisor approval at the desk: the card and PIN steps of ``sekisho.policies.approval``,
carried out.

The daemon gives every event of a desk's reader to ``Approvals.handle`` first; it answers True
when the event belonged to an approval (the desk policy never sees it) and False when it is the
desk's. This module looks up what the policy needs (is the card's holder a supervisor now, are
they inside the desk's area, which device was blocked last), checks PINs off the loop, publishes
``approval_pending`` and ``approval_refused`` on ``usb/<host>/event``, and on a grant asks the
USB controller for a timed exception, which publishes ``exception_granted`` with the supervisor's
pseudonym as its actor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sekisho.policies import access
from sekisho.policies import approval as policy
from sekisho.policies.approval import ApprovalRules, Ask, Candidate, Grant, Hold, Pending, Refuse, Supervisor
from sekisho.policies.desk import DeskState
from sekisho.policies.events import CardPresented, CardRemoved, Event, PinEntered

from .config import Config, ReaderConfig
from .desks import Desks
from .errors import SekishoError
from .lockouts import Lockouts
from .pins import verify_pin
from .presence import Presence
from .rules_in_force import RulesInForce
from .store.people import People
from .store.record import NewEvent
from .usb import UsbController
from .usb_devices import Inventory
from .usb_exceptions import Match

log = logging.getLogger(__name__)

RULE = "usb.approval"


class Approvals:
    def __init__(self, config: Config, people: People, usb: UsbController, loop: asyncio.AbstractEventLoop,
                 queue: Callable[[NewEvent], None], *, desks: Desks, presence: Presence, lockouts: Lockouts,
                 inventory: Inventory, rules: RulesInForce) -> None:
        assert config.usb is not None
        self.config = config
        self.site_rules = rules
        self.cfg = config.usb
        self.people = people
        self.usb = usb
        self.inventory = inventory
        """The USB devices present: which was blocked last, and what it is."""
        self.loop = loop
        self.queue = queue
        self.desks = desks
        self.presence = presence
        self.lockouts = lockouts
        self.tz = ZoneInfo(config.site.timezone)
        self.rules = ApprovalRules(self.cfg.approval_window_s, self.cfg.confirm_s, self.cfg.approval_confirm)
        self.pending: dict[str, Pending] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def handle(self, reader: ReaderConfig, event: Event, card_hash: str | None) -> bool:
        """Give an event of a desk's reader to the approval first; True when it was taken."""
        desk, now, rules = reader.desk, self.loop.time(), self.rules
        pending = self.pending.get(desk)
        match event:
            case CardPresented() if card_hash:
                last = self.inventory.last_blocked(self.config.desks[desk].usb_ports)
                device = Candidate(last.event.sys_path, last.blocked_at or 0.0) if last is not None else None
                supervisor = self._supervisor(desk, card_hash)
                held = self.desks.state(desk)
                waiting = (held.state in (DeskState.LOCKED, DeskState.AWAY) and supervisor is not None
                           and held.person_id not in (None, supervisor.person_id))
                step = policy.card(pending, card_hash, supervisor, device, waiting, now, rules)
            case CardRemoved():
                step = policy.removed(pending, now, rules)
            case PinEntered(digits=digits):
                if pending is None or pending.granted or pending.confirm != "pin":
                    return False
                self._spawn(self._check_pin(desk, pending, digits))
                return True
            case _:
                step = policy.lost(pending)
        return self._apply(desk, step)

    def _supervisor(self, desk: str, card_hash: str) -> Supervisor | None:
        holder = self.people.card_holder(card_hash)
        if (holder is None or not self.cfg.supervisor_levels
                or not access.holds(holder, self.cfg.supervisor_levels, self.site_rules.current,
                                      dt.datetime.now(self.tz))):
            return None
        area = self.config.desks[desk].area
        entered = self.presence.entered(holder.person_id, area) if area else True
        return Supervisor(holder.person_id, card_hash, entered, holder.has_pin, self.lockouts.locked_out(card_hash))

    async def _check_pin(self, desk: str, pending: Pending, digits: str) -> None:
        stored = self.people.pin_hash(pending.supervisor.person_id) or ""
        correct = bool(stored) and await self.loop.run_in_executor(None, verify_pin, digits, stored)
        # Counted with the door's wrong PINs: a stolen supervisor card gets no more guesses here.
        self.lockouts.count(pending.supervisor.card_hash, correct, desk,
                            self.presence.subject_of(pending.supervisor.person_id))
        if self.pending.get(desk) is not pending:
            return  # ended while the PIN was being checked (expired, another card)
        self._apply(desk, policy.pin(pending, correct, self.loop.time(), self.rules))

    def _tick(self, desk: str) -> None:
        self._apply(desk, policy.tick(self.pending.get(desk), self.loop.time(), self.rules))

    def _apply(self, desk: str, step: policy.Step) -> bool:
        pending, outcomes = step
        if pending is None:
            self.pending.pop(desk, None)
        else:
            self.pending[desk] = pending
        taken = True
        for outcome in outcomes:
            match outcome:
                case Ask(pending=p):
                    how = ("the supervisor's PIN on the desk's PIN pad" if p.confirm == "pin"
                           else "the supervisor's card out and presented again")
                    self._publish(desk, "approval_pending", p.supervisor, p.device,
                                  f"confirm within {self.cfg.confirm_s:g} s: {how}", confirm=p.confirm)
                    self.loop.call_at(p.started + self.cfg.confirm_s, self._tick, desk)
                case Grant(pending=p):
                    self._grant(desk, p)
                case Refuse(reason=reason, supervisor=s, device=d):
                    self._publish(desk, "approval_refused", s, d, reason)
                case Hold():
                    pass
                case _:  # Pass
                    taken = False
        return taken

    def _grant(self, desk: str, p: Pending) -> None:
        # Only the device the supervisor saw, bound to its descriptors' hash: a clone plugged in
        # its place is not covered.
        blocked = self.inventory.still_blocked(p.device.device)
        if blocked is None or blocked.hash is None:
            self._publish(desk, "approval_refused", p.supervisor, p.device, "device_gone")
            return
        match = Match.of(blocked.event, blocked.hash)
        actor = f"supervisor:{self.presence.subject_of(p.supervisor.person_id)}"
        log.info("%s: %s allows %s for %g min", desk, actor, match.text, self.cfg.approval_minutes)
        try:
            self.usb.allow_exception(match, self.cfg.approval_minutes, actor, self.cfg.approval_interfaces)
        except SekishoError as exc:
            self._publish(desk, "approval_refused", p.supervisor, p.device, f"error: {exc}")

    def _publish(self, desk: str, action: str, s: Supervisor, device: Candidate, reason: str,
                 confirm: str | None = None) -> None:
        payload: dict[str, Any] = {
            "action": action, "rule": RULE, "reason": reason, "cause": "desk", "desk": desk,
            "subject": self.presence.subject_of(s.person_id), "confirm": confirm,
            "device": self.inventory.payload(device.device)}
        log.info("%s: %s %s (%s)", desk, action, device.device, reason)
        self.queue(NewEvent(kind="usb", topic=self.usb.topic, payload=payload,
                            columns={"result": action, "reason": reason, "rule": RULE, "reader": desk,
                                     "person_id": s.person_id}))

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
