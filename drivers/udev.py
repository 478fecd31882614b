"""USB devices from udev: a pyudev netlink monitor joined to the asyncio loop, and the list of
devices present now.

The monitor's socket is watched with ``loop.add_reader``, so uevents are read on the loop's own
thread as soon as they arrive and no thread of ours sits between the kernel and the decision.
Each time the socket is readable every queued uevent is read: a monitor left undrained loses
events (and under umockdev's preload it aborts the process, see the testing notes).

What is reported is what sysfs says, read with plain ``open`` (``descriptors`` as bytes, since
pyudev's attribute access stops at the first NUL byte): ``UsbDeviceAdded``, ``UsbInterfaceAdded``
and ``UsbDeviceRemoved``. Nothing is decided here; the daemon's USB controller does that.

pyudev is imported in ``start`` only, so that config checking and the CLI's pure paths never load
it; ``read_device`` and ``enumerate_usb_devices`` need nothing but the file system.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sekisho.policies.events import UsbDeviceAdded, UsbDeviceRemoved, UsbInterfaceAdded
from sekisho.policies.usbrules import sysfs_text

from .base import DriverError, Emit
from .options import Option

log = logging.getLogger(__name__)

SYSFS = "/sys"
USB_DEVICES = "/sys/bus/usb/devices"
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        # ENOENT: an optional attribute (serial, product) or a device that vanished meanwhile;
        # either way the caller gets "" and decides with what it has.
        if exc.errno not in (errno.ENOENT, errno.ENODEV):
            log.warning("cannot read %s: %s", path, exc.strerror or exc)
        return None


def _text(path: str) -> str:
    raw = _read(path)
    return "" if raw is None else sysfs_text(raw)


def _devtype(sys_path: str) -> str:
    """DEVTYPE from the device's ``uevent`` file: ``usb_device``, ``usb_interface``, ..."""
    for line in _text(os.path.join(sys_path, "uevent")).splitlines():
        key, _, value = line.partition("=")
        if key == "DEVTYPE":
            return value
    return ""


def read_device(sys_path: str, *, source: str = "udev", present: bool = False) -> UsbDeviceAdded:
    """One USB device's sysfs attributes as a ``UsbDeviceAdded``. A missing attribute reads as
    empty (the decision then fails secure: a device without id or descriptors is blocked)."""
    sys_path = sys_path.rstrip("/")
    parent = os.path.dirname(sys_path)
    port = os.path.basename(sys_path)
    devtype = _devtype(parent)
    # A root hub (usbN) hangs off its host controller; any other USB device hangs off a hub.
    # The parent's uevent says which; the kernel's naming decides when it cannot be read.
    parent_is_device = devtype == "usb_device" if devtype else not port.startswith("usb")
    return UsbDeviceAdded(
        source=source, sys_path=sys_path,
        devpath=sys_path[len(SYSFS):] if sys_path.startswith(SYSFS + "/") else sys_path,
        port=port, vendor_id=_text(f"{sys_path}/idVendor"), product_id=_text(f"{sys_path}/idProduct"),
        serial=_text(f"{sys_path}/serial"), name=_text(f"{sys_path}/product"),
        descriptors=_read(f"{sys_path}/descriptors") or b"", connect_type=_text(f"{sys_path}/port/connect_type"),
        authorized=_text(f"{sys_path}/authorized"), parent_sys_path=parent, parent_is_device=parent_is_device,
        present=present)


def read_interface(sys_path: str, *, source: str = "udev") -> UsbInterfaceAdded:
    """One interface's ``cc:ss:pp``; empty when any part is missing or is not two hex digits (as
    the kernel writes it), so that nothing else is ever compared with a rule's types."""
    sys_path = sys_path.rstrip("/")
    parts = [_text(f"{sys_path}/{name}") for name in ("bInterfaceClass", "bInterfaceSubClass", "bInterfaceProtocol")]
    return UsbInterfaceAdded(source=source, sys_path=sys_path, device_sys_path=os.path.dirname(sys_path),
                             name=os.path.basename(sys_path),
                             interface_type=":".join(p.lower() for p in parts) if all(map(_HEX2.fullmatch, parts))
                             else "",
                             authorized=_text(f"{sys_path}/authorized"))


def is_usb_device(sys_path: str) -> bool:
    """A USB device rather than one of its interfaces (``1-2:1.0``) or a port."""
    devtype = _devtype(sys_path)
    return devtype == "usb_device" if devtype else ":" not in os.path.basename(sys_path)


def usbguard_order(sys_path: str) -> tuple[bool, int, str]:
    """The order USBGuard enumerates devices in (``UEventDeviceManager::ueventEnumerateComparePath``,
    src/Library/UEventDeviceManager.cpp): root hubs (``usbN``) first, then by the length of the
    sysfs name, then by the name, byte for byte. A hub's name is a prefix of its children's, so
    parents still come before their children (a hub's hash is its children's parent-hash), and
    ``usb generate`` lists the devices in the order ``usbguard generate-policy`` does."""
    name = os.path.basename(sys_path.rstrip("/"))
    return not name.startswith("usb"), len(name.encode("utf-8", "surrogateescape")), name


def enumerate_usb_devices(*, source: str = "udev", root: str = USB_DEVICES) -> list[UsbDeviceAdded]:
    """Every USB device present now, from /sys/bus/usb/devices, in ``usbguard_order``."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []  # no USB subsystem at all (a container, a machine without USB)
    paths = sorted({os.path.realpath(os.path.join(root, n)) for n in names}, key=usbguard_order)
    return [read_device(p, source=source, present=True) for p in paths if is_usb_device(p)]


class UdevUsb:
    """The USB monitor as a driver: ``start`` listens, ``stop`` stops; ``emit`` gets the events."""

    OPTIONS: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        self.name = name
        self.emit = emit
        self._monitor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        """uevents read so far (all of them, also those not reported): lets a test wait for a drain."""

    async def start(self) -> None:
        try:
            import pyudev
        except ImportError:
            raise DriverError("pyudev is not installed (pip install 'sekisho[udev]')") from None
        try:
            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("usb")
            monitor.start()
        except OSError as exc:
            raise DriverError(f"cannot listen to udev: {exc.strerror or exc}") from None
        self._monitor = monitor
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(monitor.fileno(), self._readable)

    async def stop(self) -> None:
        if self._monitor is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._monitor.fileno())
        self._monitor = None

    def _readable(self) -> None:
        monitor = self._monitor
        while monitor is not None and (device := monitor.poll(timeout=0)) is not None:
            self.received += 1
            try:
                event = self._event(device)
            except OSError as exc:
                log.error("uevent %s %s: %s", device.action, device.sys_path, exc)
                continue
            if event is not None:
                self.emit(event)
            monitor = self._monitor  # emit may have stopped the driver

    def _event(self, device: Any) -> UsbDeviceAdded | UsbInterfaceAdded | UsbDeviceRemoved | None:
        action, devtype = device.action, device.device_type
        if devtype == "usb_device":
            if action == "add":
                return read_device(device.sys_path, source=self.name)
            if action == "remove":
                return UsbDeviceRemoved(source=self.name, sys_path=device.sys_path)
        elif devtype == "usb_interface" and action == "add":
            return read_interface(device.sys_path, source=self.name)
        return None  # change, bind, unbind, interface removal: nothing to decide
