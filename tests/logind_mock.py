"""dbusmock's logind template on a private system bus, made to behave like logind where the
tests need it. Shared by the logind client's tests and the desk tests (the daemon as a process
inherits DBUS_SYSTEM_BUS_ADDRESS and talks to the same mock).

The template's ``AddSession`` makes sessions of Type ``test``, which no desktop has, so
``add_session`` sets the Type a real graphical login has (``wayland``) unless a test asks for
another. The template's ``Manager.LockSession`` only records the call (notes, pitfall 7).
``patch_lock`` makes it behave like logind with a prompt screen locker: emit ``Session.Lock`` on
the session, then set ``LockedHint`` with a ``PropertiesChanged`` signal, at once or after a
delay. Unpatched, ``LockedHint`` stays false: a locker that never locks.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, Iterator

# dbusmock and dbus-python come from Debian (python3-dbusmock, python3-dbus) through the venv's
# system site packages; without them this module fails to import, which fails the run.
import dbus
import dbusmock

from sekisho.daemon import logind_defs as ld

from sekisho.daemon.logind_sim import LOCK_LIKE_LOGIND, SESSION_PATH  # noqa: F401 - re-exported


class LogindMock:
    def __init__(self, proc: subprocess.Popen, obj: Any, bus: dbus.bus.BusConnection) -> None:
        self.proc = proc
        self.obj = obj
        self.bus = bus

    def _mock(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args, dbus_interface=dbusmock.MOCK_IFACE)

    def reset(self) -> None:
        self._mock("Reset")  # the template again, no sessions; the call log survives it
        self._mock("ClearCalls")

    def add_session(self, sid: str, seat: str = "seat0", uid: int = 1000, user: str = "alice", active: bool = True,
                    type: str = "wayland", session_class: str = "user", locked: bool = False) -> str:
        path = self._mock("AddSession", sid, seat, dbus.UInt32(uid), user, active)
        props = dbus.Interface(self.bus.get_object(ld.BUS_NAME, path), dbus.PROPERTIES_IFACE)
        props.Set(ld.SESSION_IFACE, ld.PROP_TYPE, type)
        props.Set(ld.SESSION_IFACE, ld.PROP_CLASS, session_class)
        if locked:
            self.bus.get_object(ld.BUS_NAME, path).SetLockedHint(True, dbus_interface=ld.SESSION_IFACE)
        return str(path)

    def patch(self, method: str, in_sig: str, out_sig: str, code: str) -> None:
        """Replace a Manager method until the next ``reset``."""
        self._mock("AddMethod", ld.MANAGER_IFACE, method, in_sig, out_sig, code)

    def patch_lock(self, delay_ms: int = 0) -> None:
        self.patch(ld.LOCK_SESSION, "s", "", LOCK_LIKE_LOGIND % {"delay_ms": delay_ms})

    def patch_error(self, method: str, in_sig: str, out_sig: str, error: str) -> None:
        self.patch(method, in_sig, out_sig,
                   f"raise dbus.exceptions.DBusException('refused by the test', name={error!r})")

    def calls(self, method: str, path: str = ld.MANAGER_PATH) -> list[list[str]]:
        """The arguments of each recorded call of ``method`` on ``path``, as strings."""
        obj = self.bus.get_object(ld.BUS_NAME, path)
        rows = obj.GetMethodCalls(method, dbus_interface=dbusmock.MOCK_IFACE)
        return [[str(a) for a in args] for _, args in rows]

    def locked_hint(self, sid: str) -> bool:
        props = dbus.Interface(self.bus.get_object(ld.BUS_NAME, SESSION_PATH + sid), dbus.PROPERTIES_IFACE)
        return bool(props.Get(ld.SESSION_IFACE, ld.PROP_LOCKED_HINT))





def start_logind() -> Iterator[LogindMock]:
    """A private system bus with the mock on it, for as long as the generator is open."""
    before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    dbusmock.DBusTestCase.start_system_bus()  # sets DBUS_SYSTEM_BUS_ADDRESS for this process
    proc, obj = dbusmock.DBusTestCase.spawn_server_template("logind", {}, stdout=subprocess.DEVNULL)
    bus = dbusmock.DBusTestCase.get_dbus(system_bus=True)
    try:
        yield LogindMock(proc, obj, bus)
    finally:
        bus.close()
        proc.terminate()
        proc.wait()
        dbusmock.DBusTestCase.stop_dbus(dbusmock.DBusTestCase.system_bus_pid)
        if before is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before
