"""Watching the desks' seats: what logind says about their user sessions, as it changes.

The lock path (``logind.Logind.lock``) only knows what it did. Someone typing the password at
the locker, logging in at the greeter or switching to a console is a change that logind
signals and nothing else sees. ``SeatWatch`` subscribes, on a system-bus connection of its
own, to the Manager's ``SessionNew`` and ``SessionRemoved`` and to every ``PropertiesChanged``
logind sends under ``/org/freedesktop/login1`` (a session's ``LockedHint`` and ``Active``, a
seat's ``ActiveSession``): the signals logind emits for exactly these changes
(org.freedesktop.login1(5)). A signal is only a trigger. After one, the watch lists each seat's
user sessions afresh (``Logind.user_sessions``) and reports the whole picture as
``SeatSessionsSeen`` when it differs from the last one reported, so a missed, merged or
reordered signal costs a listing, never a wrong picture. Triggers that arrive during a listing
run one more listing after it, so the last word is always a listing made after the last signal.
One thing a listing cannot show is a lock and an unlock that both happened since the previous
one; so the sessions logind signalled unlocked (``LockedHint`` false) or activated since the
previous listing go with it (``signalled``), and a report is made for them even when the
picture itself did not change.
The match rules name ``sender='org.freedesktop.login1'``, so the bus itself drops the same
signals sent by anyone else; and a forged trigger could only cause a listing.

When the world misbehaves. ``start`` never raises: with no system bus, or logind refusing the
listing, the watch logs an error and tries again every ``retry_s`` (the picture is then stale,
which the log says; the lock path reports its own failures as ``lock_failed``). A connection
that drops is made again and the matches added again, followed by a listing, since anything may
have changed meanwhile. The first listing of a seat is reported like any other; the desk policy
takes it as a baseline only (the start-up lock covers what it shows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError

from sekisho.policies.events import SeatSession, SeatSessionsSeen

from . import logind_defs as ld
from .errors import SekishoDBusError
from .logind import Logind

log = logging.getLogger(__name__)

Report = Callable[[SeatSessionsSeen], None]
"""Called on the loop with a seat's user sessions, sorted by id, and the ids of those logind
signalled unlocked or activated since the previous report."""


class SeatWatch:
    def __init__(self, logind: Logind, seats: Iterable[str], report: Report, *, retry_s: float = 1.0) -> None:
        self.logind = logind
        self.seats = tuple(sorted(set(seats)))
        self.report = report
        self.retry_s = retry_s
        self.last: dict[str, tuple[SeatSession, ...]] = {}
        """The picture last reported per seat."""
        self._bus: MessageBus | None = None
        self._dirty = False
        self._signalled: set[str] = set()
        """Object paths of sessions signalled unlocked or activated since the last listing."""
        self._listing: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._rules = (ld.manager_signal_rule(ld.SESSION_NEW), ld.manager_signal_rule(ld.SESSION_REMOVED),
                       ld.login1_properties_changed_rule())

    async def start(self, ready_timeout: float = 5.0) -> bool:
        """Subscribe, then list every seat once; True once that first listing was reported, False
        when it took longer than ``ready_timeout`` (the watch keeps trying in the background).
        The daemon starts the desks after this, so that what their start-up lock sees and what
        the watch takes as its baseline leave no gap for a login to slip through unseen."""
        self._stopping = False
        self._keeper = asyncio.get_running_loop().create_task(self._keep_connected())
        try:
            await asyncio.wait_for(self._ready.wait(), ready_timeout)
        except TimeoutError:
            log.error("the seat watch has no listing after %g s; desks start without it", ready_timeout)
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._keeper, self._listing):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping: nothing left to report to
                    pass
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()

    # ------------------------------------------------------------------------- connection
    async def _keep_connected(self) -> None:
        while not self._stopping:
            try:
                bus = await self._subscribe()
            except (OSError, DBusFastError, EOFError, SekishoDBusError) as exc:
                log.error("cannot watch the seats' sessions (retrying in %g s): %s", self.retry_s, exc)
                await asyncio.sleep(self.retry_s)
                continue
            # Subscribed first, listed second: a change between the two is in the listing or
            # triggers another.
            self.changed()
            try:
                await bus.wait_for_disconnect()
            except (OSError, DBusFastError, EOFError) as exc:
                log.debug("watch connection ended: %s", exc)
            if not self._stopping:
                log.error("the system bus dropped the seat watch; subscribing again")
                self._bus = None
                await asyncio.sleep(self.retry_s)

    async def _subscribe(self) -> MessageBus:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            bus.add_message_handler(self._on_message)
            for rule in self._rules:
                reply = await asyncio.wait_for(bus.call(Message(
                    destination=ld.DBUS_NAME, path=ld.DBUS_PATH, interface=ld.DBUS_IFACE, member=ld.ADD_MATCH,
                    signature="s", body=[rule])), self.logind.call_timeout)
                if reply.message_type is MessageType.ERROR:
                    raise SekishoDBusError(reply.error_name or "unknown", str(reply.body), call=f"AddMatch({rule})")
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        return bus

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL:
            return
        if msg.interface == ld.MANAGER_IFACE and msg.member in (ld.SESSION_NEW, ld.SESSION_REMOVED):
            self.changed()
        elif (msg.interface == ld.PROPERTIES_IFACE and msg.member == ld.PROPERTIES_CHANGED and msg.body
              and msg.body[0] in (ld.SESSION_IFACE, ld.SEAT_IFACE)):
            changed = msg.body[1] if len(msg.body) > 1 else {}
            # Only a broadcast passed the match rule's sender test; a unicast signal aimed at this
            # connection may come from anyone, and triggers a listing but counts for nothing more.
            if msg.body[0] == ld.SESSION_IFACE and msg.destination is None and msg.path is not None and (
                    (ld.PROP_LOCKED_HINT in changed and not changed[ld.PROP_LOCKED_HINT].value)
                    or (ld.PROP_ACTIVE in changed and changed[ld.PROP_ACTIVE].value)):
                self._signalled.add(msg.path)
            self.changed()

    # ------------------------------------------------------------------------- listing
    def changed(self) -> None:
        """Something may have changed: list the seats again (once more if a listing is running)."""
        self._dirty = True
        if self._listing is None or self._listing.done():
            self._listing = asyncio.get_running_loop().create_task(self._list())

    async def _list(self) -> None:
        while self._dirty and not self._stopping:
            self._dirty = False
            signalled, self._signalled = self._signalled, set()
            for seat in self.seats:
                try:
                    sessions = await self.logind.user_sessions(seat)
                except SekishoDBusError as exc:
                    log.error("cannot list the sessions of %s (retrying in %g s): %s", seat, self.retry_s, exc)
                    self._dirty = True
                    self._signalled |= signalled
                    await asyncio.sleep(self.retry_s)
                    break
                picture = tuple(sorted((s.seat_session() for s in sessions), key=lambda s: s.id))
                flagged = frozenset(s.id for s in sessions if s.path in signalled)
                if self.last.get(seat) != picture or flagged:
                    self.last[seat] = picture
                    log.debug("%s: %s (signalled %s)", seat, picture, sorted(flagged))
                    try:
                        self.report(SeatSessionsSeen(source="logind", seat=seat, sessions=picture, signalled=flagged))
                    except Exception:  # noqa: BLE001 - one bad report must not end the watch for good
                        log.exception("reporting the sessions of %s failed", seat)
            else:
                self._ready.set()  # every seat listed once
