"""What one driver event decided, told back to the driver that asked (``sekisho sim tap``).

A driver that wants to know puts a callable under ``raw["answer"]`` of its event; drivers still
import nothing but ``policies`` types, and no controller learns that anyone is listening. The
daemon sets a ``Decisions`` as the current context while it handles that event. asyncio copies
the context into every task and callback started meanwhile, so a decision taken later on the
event's behalf (a PIN checked in an executor) is still counted as this event's, and a decision
for another event never is.

Failure model: an answer is a courtesy to the person at the simulator, never part of the record.
It is sent once, after the group commit of what it reports has been attempted (it is queued
behind the commit in the loop); a decision that comes after the answer is not sent, and a
driver that stops waiting loses nothing but the answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from .store.record import NewEvent

Answer = Callable[[dict[str, Any]], None]


class Decisions:
    """The decisions recorded on behalf of one event, and the callable to answer with."""

    def __init__(self, answer: Answer, loop: asyncio.AbstractEventLoop) -> None:
        self._answer = answer
        self._loop = loop
        self.decided: list[dict[str, Any]] = []
        self._scheduled = False
        self._sent = False

    def add(self, item: NewEvent) -> None:
        if self._sent:
            return
        self.decided.append({k: item.columns.get(k) for k in ("result", "reason", "rule")})
        if not self._scheduled:
            # Behind the group commit this item's _queue call scheduled: the answer reports
            # what has been written, and takes in every decision of the same tick.
            self._scheduled = True
            self._loop.call_soon(self.send)

    def send(self, **extra: Any) -> None:
        if self._sent:
            return
        self._sent = True
        self._answer({"decided": self.decided, **extra})


class Answering:
    """Tracks, through a context variable, which event (if any) the daemon is deciding for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.current: contextvars.ContextVar[Decisions | None] = contextvars.ContextVar("deciding", default=None)

    def start(self, answer: Answer) -> tuple[Decisions, contextvars.Token]:
        decisions = Decisions(answer, self.loop)
        return decisions, self.current.set(decisions)

    def end(self, token: contextvars.Token) -> None:
        self.current.reset(token)

    def recorded(self, item: object) -> None:
        """Called for everything queued for the store; counts events toward the current answer."""
        decisions = self.current.get()
        if decisions is not None and isinstance(item, NewEvent):
            decisions.add(item)
