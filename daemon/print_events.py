"""Print release as the bus and the store see it: each job's event on ``print/<node>/event`` with
its audit row, and the retained ``print/<node>/queue`` (docs/mqtt.md).

``PrintEvents`` builds the payloads from a ``WaitingJob``: the operator only as a pseudonym
(``subject``), the document's name only as a keyed hash unless ``[print] document_names``, the
CUPS user name never. What it builds goes to ``queue``, which commits it with its audit and
outbox rows before anything is published (daemon/store/record.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sekisho.policies import printing as policy
from sekisho.policies.printing import WaitingJob

from .config import PrintConfig
from .keys import SiteKey
from .presence import Presence
from .store.record import NewEvent, NewState
from .timestamps import rfc3339

log = logging.getLogger(__name__)

AUDIT = {"released": "print.release", "cancelled": "print.cancel", "expired": "print.expire"}
"""The audit rows of the fates sekisho gave; the other actions' rows are ``print.<action>``."""


def when(epoch: float) -> str:
    return rfc3339(dt.datetime.fromtimestamp(epoch, dt.timezone.utc))


class PrintEvents:
    def __init__(self, cfg: PrintConfig, *, presence: Presence, key: SiteKey, event_topic: str, queue_topic: str,
                 queue: Callable[[NewEvent | NewState], None]) -> None:
        self.cfg = cfg
        self.presence = presence
        self.key = key
        self.event_topic = event_topic
        self.queue_topic = queue_topic
        self.queue = queue
        self.expire_s = cfg.expire_minutes * 60

    def who(self, role: str, person_id: str) -> str:
        """An actor as the contract words it: ``supervisor:<pseudonym>``, ``person:<pseudonym>``."""
        return f"{role}:{self.presence.subject_of(person_id)}"

    def describe(self, job: WaitingJob) -> dict[str, Any]:
        """A waiting job as ``print.list`` and the retained queue show it."""
        document = {"name": job.title} if self.cfg.document_names else {"hash": self.key.document(job.title)}
        return {"job": job.job, "subject": self.presence.subject_of(job.person_id) if job.person_id else None,
                "pages": job.pages, "document": document, "submitted": when(job.submitted),
                "expires": when(policy.expires(job, self.expire_s))}

    def queue_now(self, waiting: Iterable[WaitingJob], chosen: int | None = None) -> None:
        """The retained queue: every waiting job, oldest first, and the one chosen for the next card."""
        jobs = [self.describe(j) for j in sorted(waiting, key=policy.age_order)]
        self.queue(NewState(self.queue_topic, {"jobs": jobs, "printer": self.cfg.printer, "chosen": chosen}))

    def event(self, action: str, job: WaitingJob | None, *, by: str | None = None, actor: str | None = None,
              reason: str | None = None, pages: int | None = None, rule: str = "") -> None:
        """One event: its payload on the bus, its row (``person_id``: the job's operator; who
        acted is the ``actor``; ``rule``: the policy's, for a card) and its audit row."""
        described = self.describe(job) if job is not None else {}
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
