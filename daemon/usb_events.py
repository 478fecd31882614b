"""USB decisions as events: each recorded and published on ``usb/<host>/event`` (docs/mqtt.md);
and the timed exceptions in force, as the retained ``usb/<host>/exceptions``.

``UsbEvents`` builds the payload (``action``, ``device``, ``rule``, ``decision``, ``reason``,
``cause``, ``held``, ``blocked_interfaces``, ``exception``, ``error``) and hands it to ``queue``,
which commits it with its audit and outbox rows before anything is published (daemon/store/record.py):
this module never raises for the bus or the disk, the store's own failure model applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sekisho.policies.usbrules import Target

from .store.record import NewEvent, NewState
from .usb_devices import Tracked
from .usb_exceptions import UsbException

log = logging.getLogger(__name__)

# Rule names for decisions no rules-file line made (the rules' own is ``IMPLICIT``).
PRESENT_RULE = "PRESENT"
"""``present_devices = "keep"``: the device was left as found at start."""
EXCEPTION_RULE = "EXCEPTION"
"""Authorized by a supervisor's timed exception."""
UNREADABLE_RULE = "UNREADABLE"
"""The device's id or descriptors could not be read or parsed; it is blocked (fail-secure)."""



class Action(StrEnum):
    """An event's ``action`` on ``usb/<host>/event``: what the device is now, or what happened."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    EXCEPTION_GRANTED = "exception_granted"
    EXCEPTION_EXPIRED = "exception_expired"


class Cause(StrEnum):
    """An event's ``cause``: what made the controller decide."""

    PRESENT = "present"
    PLUG = "plug"
    UNLOCKED = "unlocked"
    EXCEPTION = "exception"
    EXPIRY = "expiry"


@dataclass(frozen=True)
class Outcome:
    action: Action
    """``allowed`` or ``blocked`` for a decision: what the device is now (the contract's word)."""
    decision: Target
    """What was decided (a held device: what the rules say)."""
    rule: str
    reason: str = ""
    held: bool = False
    blocked_interfaces: tuple[str, ...] = ()
    exception: dict[str, Any] | None = None
    error: str | None = None

    @property
    def blocked_by_rules(self) -> bool:
        """Blocked because the rules say so (not held, not rejected): what a supervisor may allow."""
        return self.action is Action.BLOCKED and self.decision is Target.BLOCK and not self.held


class UsbEvents:
    def __init__(self, topic: str, queue: Callable[[NewEvent | NewState], None],
                 exceptions_topic: str | None = None) -> None:
        self.topic = topic
        self.queue = queue
        self.exceptions_topic = exceptions_topic
        """Where the exceptions in force are retained; None: nowhere (a controller tested alone)."""

    def in_force(self, exceptions: list[dict[str, Any]]) -> None:
        """The exceptions in force now, the whole set, retained: a console that connects later
        learns them from the broker (an outbox row, committed with the events that changed it)."""
        if self.exceptions_topic is not None:
            self.queue(NewState(self.exceptions_topic, {"exceptions": exceptions}))

    def decided(self, tracked: Tracked, outcome: Outcome, cause: Cause) -> None:
        """A decision on a device: logged, recorded and published."""
        e = tracked.event
        log.info("%s %s:%s %r: %s (%s, rule %s)%s", e.port, e.vendor_id, e.product_id, e.name, outcome.action,
                 outcome.decision, outcome.rule, f": {outcome.reason}" if outcome.reason else "")
        self.publish(tracked.payload(), outcome, cause)

    def exception_granted(self, exc: UsbException, present: list[dict[str, Any]]) -> None:
        """A supervisor's exception, about the one device it names if one is ``present``."""
        log.info("exception %s: %s allowed for %g min by %s (%d present)", exc.id, exc.match.text, exc.minutes,
                 exc.actor, len(present))
        self.publish(present[0] if len(present) == 1 else exc.match.payload(),
                     Outcome(Action.EXCEPTION_GRANTED, Target.ALLOW, EXCEPTION_RULE,
                             f"allowed for {exc.minutes:g} min by {exc.actor}", exception=exc.describe()),
                     Cause.EXCEPTION, exc.actor)

    def exception_expired(self, exc: UsbException, reason: str, tracked: Tracked | None = None,
                          after: Outcome | None = None) -> None:
        """An exception ended: about each device it covered, with what the rules decided ``after``
        it, or once, about what it named, when it covered none."""
        if tracked is None or after is None:
            self.publish(exc.match.payload(), Outcome(Action.EXCEPTION_EXPIRED, Target.ALLOW, EXCEPTION_RULE, reason,
                                                      exception=exc.describe()), Cause.EXPIRY)
            return
        now = "deauthorized" if after.action is Action.BLOCKED else f"still allowed by {after.rule}"
        self.publish(tracked.payload(),
                     Outcome(Action.EXCEPTION_EXPIRED, after.decision, after.rule, f"{reason}; {now}",
                             blocked_interfaces=after.blocked_interfaces, exception=exc.describe(), error=after.error),
                     Cause.EXPIRY)

    def publish(self, device: Mapping[str, Any], outcome: Outcome, cause: Cause, actor: str = "daemon") -> None:
        payload = {"action": outcome.action, "device": dict(device), "rule": outcome.rule,
                   "decision": outcome.decision, "reason": outcome.reason, "cause": cause, "held": outcome.held,
                   "blocked_interfaces": list(outcome.blocked_interfaces), "exception": outcome.exception,
                   "error": outcome.error}
        self.queue(NewEvent(kind="usb", topic=self.topic, payload=payload, actor=actor,
                            columns={"result": outcome.action, "reason": outcome.reason, "rule": outcome.rule}))


__all__ = ["Action", "Cause", "EXCEPTION_RULE", "Outcome", "PRESENT_RULE", "UNREADABLE_RULE", "UsbEvents"]
