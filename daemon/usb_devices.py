"""What the USB controller knows of each device present (``Inventory``): the driver's report, the
rules' ``Device`` built from it, and the state the controller left it in.

A device's descriptors are parsed once, when it is tracked (``Tracked.of``): the hash, the
interface list, the interface slots and the device class all come from that one walk
(``policies.usbrules.parse_descriptors``). A device whose id or descriptors cannot be read or
parsed is still tracked, with ``device`` None and the reason in ``problem``: USBGuard refuses such
a device, and so does sekisho (the controller keeps it blocked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sekisho.policies.approval import on_ports
from sekisho.policies.events import UsbDeviceAdded
from sekisho.policies.usbrules import (
    Descriptors,
    Device,
    UsbVerdict,
    device_hash,
    parse_descriptors,
    root_hub_parent_hash,
)


class DeviceState(StrEnum):
    """What the controller did with a device it tracks (``usb.list`` shows it)."""

    NEW = "new"
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    HELD = "held"
    """Allowed by the rules, left unauthorized until a desk is in use again."""
    KEPT = "kept"
    """Left as found at start: a root hub, or every device with ``present_devices = "keep"``."""


def shown(text: str) -> str:
    """A device's string as events and answers carry it: each byte that is not UTF-8, and NUL,
    written ``\\xHH`` (as a rules file writes it), a backslash doubled, any other text as it is.
    One device string, one shown string: an exception typed from ``usb list`` by serial names
    the device whose serial is the byte 0xff, not one whose serial is the text ``\\xff``."""
    doubled = text.replace("\\", "\\\\")
    return doubled.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\0", "\\x00")


def describe(event: UsbDeviceAdded, parent_hash: str) -> Device:
    """The rules' ``Device`` for what the driver read. ``ValueError`` (``DescriptorError`` is
    one) when the id or the descriptors are missing or malformed."""
    return _device(event, parse_descriptors(event.descriptors), parent_hash)


def _device(event: UsbDeviceAdded, parsed: Descriptors, parent_hash: str) -> Device:
    return Device(id=f"{event.vendor_id}:{event.product_id}", serial=event.serial, name=event.name,
                  hash=_hash(event, parsed), parent_hash=parent_hash, via_port=event.port,
                  with_connect_type=event.connect_type, interfaces=parsed.interfaces)


def hash_of(event: UsbDeviceAdded) -> str:
    return _hash(event, parse_descriptors(event.descriptors))


def _hash(event: UsbDeviceAdded, parsed: Descriptors) -> str:
    return device_hash(name=event.name, vendor_id=event.vendor_id, product_id=event.product_id, serial=event.serial,
                       descriptors=parsed)


def parent_hash_of(event: UsbDeviceAdded, lookup: Callable[[str], str]) -> str:
    """USBGuard's parent-hash: the parent hub's hash (``lookup(parent_sys_path)``), or for a root
    hub the hash of its controller's sysfs path. Empty when it cannot be known."""
    if event.parent_is_device:
        return lookup(event.parent_sys_path)
    try:
        return root_hub_parent_hash(event.devpath)
    except ValueError:
        return ""


@dataclass
class Tracked:
    """A present device and what the controller did with it."""

    event: UsbDeviceAdded
    device: Device | None
    problem: str = ""
    """Why ``device`` is None."""
    state: DeviceState = DeviceState.NEW
    verdict: UsbVerdict | None = None
    plan: frozenset[str] | None = None
    """When authorized: the interface types to leave unauthorized. None: interfaces untouched."""
    exception: str | None = None
    descriptors: Descriptors | None = None
    """Parsed once, when it was tracked; None when they do not parse."""
    blocked_at: float | None = None
    """Loop time the rules last blocked it: a supervisor at a desk may allow it for a while."""

    @classmethod
    def of(cls, event: UsbDeviceAdded, parent_hash: Callable[[str], str]) -> Tracked:
        """``event`` described, with its parent's hash from ``parent_hash(parent_sys_path)``."""
        try:
            parsed = parse_descriptors(event.descriptors)
        except ValueError as exc:
            return cls(event, None, problem=str(exc))
        try:
            device = _device(event, parsed, parent_hash_of(event, parent_hash))
        except ValueError as exc:  # no id: the descriptors still tell the device's class
            return cls(event, None, problem=str(exc), descriptors=parsed)
        return cls(event, device, descriptors=parsed)

    @property
    def hash(self) -> str | None:
        return self.device.hash if self.device is not None else None

    def has_hid(self) -> bool:
        return self.device is not None and any(i.startswith("03:") for i in self.device.interfaces)

    def interface_blocked(self, name: str, sysfs_type: Callable[[], str]) -> bool:
        """Does the plan block the interface whose sysfs directory is ``name``? By its slot's
        settings in the descriptors; for an interface they do not list, by ``sysfs_type()``."""
        if not self.plan:
            return False
        _, _, slot = name.rpartition(":")
        cfg, _, num = slot.partition(".")
        slots = self.descriptors.slots if self.descriptors is not None else {}
        try:
            types = slots.get((int(cfg), int(num)))
        except ValueError:
            types = None
        if types:
            return bool(types & self.plan)
        return sysfs_type() in self.plan

    def payload(self) -> dict[str, Any]:
        """The event's ``device`` object (docs/mqtt.md)."""
        e = self.event
        return {"vid": shown(e.vendor_id) or None, "pid": shown(e.product_id) or None,
                "class": self.descriptors.device_class if self.descriptors is not None else None,
                "interfaces": list(self.device.interfaces) if self.device is not None else [], "name": shown(e.name),
                "serial": shown(e.serial), "port": shown(e.port)}

    def status(self) -> dict[str, Any]:
        """The device as ``usb.list`` answers it."""
        e, v = self.event, self.verdict
        return {"sys_path": shown(e.sys_path), "port": shown(e.port), "id": shown(f"{e.vendor_id}:{e.product_id}"),
                "name": shown(e.name), "serial": shown(e.serial), "state": self.state,
                "decision": v.decision.value if v else None, "rule": v.rule if v else None,
                "exception": self.exception, "problem": shown(self.problem) or None}


class Inventory:
    """The USB devices present, by sys path, and which of them are held until a desk is in use."""

    def __init__(self, read: Callable[[str], UsbDeviceAdded]) -> None:
        self.devices: dict[str, Tracked] = {}
        self.held: set[str] = set()
        self.read = read
        """Reads a device the inventory does not know (a hub present before its children)."""

    def track(self, event: UsbDeviceAdded) -> Tracked:
        """``event`` described and tracked in place of what its sys path held, not held."""
        before = self.devices.get(event.sys_path)
        tracked = Tracked.of(event, self._hash_at)
        if before is not None and before.hash is not None and before.hash == tracked.hash:
            # The same device reported again (udevadm trigger): what it was decides whether it
            # is new to the hold, and an exception that authorized it still covers it.
            tracked.state, tracked.exception = before.state, before.exception
        self.devices[event.sys_path] = tracked
        self.held.discard(event.sys_path)
        return tracked

    def remove(self, sys_path: str) -> Tracked | None:
        self.held.discard(sys_path)
        return self.devices.pop(sys_path, None)

    def _hash_at(self, sys_path: str) -> str:
        known = self.devices.get(sys_path)
        if known is not None and known.hash is not None:
            return known.hash
        try:
            return hash_of(self.read(sys_path))
        except ValueError:
            return ""

    def last_blocked(self, ports: tuple[str, ...] = ()) -> Tracked | None:
        """The device the rules blocked most recently that is still here and still blocked, on one
        of ``ports`` or a hub behind one (a desk's own ports); on any port when ``ports`` is empty."""
        blocked = [t for t in self.devices.values() if t.blocked_at is not None and t.state is DeviceState.BLOCKED
                   and (not ports or on_ports(t.event.port, ports))]
        return max(blocked, key=lambda t: t.blocked_at or 0.0, default=None)

    def still_blocked(self, sys_path: str) -> Tracked | None:
        """The device at ``sys_path`` if it is still here, still blocked and readable (so it has a
        descriptors' hash an approval can be bound to); None otherwise."""
        tracked = self.devices.get(sys_path)
        if tracked is None or tracked.state is not DeviceState.BLOCKED or tracked.hash is None:
            return None
        return tracked

    def payload(self, sys_path: str) -> dict[str, Any] | None:
        """The ``device`` object of an event about the device at ``sys_path``; None when it is gone."""
        tracked = self.devices.get(sys_path)
        return tracked.payload() if tracked is not None else None

    def status(self) -> list[dict[str, Any]]:
        """Every device, parents first, as ``usb.list`` answers it."""
        return [t.status() for _, t in sorted(self.devices.items(), key=lambda kv: (kv[0].count("/"), kv[0]))]


__all__ = ["DeviceState", "Inventory", "Tracked", "describe", "hash_of", "parent_hash_of", "shown"]
