"""The sessions on a seat, as systemd-logind lists them: what a lock locks, an unlock unlocks and
the seat watch (``logind_watch.SeatWatch``) reports.

Each listing asks logind afresh (``ListSessions``, then each session's properties): a session's
seat, class and state are logind's own word at that moment, never a copy kept from earlier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sekisho.policies.events import SeatSession

from . import logind_defs as ld
from .errors import SekishoDBusError
from .logind_bus import LogindBus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionInfo:
    id: str
    path: str
    seat: str
    uid: int
    user: str
    active: bool
    session_class: str
    type: str
    locked_hint: bool
    state: str = ""
    """``online``, ``active`` or ``closing`` (logged out, processes lingering)."""

    def seat_session(self, graphical_types: frozenset[str] = ld.GRAPHICAL_TYPES) -> SeatSession:
        return SeatSession(self.id, self.active, self.locked_hint, self.type in graphical_types)


class SeatSessions:
    """Lists a seat's sessions over ``bus``. ``classes`` are the session classes a person works
    in, ``types`` the session types with a screen."""

    def __init__(self, bus: LogindBus, *, classes: frozenset[str] = ld.USER_CLASSES,
                 types: frozenset[str] = ld.GRAPHICAL_TYPES) -> None:
        self.bus = bus
        self.classes = classes
        self.types = types

    async def session(self, path: str) -> SessionInfo:
        (props,) = await self.bus.call(ld.BUS_NAME, path, ld.PROPERTIES_IFACE, ld.GET_ALL, "s", (ld.SESSION_IFACE,))
        p: ld.SessionProperties = {k: v.value for k, v in props.items()}  # type: ignore[assignment]
        seat = p.get(ld.PROP_SEAT) or ["", "/"]
        user = p.get(ld.PROP_USER) or [0, "/"]
        return SessionInfo(id=str(p.get(ld.PROP_ID, "")), path=path, seat=str(seat[0]), uid=int(user[0]),
                           user=str(p.get(ld.PROP_NAME, "")), active=bool(p.get(ld.PROP_ACTIVE, False)),
                           session_class=str(p.get(ld.PROP_CLASS, "")), type=str(p.get(ld.PROP_TYPE, "")),
                           locked_hint=bool(p.get(ld.PROP_LOCKED_HINT, False)), state=str(p.get(ld.PROP_STATE, "")))

    async def sessions(self, seat: str) -> list[SessionInfo]:
        """Every session on ``seat``, in logind's order, whatever its class, type or activity."""
        (listed,) = await self.bus.manager(ld.LIST_SESSIONS)
        found = []
        for _id, _uid, _user, seat_id, path in listed:
            if seat_id != seat:
                continue
            try:
                info = await self.session(path)
            except SekishoDBusError as exc:
                if exc.name not in ld.SESSION_GONE_ERRORS:
                    raise
                # Logged out between the list and the read: not a session to lock, and no reason
                # to fail the lock of the one that is still there.
                log.debug("session %s gone while listing: %s", path, exc.name)
                continue
            if info.seat == seat:  # the property is logind's own word; the list entry is a copy
                found.append(info)
        return found

    async def user_sessions(self, seat: str) -> list[SessionInfo]:
        """Every session on ``seat`` a person works in (``classes``), graphical or not, that is
        not ``closing``: a logged-out session whose processes linger (Debian's logind keeps them,
        ``KillUserProcesses=no``) has no screen or console left to use, and must not keep its
        holder's desk from the next shift."""
        return [s for s in await self.sessions(seat)
                if s.session_class in self.classes and s.state != ld.STATE_CLOSING]

    async def active_session(self, seat: str) -> SessionInfo | None:
        """The active graphical user session on ``seat``; None at the login screen or with none."""
        for info in await self.sessions(seat):
            if info.active and info.session_class in self.classes and info.type in self.types:
                return info
        return None
