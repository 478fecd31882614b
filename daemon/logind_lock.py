"""Locking one session through systemd-logind and confirming that it is locked.

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
the failed lock. Nothing the bus, logind or a command does raises: every step, failures
included, is in the ``LockResult``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from dbus_fast import Message, MessageType

from . import logind_defs as ld
from .errors import SekishoDBusError
from .logind_bus import LogindBus
from .logind_commands import TERMINATE, Fallback, SessionCommands
from .logind_results import LockResult, LockStep, Step
from .logind_sessions import SessionInfo

log = logging.getLogger(__name__)


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


class SessionLocker:
    """Locks one session over ``bus``, with ``commands`` for the confirmation and the fallback."""

    def __init__(self, bus: LogindBus, commands: SessionCommands) -> None:
        self.bus = bus
        self.commands = commands

    async def lock(self, session: SessionInfo, *, confirm_timeout: float, retries: int, fallback: Fallback,
                   text_fallback: str | None, confirm_command: Sequence[str] | None,
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
                ok, detail = await self.commands.run(confirm_command, session, "confirm")
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

        (owner,) = await self.bus.bus_daemon(ld.GET_NAME_OWNER, ld.BUS_NAME)
        watch = _LockedHintWatch(session.path, owner)
        rule = ld.session_properties_changed_rule(session.path)
        with self.bus.handler(watch):
            await self.bus.bus_daemon(ld.ADD_MATCH, rule)
            try:
                step(Step.LOCK_REQUESTED, attempt, session.id)
                await self.bus.manager(ld.LOCK_SESSION, ld.SESSION_ID_SIG, (session.id,), timeout=left() or None)
                if watch.locked or await self._locked_hint(session.path, left() or self.bus.call_timeout):
                    return True
                while left() > 0:
                    watch.changed.clear()
                    try:
                        await asyncio.wait_for(watch.changed.wait(), left())
                    except TimeoutError:
                        return False
                    if watch.locked or await self._locked_hint(session.path, left() or self.bus.call_timeout):
                        return True
                return False
            finally:
                await self.bus.remove_match(rule)

    async def _locked_hint(self, path: str, timeout: float) -> bool:
        (value,) = await self.bus.call(ld.BUS_NAME, path, ld.PROPERTIES_IFACE, ld.GET, "ss",
                                       (ld.SESSION_IFACE, ld.PROP_LOCKED_HINT), timeout)
        return bool(value.value)

    async def _fallback(self, fallback: str | Sequence[str], session: SessionInfo) -> tuple[str, bool, str]:
        """Run the fallback: (what ran, whether it succeeded, detail for the record)."""
        if isinstance(fallback, str):
            try:
                await self.bus.manager(ld.TERMINATE_SESSION, ld.SESSION_ID_SIG, (session.id,))
            except SekishoDBusError as exc:
                log.error("fallback: %s", exc)
                return TERMINATE, False, exc.name
            log.warning("fallback: session %s terminated", session.id)
            return TERMINATE, True, session.id
        ok, detail = await self.commands.run(fallback, session, "fallback")
        if ok:
            log.warning("fallback %s ran for session %s", fallback[0], session.id)
        return fallback[0], ok, detail
