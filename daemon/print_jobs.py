"""The jobs print release knows of, by CUPS job id: those waiting in the holding queue, which of
them an action is under way for (``busy``), which one the console chose for the next card, and
those released until the printer says how they ended.

Nothing here awaits, publishes or asks CUPS: daemon/printing.py acts, and keeps these in step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from sekisho.policies import printing as policy
from sekisho.policies.printing import WaitingJob

from .errors import SekishoError


class PrintJobs:
    def __init__(self, expire_minutes: float) -> None:
        self.expire_minutes = expire_minutes
        self.expire_s = expire_minutes * 60
        self.waiting: dict[int, WaitingJob] = {}
        self.busy: set[int] = set()
        """Waiting jobs a release or cancel is under way for: no tap, command or expiry takes them."""
        self.released: dict[int, WaitingJob] = {}
        """Jobs sekisho released, until the printer says how they ended."""
        self.chosen: int | None = None
        """The job the next supervisor's card releases instead of the oldest (``print.choose``)."""

    def known(self, number: int) -> bool:
        return number in self.waiting or number in self.released

    def oldest_first(self) -> list[WaitingJob]:
        return sorted(self.waiting.values(), key=policy.age_order)

    def idle(self) -> Iterator[WaitingJob]:
        """The waiting jobs no action is under way for."""
        return (j for n, j in self.waiting.items() if n not in self.busy)

    def free(self) -> Iterator[WaitingJob]:
        """The jobs a tap may take: idle, time not up (the expiry is about to cancel those)."""
        now = time.time()
        return (j for j in self.idle() if policy.expires(j, self.expire_s) > now)

    def take(self, number: int, what: str) -> WaitingJob:
        """A waiting job, marked busy before anything awaits: no other tap, command or expiry
        takes it while its action runs. A job whose time is up is not released."""
        job = self.waiting.get(number)
        if job is None or number in self.busy:
            held = ", ".join(str(n) for n in sorted(set(self.waiting) - self.busy)) or "none"
            raise SekishoError(f"no job {number} waiting to {what} (waiting: {held})")
        if what == "release" and policy.expires(job, self.expire_s) <= time.time():
            raise SekishoError(f"job {number} has waited more than {self.expire_minutes:g} min: it is cancelled, "
                               "not released")
        self.busy.add(number)
        return job

    def settle(self, number: int, done: bool) -> None:
        """An action on a job taken has ended: the job is gone from the waiting once it succeeded,
        free again when it failed."""
        self.busy.discard(number)
        if done:
            self.waiting.pop(number, None)

    def choose(self, number: int) -> None:
        if number not in set(j.job for j in self.free()):
            held = ", ".join(str(j.job) for j in sorted(self.free(), key=policy.age_order)) or "none"
            raise SekishoError(f"no job {number} waiting to choose (waiting: {held})")
        self.chosen = number

    def forget_choice_if_gone(self) -> None:
        if self.chosen not in self.waiting:
            self.chosen = None
