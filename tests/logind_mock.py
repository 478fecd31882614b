"""dbusmock's logind template on a private system bus, made to behave like logind where the
tests need it. Shared by the logind client's tests and the desk tests (the daemon as a process
inherits DBUS_SYSTEM_BUS_ADDRESS and talks to the same mock).

The template's ``AddSession`` makes sessions of Type ``test``, which no desktop has, so
``add_session`` sets the Type a real graphical login has (``wayland``) unless a test asks for
another. The template's ``Manager.LockSession`` only records the call (notes, pitfall 7).
``patch_lock`` makes it behave like logind with a prompt screen locker: emit ``Session.Lock`` on
the session, then set ``LockedHint`` with a ``PropertiesChanged`` signal, at once or after a
delay, for a graphical session (a text console has no locker). Unpatched, ``LockedHint`` stays
false: a locker that never locks.

Where the template differs from logind in what it signals, ``reset`` makes it behave like
logind for every test (org.freedesktop.login1(5)): a session is created whole and then
announced with ``Manager.SessionNew`` (the template emits nothing, and sets Type and Class only
after creation); ``TerminateSession`` and ``logout`` remove the session from its seat and emit
``SessionRemoved`` (the template's does nothing); ``switch_to`` moves the seat's foreground the
way a VT switch does, each change with its ``PropertiesChanged``. ``unlock_by_password`` is what
a screen locker does after the right password: ``SetLockedHint(false)`` on the session.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

# dbusmock and dbus-python come from Debian (python3-dbusmock, python3-dbus) through the venv's
# system site packages; without them this module fails to import, which fails the run.
import dbus
import dbusmock

from sekisho.daemon import logind_defs as ld
from sekisho.daemon.logind_sim import LOCK_LIKE_LOGIND, SESSION_PATH, TERMINATE_LIKE_LOGIND  # noqa: F401

TEST_IFACE = "org.sekisho.Test"
"""Helpers that run inside the mock, so that one change is complete before any reader sees it."""

# AddSession, then the properties logind would have from the start, then SessionNew; all in one
# call, so a listing triggered by the template's own seat signals sees the finished session.
LOGIN = """
sid, seat, uid, user, active, stype, sclass, locked = args
if active:
    for p, o in list(objects.items()):
        if '/session/' in p and o.Get('org.freedesktop.login1.Session', 'Seat')[0] == seat:
            o.UpdateProperties('org.freedesktop.login1.Session', {'Active': dbus.Boolean(False), 'State': 'online'})
path = self.AddSession(sid, seat, dbus.UInt32(uid), user, active)
s = objects[path]
s.props['org.freedesktop.login1.Session'].update({'Type': stype, 'Class': sclass, 'LockedHint': dbus.Boolean(locked)})
self.EmitSignal('org.freedesktop.login1.Manager', 'SessionNew', 'so', [sid, dbus.ObjectPath(path)])
ret = path
"""
SWITCH_TO = """
target = objects['/org/freedesktop/login1/session/' + args[0]]
seat_id, seat_path = target.Get('org.freedesktop.login1.Session', 'Seat')
for p, o in list(objects.items()):
    if '/session/' in p and o.Get('org.freedesktop.login1.Session', 'Seat')[0] == seat_id and o is not target:
        o.UpdateProperties('org.freedesktop.login1.Session', {'Active': dbus.Boolean(False), 'State': 'online'})
target.UpdateProperties('org.freedesktop.login1.Session', {'Active': dbus.Boolean(True), 'State': 'active'})
objects[seat_path].Set('org.freedesktop.login1.Seat', 'ActiveSession', (args[0], dbus.ObjectPath(target.path)))
"""


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
        self.patch(ld.TERMINATE_SESSION, "s", "", TERMINATE_LIKE_LOGIND)
        self._mock("AddMethod", TEST_IFACE, "Login", "ssusbssb", "s", LOGIN)
        self._mock("AddMethod", TEST_IFACE, "Logout", "s", "", TERMINATE_LIKE_LOGIND)
        self._mock("AddMethod", TEST_IFACE, "SwitchTo", "s", "", SWITCH_TO)

    def add_session(self, sid: str, seat: str = "seat0", uid: int = 1000, user: str = "alice", active: bool = True,
                    type: str = "wayland", session_class: str = "user", locked: bool = False) -> str:
        """A login: the session, whole, then ``SessionNew``. An active one takes the seat's
        foreground from the others, as logind does."""
        return str(self.obj.Login(sid, seat, dbus.UInt32(uid), user, active, type, session_class, locked,
                                  dbus_interface=TEST_IFACE))

    def logout(self, sid: str) -> None:
        self.obj.Logout(sid, dbus_interface=TEST_IFACE)

    def switch_to(self, sid: str) -> None:
        """A VT switch to ``sid``: it becomes active, the others on its seat inactive."""
        self.obj.SwitchTo(sid, dbus_interface=TEST_IFACE)

    def unlock_by_password(self, sid: str) -> None:
        """The screen locker after the right password: it clears ``LockedHint`` on the session."""
        self.bus.get_object(ld.BUS_NAME, SESSION_PATH + sid).SetLockedHint(False, dbus_interface=ld.SESSION_IFACE)

    def session_ids(self) -> list[str]:
        listed = self.obj.ListSessions(dbus_interface=ld.MANAGER_IFACE)
        return sorted(str(row[0]) for row in listed)

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
        mock = LogindMock(proc, obj, bus)
        mock.reset()  # the logind-like behaviours and the helpers, from the first use on
        yield mock
    finally:
        bus.close()
        proc.terminate()
        proc.wait()
        dbusmock.DBusTestCase.stop_dbus(dbusmock.DBusTestCase.system_bus_pid)
        if before is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before
