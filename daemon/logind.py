"""Locking and unlocking a desk's seat through systemd-logind, from the daemon's asyncio loop.

``Logind`` is what the daemon holds; each job is a collaborator of its own: the connection and
its reconnects (``logind_bus.LogindBus``), listing a seat's sessions
(``logind_sessions.SeatSessions``), locking one session and confirming the lock
(``logind_lock.SessionLocker``, with the site's commands in ``logind_commands``), and the record
of what a lock did (``logind_results``).

What is locked: every session on the desk's seat whose ``Class`` is a person's (``user``; see
``USER_CLASSES``), graphical or text, active or not. A person who switched to a text console
before pulling the card must not leave the graphical session one key away, and a session in the
background is one ``chvt`` from the foreground. A seat at the login screen (class ``greeter``)
has nothing to lock, and that is reported as nothing to lock, not as a failure. The sessions
are locked side by side, so a slow one never delays another.

``lock`` raises for nothing the bus, logind or a command does (only for arguments that
``check_fallback`` rejects): every step, failures included, is in the ``SeatLockResult``, which
the daemon records and turns into the desk policy's next inputs with ``SeatLockResult.events``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from . import logind_defs as ld
from .errors import SekishoDBusError
from .logind_bus import LogindBus
from .logind_commands import TERMINATE, Fallback, SessionCommands, check_fallback
from .logind_lock import SessionLocker
from .logind_results import LockResult, LockStep, SeatLockResult, Step
from .logind_sessions import SeatSessions, SessionInfo

log = logging.getLogger(__name__)


class Logind:
    """An asyncio client of systemd-logind on the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` is
    honoured). One instance per daemon, built in the composition root."""

    def __init__(self, *, call_timeout: float = 5.0, fallback_timeout: float = 10.0,
                 classes: frozenset[str] = ld.USER_CLASSES, types: frozenset[str] = ld.GRAPHICAL_TYPES) -> None:
        self.bus = LogindBus(call_timeout=call_timeout)
        self.seats = SeatSessions(self.bus, classes=classes, types=types)
        self.commands = SessionCommands(timeout=fallback_timeout)
        self.locker = SessionLocker(self.bus, self.commands)

    @property
    def call_timeout(self) -> float:
        """How long one D-Bus call may take (the seat watch's calls too)."""
        return self.bus.call_timeout

    @property
    def fallback_timeout(self) -> float:
        """How long a confirmation or fallback command may run before it is killed."""
        return self.commands.timeout

    @fallback_timeout.setter
    def fallback_timeout(self, seconds: float) -> None:
        self.commands.timeout = seconds

    async def connect(self) -> None:
        await self.bus.connect()

    async def close(self) -> None:
        await self.bus.close()

    # ------------------------------------------------------------------------- sessions
    async def sessions(self, seat: str) -> list[SessionInfo]:
        return await self.seats.sessions(seat)

    async def user_sessions(self, seat: str) -> list[SessionInfo]:
        return await self.seats.user_sessions(seat)

    async def active_session(self, seat: str) -> SessionInfo | None:
        return await self.seats.active_session(seat)

    # ------------------------------------------------------------------------- lock, unlock
    async def unlock(self, seat: str) -> SessionInfo | None:
        """``UnlockSession`` for the seat's active graphical session; None when there is none.
        Raises ``SekishoDBusError``: an unlock that failed leaves the person at their password."""
        session = await self.seats.active_session(seat)
        if session is not None:
            await self.bus.manager(ld.UNLOCK_SESSION, ld.SESSION_ID_SIG, (session.id,))
        return session

    async def lock(self, seat: str, *, confirm_timeout: float, retries: int = 1, fallback: Fallback = None,
                   text_fallback: str | None = TERMINATE, confirm_command: Sequence[str] | None = None,
                   on_step: Callable[[LockStep], None] | None = None) -> SeatLockResult:
        """Lock every user session on the seat and confirm each (see the module docstring and
        ``logind_lock``). ``on_step`` sees each step as it happens, so the daemon can publish
        before the end."""
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
            sessions = await self.seats.user_sessions(seat)
        except SekishoDBusError as exc:
            log.error("lock %s: cannot list the sessions: %s", seat, exc)
            step(Step.LOOKUP_FAILED, detail=exc.name)
            failed = LockResult(seat, None, tuple(steps), 0, False, None, None, exc.name, started, time.monotonic())
            return SeatLockResult(seat, (failed,), started, time.monotonic())
        if not sessions:
            step(Step.NO_SESSION)
            return SeatLockResult(seat, (), started, time.monotonic())
        results = await asyncio.gather(*(
            self.locker.lock(s, confirm_timeout=confirm_timeout, retries=retries, fallback=fallback,
                             text_fallback=text_fallback, confirm_command=confirm_command, on_step=on_step)
            for s in sessions))
        return SeatLockResult(seat, tuple(results), started, time.monotonic())
