"""USB decisions carried out in sysfs: the only module that writes a USB device's attributes.

The kernel does the enforcing (Documentation/usb/authorization.rst): a device whose
``authorized`` is 0 has no configuration and no interfaces, so no driver can touch it. This module
knows how to say so and nothing about why; ``usb.UsbController`` decides, then asks for:

- ``guard_bus``: ``authorized_default`` 0 on a root hub, so a new device behind it starts
  unauthorized; ``interface_authorized_default`` 0 as well where a rule blocks interfaces (else 1),
  so no driver binds to a blocked interface even for a moment.
- ``set_authorized``: the device's ``authorized``, written only when it differs.
- ``set_interfaces``: each interface's own ``authorized``, then every interface just authorized
  written to /sys/bus/usb/drivers_probe, since the kernel does not probe an interface authorized
  after the fact (sysfs-bus-usb, ``INTERFACE/authorized``). All are authorized before any is
  probed: a driver that claims several interfaces then finds them all.
- ``remove``: 1 to the device's ``remove``, which deconfigures it and disables its port until it
  is unplugged (kernel commit 253e0572, "USB: add a 'remove hardware' sysfs attribute"), as
  USBGuard's ``UEventDeviceManager::sysfsApplyTarget`` does for ``reject``.

Failure model: nothing here raises for a write the kernel refuses. A failed write (EACCES;
ENOENT or ENODEV because the device went away or the kernel has no such attribute) is logged and
returned as text, which the controller carries in the event it records. A kernel without
per-interface authorization (before 4.2) has no interface ``authorized``: leaving an interface
authorized there is no write at all, not an error.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping

from sekisho.drivers.udev import read_interface

log = logging.getLogger(__name__)

DRIVERS_PROBE = "/sys/bus/usb/drivers_probe"


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


class UsbSysfs:
    """The writes of USB authorization, each answering its error as text (or None)."""

    def __init__(self, sysfs: Sysfs | None = None, drivers_probe: str = DRIVERS_PROBE) -> None:
        self.sysfs = sysfs or Sysfs()
        self.drivers_probe = drivers_probe

    def guard_bus(self, root_hub: str, per_interface: bool) -> None:
        """New devices behind the root hub at sys path ``root_hub`` start unauthorized; with
        ``per_interface``, so do new interfaces. A failure is only logged: the kernel parameter
        and the udev rule are the guard that does not depend on the daemon (docs/usb.md)."""
        wanted = {"authorized_default": "0", "interface_authorized_default": "0" if per_interface else "1"}
        for name, value in wanted.items():
            path = f"{root_hub}/{name}"
            current = self.sysfs.read(path)
            if current is None and name == "interface_authorized_default" and value == "1":
                continue  # a kernel before 4.2 has no per-interface authorization and needs none here
            if current != value:
                self._write(path, value)

    def set_authorized(self, sys_path: str, authorized: bool) -> str | None:
        value = "1" if authorized else "0"
        path = f"{sys_path}/authorized"
        if self.sysfs.read(path) == value:
            return None
        return self._write(path, value)

    def remove(self, sys_path: str) -> str | None:
        """Remove the device from the bus; the error as text. Not logged here: where it fails (a
        root hub has no upstream port to disable) the caller deauthorizes instead and says so."""
        path = f"{sys_path}/remove"
        try:
            self.sysfs.write(path, "1")
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        return None

    def interfaces(self, sys_path: str, port: str) -> tuple[list[str], str | None]:
        """The device's interface directories (``<port>:<cfg>.<num>``), sorted, or the error."""
        prefix = port + ":"
        try:
            return sorted(n for n in os.listdir(sys_path) if n.startswith(prefix)), None
        except OSError as exc:
            return [], f"{sys_path}: {exc.strerror or exc}"

    @staticmethod
    def interface_type(sys_path: str, name: str) -> str:
        """An interface's ``cc:ss:pp`` as sysfs shows it (its active setting), read as the udev
        driver reports a new interface's; empty when it cannot be read."""
        return read_interface(f"{sys_path}/{name}").interface_type

    def set_interfaces(self, sys_path: str, wanted: Mapping[str, bool]) -> list[str]:
        """Make each named interface's ``authorized`` what ``wanted`` says, then probe the ones
        just authorized. Returns the errors."""
        errors: list[str] = []
        probe: list[str] = []
        for name, authorized in wanted.items():
            want = "1" if authorized else "0"
            path = f"{sys_path}/{name}/authorized"
            current = self.sysfs.read(path)
            if current == want or (current is None and authorized):
                continue  # nothing to do, or a kernel without interface authorization
            error = self._write(path, want)
            if error is not None:
                errors.append(error)
                continue
            log.info("interface %s %s", name, "authorized" if authorized else "blocked")
            if authorized:
                probe.append(name)
        for name in probe:
            self._write(self.drivers_probe, name)
        return errors

    def _write(self, path: str, value: str) -> str | None:
        try:
            self.sysfs.write(path, value)
        except OSError as exc:
            gone = exc.errno in (errno.ENOENT, errno.ENODEV)
            text = f"{path}: {exc.strerror or exc}" + (
                " (the device went away, or this kernel has no such attribute)" if gone else "")
            (log.warning if gone else log.error)("cannot write %s to %s", value, text)
            return text
        return None


__all__ = ["DRIVERS_PROBE", "Sysfs", "UsbSysfs"]
