"""What a lock did, step by step, and how it ended: the record the daemon keeps and publishes,
and the desk policy's next inputs (``SeatLockResult.events``).

Every step carries its monotonic time, so latencies (card out to lock confirmed) are measured
on the clock of ``Event.mono``, and a lock that failed says where: the listing, the call, the
confirmation or the fallback.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sekisho.policies.events import (
    Event,
    NoSessionToLock,
    SessionLocked,
    SessionLockFailed,
    SessionTerminated,
)

from . import logind_defs as ld
from .logind_commands import TERMINATE
from .logind_sessions import SessionInfo


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
