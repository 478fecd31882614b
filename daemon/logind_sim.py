"""A simulated logind for ``sekisho demo``: a private system bus with python-dbusmock's logind
template, one graphical session, and LockSession/UnlockSession/TerminateSession that behave like
logind with a screen locker (the template's own only record the call): a graphical session's
locker sets ``LockedHint``, a text console has none, and a terminated session is removed with
``SessionRemoved``.

The demo must never lock the desktop of the person trying it, so it talks to this bus, not to
the machine's. The tests use the same patch (tests/logind_mock.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .errors import Unavailable

SESSION_PATH = "/org/freedesktop/login1/session/"

# Runs inside the mock (dbusmock's AddMethod code: ``args``, ``objects`` and ``dbus`` are in
# scope). Unknown ids fail as logind's do, which the template's no-op would not.
LOCK_LIKE_LOGIND = """
p = '/org/freedesktop/login1/session/' + args[0]
if p not in objects:
    raise dbus.exceptions.DBusException('No session ' + args[0], name='org.freedesktop.login1.NoSuchSession')
session = objects[p]
session.EmitSignal('org.freedesktop.login1.Session', 'Lock', '', [])
def locked_hint(session=session):  # exec's locals are not a closure: pass the session in
    session.UpdateProperties('org.freedesktop.login1.Session', {'LockedHint': dbus.Boolean(True)})
    return False  # a GLib timeout that fires once
# logind signals Lock to a text console too, but no locker there sets LockedHint.
if session.Get('org.freedesktop.login1.Session', 'Type') not in ('x11', 'wayland', 'mir'):
    pass
elif %(delay_ms)d:
    from gi.repository import GLib
    GLib.timeout_add(%(delay_ms)d, locked_hint)
else:
    locked_hint()
"""
UNLOCK_LIKE_LOGIND = """
session = objects['/org/freedesktop/login1/session/' + args[0]]
session.EmitSignal('org.freedesktop.login1.Session', 'Unlock', '', [])
session.UpdateProperties('org.freedesktop.login1.Session', {'LockedHint': dbus.Boolean(False)})
"""
# logind ends the session, drops it from its seat and signals SessionRemoved.
TERMINATE_LIKE_LOGIND = """
p = '/org/freedesktop/login1/session/' + args[0]
if p not in objects:
    raise dbus.exceptions.DBusException('No session ' + args[0], name='org.freedesktop.login1.NoSuchSession')
seat_id, seat_path = objects[p].Get('org.freedesktop.login1.Session', 'Seat')
self.RemoveObject(p)
if seat_path in objects:
    seat = objects[seat_path]
    left = []
    for entry in seat.Get('org.freedesktop.login1.Seat', 'Sessions'):  # exec locals: no comprehension
        if entry[0] != args[0]:
            left.append(entry)
    seat.Set('org.freedesktop.login1.Seat', 'Sessions', dbus.Array(left, signature='(so)'))
    if seat.Get('org.freedesktop.login1.Seat', 'ActiveSession')[0] == args[0]:
        seat.Set('org.freedesktop.login1.Seat', 'ActiveSession', ('', dbus.ObjectPath('/')))
self.EmitSignal('org.freedesktop.login1.Manager', 'SessionRemoved', 'so', [args[0], dbus.ObjectPath(p)])
"""


class SimulatedLogind:
    """Start with ``start()``; ``address`` is then the bus to put in DBUS_SYSTEM_BUS_ADDRESS."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.procs: list[subprocess.Popen] = []

    def start(self, session: str = "c1", user: str = "operator") -> None:
        self.socket.unlink(missing_ok=True)
        self.procs.append(subprocess.Popen(
            ["dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf", f"--address={self.address}",
             "--nofork", "--nopidfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own session: the terminal's Ctrl-C is the demo's to handle, which stops the
            # daemon before its bus, not a signal that takes the bus away from under it.
            start_new_session=True))
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        # Debian's python: dbusmock and dbus-python are Debian packages.
        self.procs.append(subprocess.Popen(["/usr/bin/python3", "-m", "dbusmock", "--system", "--template", "logind"],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))
        try:
            import dbus
        except ImportError:
            raise Unavailable("python3-dbus is not installed (make demo installs it)") from None
        deadline = time.monotonic() + 10
        while True:
            try:
                bus = dbus.bus.BusConnection(self.address)
                if bus.name_has_owner("org.freedesktop.login1"):
                    break
                bus.close()
            except dbus.exceptions.DBusException:
                pass  # the bus is not listening yet
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise Unavailable("the simulated logind (dbus-daemon + python3-dbusmock) did not start")
            time.sleep(0.05)  # a start-up poll with a deadline, outside any event loop
        manager = bus.get_object("org.freedesktop.login1", "/org/freedesktop/login1")
        mock = dbus.Interface(manager, "org.freedesktop.DBus.Mock")
        path = mock.AddSession(session, "seat0", dbus.UInt32(1000), user, True)
        props = dbus.Interface(bus.get_object("org.freedesktop.login1", path), dbus.PROPERTIES_IFACE)
        props.Set("org.freedesktop.login1.Session", "Type", "wayland")
        mock.AddMethod("org.freedesktop.login1.Manager", "LockSession", "s", "", LOCK_LIKE_LOGIND % {"delay_ms": 0})
        mock.AddMethod("org.freedesktop.login1.Manager", "UnlockSession", "s", "", UNLOCK_LIKE_LOGIND)
        mock.AddMethod("org.freedesktop.login1.Manager", "TerminateSession", "s", "", TERMINATE_LIKE_LOGIND)
        bus.close()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait()
        self.procs.clear()


