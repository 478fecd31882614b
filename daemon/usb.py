"""The USB controller: decides every USB device by the rules and carries the decision out in sysfs.

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
  deauthorized unless they allow it). An exception is bound to the descriptors of the device it
  was granted for: the device must be present at the grant, its hash (USBGuard's, over name,
  ids, serial and descriptors) is recorded, and a device that matches the text but not the hash
  (a clone that copies the serial, another device put into the port) is decided by the rules
  alone. Text without a hash would let any device that claims the serial in. The interfaces a
  ``block-interface`` rule leaves off stay off under an exception unless it says
  ``interfaces = "all"``: the supervisor allowed the device, not what the room's policy keeps
  off every device of its kind. Kept in memory only: a restart forgets them, and ``stop`` ends
  them first so nothing stays authorized by an exception while the daemon is down.

Every decision is recorded and published on ``usb/<host>/event`` through ``queue``; a sysfs write
that fails (EACCES, or ENOENT because the device went away) is logged and carried in the event's
``error``, and never raises.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
import re
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from sekisho.drivers.udev import read_device
from sekisho.policies.events import Event, UsbDeviceAdded, UsbDeviceRemoved, UsbInterfaceAdded
from sekisho.policies.usbrules import (Device, RuleSet, RuleSyntaxError, Target, UsbVerdict, device_hash,
                                       interface_types, root_hub_parent_hash)

from .errors import ConfigError, SekishoError
from .store import NewEvent
from .timestamps import rfc3339

log = logging.getLogger(__name__)

PRESENT_DEVICES = ("apply", "keep")
HOLD_STATES = frozenset({"vacant", "away", "locked", "unlocked"})
"""Desk states in which a new HID device is held: every state but ``in_use``. ``away`` and
``locked`` both mean a locked session with nobody typing; ``vacant`` means nobody is there;
``unlocked`` means a session unlocked without the holder's card (an alarm)."""

# Rule names for decisions no rules-file line made (the rules' own is ``IMPLICIT``).
PRESENT_RULE = "PRESENT"
"""``present_devices = "keep"``: the device was left as found at start."""
EXCEPTION_RULE = "EXCEPTION"
"""Authorized by a supervisor's timed exception."""
UNREADABLE_RULE = "UNREADABLE"
"""The device's id or descriptors could not be read or parsed; it is blocked (fail-secure)."""

DRIVERS_PROBE = "/sys/bus/usb/drivers_probe"
_PORT = re.compile(r"^(usb[0-9]+|[0-9]+-[0-9]+(\.[0-9]+)*)$")
_ID_SERIAL = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4}):(.*)$", re.DOTALL)
EXCEPTION_INTERFACES = ("rules", "all")
"""What an exception does to the interfaces a ``block-interface`` rule blocks: ``rules`` keeps
them blocked (the default), ``all`` authorizes them too."""


def desks_unattended(states: Iterable[str]) -> bool:
    """``desk_locked`` for a node's desks: is any of them in a state that holds new HID devices?"""
    return any(str(s) in HOLD_STATES for s in states)


def load_rules(path: str | Path, implicit_target: str = "block") -> RuleSet:
    """The rules file as the controller uses it; ``ConfigError`` names every broken line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the USB rules: {exc.strerror or exc}"]) from None
    try:
        return RuleSet.parse(text, path.name, Target(implicit_target))
    except RuleSyntaxError as exc:
        raise ConfigError(str(exc).split("\n")) from None


class Sysfs:
    """Attribute reads and writes the way sysfs wants them: a write never creates a file (an
    attribute that is not there is ENOENT, not a new file), one value per write."""

    def read(self, path: str) -> str | None:
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\0\n").decode("ascii", "replace")
        except OSError:
            return None

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def interface_slots(descriptors: bytes) -> dict[tuple[int, int], frozenset[str]]:
    """(bConfigurationValue, bInterfaceNumber) to the ``cc:ss:pp`` of every alternate setting
    of that interface: the kernel names the interface's sysfs directory ``<port>:<cfg>.<num>``,
    and an interface is blocked when any of its settings is, since a driver may switch to it."""
    slots: dict[tuple[int, int], set[str]] = {}
    pos, config = 0, 0
    while pos + 2 <= len(descriptors):
        length, kind = descriptors[pos], descriptors[pos + 1]
        if length < 2 or pos + length > len(descriptors):
            break
        if kind == 0x02 and length >= 6:
            config = descriptors[pos + 5]
        elif kind == 0x04 and length >= 8:
            d = descriptors[pos:pos + length]
            slots.setdefault((config, d[2]), set()).add(f"{d[5]:02x}:{d[6]:02x}:{d[7]:02x}")
        pos += length
    return {k: frozenset(v) for k, v in slots.items()}


def describe(event: UsbDeviceAdded, parent_hash: str) -> Device:
    """The rules' ``Device`` for what the driver read. ``ValueError`` (``DescriptorError`` is
    one) when the id or the descriptors are missing or malformed: USBGuard refuses such a device,
    and so does sekisho (it stays blocked)."""
    return Device(id=f"{event.vendor_id}:{event.product_id}", serial=event.serial, name=event.name,
                  hash=hash_of(event), parent_hash=parent_hash, via_port=event.port,
                  with_connect_type=event.connect_type, interfaces=interface_types(event.descriptors))


def hash_of(event: UsbDeviceAdded) -> str:
    return device_hash(name=event.name, vendor_id=event.vendor_id, product_id=event.product_id, serial=event.serial,
                       descriptors=event.descriptors)


def parent_hash_of(event: UsbDeviceAdded, lookup: Callable[[str], str]) -> str:
    """USBGuard's parent-hash: the parent hub's hash (``lookup(parent_sys_path)``), or for a root
    hub the hash of its controller's sysfs path. Empty when it cannot be known."""
    if event.parent_is_device:
        return lookup(event.parent_sys_path)
    try:
        return root_hub_parent_hash(event.devpath)
    except ValueError:
        return ""


def device_class(descriptors: bytes) -> str | None:
    """``bDeviceClass`` from the device descriptor, as two hex digits."""
    if len(descriptors) >= 18 and descriptors[1] == 0x01:
        return f"{descriptors[4]:02x}"
    return None


def has_hid(device: Device) -> bool:
    return any(i.startswith("03:") for i in device.interfaces)


@dataclass(frozen=True)
class Match:
    """What a timed exception allows: one device, named by id and serial or by its port, and
    known by its descriptors' hash."""

    text: str
    vendor: str | None = None
    product: str | None = None
    serial: str | None = None
    port: str | None = None
    hash: str | None = None
    """The descriptors' hash (USBGuard's) of the device approved: with it, only a device of these
    descriptors matches. Every exception has one (``UsbController.allow_exception`` records it)."""

    @classmethod
    def parse(cls, text: str) -> Match:
        text = str(text)
        if m := _ID_SERIAL.match(text):
            return cls(text, vendor=m[1].lower(), product=m[2].lower(), serial=m[3])
        if _PORT.match(text):
            return cls(text, port=text)
        raise SekishoError(f"cannot allow {text!r}: give vid:pid:serial (046d:c31c:ABC123; 046d:c31c: for a device "
                           "without a serial) or a port (1-2, 1-2.4; see: sekisho usb list)")

    def matches(self, event: UsbDeviceAdded) -> bool:
        if self.port is not None:
            named = event.port == self.port
        else:
            named = (event.vendor_id.lower(), event.product_id.lower(), event.serial) == \
                (self.vendor, self.product, self.serial)
        if not named or self.hash is None:
            return named
        try:
            return hash_of(event) == self.hash
        except ValueError:
            return False  # descriptors that cannot be read cannot be the approved ones


@dataclass
class UsbException:
    id: str
    match: Match
    minutes: float
    actor: str
    until: str
    """UTC, RFC 3339, for the record."""
    interfaces: str = "rules"
    """One of ``EXCEPTION_INTERFACES``."""
    timer: asyncio.TimerHandle | None = None
    devices: set[str] = field(default_factory=set)
    """sys paths of the devices authorized under it (and only because of it)."""

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "match": self.match.text, "hash": self.match.hash, "interfaces": self.interfaces,
                "minutes": self.minutes, "until": self.until, "actor": self.actor}


@dataclass
class Tracked:
    """A present device and what the controller did with it."""

    event: UsbDeviceAdded
    device: Device | None
    problem: str = ""
    """Why ``device`` is None."""
    state: str = "new"
    """new, allowed, blocked, rejected, held, kept (a root hub at start, or present_devices = keep)."""
    verdict: UsbVerdict | None = None
    plan: frozenset[str] | None = None
    """When authorized: the interface types to leave unauthorized. None: interfaces untouched."""
    exception: str | None = None
    slots: dict[tuple[int, int], frozenset[str]] = field(default_factory=dict)
    blocked_at: float | None = None
    """Loop time the rules last blocked it: a supervisor at a desk may allow it for a while."""



@dataclass(frozen=True)
class Outcome:
    action: str
    """``allowed`` or ``blocked``: what the device is now (the contract's word)."""
    decision: str
    """``allow``, ``block`` or ``reject``: what was decided (a held device: what the rules say)."""
    rule: str
    reason: str = ""
    held: bool = False
    blocked_interfaces: tuple[str, ...] = ()
    exception: dict[str, Any] | None = None
    error: str | None = None


class UsbController:
    def __init__(self, rules: RuleSet, *, topic: str, queue: Callable[[NewEvent], None],
                 loop: asyncio.AbstractEventLoop, present_devices: str = "apply", hold_hid_while_locked: bool = True,
                 desk_locked: Callable[[], bool] = lambda: False, exception_max_minutes: float = 480.0,
                 sysfs: Sysfs | None = None, read: Callable[[str], UsbDeviceAdded] = read_device,
                 drivers_probe: str = DRIVERS_PROBE) -> None:
        if present_devices not in PRESENT_DEVICES:
            raise ValueError(f"present_devices must be one of {PRESENT_DEVICES}, not {present_devices!r}")
        self.rules = rules
        self.topic = topic
        self.queue = queue
        self.loop = loop
        self.present_devices = present_devices
        self.hold_hid_while_locked = hold_hid_while_locked
        self.desk_locked = desk_locked
        self.exception_max_minutes = exception_max_minutes
        self.sysfs = sysfs or Sysfs()
        self.read = read
        self.drivers_probe = drivers_probe
        self.per_interface = any(p.rule.block_interfaces for p in rules.rules)
        """A rule blocks interfaces: new interfaces start unauthorized (``interface_authorized_default``
        0) and are authorized one by one, so no driver binds to a blocked one even for a moment."""
        self.devices: dict[str, Tracked] = {}
        self.held: set[str] = set()
        self.exceptions: dict[str, UsbException] = {}

    # ------------------------------------------------------------------------- lifecycle
    def start(self, present: Iterable[UsbDeviceAdded]) -> None:
        """Guard every bus, then decide every present device. Call it after the udev driver has
        started, so that a device plugged meanwhile is seen at least once (twice is harmless)."""
        devices = sorted(present, key=lambda e: (e.sys_path.count("/"), e.sys_path))
        for event in devices:
            if not event.parent_is_device:
                self._guard_bus(event)
        for event in devices:
            self._added(event, "present")

    def stop(self) -> None:
        """End every exception (its devices are decided by the rules again, and recorded)."""
        for exc_id in list(self.exceptions):
            self._expire(exc_id, "the daemon is stopping")

    # ------------------------------------------------------------------------- events
    def handle(self, event: Event) -> None:
        if isinstance(event, UsbDeviceAdded):
            if not event.parent_is_device and not event.present:
                self._guard_bus(event)  # a new host controller (a dock's, a card's)
            self._added(event, "present" if event.present else "plug")
        elif isinstance(event, UsbInterfaceAdded):
            tracked = self.devices.get(event.device_sys_path)
            if tracked is not None and tracked.plan is not None:
                authorized, _ = self._set_interface(tracked, event.name, event.interface_type)
                self._probe([event.name] if authorized else [])
        elif isinstance(event, UsbDeviceRemoved):
            tracked = self.devices.pop(event.sys_path, None)
            self.held.discard(event.sys_path)
            for exc in self.exceptions.values():
                exc.devices.discard(event.sys_path)
            if tracked is not None:
                log.info("%s removed (%s)", tracked.event.port, tracked.state)

    def desk_unlocked(self) -> None:
        """A desk went back in use: decide the held devices if no desk holds them any more. Cheap
        when nothing is held, so the daemon may call it on every desk state change."""
        if not self.held or self.desk_locked():
            return
        for path in sorted(self.held):
            tracked = self.devices.get(path)
            if tracked is not None:
                self._record(tracked, self._decide(tracked, "unlocked"), "unlocked")
        self.held.clear()

    # ------------------------------------------------------------------------- exceptions
    def allow_exception(self, match: str | Match, minutes: float, actor: str,
                        interfaces: str = "rules") -> dict[str, Any]:
        """Authorize the device matching ``match`` (vid:pid:serial, or a port), present now, and
        the same device (same descriptors' hash) plugged again within ``minutes``, whatever the
        rules say. A ``Match`` without a hash is bound to the present device's; no such device,
        or two of different descriptors, is a ``SekishoError``. ``interfaces``: ``rules`` keeps
        a ``block-interface`` rule's blocks, ``all`` lifts them. ``minutes`` may be a fraction."""
        m = match if isinstance(match, Match) else Match.parse(match)
        if interfaces not in EXCEPTION_INTERFACES:
            raise SekishoError(f"interfaces must be {' or '.join(EXCEPTION_INTERFACES)}, not {interfaces!r}")
        try:
            minutes = float(minutes)
        except (TypeError, ValueError):
            raise SekishoError(f"minutes must be a number, not {minutes!r}") from None
        if not 0 < minutes <= self.exception_max_minutes:
            raise SekishoError(f"minutes must be more than 0 and at most {self.exception_max_minutes:g} "
                               "([usb] exception_max_minutes)")
        if m.hash is None:
            m = self._bind(m)
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
        exc = UsbException(uuid.uuid4().hex[:12], m, minutes, actor,
                           rfc3339(until), interfaces)
        exc.timer = self.loop.call_later(minutes * 60, self._expire, exc.id, "expired")
        self.exceptions[exc.id] = exc
        targets = [t for t in self.devices.values() if m.matches(t.event)]
        log.info("exception %s: %s allowed for %g min by %s (%d present)", exc.id, m.text, minutes, actor,
                 len(targets))
        self._publish(self.device_payload(targets[0]) if len(targets) == 1 else self._match_payload(m),
                      Outcome("exception_granted", "allow", EXCEPTION_RULE, f"allowed for {minutes:g} min by {actor}",
                              exception=exc.describe()), "exception", actor)
        for tracked in targets:
            if tracked.state != "allowed" or (tracked.plan and interfaces == "all"):
                self._record(tracked, self._decide(tracked, "exception"), "exception")
        return {"exception": exc.id, "until": exc.until, "hash": m.hash, "interfaces": interfaces,
                "devices": sorted(self.devices[p].event.port for p in exc.devices if p in self.devices),
                "held": sorted(t.event.port for t in targets if t.state == "held")}

    def _bind(self, m: Match) -> Match:
        """``m`` bound to the descriptors of the one device present that it names."""
        named = [t for t in self.devices.values() if m.matches(t.event)]
        hashes = sorted({t.device.hash for t in named if t.device is not None})
        if not named:
            raise SekishoError(f"cannot allow {m.text}: no such device is present. Plug it in first: an exception "
                               "is bound to the descriptors of the device present when it is granted, so that no "
                               "other device can use it (see: sekisho usb list)")
        if not hashes:
            raise SekishoError(f"cannot allow {m.text}: its descriptors cannot be read ({named[0].problem}), so "
                               "nothing would tell it from another device")
        if len(hashes) > 1:
            ports = ", ".join(sorted(t.event.port for t in named))
            raise SekishoError(f"cannot allow {m.text}: it names {len(named)} devices of different descriptors "
                               f"(ports {ports}); name one by its port")
        return replace(m, hash=hashes[0])

    def _expire(self, exc_id: str, reason: str) -> None:
        exc = self.exceptions.pop(exc_id, None)
        if exc is None:
            return
        if exc.timer is not None:
            exc.timer.cancel()
        affected = [self.devices[p] for p in sorted(exc.devices) if p in self.devices]
        log.info("exception %s (%s) ended: %s; %d device(s) decided again", exc.id, exc.match.text, reason,
                 len(affected))
        if not affected:
            self._publish(self._match_payload(exc.match),
                          Outcome("exception_expired", "allow", EXCEPTION_RULE, reason, exception=exc.describe()),
                          "expiry")
        for tracked in affected:
            tracked.exception = None
            after = self._decide(tracked, "expiry")
            now = ("deauthorized" if after.action == "blocked" else f"still allowed by {after.rule}")
            self._publish(self.device_payload(tracked),
                          Outcome("exception_expired", after.decision, after.rule, f"{reason}; {now}",
                                  blocked_interfaces=after.blocked_interfaces, exception=exc.describe(),
                                  error=after.error), "expiry")

    def _exception_for(self, event: UsbDeviceAdded) -> UsbException | None:
        """The exception that grants the device most: with two in force, the device has what
        either gives it."""
        found = [e for e in self.exceptions.values() if e.match.matches(event)]
        return max(found, key=lambda e: e.interfaces == "all", default=None)

    # ------------------------------------------------------------------------- deciding
    def _added(self, event: UsbDeviceAdded, cause: str) -> None:
        before = self.devices.get(event.sys_path)
        tracked = self._track(event)
        if before is not None and before.device is not None and tracked.device is not None \
                and before.device.hash == tracked.device.hash:
            # The same device reported again (udevadm trigger): what it was decides whether it
            # is new to the hold, and an exception that authorized it still covers it.
            tracked.state, tracked.exception = before.state, before.exception
        self.devices[event.sys_path] = tracked
        self.held.discard(event.sys_path)
        if cause == "present" and (not event.parent_is_device or self.present_devices == "keep"):
            tracked.state = "kept"
            if not event.parent_is_device:
                log.info("%s: root hub kept as found (authorized=%s)", event.port, event.authorized or "?")
                return
            authorized = event.authorized == "1"
            self._record(tracked, Outcome("allowed" if authorized else "blocked", "allow" if authorized else "block",
                                          PRESENT_RULE, "present at start, kept as found (present_devices = keep)"),
                         cause)
            return
        self._record(tracked, self._decide(tracked, cause), cause)

    def _track(self, event: UsbDeviceAdded) -> Tracked:
        try:
            device = describe(event, parent_hash_of(event, self._hash_at))
        except ValueError as exc:
            return Tracked(event, None, problem=str(exc))
        return Tracked(event, device, slots=interface_slots(event.descriptors))

    def _hash_at(self, sys_path: str) -> str:
        known = self.devices.get(sys_path)
        if known is not None and known.device is not None:
            return known.device.hash
        try:
            return hash_of(self.read(sys_path))
        except ValueError:
            return ""

    def _decide(self, tracked: Tracked, cause: str) -> Outcome:
        """Decide one device and carry it out; returns what to record."""
        path = tracked.event.sys_path
        self.held.discard(path)
        if tracked.device is None:
            tracked.state, tracked.plan = "blocked", None
            return Outcome("blocked", "block", UNREADABLE_RULE, f"cannot be decided: {tracked.problem}",
                           error=self._set_authorized(tracked, "0"))
        verdict = tracked.verdict = self.rules.first_match(tracked.device)
        exc = self._exception_for(tracked.event)
        # An exception matters where the rules would not authorize the device, and where they
        # leave interfaces off only when it lifts those blocks too.
        by_exception = exc is not None and (verdict.decision is not Target.ALLOW or (
            bool(verdict.blocked_interfaces) and exc.interfaces == "all"))
        rule = EXCEPTION_RULE if by_exception else verdict.rule
        exc_info = exc.describe() if by_exception and exc is not None else None
        if by_exception or verdict.decision is Target.ALLOW:
            if (cause != "present" and tracked.state != "allowed" and self.hold_hid_while_locked
                    and has_hid(tracked.device) and self.desk_locked()):
                tracked.state, tracked.plan = "held", None
                self.held.add(path)
                return Outcome("blocked", verdict.decision.value, rule,
                               "held: a HID device plugged while no one is at the desk; decided when a desk is in use",
                               held=True, exception=exc_info, error=self._set_authorized(tracked, "0"))
            blocked = () if by_exception else verdict.blocked_interfaces
            error = self._set_authorized(tracked, "1")
            if error:
                tracked.state, tracked.plan = "blocked", None
                return Outcome("blocked", "allow", rule, "allowed, but could not be authorized", exception=exc_info,
                               error=error)
            tracked.state, tracked.plan = "allowed", frozenset(blocked)
            tracked.exception = exc.id if by_exception and exc is not None else None
            if by_exception and exc is not None:
                exc.devices.add(path)
            errors = self._apply_interfaces(tracked)
            return Outcome("allowed", "allow", rule, "allowed by a timed exception" if by_exception else "",
                           blocked_interfaces=blocked, exception=exc_info, error="; ".join(errors) or None)
        tracked.plan = None
        if verdict.decision is Target.REJECT:
            tracked.state = "rejected"
            return self._reject(tracked, rule)
        tracked.state = "blocked"
        return Outcome("blocked", "block", rule, error=self._set_authorized(tracked, "0"))

    def _reject(self, tracked: Tracked, rule: str) -> Outcome:
        path = tracked.event.sys_path
        try:
            self.sysfs.write(f"{path}/remove", "1")
        except OSError as exc:
            fallback = self._set_authorized(tracked, "0")
            reason = f"rejected; {path}/remove: {exc.strerror or exc}, so deauthorized instead"
            log.warning("%s: %s", tracked.event.port, reason)
            return Outcome("blocked", "reject", rule, reason, error=fallback)
        return Outcome("blocked", "reject", rule, "rejected: removed from the bus until it is replugged")

    # ------------------------------------------------------------------------- sysfs
    def _write(self, path: str, value: str) -> str | None:
        """Write one attribute; the error as text (logged) instead of an exception."""
        try:
            self.sysfs.write(path, value)
        except OSError as exc:
            gone = exc.errno in (errno.ENOENT, errno.ENODEV)
            text = f"{path}: {exc.strerror or exc}" + (
                " (the device went away, or this kernel has no such attribute)" if gone else "")
            (log.warning if gone else log.error)("cannot write %s to %s", value, text)
            return text
        return None

    def _set_authorized(self, tracked: Tracked, value: str) -> str | None:
        path = f"{tracked.event.sys_path}/authorized"
        if self.sysfs.read(path) == value:
            return None
        return self._write(path, value)

    def _guard_bus(self, root_hub: UsbDeviceAdded) -> None:
        """New devices on this bus start unauthorized; with per-interface rules, so do new
        interfaces. A failure is logged: the kernel parameter and the udev rule are the guard
        that does not depend on the daemon (docs/usb.md)."""
        wanted = {"authorized_default": "0", "interface_authorized_default": "0" if self.per_interface else "1"}
        for name, value in wanted.items():
            path = f"{root_hub.sys_path}/{name}"
            current = self.sysfs.read(path)
            if current is None and name == "interface_authorized_default" and value == "1":
                continue  # a kernel before 4.2 has no per-interface authorization and needs none here
            if current != value:
                self._write(path, value)

    def _apply_interfaces(self, tracked: Tracked) -> list[str]:
        prefix = tracked.event.port + ":"
        try:
            names = sorted(n for n in os.listdir(tracked.event.sys_path) if n.startswith(prefix))
        except OSError as exc:
            return [f"{tracked.event.sys_path}: {exc.strerror or exc}"]
        errors: list[str] = []
        probe = []
        for name in names:
            authorized, error = self._set_interface(tracked, name, None)
            if authorized:
                probe.append(name)
            if error:
                errors.append(error)
        self._probe(probe)
        return errors

    def _set_interface(self, tracked: Tracked, name: str, sysfs_type: str | None) -> tuple[bool, str | None]:
        """Make one interface's ``authorized`` match the plan. Returns whether it was just
        authorized (so its driver must be probed) and the write's error, if any."""
        want = "0" if self._interface_blocked(tracked, name, sysfs_type) else "1"
        path = f"{tracked.event.sys_path}/{name}/authorized"
        current = self.sysfs.read(path)
        if current == want or (current is None and want == "1"):
            return False, None  # nothing to do, or a kernel without interface authorization
        error = self._write(path, want)
        if error is None:
            log.info("%s: interface %s %s", tracked.event.port, name, "authorized" if want == "1" else "blocked")
        return error is None and want == "1", error

    def _interface_blocked(self, tracked: Tracked, name: str, sysfs_type: str | None) -> bool:
        if not tracked.plan:
            return False
        _, _, slot = name.rpartition(":")
        cfg, _, num = slot.partition(".")
        try:
            types = tracked.slots.get((int(cfg), int(num)))
        except ValueError:
            types = None
        if types:
            return bool(types & tracked.plan)
        if sysfs_type is None:
            parts = [self.sysfs.read(f"{tracked.event.sys_path}/{name}/{a}") or ""
                     for a in ("bInterfaceClass", "bInterfaceSubClass", "bInterfaceProtocol")]
            sysfs_type = ":".join(p.lower() for p in parts)
        return sysfs_type in tracked.plan

    def _probe(self, names: list[str]) -> None:
        # All wanted interfaces are authorized before any is probed: a driver that claims
        # several interfaces then finds them all (Documentation/usb/authorization.rst).
        for name in names:
            self._write(self.drivers_probe, name)

    # ------------------------------------------------------------------------- records
    def last_blocked(self) -> Tracked | None:
        """The device the rules blocked most recently that is still here and still blocked."""
        blocked = [t for t in self.devices.values() if t.blocked_at is not None and t.state == "blocked"]
        return max(blocked, key=lambda t: t.blocked_at or 0.0, default=None)

    def _record(self, tracked: Tracked, outcome: Outcome, cause: str) -> None:
        blocked = outcome.action == "blocked" and outcome.decision == "block" and not outcome.held
        tracked.blocked_at = self.loop.time() if blocked and tracked.device is not None else None
        e = tracked.event
        log.info("%s %s:%s %r: %s (%s, rule %s)%s", e.port, e.vendor_id, e.product_id, e.name, outcome.action,
                 outcome.decision, outcome.rule, f": {outcome.reason}" if outcome.reason else "")
        self._publish(self.device_payload(tracked), outcome, cause)

    def _publish(self, device: Mapping[str, Any], outcome: Outcome, cause: str, actor: str = "daemon") -> None:
        payload = {"action": outcome.action, "device": dict(device), "rule": outcome.rule,
                   "decision": outcome.decision, "reason": outcome.reason, "cause": cause, "held": outcome.held,
                   "blocked_interfaces": list(outcome.blocked_interfaces), "exception": outcome.exception,
                   "error": outcome.error}
        self.queue(NewEvent(kind="usb", topic=self.topic, payload=payload, actor=actor,
                            columns={"result": outcome.action, "reason": outcome.reason, "rule": outcome.rule}))

    @staticmethod
    def device_payload(tracked: Tracked) -> dict[str, Any]:
        e = tracked.event
        interfaces = list(tracked.device.interfaces) if tracked.device is not None else []
        return {"vid": e.vendor_id or None, "pid": e.product_id or None, "class": device_class(e.descriptors),
                "interfaces": interfaces, "name": e.name, "serial": e.serial, "port": e.port}

    @staticmethod
    def _match_payload(m: Match) -> dict[str, Any]:
        return {"vid": m.vendor, "pid": m.product, "class": None, "interfaces": [], "name": None, "serial": m.serial,
                "port": m.port}

    # ------------------------------------------------------------------------- views
    def status(self) -> dict[str, Any]:
        """What the control op ``usb.list`` answers: every device the controller knows, and the
        exceptions in force."""
        devices = []
        for path, t in sorted(self.devices.items(), key=lambda kv: (kv[0].count("/"), kv[0])):
            v = t.verdict
            devices.append({"sys_path": path, "port": t.event.port, "id": f"{t.event.vendor_id}:{t.event.product_id}",
                            "name": t.event.name, "serial": t.event.serial, "state": t.state,
                            "decision": v.decision.value if v else None, "rule": v.rule if v else None,
                            "exception": t.exception, "problem": t.problem or None})
        return {"devices": devices, "exceptions": [e.describe() for e in self.exceptions.values()],
                "per_interface": self.per_interface}


__all__ = ["DRIVERS_PROBE", "EXCEPTION_INTERFACES", "EXCEPTION_RULE", "HOLD_STATES", "Match", "Outcome", "PRESENT_DEVICES",
           "PRESENT_RULE", "Sysfs", "Tracked", "UNREADABLE_RULE", "UsbController", "UsbException", "describe",
           "desks_unattended", "device_class", "has_hid", "interface_slots", "load_rules", "parent_hash_of"]
