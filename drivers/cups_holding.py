"""What the CUPS driver sees and does at cupsd, over one connection at a time: the jobs in the
holding queue compared with those reported (``reconcile``), the holding queue kept stopped,
a job released (its hold lifted, then moved to the printer's queue) or cancelled, the set-up
checked. Called only from the driver's thread (drivers/cups.py), which owns the connection and
hands each new one in as ``conn``; what was reported survives a new connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sekisho.policies.events import Event, PrintJobHeld, PrintJobLeft

from .base import DriverError

log = logging.getLogger(__name__)

JOB_ATTRIBUTES = ["job-id", "job-name", "job-originating-user-name", "job-printer-uri", "job-state",
                  "time-at-creation", "job-impressions", "job-k-octets"]
STATES = {7: "cancelled", 8: "aborted", 9: "completed"}
"""IPP's job-state values once a job is over (RFC 8011 5.3.7)."""
PRINTER_STOPPED = 5
HOLD_REASON = "held by sekisho for a supervisor's release"
HOLD_POLICY, PRINTER_POLICY = "sekisho", "sekisho-printer"
"""The CUPS operation policies of the two queues (examples/cupsd-policy-sekisho.conf)."""


class HoldingQueue:
    def __init__(self, name: str, cups: Any, hold_queue: str, printer: str, send: Callable[[Event], None]) -> None:
        self.name = name
        self.cups = cups
        """The pycups module."""
        self.hold_queue = hold_queue
        self.printer = printer
        self.send = send
        self.conn: Any = None
        self.waiting: set[int] = set()
        """Jobs reported held and still in the holding queue."""
        self.released: set[int] = set()
        """Jobs this driver moved to the printer, watched until they end there."""
        self.warnings: list[str] = []

    def authenticate(self, conn: Any) -> None:
        """Stop the holding queue, which it should be already: an operation only the system group
        may do, so CUPS asks who we are (over its socket, the process's own user: PeerCred), and
        the connection keeps the answer. Without it every later request is anonymous, and CUPS
        hides each job's user and title (JobPrivateValues) from an anonymous request."""
        try:
            conn.disablePrinter(self.hold_queue, reason=HOLD_REASON)
        except self.cups.IPPError as exc:
            if exc.args and exc.args[0] == self.cups.IPP_NOT_FOUND:
                log.error("%s: CUPS has no holding queue %r (docs/printing.md sets it up)", self.name, self.hold_queue)
                return
            raise

    def reconcile(self, again: bool = False) -> None:
        """Compare the jobs waiting now with those reported; ``again`` reports every waiting job,
        known or not (after an outage: the controller may have restarted meanwhile)."""
        conn = self.conn
        self._keep_holding(conn)
        jobs = conn.getJobs(which_jobs="not-completed", requested_attributes=JOB_ATTRIBUTES)
        waiting = {job: a for job, a in jobs.items() if _queue(a) == self.hold_queue}
        for job in sorted(waiting if again else set(waiting) - self.waiting):
            a = waiting[job]
            self._hold(conn, job)
            self.send(PrintJobHeld(source=self.name, job=job, user=str(a.get("job-originating-user-name", "")),
                                    title=str(a.get("job-name", "")), pages=_count(a.get("job-impressions")),
                                    submitted=float(a.get("time-at-creation") or time.time()),
                                    size_kb=int(a.get("job-k-octets") or 0)))
        for job in sorted(self.waiting - set(waiting)):
            # Still not completed, yet not waiting: someone with the right moved it elsewhere.
            state, pages = ("moved", None) if job in jobs else self._ended(conn, job)
            self.send(PrintJobLeft(source=self.name, job=job, state=state, pages=pages))
        self.waiting = set(waiting)
        for job in sorted(self.released - set(jobs)):
            state, pages = self._ended(conn, job)
            self.released.discard(job)
            self.send(PrintJobLeft(source=self.name, job=job, state=state, pages=pages, released=True))

    def _hold(self, conn: Any, job: int) -> None:
        """A job's own hold as well: were the holding queue ever started, the job still waits."""
        try:
            conn.setJobHoldUntil(job, "indefinite")
        except self.cups.IPPError as exc:
            log.warning("%s: cannot set job %d to wait indefinitely: %s", self.name, job, words(exc))

    def _keep_holding(self, conn: Any) -> None:
        """The holding queue must stay stopped: someone who started it is undone at once. One
        that does not exist holds nothing and lists no job: a set-up problem ``check`` names."""
        try:
            attrs = conn.getPrinterAttributes(self.hold_queue, requested_attributes=["printer-state"])
        except self.cups.IPPError as exc:
            if exc.args and exc.args[0] == self.cups.IPP_NOT_FOUND:
                return
            raise
        if attrs.get("printer-state") != PRINTER_STOPPED:
            log.warning("%s: the holding queue %s was printing; stopped it again", self.name, self.hold_queue)
            conn.disablePrinter(self.hold_queue, reason=HOLD_REASON)
            self.warnings.append(f"the holding queue {self.hold_queue} was found printing and was stopped")

    def _ended(self, conn: Any, job: int) -> tuple[str, int | None]:
        try:
            a = conn.getJobAttributes(job, requested_attributes=["job-state", "job-impressions-completed"])
        except self.cups.IPPError:
            return "gone", None  # purged already (PreserveJobHistory off)
        state = STATES.get(int(a.get("job-state", 0)), "gone")
        return state, _count(a.get("job-impressions-completed")) if state == "completed" else None

    def release(self, job: int) -> None:
        conn = self.conn
        self._waiting_here(conn, job)
        # The job's own hold lifted while it is still in the stopped queue, where that prints
        # nothing; then the move. The other order could leave a job held in the printer's queue,
        # moved but never printed, if the second call failed.
        conn.setJobHoldUntil(job, "no-hold")
        try:
            conn.moveJob(job_id=job, job_printer_uri=f"ipp://localhost/printers/{self.printer}")
        except Exception:
            self._hold(conn, job)
            raise
        self.waiting.discard(job)
        self.released.add(job)

    def cancel(self, job: int) -> None:
        conn = self.conn
        self._waiting_here(conn, job)
        conn.cancelJob(job)
        self.waiting.discard(job)

    def _waiting_here(self, conn: Any, job: int) -> None:
        try:
            a = conn.getJobAttributes(job, requested_attributes=["job-state", "job-printer-uri"])
        except self.cups.IPPError:
            raise DriverError(f"no job {job} at CUPS") from None
        if _queue(a) != self.hold_queue or int(a.get("job-state", 0)) >= 7:
            raise DriverError(f"job {job} is not waiting in the holding queue {self.hold_queue}")

    def check(self) -> list[str]:
        conn = self.conn
        found = list(self.warnings)
        wanted = ["printer-state", "printer-is-accepting-jobs", "printer-is-shared", "printer-op-policy"]
        for name, policy in ((self.hold_queue, HOLD_POLICY), (self.printer, PRINTER_POLICY)):
            try:
                a = conn.getPrinterAttributes(name, requested_attributes=wanted)
            except self.cups.IPPError:
                found.append(f"CUPS has no queue {name!r}")
                continue
            if a.get("printer-op-policy") != policy:
                risk = "its users may move their own jobs" if policy == HOLD_POLICY else "anyone may print to it"
                found.append(f"queue {name}: operation policy {a.get('printer-op-policy')!r}, not {policy!r}: "
                             f"{risk} (lpadmin -p {name} -o printer-op-policy={policy})")
            if name == self.hold_queue and not a.get("printer-is-accepting-jobs"):
                found.append(f"the holding queue {name} rejects jobs: operators cannot print (cupsaccept {name})")
            if name == self.printer and a.get("printer-is-shared"):
                found.append(f"the printer's queue {name} is shared: other machines print to it without a "
                             f"release (lpadmin -p {name} -o printer-is-shared=false)")
        return found




def _queue(attrs: Mapping[str, Any]) -> str:
    """The queue's name from ``job-printer-uri`` (``ipp://host/printers/NAME``)."""
    return str(attrs.get("job-printer-uri", "")).rpartition("/")[2]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def words(exc: BaseException) -> str:
    """pycups' exceptions as one line: IPPError and HTTPError carry a status and text in args."""
    args = [a for a in exc.args if a not in (None, "")]
    return " ".join(str(a) for a in args) or type(exc).__name__
