"""Print release: jobs held at CUPS until a supervisor's card or a signed command releases them.

``PrintRelease`` keeps the jobs waiting in the holding queue in memory, rebuilt from the
driver's ``PrintJobHeld`` at every start (and again after cupsd comes back): CUPS holds the
jobs, so nothing of them needs to be on disk here but whether a job was published ``held``
already, which a restart does not say again. A card at the printer's reader releases the
oldest waiting job, or the one chosen on the console (``print.choose``; ``sekisho.policies.printing``
decides); ``print.release`` / ``print.cancel``
act on one job by id; a job older than ``[print] expire_minutes`` (counted from when CUPS took
it) is cancelled. Each fate is an event on ``print/<node>/event`` and an audit row
(``print.release``, ``print.cancel``, ``print.expire``), and every change republishes the
retained ``print/<node>/queue``.

Failure model: the driver's actions raise ``DriverError``; a job whose release or cancel failed
stays waiting (nothing is released by mistake, nothing is lost), a command answers the error and
a card gets ``release_refused`` with reason ``cups_error``. A job is never offered to two actions
at once (``busy``), nor released once its time is up. A release or cancel runs as a task of
its own, which a caller that goes away (a command's time-out, the stop) does not cancel: what
CUPS carried out is recorded; the stop waits ``STOP_S`` for such tasks. cupsd lost for
``[print] unavailable_after_s`` raises ``print_unavailable`` (outages.py), cleared when it is
back; an expiry that could not cancel is tried again when cupsd is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sekisho.drivers.base import DriverError
from sekisho.policies import access
from sekisho.policies import printing as policy
from sekisho.policies.events import Event, PrintJobHeld, PrintJobLeft, PrintServerBack, PrintServerLost
from sekisho.policies.printing import RELEASE_RULE, Reason, Refuse, Release, Tapper, WaitingJob

from .alarms import Alarms
from .config import PrintConfig
from .errors import SekishoError
from .lockouts import Lockouts
from .outages import Outages
from .presence import Presence
from .print_events import PrintEvents, when
from .print_jobs import PrintJobs
from .rules_in_force import RulesInForce
from .store.people import People
from .store.record import Record

log = logging.getLogger(__name__)

ALARM = "print_unavailable"
SOURCE = "print"
"""The alarm's source: a fixed word, since a queue name need not be topic-safe."""
RETRY_S = 30.0
"""How soon an expiry that could not cancel (cupsd busy or gone) is tried again."""
STOP_S = 5.0
"""How long the stop waits for a release or cancel under way: with the driver's own 5 s and
the publisher's flush, under the unit's TimeoutStopSec (20 s), so that the records of
everything else are still committed after it."""


class PrintQueue(Protocol):
    """What the controller asks of the CUPS driver (drivers/cups.py ``CupsQueue``)."""

    async def release(self, job: int) -> None: ...

    async def cancel(self, job: int) -> None: ...

    async def check(self) -> list[str]: ...


def _by(actor: str) -> str:
    """How a fate came about, from who caused it: ``key:...`` a signed command, ``cli:...`` the
    control socket."""
    return "command" if actor.startswith("key:") else "cli" if actor.startswith("cli:") else "card"


class PrintRelease:
    def __init__(self, cfg: PrintConfig, driver: PrintQueue, *, people: People, record: Record, presence: Presence,
                 alarms: Alarms, lockouts: Lockouts | None, rules: RulesInForce, timezone: str, says: PrintEvents,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.driver = driver
        self.people = people
        self.record = record
        self.presence = presence
        self.lockouts = lockouts
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.says = says
        self.loop = loop
        self.jobs = PrintJobs(cfg.expire_minutes)
        self.timer: asyncio.TimerHandle | None = None
        """The next expiry."""
        self.retry: asyncio.TimerHandle | None = None
        """The next try of an expiry that could not cancel."""
        self.outage = Outages(alarms, loop, cfg.unavailable_after_s, kind=ALARM,
                              details={"server": cfg.server or "default"})
        self.tasks: set[asyncio.Task[None]] = set()
        self.warnings: tuple[str, ...] = ()
        """What the driver found wrong with the CUPS set-up at start."""
        self.stopping = False

    def start(self) -> None:
        """The queue as it stands: empty until the driver, started next, reports what waits."""
        self.says.queue_now(())

    def check_later(self) -> None:
        """``check`` in the background, once the driver runs: a cupsd that never answers must
        not hold up the start (pycups calls have no time-out)."""
        def said(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("print: the CUPS set-up check failed: %r", exc)

        self.loop.create_task(self.check()).add_done_callback(said)

    async def check(self) -> None:
        """The driver's warnings about the CUPS set-up, each logged and kept for ``print.list``;
        a cupsd that cannot be asked is logged too (the driver reports it lost, and the alarm
        follows)."""
        try:
            self.warnings = tuple(await self.driver.check())
        except DriverError as exc:
            log.error("print: cannot check the CUPS set-up: %s", exc)
        for warning in self.warnings:
            log.warning("print: %s", warning)

    async def stop(self) -> None:
        """No more expiries; a release or cancel under way is waited for (the driver still runs),
        so one that CUPS carried out is recorded too."""
        for handle in (self.timer, self.retry):
            if handle is not None:
                handle.cancel()
        self.timer = self.retry = None
        self.outage.stop()
        self.stopping = True
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=STOP_S)
            if late:
                log.error("print: %d release or cancel still waiting for CUPS after %g s at the stop: not recorded "
                          "(CUPS may have carried them out)", len(late), STOP_S)

    # ------------------------------------------------------------------------- from the driver
    def handle(self, event: Event) -> None:
        match event:
            case PrintJobHeld():
                self._held(event)
            case PrintJobLeft():
                self._left(event)
            case PrintServerLost(reason=reason):
                log.error("print: cupsd cannot be reached (%s); nothing is released until it is back", reason)
                self.outage.lost(SOURCE, reason)
            case PrintServerBack():
                log.info("print: cupsd reached again")
                self.outage.back(SOURCE)
                self._schedule()

    def _held(self, e: PrintJobHeld) -> None:
        if self.jobs.known(e.job):
            return  # known: said again after a reconnect
        person = self.cfg.users.get(e.user, e.user)
        known = self.people.person(person) is not None
        job = WaitingJob(job=e.job, user=e.user, person_id=person if known else None, title=e.title, pages=e.pages,
                         submitted=e.submitted)
        self.jobs.waiting[e.job] = job
        if self.record.print_job_held(e.job, when(e.submitted)):
            log.info("print: job %d still held (%s)", e.job, e.user)  # said before this restart
        else:
            log.info("print: job %d held (%s, %s pages)", e.job, e.user, e.pages if e.pages is not None else "?")
            self.says.event("held", job)
        self._changed()

    def _left(self, e: PrintJobLeft) -> None:
        if e.released and e.job in self.jobs.busy:
            # Its end at the printer came before the release's own record (the loop had not yet
            # resumed the release): said after it.
            self.loop.call_later(0.1, self._left, e)
            return
        if (job := self.jobs.waiting.pop(e.job, None)) is not None:
            self.jobs.busy.discard(e.job)
            self.says.event("left", job, by="owner", reason=e.state)
            self._changed()
        elif (job := self.jobs.released.pop(e.job, None)) is not None:
            if e.state == "completed":
                self.says.event("printed", job, pages=e.pages)
            else:
                self.says.event("failed", job, reason=e.state)

    # ------------------------------------------------------------------------- a card at the printer
    def card(self, card_hash: str) -> None:
        """A card presented at the printer's reader: release the chosen or the oldest waiting job,
        or say why not. None once the stop has begun (its wait covers the releases begun before)."""
        if self.stopping:
            log.warning("print: card at %s while stopping: nothing released", self.cfg.reader)
            return
        holder = self.people.card_holder(card_hash)
        tapper = None
        if holder is not None:
            supervisor = access.holds(holder, self.cfg.supervisor_levels, self.rules.current, dt.datetime.now(self.tz))
            inside = self.presence.entered(holder.person_id, self.cfg.area) if self.cfg.area else True
            locked_out = self.lockouts is not None and self.lockouts.locked_out(card_hash)
            tapper = Tapper(holder.person_id, supervisor, inside, locked_out)
        outcome = policy.tap(tapper, self.jobs.free(), self.jobs.chosen)
        match outcome:
            case Release(job=job, person_id=person_id):
                self._spawn(self._by_card(self.jobs.take(job.job, "release"), self.says.who("supervisor", person_id)))
            case Refuse(reason=reason, person_id=person_id, job=job):
                role = "person" if reason == Reason.NOT_SUPERVISOR else "supervisor"
                who = self.says.who(role, person_id) if person_id else None
                log.info("print: card at %s releases nothing (%s)", self.cfg.reader, reason)
                self.says.event("release_refused", job, by="card", actor=who, reason=reason, rule=outcome.rule)

    async def _by_card(self, job: WaitingJob, actor: str) -> None:
        try:
            await self._release(job, actor, "card")
        except SekishoError as exc:
            self.says.event("release_refused", job, by="card", actor=actor, reason="cups_error", rule=RELEASE_RULE)
            log.error("print: %s", exc)

    # ------------------------------------------------------------------------- the ops
    def listing(self) -> list[dict[str, Any]]:
        return [self.says.describe(j) for j in self.jobs.oldest_first()]

    async def release(self, number: int, actor: str) -> dict[str, Any]:
        """Move a waiting job to the printer; ``SekishoError`` when it is not waiting or CUPS refused."""
        await self._acting(self._release(self.jobs.take(number, "release"), actor, _by(actor)))
        return {"job": number, "printer": self.cfg.printer}

    def choose(self, number: int, actor: str) -> dict[str, Any]:
        """The job the next supervisor's card at the printer releases, instead of the oldest: the
        card still decides (and is recorded as the release's actor); this only says which job,
        and who said it is an audit row."""
        self.jobs.choose(number)
        self.record.audit(actor, "print.choose", {"job": number})
        self.says.queue_now(self.jobs.waiting.values(), self.jobs.chosen)
        return {"job": number}

    async def cancel(self, number: int, actor: str) -> dict[str, Any]:
        await self._acting(self._cancel(self.jobs.take(number, "cancel"), actor))
        return {"job": number}

    async def _release(self, job: WaitingJob, actor: str, by: str) -> None:
        await self._run(job, self.driver.release, "release", reschedule=True)
        self.jobs.released[job.job] = job
        self.says.event("released", job, by=by, actor=actor, rule=RELEASE_RULE if by == "card" else "")
        self._changed()

    async def _cancel(self, job: WaitingJob, actor: str) -> None:
        await self._run(job, self.driver.cancel, "cancel", reschedule=True)
        self.says.event("cancelled", job, by=_by(actor), actor=actor)
        self._changed()

    async def _acting(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an action and its record as a task of its own: a caller that goes away (a
        command's time-out, the control socket closing at the stop) cancels its wait, not the
        record of what CUPS did. The stop waits for the task."""
        await asyncio.shield(self._spawn(coro))

    async def _run(self, job: WaitingJob, action: Callable[[int], Coroutine[Any, Any, None]], what: str,
                   reschedule: bool = False) -> None:
        """One driver action on a job taken; the job is out of ``waiting`` once it succeeded,
        still there (free again) when it failed, and with ``reschedule`` its expiry due again: one
        that came while the job was busy was skipped. (A failed expiry has its own retry.)"""
        done = False
        try:
            await action(job.job)
            done = True
        except DriverError as exc:
            raise SekishoError(f"job {job.job}: cannot {what}: {exc}") from None
        finally:
            self.jobs.settle(job.job, done)
            if not done and reschedule:
                self._schedule()

    # ------------------------------------------------------------------------- expiry
    def _schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.stopping:
            self.timer = None
            return
        due = policy.next_expiry(self.jobs.idle(), self.jobs.expire_s)
        self.timer = None if due is None else self.loop.call_later(max(0.0, due - time.time()), self._expire_due)

    def _expire_due(self) -> None:
        self.timer = None
        for job in policy.expired(self.jobs.idle(), time.time(), self.jobs.expire_s):
            self._spawn(self._expire(self.jobs.take(job.job, "cancel")))
        self._schedule()

    async def _expire(self, job: WaitingJob) -> None:
        try:
            await self._run(job, self.driver.cancel, "cancel")
        except SekishoError as exc:
            log.error("print: expired %s; tried again in %g s, or when cupsd is back", exc, RETRY_S)
            if not self.stopping:
                self.retry = self.loop.call_later(RETRY_S, self._schedule)
            return
        self.says.event("expired", job, by="expiry", reason=f"waited {self.cfg.expire_minutes:g} min")
        self._changed()

    # ------------------------------------------------------------------------- what is said
    def _changed(self) -> None:
        self.jobs.forget_choice_if_gone()
        self.says.queue_now(self.jobs.waiting.values(), self.jobs.chosen)
        self._schedule()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task the stop waits for."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
