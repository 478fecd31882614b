"""``UsbSysfs`` in process, against a umockdev testbed: each write it promises, the writes it must
not make, and its errors as text, with no driver, controller or rules.

Run under umockdev's preload (``umockdev-wrapper``; the ``testbed`` fixture fails without it), so
the writes go to the testbed's sysfs, never the machine's. ``usbfake.Kernel`` builds the devices;
no monitor is listening, so its uevents need no settling.
"""

from __future__ import annotations

import os

import pytest

from sekisho.daemon.usb_sysfs import DRIVERS_PROBE, Sysfs, UsbSysfs
from usbfake import Kernel, Spec, read

HEADSET = Spec("1-4", 0x0B0E, 0x24C8, ("01:01:00", "01:02:00", "ff:00:00"), name="Jabra Evolve")


class Recording(Sysfs):
    """Sysfs that keeps every write, in order."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def write(self, path: str, value: str) -> None:
        super().write(path, value)
        self.writes.append((path, value))


@pytest.fixture
def kernel(testbed):
    k = Kernel(testbed)
    yield k
    k.tb = None  # so that the fixture's collection really finalizes the testbed


def test_authorized_is_written_only_when_it_differs(kernel):
    kernel.root_hub()
    path = kernel.plug(HEADSET)
    sysfs = Recording()
    usb = UsbSysfs(sysfs)
    assert usb.set_authorized(path, True) is None and read(f"{path}/authorized") == "1"
    assert usb.set_authorized(path, True) is None
    assert sysfs.writes == [(f"{path}/authorized", "1")]
    assert usb.set_authorized(path, False) is None and read(f"{path}/authorized") == "0"


def test_a_write_to_a_device_gone_is_an_error_text_not_an_exception(kernel):
    kernel.root_hub()
    path = kernel.plug(Spec("1-1", 0x046D, 0xC31C, ("03:01:01",), authorized_attr=False))
    error = UsbSysfs().set_authorized(path, True)
    assert error is not None and error.startswith(f"{path}/authorized: ") and "went away" in error
    assert not os.path.exists(os.path.join(kernel.tb.get_root_dir(), path.lstrip("/"), "authorized"))  # not created


@pytest.mark.parametrize("per_interface, interface_default", [(True, "0"), (False, "1")])
def test_guard_bus_closes_the_root_hub(kernel, per_interface, interface_default):
    hub = kernel.root_hub(authorized_default="-1", interface_default="-1")
    UsbSysfs().guard_bus(hub, per_interface)
    assert read(f"{hub}/authorized_default") == "0"
    assert read(f"{hub}/interface_authorized_default") == interface_default


def unlink(kernel: Kernel, path: str) -> None:
    """Take an attribute away, in the testbed's own tree (the preload redirects reads and writes,
    not unlink)."""
    os.remove(os.path.join(kernel.tb.get_root_dir(), path.lstrip("/")))


def test_guard_bus_on_a_kernel_without_interface_authorization(kernel):
    hub = kernel.root_hub()
    unlink(kernel, f"{hub}/interface_authorized_default")
    sysfs = Recording()
    UsbSysfs(sysfs).guard_bus(hub, per_interface=False)
    assert sysfs.writes == [(f"{hub}/authorized_default", "0")]


def test_interfaces_are_all_authorized_before_any_is_probed(kernel, testbed):
    kernel.root_hub()
    path = kernel.plug(HEADSET, authorized="1")
    kernel.configure("1-4", authorized="0")
    sysfs = Recording()
    usb = UsbSysfs(sysfs, drivers_probe=DRIVERS_PROBE)
    names, error = usb.interfaces(path, "1-4")
    assert (names, error) == (["1-4:1.0", "1-4:1.1", "1-4:1.2"], None)
    assert usb.interface_type(path, "1-4:1.2") == "ff:00:00"
    assert usb.set_interfaces(path, {"1-4:1.0": True, "1-4:1.1": True, "1-4:1.2": False}) == []
    assert sysfs.writes == [(f"{path}/1-4:1.0/authorized", "1"), (f"{path}/1-4:1.1/authorized", "1"),
                            (DRIVERS_PROBE, "1-4:1.0"), (DRIVERS_PROBE, "1-4:1.1")]
    assert [read(f"{path}/{n}/authorized") for n in names] == ["1", "1", "0"]
    sysfs.writes.clear()
    assert usb.set_interfaces(path, {"1-4:1.0": True, "1-4:1.2": False}) == []  # already so: no write, no probe
    assert sysfs.writes == []


def test_an_interface_without_authorized_is_left_alone_or_refused(kernel):
    kernel.root_hub()
    path = kernel.plug(HEADSET, authorized="1")
    kernel.configure("1-4", authorized="1")
    for name in ("1-4:1.0", "1-4:1.2"):
        unlink(kernel, f"{path}/{name}/authorized")  # a kernel before 4.2
    sysfs = Recording()
    errors = UsbSysfs(sysfs).set_interfaces(path, {"1-4:1.0": True, "1-4:1.2": False})
    assert sysfs.writes == []
    assert len(errors) == 1 and errors[0].startswith(f"{path}/1-4:1.2/authorized: ")


def test_listing_the_interfaces_of_a_device_gone(kernel):
    names, error = UsbSysfs().interfaces("/sys/devices/nowhere/1-9", "1-9")
    assert names == [] and error is not None and error.startswith("/sys/devices/nowhere/1-9: ")


def test_remove_writes_1_or_answers_why_not(kernel):
    kernel.root_hub()
    path = kernel.plug(HEADSET)
    old = kernel.plug(Spec("1-2", 0x0781, 0x5567, ("08:06:50",), remove_attr=False))
    usb = UsbSysfs()
    assert usb.remove(path) is None and read(f"{path}/remove") == "1"
    error = usb.remove(old)
    assert error is not None and error.startswith(f"{old}/remove: ")
