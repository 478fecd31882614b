"""USB devices for the umockdev tests and the bench: descriptors built from an interface list,
and a ``Kernel`` that plays the kernel's part in a umockdev testbed.

umockdev gives sysfs and uevents but no kernel: writing ``authorized`` changes a file and
nothing else. ``Kernel`` does, on request, what Linux would do next (Documentation/usb/
authorization.rst): after ``authorized`` 1 it creates the device's interfaces, each authorized
as the bus's ``interface_authorized_default`` says; after 0 it removes them; after ``remove`` 1
it removes the device. Tests call it explicitly, so each test shows the reaction it relies on.

Every add and remove sends a uevent that the driver under test must read before the next dozen
are sent (umockdev aborts the process at net.unix.max_dgram_qlen, 10 here), so ``Kernel`` counts
what it sent and ``settle`` (given by the test) runs the loop until the driver has read it all.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def descriptors(vid: int, pid: int, interfaces: Sequence[str], *, device_class: int = 0,
                bcd_device: int = 0x0100) -> bytes:
    """A device descriptor, one configuration (value 1), and one interface descriptor per
    ``cc:ss:pp``, numbered 0, 1, 2 ... in order, no endpoints: all USBGuard's parser needs."""
    body = b"".join(struct.pack("<BBBBBBBBB", 9, 4, n, 0, 0, *(int(p, 16) for p in t.split(":")), 0)
                    for n, t in enumerate(interfaces))
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), len(interfaces), 1, 0, 0x80, 50)
    device = struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, device_class, 0, 0, 64, vid, pid, bcd_device, 1, 2, 3, 1)
    return device + config + body


@dataclass
class Spec:
    """A USB device to plug: what sysfs will show."""

    port: str
    vid: int
    pid: int
    interfaces: tuple[str, ...] = ()
    name: str | None = None
    serial: str | None = None
    connect_type: str | None = None
    device_class: int = 0
    remove_attr: bool = True
    """Has a ``remove`` attribute (every non-root device on Linux since 2.6.33)."""
    authorized_attr: bool = True

    @property
    def descriptors(self) -> bytes:
        return descriptors(self.vid, self.pid, self.interfaces, device_class=self.device_class)


ROOT_HUB_DESCRIPTORS = bytes.fromhex(
    "12010002090001406B1D020015040302010109021900010100E0000904000001090000000705810304000C")


@dataclass
class Kernel:
    tb: object
    """The UMockdev.Testbed."""
    settle: Callable[[], None] = lambda: None
    sent: int = 0
    """uevents sent so far."""
    controller_path: str = ""
    root_hubs: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    """port -> sys path."""
    specs: dict[str, Spec] = field(default_factory=dict)

    def _sent(self) -> None:
        self.sent += 1
        self.settle()

    def controller(self) -> str:
        if not self.controller_path:
            # Created before any monitor exists, or drained like any other uevent.
            self.controller_path = self.tb.add_device("pci", "0000:00:14.0", None, ["vendor", "0x8086"],
                                                      ["PCI_SLOT_NAME", "0000:00:14.0"])
            self._sent()
        return self.controller_path

    def root_hub(self, name: str = "usb1", *, authorized_default: str = "-1", interface_default: str = "1") -> str:
        path = self.tb.add_device("usb", name, self.controller(), [
            "idVendor", "1d6b", "idProduct", "0002", "product", "xHCI Host Controller", "serial", "0000:00:14.0",
            "bDeviceClass", "09", "authorized", "1", "authorized_default", authorized_default,
            "interface_authorized_default", interface_default], ["DEVTYPE", "usb_device", "PRODUCT", "1d6b/2/515"])
        self.tb.set_attribute_binary(path, "descriptors", ROOT_HUB_DESCRIPTORS)
        self.root_hubs[name] = self.devices[name] = path
        self._sent()
        return path

    def parent_of(self, port: str) -> str:
        head, dot, _ = port.rpartition(".")
        if dot:
            return self.devices[head]
        return self.devices[f"usb{port.split('-')[0]}"]

    def plug(self, spec: Spec, *, authorized: str = "0", with_interfaces: bool = False) -> str:
        """The device appears (its ``add`` uevent), unauthorized as ``authorized_default`` 0
        leaves it; ``authorized="1"`` with ``with_interfaces`` makes a device that was already
        live (present at start)."""
        attrs = ["idVendor", f"{spec.vid:04x}", "idProduct", f"{spec.pid:04x}", "bDeviceClass",
                 f"{spec.device_class:02x}"]
        if spec.authorized_attr:
            attrs += ["authorized", authorized]
        if spec.remove_attr:
            attrs += ["remove", ""]
        for key, value in (("product", spec.name), ("serial", spec.serial), ("port/connect_type", spec.connect_type)):
            if value is not None:
                attrs += [key, value]
        parent = self.parent_of(spec.port)
        # The add uevent goes out inside add_device, before the binary descriptors are written;
        # the loop (and so the driver) runs only in settle(), after both.
        path = self.tb.add_device("usb", spec.port, parent, attrs,
                                  ["DEVTYPE", "usb_device", "PRODUCT", f"{spec.vid:x}/{spec.pid:x}/100"])
        self.tb.set_attribute_binary(path, "descriptors", spec.descriptors)
        self.devices[spec.port] = path
        self.specs[spec.port] = spec
        self._sent()
        if with_interfaces:
            self.configure(spec.port, authorized="1")
        return path

    def interface_names(self, port: str) -> list[str]:
        return [f"{port}:1.{n}" for n in range(len(self.specs[port].interfaces))]

    def configure(self, port: str, authorized: str | None = None) -> list[str]:
        """What the kernel does after ``authorized`` 1: the interfaces appear, authorized as the
        bus's ``interface_authorized_default`` says (or as given)."""
        path = self.devices[port]
        if authorized is None:
            root = self.root_hubs[f"usb{port.split('-')[0]}"]
            authorized = read(f"{root}/interface_authorized_default")
        made = []
        for n, interface in enumerate(self.specs[port].interfaces):
            cls, sub, proto = interface.split(":")
            made.append(self.tb.add_device("usb", f"{port}:1.{n}", path, [
                "bInterfaceClass", cls, "bInterfaceSubClass", sub, "bInterfaceProtocol", proto,
                "bInterfaceNumber", f"{n:02x}", "bAlternateSetting", "0", "authorized", authorized],
                ["DEVTYPE", "usb_interface", "INTERFACE", f"{int(cls, 16)}/{int(sub, 16)}/{int(proto, 16)}"]))
            self._sent()
        return made

    def unconfigure(self, port: str) -> None:
        """What the kernel does after ``authorized`` 0: the interfaces go (uevent first: a path
        already removed cannot send one)."""
        for name in self.interface_names(port):
            path = f"{self.devices[port]}/{name}"
            if os.path.isdir(path):
                self.tb.uevent(path, "remove")
                self._sent()
                self.tb.remove_device(path)

    def unplug(self, port: str) -> None:
        self.unconfigure(port)
        path = self.devices.pop(port)
        self.tb.uevent(path, "remove")
        self._sent()
        self.tb.remove_device(path)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()
