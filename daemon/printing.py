"""Print release: jobs held at CUPS until a supervisor's card or a signed command releases them.

``PrintRelease`` keeps the jobs waiting in the holding queue in memory, rebuilt from the
driver's ``PrintJobHeld`` at every start (and again after cupsd comes back): CUPS holds the
jobs, so nothing of them needs to be on disk here but whether a job was published ``held``
already, which a restart does not say again. A card at the printer's reader releases the
oldest waiting job (``sekisho.policies.printing`` decides); ``print.release`` / ``print.cancel``
act on one job by id; a job older than ``[print] expire_minutes`` (counted from when CUPS took
it) is cancelled. Each fate is an event on ``print/<node>/event`` and an audit row
(``print.release``, ``print.cancel``, ``print.expire``), and every change republishes the
retained ``print/<node>/queue``.

Failure model: the driver's actions raise ``DriverError``; a job whose release or cancel failed
stays waiting (nothing is released by mistake, nothing is lost), a command answers the error and
a card gets ``release_refused`` with reason ``cups_error``. A job is never offered to two actions
at once (``busy``). cupsd lost for ``[print] unavailable_after_s`` raises ``print_unavailable``,
cleared when it is back; an expiry that could not cancel is tried again when cupsd is back.
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
from sekisho.policies.printing import RELEASE_RULE, Refuse, Release, Tapper, WaitingJob

from .alarms import Alarms
from .config import PrintConfig
from .errors import SekishoError
from .keys import SiteKey
from .presence import Presence
from .rules_in_force import RulesInForce
from .store.people import People
from .store.record import NewEvent, NewState, Record
from .timestamps import rfc3339

log = logging.getLogger(__name__)

ALARM = "print_unavailable"
SOURCE = "print"
"""The alarm's source: a fixed word, since a queue name need not be topic-safe."""
RETRY_S = 30.0
"""How soon an expiry that could not cancel (cupsd busy or gone) is tried again."""
AUDIT = {"released": "print.release", "cancelled": "print.cancel", "expired": "print.expire"}


class PrintQueue(Protocol):
    """What the controller asks of the CUPS driver (drivers/cups.py ``CupsQueue``)."""

    async def release(self, job: int) -> None: ...

    async def cancel(self, job: int) -> None: ...

    async def check(self) -> list[str]: ...


def _when(epoch: float) -> str:
    return rfc3339(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))


def _by(actor: str) -> str:
    """How a fate came about, from who caused it: ``key:...`` a signed command, ``cli:...`` the
    control socket."""
    return "command" if actor.startswith("key:") else "cli" if actor.startswith("cli:") else "card"


class PrintRelease:
    def __init__(self, cfg: PrintConfig, driver: PrintQueue, *, people: People, record: Record, presence: Presence,
                 alarms: Alarms, key: SiteKey, rules: RulesInForce, timezone: str, event_topic: str, queue_topic: str,
                 loop: asyncio.AbstractEventLoop, queue: Callable[[NewEvent | NewState], None]) -> None:
        self.cfg = cfg
        self.driver = driver
        self.people = people
        self.record = record
        self.presence = presence
        self.alarms = alarms
        self.key = key
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.event_topic = event_topic
        self.queue_topic = queue_topic
        self.loop = loop
        self.queue = queue
        self.expire_s = cfg.expire_minutes * 60
        self.waiting: dict[int, WaitingJob] = {}
        self.busy: set[int] = set()
        """Waiting jobs a release or cancel is under way for: no tap, command or expiry takes them."""
        self.released: dict[int, WaitingJob] = {}
        """Jobs sekisho released, until the printer says how they ended."""
        self.timer: asyncio.TimerHandle | None = None
        """The next expiry."""
        self.retry: asyncio.TimerHandle | None = None
        """The next try of an expiry that could not cancel."""
        self.unavailable: asyncio.TimerHandle | None = None
        self.alarm_raised = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.warnings: tuple[str, ...] = ()
        """What the driver found wrong with the CUPS set-up at start."""
        self.stopping = False

    @property
    def reader(self) -> str:
        return self.cfg.reader

    def start(self) -> None:
        """The queue as it stands: empty until the driver, started next, reports what waits."""
        self._publish_queue()

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
        for handle in (self.timer, self.retry, self.unavailable):
            if handle is not None:
                handle.cancel()
        self.timer = self.retry = self.unavailable = None
        self.stopping = True
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # ------------------------------------------------------------------------- from the driver
    def handle(self, event: Event) -> None:
        match event:
            case PrintJobHeld():
                self._held(event)
            case PrintJobLeft():
                self._left(event)
            case PrintServerLost(reason=reason):
                log.error("print: cupsd cannot be reached (%s); nothing is released until it is back", reason)
                if self.unavailable is None and not self.alarm_raised:
                    self.unavailable = self.loop.call_later(self.cfg.unavailable_after_s, self._raise, reason)
            case PrintServerBack():
                log.info("print: cupsd reached again")
                if self.unavailable is not None:
                    self.unavailable.cancel()
                    self.unavailable = None
                if self.alarm_raised:
                    self.alarm_raised = False
                    self.alarms.clear(ALARM, SOURCE)
                self._schedule()

    def _raise(self, reason: str) -> None:
        self.unavailable = None
        self.alarm_raised = True
        self.alarms.raise_(ALARM, SOURCE, "warning", reason=reason, server=self.cfg.server or "default")

    def _held(self, e: PrintJobHeld) -> None:
        if e.job in self.waiting or e.job in self.released:
            return  # known: said again after a reconnect
        person = self.cfg.users.get(e.user, e.user)
        known = self.people.person(person) is not None
        job = WaitingJob(job=e.job, user=e.user, person_id=person if known else None, title=e.title, pages=e.pages,
                         submitted=e.submitted)
        self.waiting[e.job] = job
        if self.record.print_job_held(e.job, _when(e.submitted)):
            log.info("print: job %d still held (%s)", e.job, e.user)  # said before this restart
        else:
            log.info("print: job %d held (%s, %s pages)", e.job, e.user, e.pages if e.pages is not None else "?")
            self._event("held", job)
        self._changed()

    def _left(self, e: PrintJobLeft) -> None:
        if (job := self.waiting.pop(e.job, None)) is not None:
            self.busy.discard(e.job)
            self._event("left", job, by="owner", reason=e.state)
            self._changed()
        elif (job := self.released.pop(e.job, None)) is not None:
            if e.state == "completed":
                self._event("printed", job, pages=e.pages)
            else:
                self._event("failed", job, reason=e.state)

    # ------------------------------------------------------------------------- a card at the printer
    def card(self, card_hash: str) -> None:
        """A card presented at the printer's reader: release the oldest waiting job, or say why not."""
        holder = self.people.card_holder(card_hash)
        tapper = None
        if holder is not None:
            supervisor = access.holds(holder, self.cfg.supervisor_levels, self.rules.current, dt.datetime.now(self.tz))
            inside = self.presence.entered(holder.person_id, self.cfg.area) if self.cfg.area else True
            tapper = Tapper(holder.person_id, supervisor, inside)
        outcome = policy.tap(tapper, (j for n, j in self.waiting.items() if n not in self.busy))
        match outcome:
            case Release(job=job, person_id=person_id):
                actor = f"supervisor:{self.presence.subject_of(person_id)}"
                self._spawn(self._by_card(self._take(job.job, "release"), actor))
            case Refuse(reason=reason, person_id=person_id, job=job):
                who = f"supervisor:{self.presence.subject_of(person_id)}" if person_id else None
                log.info("print: card at %s releases nothing (%s)", self.cfg.reader, reason)
                self._event("release_refused", job, by="card", actor=who, reason=reason, rule=outcome.rule)

    async def _by_card(self, job: WaitingJob, actor: str) -> None:
        try:
            await self._release(job, actor, "card")
        except SekishoError as exc:
            self._event("release_refused", job, by="card", actor=actor, reason="cups_error", rule=RELEASE_RULE)
            log.error("print: %s", exc)

    # ------------------------------------------------------------------------- the ops
    def listing(self) -> list[dict[str, Any]]:
        return [self._describe(j) for j in self._oldest_first()]

    async def release(self, number: int, actor: str) -> dict[str, Any]:
        """Move a waiting job to the printer; ``SekishoError`` when it is not waiting or CUPS refused."""
        await self._release(self._take(number, "release"), actor, _by(actor))
        return {"job": number, "printer": self.cfg.printer}

    async def cancel(self, number: int, actor: str) -> dict[str, Any]:
        job = self._take(number, "cancel")
        await self._run(job, self.driver.cancel, "cancel")
        self._event("cancelled", job, by=_by(actor), actor=actor)
        self._changed()
        return {"job": number}

    async def _release(self, job: WaitingJob, actor: str, by: str) -> None:
        await self._run(job, self.driver.release, "release")
        self.released[job.job] = job
        self._event("released", job, by=by, actor=actor, rule=RELEASE_RULE if by == "card" else "")
        self._changed()

    def _take(self, number: int, what: str) -> WaitingJob:
        """A waiting job, marked busy before anything awaits: no other tap, command or expiry
        takes it while its action runs."""
        job = self.waiting.get(number)
        if job is None or number in self.busy:
            held = ", ".join(str(n) for n in sorted(set(self.waiting) - self.busy)) or "none"
            raise SekishoError(f"no job {number} waiting to {what} (waiting: {held})")
        self.busy.add(number)
        return job

    async def _run(self, job: WaitingJob, action: Callable[[int], Coroutine[Any, Any, None]], what: str) -> None:
        """One driver action on a job taken; the job is out of ``waiting`` once it succeeded,
        still there (and free again) when it failed."""
        try:
            await action(job.job)
        except DriverError as exc:
            raise SekishoError(f"job {job.job}: cannot {what}: {exc}") from None
        finally:
            self.busy.discard(job.job)
        self.waiting.pop(job.job, None)

    # ------------------------------------------------------------------------- expiry
    def _schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.stopping:
            self.timer = None
            return
        due = policy.next_expiry((j for n, j in self.waiting.items() if n not in self.busy), self.expire_s)
        self.timer = None if due is None else self.loop.call_later(max(0.0, due - time.time()), self._expire_due)

    def _expire_due(self) -> None:
        self.timer = None
        waiting = (j for n, j in self.waiting.items() if n not in self.busy)
        for job in policy.expired(waiting, time.time(), self.expire_s):
            self._spawn(self._expire(self._take(job.job, "cancel")))
        self._schedule()

    async def _expire(self, job: WaitingJob) -> None:
        try:
            await self._run(job, self.driver.cancel, "cancel")
        except SekishoError as exc:
            log.error("print: expired %s; tried again in %g s, or when cupsd is back", exc, RETRY_S)
            if not self.stopping:
                self.retry = self.loop.call_later(RETRY_S, self._schedule)
            return
        self._event("expired", job, by="expiry", reason=f"waited {self.cfg.expire_minutes:g} min")
        self._changed()

    # ------------------------------------------------------------------------- what is said
    def _changed(self) -> None:
        self._publish_queue()
        self._schedule()

    def _oldest_first(self) -> list[WaitingJob]:
        return sorted(self.waiting.values(), key=lambda j: (j.submitted, j.job))

    def _publish_queue(self) -> None:
        self.queue(NewState(self.queue_topic, {"jobs": self.listing(), "printer": self.cfg.printer}))

    def _document(self, job: WaitingJob) -> dict[str, str]:
        return {"name": job.title} if self.cfg.document_names else {"hash": self.key.document(job.title)}

    def _describe(self, job: WaitingJob) -> dict[str, Any]:
        return {"job": job.job, "subject": self.presence.subject_of(job.person_id) if job.person_id else None,
                "pages": job.pages, "document": self._document(job), "submitted": _when(job.submitted),
                "expires": _when(policy.expires(job, self.expire_s))}

    def _event(self, action: str, job: WaitingJob | None, *, by: str | None = None, actor: str | None = None,
               reason: str | None = None, pages: int | None = None, rule: str = "") -> None:
        """One event: its payload on the bus, its row (``person_id``: the job's operator; who
        acted is the ``actor``; ``rule``: the policy's, for a card) and its audit row."""
        described = self._describe(job) if job is not None else {}
        if action not in ("held", "release_refused"):  # those two are logged where they are decided
            log.info("print: job %s %s%s%s", job.job if job else "-", action, f" by {actor}" if actor else "",
                     f" ({reason})" if reason else "")
        payload: dict[str, Any] = {
            "action": action, "job": job.job if job else None, "subject": described.get("subject"),
            "user_known": job is not None and job.person_id is not None,
            "pages": pages if pages is not None else job.pages if job else None,
            "document": described.get("document"), "submitted": described.get("submitted")}
        if by is not None:
            payload |= {"by": by, "actor": actor}
        if reason is not None:
            payload["reason"] = reason
        self.queue(NewEvent(kind="print", topic=self.event_topic, payload=payload, actor=actor or "daemon",
                            audit=AUDIT.get(action, ""),
                            columns={"result": action, "reason": reason or "", "rule": rule, "reader": self.cfg.reader,
                                     "person_id": job.person_id if job else None}))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
