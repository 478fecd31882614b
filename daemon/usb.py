"""The USB controller: keeps the inventory of USB devices present and decides each by the rules.

Where its parts live: ``usb_devices`` (what is known of each device: its descriptors parsed once,
its state), ``usb_sysfs`` (the only writes: ``authorized``, interfaces, drivers_probe, ``remove``),
``usb_exceptions`` (supervisors' timed exceptions), ``usb_events`` (the event each decision is
recorded and published as). This module decides.

The kernel does the enforcing (Documentation/usb/authorization.rst): a device whose
``authorized`` attribute is 0 has no configuration and no interfaces, so no driver can touch it.
With ``authorized_default`` 0 on every root hub, a new device starts that way, so the daemon only
ever has to say yes: it writes ``authorized`` 1 for a device the rules allow and nothing for the
rest. docs/usb.md explains the set-up around it (the kernel parameter, the udev rule).

What it does, in order:

- ``start(present)``: writes ``authorized_default`` 0 on every root hub (and
  ``interface_authorized_default`` 0 when a rule uses ``block-interface``, else 1), then decides
  every device present (``present_devices``: ``apply`` the rules, or ``keep`` what the kernel
  has). Root hubs present at start are kept as they are, as USBGuard's PresentControllerPolicy
  does by default: deauthorizing one would cut every device behind it, the keyboard included.
- ``handle(event)``: a device added is decided at once; an interface added gets the device's
  interface plan; a device removed is forgotten.
- Targets: ``allow`` writes ``authorized`` 1, then makes each interface's own ``authorized``
  match the plan: 0 for the interfaces ``block-interface`` names, 1 for the others, and writes
  the newly authorized interfaces to /sys/bus/usb/drivers_probe, since the kernel does not probe
  an interface authorized after the fact (sysfs-bus-usb, ``INTERFACE/authorized``). ``block``
  writes 0 if the device is authorized (a present device), else nothing. ``reject`` does what
  USBGuard's does (``UEventDeviceManager::sysfsApplyTarget``): 1 to the device's ``remove``,
  which deconfigures it and disables its port until it is unplugged (kernel commit 253e0572,
  "USB: add a 'remove hardware' sysfs attribute"); where that fails (a root hub has no upstream
  port to disable) the device is deauthorized instead.
- Screen lock: a device the rules would authorize that has a HID interface (class 03), plugged
  while a desk of this node is not ``in_use``, is held (left unauthorized, recorded) and decided
  when ``desk_unlocked`` finds every desk in use again. A keyboard nobody is sitting at is how a
  BadUSB stick types into an unattended workstation.
- Timed exceptions (``allow_exception``): a device matching ``vid:pid:serial`` or a port is
  authorized for N minutes whatever the rules say; at expiry the rules decide it again (so it is
  deauthorized unless they allow it). An exception is bound to the descriptors' hash of the
  device present at the grant (usb_exceptions says why): a clone is decided by the rules alone.
  The interfaces a ``block-interface`` rule leaves off stay off under an exception unless it
  says ``interfaces = "all"``: the supervisor allowed the device, not what the room's policy
  keeps off every device of its kind. Kept in memory only: a restart forgets them, and ``stop``
  ends them first so nothing stays authorized by an exception while the daemon is down.

Rule conditions (``if``): each decision of a rule set with conditions takes a
``ConditionContext`` made then (``conditions_now``: the UTC time of day, the devices whose target
is allow, a draw of the controller's random source). Nothing is remembered between decisions:
``rule-applied`` and ``rule-evaluated`` never hold in USBGuard 1.1's daemon (see
``policies.usbrules.conditions``), so a restart or a reload loses nothing. Present devices are
decided in USBGuard's enumeration order (``usbguard_order``), so that ``allowed-matches`` sees,
at start, the devices USBGuard would have decided before.

Every decision is recorded and published on ``usb/<host>/event`` through ``queue``; a sysfs write
that fails (EACCES, or ENOENT because the device went away) is logged and carried in the event's
``error``, and never raises. The exceptions in force are retained on ``usb/<host>/exceptions``
(``exceptions_topic``): the whole set at start (none, since a restart forgets them) and again
whenever one is granted or ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from sekisho.drivers.udev import read_device, usbguard_order
from sekisho.policies.events import Event, UsbDeviceAdded, UsbDeviceRemoved, UsbInterfaceAdded
from sekisho.policies.usbrules import ConditionContext, Device, RuleSet, Target

from .alarms import Alarms
from .config.usb import read_rules
from .errors import ConfigError
from .store.record import NewEvent, NewState
from .usb_devices import DeviceState, Inventory, Tracked, shown
from .usb_events import EXCEPTION_RULE, PRESENT_RULE, UNREADABLE_RULE, Action, Cause, Outcome, UsbEvents
from .usb_exceptions import ExceptionInterfaces, Exceptions, Match
from .usb_sysfs import DRIVERS_PROBE, Sysfs, UsbSysfs

log = logging.getLogger(__name__)

HOLD_STATES = frozenset({"vacant", "away", "locked", "unlocked"})
"""Desk states in which a new HID device is held: every state but ``in_use``. ``away`` and
``locked`` both mean a locked session with nobody typing; ``vacant`` means nobody is there;
``unlocked`` means a session unlocked without the holder's card (an alarm)."""

class PresentDevices(StrEnum):
    """``[usb] present_devices``: what start does with the devices already plugged."""

    APPLY = "apply"
    KEEP = "keep"


def desks_unattended(states: Iterable[str]) -> bool:
    """``desk_locked`` for a node's desks: is any of them in a state that holds new HID devices?"""
    return any(str(s) in HOLD_STATES for s in states)


def load_rules(path: str | Path | None, implicit_target: str = "block", folder: str | Path | None = None) -> RuleSet:
    """The rules as the controller uses them, from a rules file (``path``) and a rules folder read
    after it, as USBGuard reads its RuleFile and RuleFolder (``config.usb.read_rules``); a
    ``path`` that is a folder is read as the rules folder. Verdicts cite a file by its name, a
    folder's file as ``folder/name``. ``ConfigError`` names every unreadable file and broken line."""
    rules_file = Path(path) if path is not None else None
    rules_folder = Path(folder) if folder is not None else None
    if rules_file is not None and rules_folder is None and rules_file.is_dir():
        rules_file, rules_folder = None, rules_file
    if rules_file is None and rules_folder is None:
        raise ConfigError(["no USB rules: give a rules file, a rules folder, or both"])

    def cite(file: Path) -> str:
        return file.name if file == rules_file or file == rules_folder else f"{file.parent.name}/{file.name}"
    read = read_rules(rules_file, rules_folder, Target(implicit_target), cite)
    problems = [f"{file}: cannot read the USB rules: {exc.strerror or exc}" for file, exc in read.unreadable]
    if read.rules is None:
        raise ConfigError(problems + list(read.broken))
    return read.rules


def conditions_now(allowed: Iterable[Device], draw: Callable[[], float]) -> ConditionContext:
    """What the rules' conditions read at this moment: ``allowed``, the devices whose target is
    allow (``target_is_allow``); ``draw``, the source of ``random``."""
    # USBGuard's localtime is the UTC time of day (LocaltimeCondition::update: to_time_t(now) % 86400).
    return ConditionContext(int(time.time()) % 86400, tuple(allowed), draw)


def target_is_allow(state: DeviceState, authorized: str) -> bool:
    """Does USBGuard's device list give this device the target allow, for ``allowed-matches``?
    Allowed by a decision; or not decided by the rules (kept as found, or about to be decided for
    the first time) and authorized in sysfs, since ``DeviceBase`` takes a device's target from
    its ``authorized`` file when it is inserted, before its policy is applied."""
    return state is DeviceState.ALLOWED or (state in (DeviceState.KEPT, DeviceState.NEW) and authorized == "1")


class UsbController:
    """Decides each USB device of its ``Inventory`` by the rules, the hold and the ``Exceptions``
    in force; ``UsbSysfs`` carries the decisions out, ``UsbEvents`` records them."""

    def __init__(self, rules: RuleSet, *, topic: str, queue: Callable[[NewEvent | NewState], None],
                 exceptions_topic: str | None = None,
                 loop: asyncio.AbstractEventLoop, present_devices: str = "apply", hold_hid_while_locked: bool = True,
                 desk_locked: Callable[[], bool] = lambda: False, exception_max_minutes: float = 480.0,
                 alarms: Alarms | None = None, host: str = "usb",
                 sysfs: Sysfs | None = None, read: Callable[[str], UsbDeviceAdded] = read_device,
                 drivers_probe: str = DRIVERS_PROBE) -> None:
        try:
            self.present_devices = PresentDevices(present_devices)
        except ValueError:
            raise ValueError(f"present_devices must be one of {tuple(p.value for p in PresentDevices)}, "
                             f"not {present_devices!r}") from None
        self.rules = rules
        self.topic = topic
        self.events = UsbEvents(topic, queue, exceptions_topic)
        self.loop = loop
        self.hold_hid_while_locked = hold_hid_while_locked
        self.desk_locked = desk_locked
        self.sysfs = UsbSysfs(sysfs, drivers_probe)
        self.per_interface = any(p.rule.block_interfaces for p in rules.rules)
        """A rule blocks interfaces: new interfaces start unauthorized (``interface_authorized_default``
        0) and are authorized one by one, so no driver binds to a blocked one even for a moment."""
        self.inventory = Inventory(read)
        self.draw = random.Random().random
        """``random(p)``'s source (USBGuard's ``RandomStateCondition``: a random_device-seeded engine)."""
        self.exceptions = Exceptions(exception_max_minutes)
        self.alarms = alarms
        self.host = host
        """The <host> of usb/<host>/event: the usb_blocked alarm's source."""
        """``[usb] alarm_on_block``: raise usb_blocked for each device plugged in (or held while
        no desk was in use, and decided now) that the rules block or reject; not for one found
        at start, which every restart would raise again."""

    # ------------------------------------------------------------------------- lifecycle
    def start(self, present: Iterable[UsbDeviceAdded]) -> None:
        """Guard every bus, then decide every present device. Call it after the udev driver has
        started, so that a device plugged meanwhile is seen at least once (twice is harmless)."""
        devices = sorted(present, key=lambda e: usbguard_order(e.sys_path))
        for event in devices:
            if not event.parent_is_device:
                self.sysfs.guard_bus(event.sys_path, self.per_interface)
        for event in devices:
            self._added(event, Cause.PRESENT)
        self.events.in_force(self.exceptions.describe())

    def stop(self) -> None:
        """End every exception (its devices are decided by the rules again, and recorded)."""
        for exc in self.exceptions:
            self._expire(exc.id, "the daemon is stopping")

    # ------------------------------------------------------------------------- events
    def handle(self, event: Event) -> None:
        if isinstance(event, UsbDeviceAdded):
            if not event.parent_is_device and not event.present:
                self.sysfs.guard_bus(event.sys_path, self.per_interface)  # a new host controller (a dock's, a card's)
            self._added(event, Cause.PRESENT if event.present else Cause.PLUG)
        elif isinstance(event, UsbInterfaceAdded):
            tracked = self.inventory.devices.get(event.device_sys_path)
            if tracked is not None and tracked.plan is not None:
                blocked = tracked.interface_blocked(event.name, lambda: event.interface_type)
                self.sysfs.set_interfaces(tracked.event.sys_path, {event.name: not blocked})
        elif isinstance(event, UsbDeviceRemoved):
            tracked = self.inventory.remove(event.sys_path)
            self.exceptions.forget(event.sys_path)
            if tracked is not None:
                log.info("%s removed (%s)", tracked.event.port, tracked.state)

    def desk_unlocked(self) -> None:
        """A desk went back in use: decide the held devices if no desk holds them any more. Cheap
        when nothing is held, so the daemon may call it on every desk state change."""
        held = self.inventory.held
        if not held or self.desk_locked():
            return
        for path in sorted(held):
            tracked = self.inventory.devices.get(path)
            if tracked is not None:
                self._record(tracked, self._decide(tracked, Cause.UNLOCKED), Cause.UNLOCKED)
        held.clear()

    # ------------------------------------------------------------------------- exceptions
    def allow_exception(self, match: str | Match, minutes: float, actor: str,
                        interfaces: str = "rules") -> dict[str, Any]:
        """Authorize the device matching ``match`` (vid:pid:serial, or a port), present now, and
        the same device (same descriptors' hash) plugged again within ``minutes``, whatever the
        rules say. A ``Match`` without a hash is bound to the present device's; no such device,
        or two of different descriptors, is a ``SekishoError``. ``interfaces``: ``rules`` keeps
        a ``block-interface`` rule's blocks, ``all`` lifts them. ``minutes`` may be a fraction."""
        m, minutes, scope = self.exceptions.check(match, minutes, interfaces)
        if m.hash is None:
            m = self.exceptions.bind(m, self.inventory.devices.values())
        exc = self.exceptions.add(m, minutes, actor, scope)
        exc.timer = self.loop.call_later(minutes * 60, self._expire, exc.id, "expired")
        devices = self.inventory.devices
        targets = [t for t in devices.values() if m.matches(t)]
        self.events.exception_granted(exc, [t.payload() for t in targets])
        self.events.in_force(self.exceptions.describe())
        for tracked in targets:
            if tracked.state is not DeviceState.ALLOWED or (tracked.plan and scope is ExceptionInterfaces.ALL):
                self._record(tracked, self._decide(tracked, Cause.EXCEPTION), Cause.EXCEPTION)
        return {"exception": exc.id, "until": exc.until, "hash": m.hash, "interfaces": scope,
                "devices": sorted(devices[p].event.port for p in exc.devices if p in devices),
                "held": sorted(t.event.port for t in targets if t.state is DeviceState.HELD)}

    def clock_stepped(self, seconds: float) -> None:
        """The wall clock was set: each exception still ends when its minutes are up, which the
        clock now names ``seconds`` later; the exceptions in force are said again with it."""
        if len(self.exceptions):
            self.exceptions.shift(seconds)
            self.events.in_force(self.exceptions.describe())

    def _expire(self, exc_id: str, reason: str) -> None:
        exc = self.exceptions.pop(exc_id)
        if exc is None:
            return
        devices = self.inventory.devices
        affected = [devices[p] for p in sorted(exc.devices) if p in devices]
        log.info("exception %s (%s) ended: %s; %d device(s) decided again", exc.id, exc.match.text, reason,
                 len(affected))
        if not affected:
            self.events.exception_expired(exc, reason)
        for tracked in affected:
            tracked.exception = None
            self.events.exception_expired(exc, reason, tracked, self._decide(tracked, Cause.EXPIRY))
        self.events.in_force(self.exceptions.describe())

    # ------------------------------------------------------------------------- deciding
    def _added(self, event: UsbDeviceAdded, cause: Cause) -> None:
        tracked = self.inventory.track(event)
        if cause is Cause.PRESENT and (not event.parent_is_device or self.present_devices is PresentDevices.KEEP):
            tracked.state = DeviceState.KEPT
            if not event.parent_is_device:
                log.info("%s: root hub kept as found (authorized=%s)", event.port, event.authorized or "?")
                return
            authorized = event.authorized == "1"
            self._record(tracked, Outcome(Action.ALLOWED if authorized else Action.BLOCKED,
                                          Target.ALLOW if authorized else Target.BLOCK, PRESENT_RULE,
                                          "present at start, kept as found (present_devices = keep)"), cause)
            return
        self._record(tracked, self._decide(tracked, cause), cause)

    def _conditions(self) -> ConditionContext | None:
        """What the rules' conditions read now; None when no rule has any (the fast path)."""
        if not self.rules.conditional:
            return None
        return conditions_now((t.device for t in self.inventory.devices.values()
                               if t.device is not None and target_is_allow(t.state, t.event.authorized)), self.draw)

    def _decide(self, tracked: Tracked, cause: Cause) -> Outcome:
        """Decide one device and carry it out; returns what to record."""
        path = tracked.event.sys_path
        self.inventory.held.discard(path)
        if tracked.device is None:
            tracked.state, tracked.plan = DeviceState.BLOCKED, None
            return Outcome(Action.BLOCKED, Target.BLOCK, UNREADABLE_RULE,
                           f"cannot be decided: {shown(tracked.problem)}", error=self.sysfs.set_authorized(path, False))
        verdict = tracked.verdict = self.rules.first_match(tracked.device, self._conditions())
        exc = self.exceptions.for_device(tracked)
        # An exception matters where the rules would not authorize the device, and where they
        # leave interfaces off only when it lifts those blocks too.
        by_exception = exc is not None and (verdict.decision is not Target.ALLOW or (
            bool(verdict.blocked_interfaces) and exc.interfaces is ExceptionInterfaces.ALL))
        rule = EXCEPTION_RULE if by_exception else verdict.rule
        exc_info = exc.describe() if by_exception and exc is not None else None
        if by_exception or verdict.decision is Target.ALLOW:
            if (cause is not Cause.PRESENT and tracked.state is not DeviceState.ALLOWED and self.hold_hid_while_locked
                    and tracked.has_hid() and self.desk_locked()):
                tracked.state, tracked.plan = DeviceState.HELD, None
                self.inventory.held.add(path)
                return Outcome(Action.BLOCKED, verdict.decision, rule,
                               "held: a HID device plugged while no one is at the desk; decided when a desk is in use",
                               held=True, exception=exc_info, error=self.sysfs.set_authorized(path, False))
            blocked = () if by_exception else verdict.blocked_interfaces
            error = self.sysfs.set_authorized(path, True)
            if error:
                tracked.state, tracked.plan = DeviceState.BLOCKED, None
                return Outcome(Action.BLOCKED, Target.ALLOW, rule, "allowed, but could not be authorized",
                               exception=exc_info, error=error)
            tracked.state, tracked.plan = DeviceState.ALLOWED, frozenset(blocked)
            tracked.exception = exc.id if by_exception and exc is not None else None
            if by_exception and exc is not None:
                exc.devices.add(path)
            errors = self._apply_interfaces(tracked)
            return Outcome(Action.ALLOWED, Target.ALLOW, rule, "allowed by a timed exception" if by_exception else "",
                           blocked_interfaces=blocked, exception=exc_info, error="; ".join(errors) or None)
        tracked.plan = None
        if verdict.decision is Target.REJECT:
            tracked.state = DeviceState.REJECTED
            return self._reject(tracked, rule)
        tracked.state = DeviceState.BLOCKED
        return Outcome(Action.BLOCKED, Target.BLOCK, rule, verdict.reason, error=self.sysfs.set_authorized(path, False))

    def _reject(self, tracked: Tracked, rule: str) -> Outcome:
        path = tracked.event.sys_path
        error = self.sysfs.remove(path)
        if error is None:
            return Outcome(Action.BLOCKED, Target.REJECT, rule, "rejected: removed from the bus until it is replugged")
        fallback = self.sysfs.set_authorized(path, False)
        reason = f"rejected; {error}, so deauthorized instead"
        log.warning("%s: %s", tracked.event.port, reason)
        return Outcome(Action.BLOCKED, Target.REJECT, rule, reason, error=fallback)

    def _apply_interfaces(self, tracked: Tracked) -> list[str]:
        path = tracked.event.sys_path
        names, error = self.sysfs.interfaces(path, tracked.event.port)
        if error is not None:
            return [error]
        return self.sysfs.set_interfaces(path, {
            name: not tracked.interface_blocked(name, functools.partial(self.sysfs.interface_type, path, name))
            for name in names})

    # ------------------------------------------------------------------------- records and views
    def _record(self, tracked: Tracked, outcome: Outcome, cause: Cause) -> None:
        tracked.blocked_at = self.loop.time() if outcome.blocked_by_rules and tracked.device is not None else None
        self.events.decided(tracked, outcome, cause)
        if self.alarms and cause in (Cause.PLUG, Cause.UNLOCKED) and outcome.action is Action.BLOCKED \
                and not outcome.held:
            device = tracked.payload()
            ids = ":".join(str(device[k] or "?") for k in ("vid", "pid"))
            # One alarm per USB host (its topic's <host>), raised again by each device blocked.
            self.alarms.raise_("usb_blocked", self.host, "warning", incident=True,
                               device=" ".join(x for x in (ids, device["name"]) if x), port=device["port"],
                               rule=outcome.rule, decision=outcome.decision.value)

    def status(self) -> dict[str, Any]:
        """What the control op ``usb.list`` answers: every device the controller knows, and the
        exceptions in force."""
        return {"devices": self.inventory.status(), "exceptions": self.exceptions.describe(),
                "per_interface": self.per_interface}


__all__ = ["HOLD_STATES", "PresentDevices", "UsbController", "desks_unattended", "load_rules"]
