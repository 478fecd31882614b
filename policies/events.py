"""What the hardware reported, as plain frozen values.

Drivers build these and hand them to their ``emit`` callback; nothing else crosses from a
driver into the daemon. The session events at the end are the same kind of fact coming back
from an actuator (logind), so a policy can decide on them too. Names are past tense: each one
is a fact that already happened.
``at`` is the wall clock for the record; ``mono`` is the monotonic clock for latencies, so a
clock step never bends a measured interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, kw_only=True)
class Event:
    source: str
    """The configured name of the reader (or other input) that saw it."""
    at: float = field(default_factory=time.time)
    mono: float = field(default_factory=time.monotonic)
    raw: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific extras (ATR, reader name, ...): kept for logs, never decided on."""


@dataclass(frozen=True, kw_only=True)
class CardPresented(Event):
    uid: bytes


@dataclass(frozen=True, kw_only=True)
class CardRemoved(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class CardUnreadable(Event):
    reason: str
    """Why: ``no_answer``, ``status 6A81``, ``short_answer`` ..."""


@dataclass(frozen=True, kw_only=True)
class PinEntered(Event):
    digits: str


@dataclass(frozen=True, kw_only=True)
class ReaderLost(Event):
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ReaderBack(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class LeaveSeatPressed(Event):
    """The desk's leave-seat key (an evdev key or the simulator's)."""


@dataclass(frozen=True, kw_only=True)
class SessionLocked(Event):
    """logind confirmed the lock: the session's ``LockedHint`` turned true."""

    session: str
    latency_ms: float | None = None
    """From the lock request to the confirmation, when the daemon measured it."""


@dataclass(frozen=True, kw_only=True)
class SessionLockFailed(Event):
    """The lock was not confirmed after every retry; the fallback, if any, has run."""

    session: str | None
    reason: str
    """``unconfirmed``, or the D-Bus error name that stopped it."""
    latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class NoSessionToLock(Event):
    """The seat has no active graphical user session (the login screen, say)."""


@dataclass(frozen=True, kw_only=True)
class SessionUnlocked(Event):
    """The session's ``LockedHint`` turned false: someone unlocked it at the desk."""

    session: str


@dataclass(frozen=True, kw_only=True)
class InputChanged(Event):
    """A binary input changed: a door contact (active = open), an exit button (active =
    pressed) or a fire alarm input (active = alarm). The config says which an input is."""

    active: bool
