"""Locking a desk's session through systemd-logind, from the daemon's asyncio loop.

dbus-fast, not jeepney: its asyncio ``MessageBus`` lives on the loop that owns all state, so a
lock needs no thread and no hand-over, and it is the library bleak (our model for a system
D-Bus client) builds on. Only its low-level API is used (``Message`` in, ``Message`` out): every
name is in ``logind_defs``, no call pays for an introspection round trip, and signals that
logind sends but does not declare (dbusmock's logind declares none) are caught all the same.

What is locked: every session on the desk's seat whose ``Class`` is a person's (``user``; see
``USER_CLASSES``), graphical or text, active or not. A person who switched to a text console
before pulling the card must not leave the graphical session one key away, and a session in the
background is one ``chvt`` from the foreground. A seat at the login screen (class ``greeter``)
has nothing to lock, and that is reported as nothing to lock, not as a failure. The sessions
are locked side by side, so a slow one never delays another.

How a lock is confirmed. ``LockSession(id)`` only asks: logind emits ``Session.Lock`` and the
desktop's locker locks, then sets ``LockedHint``. So each attempt watches that session's
``PropertiesChanged`` (a raw ``AddMatch``, installed before the request so no change is missed)
and also reads ``LockedHint`` once after the request (the hint may already be true, and a locker
may set it without a change signal). ``LockedHint`` is the locker's word, and the session's own
user may set it too (``SetLockedHint``); where that matters, ``confirm_command`` (argv, no shell,
``{session}``, ``{seat}``, ``{user}`` substituted) must also exit 0 before a lock of a graphical
session counts as confirmed: a command that fails or hangs makes the attempt unconfirmed, as a
false hint would (docs/desks.md says what each proves).

Unconfirmed. A graphical session: ask again, up to ``retries`` more times, then run the
fallback: ``"terminate"`` ends the session through ``TerminateSession(id)``; a list is a command
run like ``confirm_command``. A text session (``tty``, or any type without a screen) has no
locker that logind knows of: one request, one ``confirm_timeout``, then ``text_fallback``:
``"terminate"`` ends it (``SessionTerminated`` when that worked), ``None`` leaves it and reports
the failed lock. ``lock`` raises for nothing the bus, logind or a command does (only for
arguments that ``check_fallback`` rejects): every step, failures included, is in the
``SeatLockResult``, which the daemon records and turns into the desk policy's next inputs with
``SeatLockResult.events``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError

from sekisho.policies.events import (
    Event,
    NoSessionToLock,
    SeatSession,
    SessionLocked,
    SessionLockFailed,
    SessionTerminated,
)

from . import logind_defs as ld
from .errors import SekishoDBusError

log = logging.getLogger(__name__)

TERMINATE = "terminate"
Fallback = str | Sequence[str] | None
"""``"terminate"``, a command as an argument list, or None for no fallback."""


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


class Step(enum.StrEnum):
    LOOKUP_FAILED = "lookup_failed"
    """Listing or reading the sessions failed; ``detail`` is the D-Bus error name."""
    NO_SESSION = "no_session"
    SESSION_FOUND = "session_found"
    LOCK_REQUESTED = "lock_requested"
    LOCK_CONFIRMED = "lock_confirmed"
    LOCK_UNCONFIRMED = "lock_unconfirmed"
    LOCK_CALL_FAILED = "lock_call_failed"
    CONFIRM_COMMAND_FAILED = "confirm_command_failed"
    """``LockedHint`` said locked and the confirmation command did not agree; ``detail`` says how."""
    FALLBACK_DONE = "fallback_done"
    FALLBACK_FAILED = "fallback_failed"


@dataclass(frozen=True)
class LockStep:
    step: Step
    at: float
    """Monotonic, the clock of ``Event.mono`` and of the asyncio loop."""
    attempt: int = 0
    """1 for the first ``LockSession``; 0 for steps outside an attempt."""
    detail: str = ""


@dataclass(frozen=True)
class LockResult:
    """One session's lock: every step, and how it ended."""

    seat: str
    session: SessionInfo | None
    steps: tuple[LockStep, ...]
    attempts: int
    confirmed: bool
    fallback: str | None
    """What ran after the retries: ``terminate``, the command's program, or None."""
    fallback_ok: bool | None
    error: str | None
    """The D-Bus error name that kept the session from being found, if any."""
    started: float
    finished: float

    @property
    def nothing_to_lock(self) -> bool:
        return self.session is None and self.error is None

    @property
    def failed(self) -> bool:
        """The lock_failed case: a session (or logind itself) was there and no lock was confirmed."""
        return not self.confirmed and not self.nothing_to_lock

    def _ms_to(self, step: Step) -> float | None:
        at = next((s.at for s in self.steps if s.step is step), None)
        return None if at is None else (at - self.started) * 1000

    @property
    def latency_ms(self) -> float | None:
        """From the start of ``lock`` to the confirmation; None when not confirmed."""
        return self._ms_to(Step.LOCK_CONFIRMED)

    @property
    def request_ms(self) -> float | None:
        """From the start of ``lock`` to the first ``LockSession`` going out."""
        return self._ms_to(Step.LOCK_REQUESTED)

    @property
    def text(self) -> bool:
        """A session without a screen: its fallback is ``text_fallback``."""
        return self.session is not None and self.session.type not in ld.GRAPHICAL_TYPES

    def event(self, source: str) -> Event:
        """The desk policy's input for this outcome."""
        if self.confirmed:
            assert self.session is not None
            return SessionLocked(source=source, session=self.session.id, latency_ms=self.latency_ms)
        if self.nothing_to_lock:
            return NoSessionToLock(source=source)
        assert self.session is not None or self.error is not None
        sid = self.session.id if self.session else None
        if self.text and self.fallback == TERMINATE and self.fallback_ok:
            # Ending a text console that cannot lock is the configured outcome, not a failure.
            return SessionTerminated(source=source, session=sid or "", reason="text_session")
        failures = (Step.LOCK_CALL_FAILED, Step.CONFIRM_COMMAND_FAILED)
        reason = self.error or next((f"{s.step.value}: {s.detail}" if s.step is Step.CONFIRM_COMMAND_FAILED
                                     else s.detail for s in reversed(self.steps) if s.step in failures),
                                    "text_session_unconfirmed" if self.text else "unconfirmed")
        return SessionLockFailed(source=source, session=sid, reason=reason,
                                 latency_ms=(self.finished - self.started) * 1000)


@dataclass(frozen=True)
class SeatLockResult:
    """A lock of every user session on a seat: one ``LockResult`` each, or, when the sessions
    could not be listed, one ``LockResult`` that carries the error (``lookup_failed``)."""

    seat: str
    results: tuple[LockResult, ...]
    """Empty: the seat had no user session (nothing to lock)."""
    started: float
    finished: float

    @property
    def nothing_to_lock(self) -> bool:
        return not self.results

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)

    @property
    def confirmed(self) -> bool:
        return bool(self.results) and all(r.confirmed for r in self.results)

    def result(self, session: str) -> LockResult:
        return next(r for r in self.results if r.session is not None and r.session.id == session)

    def events(self, source: str) -> list[Event]:
        """The desk policy's inputs, one per session (``NoSessionToLock`` for none)."""
        if not self.results:
            return [NoSessionToLock(source=source)]
        return [r.event(source) for r in self.results]


class _LockedHintWatch:
    """Wakes a waiter when logind reports a session's ``LockedHint`` true (or invalidated)."""

    def __init__(self, path: str, owner: str) -> None:
        self.path = path
        self.owner = owner
        self.locked = False
        self.changed = asyncio.Event()

    def __call__(self, msg: Message) -> None:
        if (msg.message_type is not MessageType.SIGNAL or msg.path != self.path
                or msg.interface != ld.PROPERTIES_IFACE or msg.member != ld.PROPERTIES_CHANGED
                or not msg.body or msg.body[0] != ld.SESSION_IFACE):
            return
        # Anyone on the bus may send a signal with this path; only logind's word confirms a lock.
        if msg.sender != self.owner:
            return
        changed, invalidated = msg.body[1], msg.body[2]
        if ld.PROP_LOCKED_HINT in changed:
            self.locked = bool(changed[ld.PROP_LOCKED_HINT].value)
            self.changed.set()
        elif ld.PROP_LOCKED_HINT in invalidated:
            self.changed.set()


def check_fallback(fallback: Fallback) -> None:
    """Raise ``ValueError`` for a fallback ``lock`` cannot run; config checking calls this too."""
    if fallback is None or fallback == TERMINATE:
        return
    if isinstance(fallback, str) or not fallback or not all(isinstance(a, str) for a in fallback):
        raise ValueError(f"a lock fallback is {TERMINATE!r} or a non-empty list of strings, not {fallback!r}")


class Logind:
    """An asyncio client of systemd-logind on the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` is
    honoured). One instance per daemon, built in the composition root."""

    def __init__(self, *, call_timeout: float = 5.0, fallback_timeout: float = 10.0,
                 classes: frozenset[str] = ld.USER_CLASSES, types: frozenset[str] = ld.GRAPHICAL_TYPES) -> None:
        self.call_timeout = call_timeout
        self.fallback_timeout = fallback_timeout
        self.classes = classes
        self.types = types
        self._bus: MessageBus | None = None
        self._closed = False

    # ------------------------------------------------------------------------- connection
    async def connect(self) -> None:
        self._closed = False
        if self._bus is not None and self._bus.connected:
            return
        try:
            self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, DBusFastError, EOFError) as exc:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, str(exc) or type(exc).__name__,
                                   call="connect to the system bus") from None

    async def close(self) -> None:
        self._closed = True
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            try:
                await bus.wait_for_disconnect()
            except (OSError, DBusFastError, EOFError) as exc:
                # The bus had already dropped us with this error; closed is what was asked for.
                log.debug("system bus connection had failed: %s", exc)

    async def _call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
                    body: Sequence[Any] = (), timeout: float | None = None) -> list[Any]:
        """One method call; its reply's body, or ``SekishoDBusError`` with the D-Bus error name."""
        what = f"{member}({', '.join(map(str, body))})"
        if self._closed:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, "the logind client is closed", call=what)
        if self._bus is None or not self._bus.connected:
            # The system bus restarted or dropped us: a desk that cannot lock is worse than a
            # reconnect on the lock path.
            await self.connect()
        assert self._bus is not None
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        try:
            reply = await asyncio.wait_for(self._bus.call(msg), self.call_timeout if timeout is None else timeout)
        except TimeoutError:
            raise SekishoDBusError(ld.ERROR_NO_REPLY, "no reply in time", call=what) from None
        except (OSError, DBusFastError, EOFError) as exc:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, str(exc) or type(exc).__name__, call=what) from None
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise SekishoDBusError(reply.error_name or "unknown", text, call=what)
        return reply.body

    async def _manager(self, member: str, signature: str = "", body: Sequence[Any] = (),
                       timeout: float | None = None) -> list[Any]:
        return await self._call(ld.BUS_NAME, ld.MANAGER_PATH, ld.MANAGER_IFACE, member, signature, body, timeout)

    async def _bus_daemon(self, member: str, arg: str) -> list[Any]:
        return await self._call(ld.DBUS_NAME, ld.DBUS_PATH, ld.DBUS_IFACE, member, "s", (arg,))

    # ------------------------------------------------------------------------- sessions
    async def _session(self, path: str) -> SessionInfo:
        (props,) = await self._call(ld.BUS_NAME, path, ld.PROPERTIES_IFACE, ld.GET_ALL, "s", (ld.SESSION_IFACE,))
        p: ld.SessionProperties = {k: v.value for k, v in props.items()}  # type: ignore[assignment]
        seat = p.get(ld.PROP_SEAT) or ["", "/"]
        user = p.get(ld.PROP_USER) or [0, "/"]
        return SessionInfo(id=str(p.get(ld.PROP_ID, "")), path=path, seat=str(seat[0]), uid=int(user[0]),
                           user=str(p.get(ld.PROP_NAME, "")), active=bool(p.get(ld.PROP_ACTIVE, False)),
                           session_class=str(p.get(ld.PROP_CLASS, "")), type=str(p.get(ld.PROP_TYPE, "")),
                           locked_hint=bool(p.get(ld.PROP_LOCKED_HINT, False)), state=str(p.get(ld.PROP_STATE, "")))

    async def sessions(self, seat: str) -> list[SessionInfo]:
        """Every session on ``seat``, in logind's order, whatever its class, type or activity."""
        (listed,) = await self._manager(ld.LIST_SESSIONS)
        found = []
        for _id, _uid, _user, seat_id, path in listed:
            if seat_id != seat:
                continue
            try:
                info = await self._session(path)
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

    async def _locked_hint(self, path: str, timeout: float) -> bool:
        (value,) = await self._call(ld.BUS_NAME, path, ld.PROPERTIES_IFACE, ld.GET, "ss",
                                    (ld.SESSION_IFACE, ld.PROP_LOCKED_HINT), timeout)
        return bool(value.value)

    # ------------------------------------------------------------------------- lock, unlock
    async def unlock(self, seat: str) -> SessionInfo | None:
        """``UnlockSession`` for the seat's active graphical session; None when there is none.
        Raises ``SekishoDBusError``: an unlock that failed leaves the person at their password."""
        session = await self.active_session(seat)
        if session is not None:
            await self._manager(ld.UNLOCK_SESSION, ld.SESSION_ID_SIG, (session.id,))
        return session

    async def lock(self, seat: str, *, confirm_timeout: float, retries: int = 1, fallback: Fallback = None,
                   text_fallback: str | None = TERMINATE, confirm_command: Sequence[str] | None = None,
                   on_step: Callable[[LockStep], None] | None = None) -> SeatLockResult:
        """Lock every user session on the seat and confirm each (see the module docstring).
        ``on_step`` sees each step as it happens, so the daemon can publish before the end."""
        check_fallback(fallback)
        if text_fallback not in (None, TERMINATE):
            raise ValueError(f"a text session's fallback is {TERMINATE!r} or None, not {text_fallback!r}")
        if confirm_command:
            check_fallback(list(confirm_command))
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        started = time.monotonic()
        steps: list[LockStep] = []

        def step(kind: Step, attempt: int = 0, detail: str = "") -> None:
            s = LockStep(kind, time.monotonic(), attempt, detail)
            steps.append(s)
            log.debug("lock %s: %s %s %s", seat, kind.value, attempt or "", detail)
            if on_step is not None:
                on_step(s)

        try:
            sessions = await self.user_sessions(seat)
        except SekishoDBusError as exc:
            log.error("lock %s: cannot list the sessions: %s", seat, exc)
            step(Step.LOOKUP_FAILED, detail=exc.name)
            failed = LockResult(seat, None, tuple(steps), 0, False, None, None, exc.name, started, time.monotonic())
            return SeatLockResult(seat, (failed,), started, time.monotonic())
        if not sessions:
            step(Step.NO_SESSION)
            return SeatLockResult(seat, (), started, time.monotonic())
        results = await asyncio.gather(*(
            self._lock_session(s, confirm_timeout=confirm_timeout, retries=retries, fallback=fallback,
                               text_fallback=text_fallback, confirm_command=confirm_command, on_step=on_step)
            for s in sessions))
        return SeatLockResult(seat, tuple(results), started, time.monotonic())

    async def _lock_session(self, session: SessionInfo, *, confirm_timeout: float, retries: int,
                            fallback: Fallback, text_fallback: str | None, confirm_command: Sequence[str] | None,
                            on_step: Callable[[LockStep], None] | None) -> LockResult:
        seat = session.seat
        started = time.monotonic()
        steps: list[LockStep] = []
        text = session.type not in ld.GRAPHICAL_TYPES

        def step(kind: Step, attempt: int = 0, detail: str = "") -> None:
            s = LockStep(kind, time.monotonic(), attempt, detail)
            steps.append(s)
            log.debug("lock %s/%s: %s %s %s", seat, session.id, kind.value, attempt or "", detail)
            if on_step is not None:
                on_step(s)

        def result(attempts: int = 0, confirmed: bool = False, fallback_run: str | None = None,
                   fallback_ok: bool | None = None) -> LockResult:
            return LockResult(seat, session, tuple(steps), attempts, confirmed, fallback_run, fallback_ok, None,
                              started, time.monotonic())

        step(Step.SESSION_FOUND, detail=session.id)
        # A text console has no locker logind knows of: asking again only keeps it open longer.
        tries = 1 if text else retries + 1
        attempts, confirmed = 0, False
        for attempt in range(1, tries + 1):
            attempts = attempt
            try:
                confirmed = await self._lock_once(session, attempt, confirm_timeout, step)
            except SekishoDBusError as exc:
                log.warning("lock %s: %s", seat, exc)
                step(Step.LOCK_CALL_FAILED, attempt, exc.name)
                continue
            if confirmed and confirm_command and not text:
                ok, detail = await self._run(confirm_command, session, "confirm")
                if not ok:
                    log.error("lock %s: LockedHint says %s is locked, the confirmation command does not: %s",
                              seat, session.id, detail)
                    step(Step.CONFIRM_COMMAND_FAILED, attempt, detail)
                    confirmed = False
                    continue
            if confirmed:
                step(Step.LOCK_CONFIRMED, attempt, session.id)
                return result(attempts, True)
            step(Step.LOCK_UNCONFIRMED, attempt, session.id)

        log.error("lock %s: session %s (%s) not confirmed locked after %d attempts", seat, session.id,
                  session.type, attempts)
        chosen = text_fallback if text else fallback
        if chosen is None:
            return result(attempts)
        ran, ok, detail = await self._fallback(chosen, session)
        step(Step.FALLBACK_DONE if ok else Step.FALLBACK_FAILED, detail=detail)
        return result(attempts, fallback_run=ran, fallback_ok=ok)

    async def _lock_once(self, session: SessionInfo, attempt: int, confirm_timeout: float,
                         step: Callable[..., None]) -> bool:
        """One ``LockSession`` and its confirmation, all within ``confirm_timeout``."""
        deadline = time.monotonic() + confirm_timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        (owner,) = await self._bus_daemon(ld.GET_NAME_OWNER, ld.BUS_NAME)
        watch = _LockedHintWatch(session.path, owner)
        rule = ld.session_properties_changed_rule(session.path)
        bus = self._bus
        if bus is None:
            # close() ran while GetNameOwner was answered: the daemon is stopping. The same
            # answer as any call on a closed client, not an AssertionError in a desk's lock task.
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, "the logind client is closed",
                                   call=f"{ld.LOCK_SESSION}({session.id})")
        bus.add_message_handler(watch)
        try:
            await self._bus_daemon(ld.ADD_MATCH, rule)
            try:
                step(Step.LOCK_REQUESTED, attempt, session.id)
                await self._manager(ld.LOCK_SESSION, ld.SESSION_ID_SIG, (session.id,), timeout=left() or None)
                if watch.locked or await self._locked_hint(session.path, left() or self.call_timeout):
                    return True
                while left() > 0:
                    watch.changed.clear()
                    try:
                        await asyncio.wait_for(watch.changed.wait(), left())
                    except TimeoutError:
                        return False
                    if watch.locked or await self._locked_hint(session.path, left() or self.call_timeout):
                        return True
                return False
            finally:
                await self._remove_match(rule)
        finally:
            bus.remove_message_handler(watch)

    async def _remove_match(self, rule: str) -> None:
        try:
            await self._bus_daemon(ld.REMOVE_MATCH, rule)
        except SekishoDBusError as exc:
            # The match dies with the connection when the bus is gone; nothing is left to remove.
            log.debug("RemoveMatch failed: %s", exc)

    async def _fallback(self, fallback: str | Sequence[str], session: SessionInfo) -> tuple[str, bool, str]:
        """Run the fallback: (what ran, whether it succeeded, detail for the record)."""
        if isinstance(fallback, str):
            try:
                await self._manager(ld.TERMINATE_SESSION, ld.SESSION_ID_SIG, (session.id,))
            except SekishoDBusError as exc:
                log.error("fallback: %s", exc)
                return TERMINATE, False, exc.name
            log.warning("fallback: session %s terminated", session.id)
            return TERMINATE, True, session.id
        ok, detail = await self._run(fallback, session, "fallback")
        if ok:
            log.warning("fallback %s ran for session %s", fallback[0], session.id)
        return fallback[0], ok, detail

    async def _run(self, command: Sequence[str], session: SessionInfo, what: str) -> tuple[bool, str]:
        """Run a configured command for ``session``, no shell: (exit 0, detail for the record)."""
        argv = [arg.replace("{session}", session.id).replace("{seat}", session.seat).replace("{user}", session.user)
                for arg in command]
        program = argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            log.error("%s %s: %s", what, program, exc)
            return False, str(exc)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.fallback_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("%s %s: killed after %g s", what, program, self.fallback_timeout)
            return False, f"timeout after {self.fallback_timeout:g} s"
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            detail = f"exit {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
            log.error("%s %s: %s", what, program, detail)
            return False, detail
        return True, "exit 0"
