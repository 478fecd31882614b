"""Print release: which waiting job a supervisor's card releases, and which jobs have waited too long.

Pure: the daemon (daemon/printing.py) says who tapped (``Tapper``, or None for a card nobody
holds) and what is waiting; these functions answer with a frozen outcome, ``Release`` or
``Refuse``, each naming its rule. A tap is judged in this order, the first that fails refusing:

1. the card is enrolled (``unknown_card``);
2. its holder holds a supervisor level, valid now (``not_supervisor``);
   and the card is not locked out after wrong PINs (``locked_out``), as at a door;
3. they are recorded inside the printer's area, when the site names one (``not_in_area``), and
   it is known who is inside at all (``occupancy_unknown``: fail-closed, paper is the leak);
4. a job is waiting (``no_job``); one chosen on the console (``print.choose``) must be free to
   release (``chosen_busy``: a command or the expiry is acting on it, or its time is up), so a
   card never releases another's document in its place;
then one job is released per tap: the chosen one, else the oldest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a card at the printer released nothing: the event's ``reason``."""

    UNKNOWN_CARD = "unknown_card"
    NOT_SUPERVISOR = "not_supervisor"
    LOCKED_OUT = "locked_out"
    NOT_IN_AREA = "not_in_area"
    OCCUPANCY_UNKNOWN = "occupancy_unknown"
    NO_JOB = "no_job"
    CHOSEN_BUSY = "chosen_busy"


RELEASE_RULE = "print.supervisor_card"
"""The rule a release by card names."""


@dataclass(frozen=True)
class WaitingJob:
    """A job held in the holding queue, as the controller keeps it."""

    job: int
    user: str
    """CUPS's job-originating-user-name."""
    person_id: str | None
    """The person the user maps to; None when it maps to nobody enrolled."""
    title: str
    pages: int | None
    submitted: float
    """CUPS's time-at-creation, epoch seconds."""


@dataclass(frozen=True)
class Tapper:
    """Who presented a card at the printer's reader."""

    person_id: str
    supervisor: bool
    """Holds one of the supervisor levels, with card and person valid, now."""
    inside: bool | None
    """Recorded inside the printer's area (True where the site names none); None: unknown."""
    locked_out: bool = False
    """Too many wrong PINs lately (at a door or a desk): the card releases nothing for a while."""


@dataclass(frozen=True)
class Release:
    job: WaitingJob
    person_id: str
    rule: str = RELEASE_RULE


@dataclass(frozen=True)
class Refuse:
    reason: Reason
    person_id: str | None = None
    job: WaitingJob | None = None
    """The job the tap would have released, when one was waiting."""

    @property
    def rule(self) -> str:
        return f"print.{self.reason}"


def age_order(job: WaitingJob) -> tuple[float, int]:
    """Oldest first: by when CUPS took the job, and CUPS's own order (the lower id) for equal times."""
    return job.submitted, job.job


def oldest(waiting: Iterable[WaitingJob]) -> WaitingJob | None:
    """The job that has waited longest."""
    return min(waiting, key=age_order, default=None)


def tap(tapper: Tapper | None, waiting: Iterable[WaitingJob], chosen: int | None = None) -> Release | Refuse:
    """What a card at the printer's reader does (the order is the module's)."""
    jobs = tuple(waiting)
    job = oldest(jobs) if chosen is None else next((j for j in jobs if j.job == chosen), None)
    if tapper is None:
        return Refuse(Reason.UNKNOWN_CARD, None, job)
    if not tapper.supervisor:
        return Refuse(Reason.NOT_SUPERVISOR, tapper.person_id, job)
    if tapper.locked_out:
        return Refuse(Reason.LOCKED_OUT, tapper.person_id, job)
    if tapper.inside is None:
        return Refuse(Reason.OCCUPANCY_UNKNOWN, tapper.person_id, job)
    if not tapper.inside:
        return Refuse(Reason.NOT_IN_AREA, tapper.person_id, job)
    if job is None:
        return Refuse(Reason.NO_JOB if chosen is None else Reason.CHOSEN_BUSY, tapper.person_id)
    return Release(job, tapper.person_id)


def expires(job: WaitingJob, expire_s: float) -> float:
    """When the job is cancelled if nobody released it: from when CUPS took it, not from when
    sekisho first saw it, so a restart of the daemon gives no job more time."""
    return job.submitted + expire_s


def expired(waiting: Iterable[WaitingJob], now: float, expire_s: float) -> tuple[WaitingJob, ...]:
    """The jobs whose time is up at ``now``, oldest first."""
    return tuple(sorted((j for j in waiting if expires(j, expire_s) <= now), key=age_order))


def next_expiry(waiting: Iterable[WaitingJob], expire_s: float) -> float | None:
    """When the next job's time is up; None when nothing waits."""
    job = oldest(waiting)
    return None if job is None else expires(job, expire_s)
