"""Every systemd-logind and bus-daemon name sekisho uses, in one place.

Spec: https://www.freedesktop.org/software/systemd/man/latest/org.freedesktop.login1.html
(the Manager and Session interfaces) and the D-Bus specification for the bus daemon's own
``AddMatch``/``RemoveMatch``/``GetNameOwner`` and ``org.freedesktop.DBus.Properties``.
"""

from __future__ import annotations

from typing import Final, TypedDict

# ----------------------------------------------------------------------------- logind
BUS_NAME = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
SEAT_IFACE = "org.freedesktop.login1.Seat"
SESSION_NEW = "SessionNew"
"""Manager signal (s session id, o path): a session was created."""
SESSION_REMOVED = "SessionRemoved"
"""Manager signal (s session id, o path): a session is gone."""
PROP_ACTIVE_SESSION: Final = "ActiveSession"
"""Seat property (so), emits PropertiesChanged when the seat's foreground session changes."""

# Manager methods and their argument signatures.
LIST_SESSIONS = "ListSessions"
"""() -> a(susso): session id, uid, user name, seat id, session object path."""
LOCK_SESSION = "LockSession"
"""(s session id): logind emits ``Session.Lock``; the desktop's locker locks and then sets
``LockedHint``. Never ``LockSessions``, which locks every session on the machine."""
UNLOCK_SESSION = "UnlockSession"
TERMINATE_SESSION = "TerminateSession"
SESSION_ID_SIG = "s"

# Session properties read through org.freedesktop.DBus.Properties.
PROP_ID: Final = "Id"
PROP_SEAT: Final = "Seat"
"""(so): seat id and seat path; ("", "/") for a session on no seat (ssh)."""
PROP_USER: Final = "User"
"""(uo): uid and user path."""
PROP_NAME: Final = "Name"
PROP_ACTIVE: Final = "Active"
PROP_CLASS: Final = "Class"
PROP_TYPE: Final = "Type"
PROP_STATE: Final = "State"
STATE_CLOSING = "closing"
"""The session's user logged out and some of its processes still run."""
PROP_LOCKED_HINT: Final = "LockedHint"


class SessionProperties(TypedDict, total=False):
    """The Session properties sekisho reads, with the Python shape dbus-fast gives them."""

    Id: str
    Seat: list  # [seat id: str, seat path: str]
    User: list  # [uid: int, user path: str]
    Name: str
    Active: bool
    Class: str
    Type: str
    State: str
    LockedHint: bool


USER_CLASSES = frozenset({"user"})
"""Session classes a person works in. Not ``greeter`` (the login screen: nothing to protect),
``lock-screen`` (the locker itself), ``background``/``manager`` (no seat, no screen)."""
GRAPHICAL_TYPES = frozenset({"x11", "wayland", "mir"})
"""Session types with a screen that a locker can cover. Every other type of a user session on a
seat (``tty``, a text console; ``unspecified``; dbusmock's ``test``) is a text session: no
locker confirms its lock, so its fallback is the desk's ``tty_lock``."""

# ----------------------------------------------------------------------------- bus daemon
DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
DBUS_IFACE = "org.freedesktop.DBus"
ADD_MATCH = "AddMatch"
REMOVE_MATCH = "RemoveMatch"
GET_NAME_OWNER = "GetNameOwner"

PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
GET = "Get"
GET_ALL = "GetAll"
PROPERTIES_CHANGED = "PropertiesChanged"
"""(s interface, a{sv} changed, as invalidated)."""

# A session object that is gone by the time it is read: sd-bus answers UnknownObject, logind's
# Manager NoSuchSession, and dbus-python (dbusmock) UnknownMethod.
SESSION_GONE_ERRORS = frozenset({"org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod",
                                 "org.freedesktop.login1.NoSuchSession"})

# Error names sekisho gives failures that never reached a D-Bus reply, named as libdbus would.
ERROR_NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
ERROR_DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"


def manager_signal_rule(member: str) -> str:
    """The match rule for one of logind's Manager signals (``SessionNew``, ``SessionRemoved``)."""
    return f"type='signal',sender='{BUS_NAME}',path='{MANAGER_PATH}',interface='{MANAGER_IFACE}',member='{member}'"


def login1_properties_changed_rule() -> str:
    """Every ``PropertiesChanged`` logind sends for its sessions and seats (``LockedHint``,
    ``Active``, ``ActiveSession``). ``sender`` makes the bus drop anyone else's."""
    return (f"type='signal',sender='{BUS_NAME}',path_namespace='{MANAGER_PATH}',interface='{PROPERTIES_IFACE}',"
            f"member='{PROPERTIES_CHANGED}'")


def session_properties_changed_rule(session_path: str) -> str:
    """The match rule for LockedHint changes of one session. Raw, because a proxy built from
    introspection offers no signal that dbusmock's logind does not declare."""
    return (f"type='signal',sender='{BUS_NAME}',path='{session_path}',interface='{PROPERTIES_IFACE}',"
            f"member='{PROPERTIES_CHANGED}',arg0='{SESSION_IFACE}'")
