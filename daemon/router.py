"""Where each driver event goes: the one place that knows which controller an event concerns.

An input is routed by its configured kind (contact, exit, fire, leave-seat); a reader's event by
whether the reader is at a desk or a door; a seat's sessions to the desks and a USB event to
the USB controller, a print server's to print release. A card tapped while an enrolment waits for
it is enrolment's, at a desk a supervisor's card or PIN goes to approvals first, and at the
printer's reader a card is a print release (that reader serves no door). The router decides
nothing itself.

It also holds the line on a damaged store: what could grant (a card, a PIN, a device) is
refused before it reaches a controller, and a damage found while handling is handed to
``on_damaged`` instead of being raised into the loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sekisho.policies.events import (
    CardPresented,
    CardRemoved,
    CardUnreadable,
    Event,
    InputChanged,
    LeaveSeatPressed,
    PinEntered,
    PrintJobHeld,
    PrintJobLeft,
    PrintServerBack,
    PrintServerLost,
    ReaderBack,
    ReaderLost,
    ReaderTampered,
    SeatSessionsSeen,
    UsbDeviceAdded,
    UsbDeviceRemoved,
    UsbInterfaceAdded,
)

from .alarms import Alarms
from .answers import Answer, Answering
from .config import Config
from .door_states import DoorStates
from .doors import Doors
from .errors import StoreDamaged
from .keys import SiteKey
from .outages import Outages
from .store.database import is_damage
from .tap_enrolment import TapEnrolment

if TYPE_CHECKING:  # imported by the composition root only on a node that has desks, USB or [print]
    from .approvals import Approvals
    from .desks import Desks
    from .printing import PrintRelease
    from .usb import UsbController

log = logging.getLogger(__name__)

GRANTING = (CardPresented, PinEntered, UsbDeviceAdded, UsbInterfaceAdded)
"""Events that can open a door, unlock a desk or allow a device: refused while the store is
damaged, since what they decide could not be recorded."""
TAMPER = "reader_tamper"
PRINT_EVENTS = (PrintJobHeld, PrintJobLeft, PrintServerLost, PrintServerBack)


@dataclasses.dataclass(frozen=True)
class Controllers:
    """What events are routed to; a node without desks or USB has None there."""

    doors: Doors
    door_states: DoorStates
    enrolment: TapEnrolment
    desks: Desks | None = None
    approvals: Approvals | None = None
    usb: UsbController | None = None
    alarms: Alarms | None = None
    """Where any reader's tamper report is raised."""
    outages: Outages | None = None
    """Where a door reader's outage becomes an alarm, after a grace."""
    printing: PrintRelease | None = None
    """Print release: the CUPS driver's events, and the cards at the printer's reader."""


class Router:
    def __init__(self, config: Config, key: SiteKey, to: Controllers, answering: Answering, *,
                 damaged: Callable[[], bool], on_damaged: Callable[[BaseException], None]) -> None:
        self.config = config
        self.key = key
        self.to = to
        self.answering = answering
        self.damaged = damaged
        self.on_damaged = on_damaged

    def handle(self, event: Event) -> None:
        answer = event.raw.get("answer")
        if callable(answer):
            self._handle_answering(event, answer)
            return
        if self.damaged() and isinstance(event, GRANTING):
            # A pull, a leave-seat, an exit button or a fire input still act.
            log.error("%s: %s ignored: the store is damaged", event.source, type(event).__name__)
            return
        try:
            self._route(event)
        except Exception as exc:
            if isinstance(exc, StoreDamaged) or is_damage(exc):
                self.on_damaged(exc)
                return
            raise

    def _route(self, event: Event) -> None:
        to = self.to
        if isinstance(event, SeatSessionsSeen):
            if to.desks:
                to.desks.seat_seen(event)
            return
        if isinstance(event, (UsbDeviceAdded, UsbInterfaceAdded, UsbDeviceRemoved)):
            if to.usb:
                to.usb.handle(event)
            return
        if isinstance(event, PRINT_EVENTS):
            if to.printing:
                to.printing.handle(event)
            return
        if isinstance(event, InputChanged) and event.source in self.config.inputs:
            self._input(event)
            return
        reader = self.config.readers.get(event.source)
        if reader is None:
            log.error("event from unknown source %r dropped: %r", event.source, event)
            return
        if isinstance(event, CardPresented) and to.enrolment.take(reader.name, event.uid):
            return
        if isinstance(event, ReaderTampered):
            if to.alarms and event.active:
                to.alarms.raise_(TAMPER, reader.name, "critical")
            elif to.alarms:
                to.alarms.clear(TAMPER, reader.name)
            return
        if reader.desk and to.desks:
            if isinstance(event, (ReaderLost, CardUnreadable)):
                log.warning("%s: %s", reader.name, event)
            card_hash = self.key.card_hash(event.uid) if isinstance(event, CardPresented) else None
            if to.approvals and to.approvals.handle(reader, event, card_hash):
                return  # a supervisor's card or PIN allowing a blocked device
            to.desks.event(reader.desk, event, card_hash)
            return
        if to.printing and reader.name == to.printing.cfg.reader and not isinstance(event, (ReaderLost, ReaderBack)):
            # The printer's reader opens nothing: a card there is a release, anything else is logged.
            if isinstance(event, CardPresented):
                to.printing.card(self.key.card_hash(event.uid))
            elif not isinstance(event, CardRemoved):  # the type only: a PinEntered holds the digits
                log.warning("%s: %s ignored at the printer's reader", reader.name, type(event).__name__)
            return
        match event:
            case CardPresented(uid=uid):
                to.doors.card(reader, self.key.card_hash(uid))
            case CardUnreadable(reason=reason):
                log.warning("%s: unreadable card (%s)", reader.name, reason)
                to.doors.card(reader, None, unreadable=reason)
            case PinEntered(digits=digits):
                to.doors.pin(reader, digits)
            case CardRemoved():
                log.debug("%s: card removed", reader.name)
            case ReaderLost(reason=reason):
                log.warning("%s: reader lost (%s)", reader.name, reason)
                if to.outages:
                    to.outages.lost(reader.name, reason)
            case ReaderBack():
                log.info("%s: reader back", reader.name)
                if to.outages:
                    to.outages.back(reader.name)

    def _input(self, event: InputChanged) -> None:
        cfg, to = self.config.inputs[event.source], self.to
        if cfg.kind == "leave_seat":
            if event.active and to.desks:
                to.desks.event(cfg.desk, LeaveSeatPressed(source=cfg.name, at=event.at, mono=event.mono))
        elif cfg.kind == "contact":
            to.door_states.contact(cfg.door, event.active)
        elif cfg.kind == "exit" and event.active:
            to.doors.exit_pressed(cfg)
        elif cfg.kind == "fire":
            to.door_states.fire(cfg, event.active)

    def _handle_answering(self, event: Event, answer: Answer) -> None:
        """Handle an event whose driver asked what it decided (answers.py): answered behind the
        commit when something was decided now, when the check finishes for a PIN at a door (a
        PIN there always ends in a decision), and at once, with nothing, otherwise."""
        decisions, token = self.answering.start(answer)
        try:
            self.handle(dataclasses.replace(event, raw={k: v for k, v in event.raw.items() if k != "answer"}))
        finally:
            self.answering.end(token)
        reader = self.config.readers.get(event.source)
        at_door = reader is not None and bool(reader.door)
        if decisions.decided or (at_door and isinstance(event, PinEntered) and not self.damaged()):
            return
        decisions.send(waiting="pin" if at_door and event.source in self.to.doors.pending else None)
