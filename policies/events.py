"""What the hardware reported, as plain frozen values.

Drivers build these and hand them to their ``emit`` callback; nothing else crosses from a
driver into the daemon. Names are past tense: each one is a fact that already happened.
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
