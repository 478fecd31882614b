"""The holding queue at CUPS, through pycups (OpenPrinting's binding): jobs waiting for a
supervisor, reported as ``PrintJobHeld``; released (moved to the real printer's queue) or
cancelled on the daemon's word.

What holds a job is CUPS itself, not this driver: the holding queue is stopped and accepting
(``cupsdisable``), so a job printed to it stays pending whatever ``job-hold-until`` its sender
gave, ``no-hold`` included, and whether sekisho runs or not. The queues' operation policy
(docs/printing.md) keeps users from moving their own job to the printer. This driver only
watches and acts; if it stops, jobs wait.

One thread owns the ``cups.Connection`` (pycups connections are not shared between threads):
it serves the daemon's requests (``release``, ``cancel``, ``check``) and, between them, asks
CUPS for the notifications of its subscription (job created, job state changed, printer state
changed). Any notification, and every ``RECONCILE_S`` regardless, makes it list the
not-completed jobs and compare them with what it reported (``_reconcile``): the list is the
truth, the notifications only make it prompt, so a notification lost with a subscription (cupsd
restarted, the lease ran out) loses nothing. cupsd unreachable is ``PrintServerLost`` once,
retried every ``RETRY_S``; reached again, ``PrintServerBack`` and every waiting job reported
again.

pycups is Debian's python3-cups, imported in ``start`` only.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

from sekisho.policies.events import PrintJobHeld, PrintJobLeft, PrintServerBack, PrintServerLost

from .base import DriverError, Emit, ThreadedDriver, check_options
from .options import Option, between

log = logging.getLogger(__name__)

POLL_S = 0.5
"""How often the thread asks for notifications: cupsd 2.4 does not implement notify-wait, so
pulling is the only way, and over the local socket a pull costs a fraction of a millisecond."""
RECONCILE_S = 10.0
RETRY_S = 2.0
LEASE_S = 300
"""The subscription's lease, renewed at a third of it: one left by a daemon that died ends by
itself instead of counting against cupsd's MaxSubscriptions."""
EVENTS = ["job-created", "job-state-changed", "job-completed", "printer-state-changed"]
JOB_ATTRIBUTES = ["job-id", "job-name", "job-originating-user-name", "job-printer-uri", "job-state",
                  "time-at-creation", "job-impressions", "job-k-octets"]
STATES = {7: "cancelled", 8: "aborted", 9: "completed"}
"""IPP's job-state values once a job is over (RFC 8011 5.3.7)."""
PRINTER_STOPPED = 5
HOLD_REASON = "held by sekisho for a supervisor's release"
HOLD_POLICY, PRINTER_POLICY = "sekisho", "sekisho-printer"
"""The CUPS operation policies of the two queues (examples/cupsd-policy-sekisho.conf)."""
STOP_S = 5.0


class CupsQueue(ThreadedDriver):
    OPTIONS: ClassVar[Mapping[str, Option]] = {
        "server": Option(str, "", "The CUPS server: a socket path, or host[:port]; empty: CUPS's default "
                         "(CUPS_SERVER, else /run/cups/cups.sock)."),
        "hold_queue": Option(str, "", "The holding queue operators print to."),
        "printer": Option(str, "", "The real printer's queue, where a released job goes."),
        "poll_s": Option(float, POLL_S, "How often CUPS is asked for news.", between(0.05, 10)),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        super().__init__(name, emit)
        self.server: str = options.get("server", "")
        self.hold_queue: str = options["hold_queue"]
        self.printer: str = options["printer"]
        self.poll_s: float = options.get("poll_s", POLL_S)
        self._requests: queue.Queue[tuple[Callable[[Any], Any], Future[Any]]] = queue.Queue()
        self._cups: Any = None
        self._conn: Any = None
        self._subscription: int | None = None
        self._renew_at = 0.0
        self._sequence = 0
        self._lost: str | None = None
        self._waiting: set[int] = set()
        """Jobs reported held and still in the holding queue."""
        self._released: set[int] = set()
        """Jobs this driver moved to the printer, watched until they end there."""
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------- the daemon's side
    async def start(self) -> None:
        check_options(self.OPTIONS, [("poll_s", self.poll_s)])
        try:
            import cups  # noqa: PLC0415  (Debian's python3-cups; only a print node needs it)
        except ImportError as exc:
            raise DriverError(f"pycups is not installed ({exc}): apt-get install python3-cups") from None
        self._cups = cups
        self._start_thread(self._run, "cups")

    async def stop(self) -> None:
        thread = self._close()
        if thread is not None:
            # A cupsd that hangs holds a pycups call (they have no time-out): the thread is a
            # daemon thread, and the daemon's stop goes on without it.
            await asyncio.get_running_loop().run_in_executor(None, thread.join, STOP_S)
            if thread.is_alive():
                log.warning("%s: CUPS did not answer within %g s of the stop; left behind", self.name, STOP_S)

    async def release(self, job: int) -> None:
        """Move ``job`` from the holding queue to the printer's and let it print."""
        await self._ask(lambda conn: self._release(conn, job))

    async def cancel(self, job: int) -> None:
        """Cancel ``job``, which must be waiting in the holding queue."""
        await self._ask(lambda conn: self._cancel(conn, job))

    async def check(self) -> list[str]:
        """What is wrong with the queues' set-up, each a sentence (docs/printing.md says how to
        set them up); the holding queue found printing is stopped here first."""
        return list(await self._ask(self._check))

    async def _ask(self, work: Callable[[Any], Any]) -> Any:
        if self._thread is None:
            raise DriverError("the print driver is not running")
        future: Future[Any] = Future()
        self._requests.put((work, future))
        return await asyncio.wrap_future(future)

    # ------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        next_reconcile = 0.0
        while not self._stopping.is_set():
            try:
                next_reconcile = self._turn(next_reconcile)
            except Exception:  # a bug here must not end the thread: every later request would hang
                log.exception("%s: unexpected error in the CUPS thread; connecting again", self.name)
                self._conn = None
                self._stopping.wait(RETRY_S)
        self._fail_requests()

    def _turn(self, next_reconcile: float) -> float:
        """One request served, or one look at CUPS; when the next full look is due."""
        if self._conn is None and not self._connect():
            self._fail_requests()
            self._stopping.wait(RETRY_S)
            return 0.0
        try:
            work, future = self._requests.get(timeout=self.poll_s)
        except queue.Empty:
            pass
        else:
            if future.set_running_or_notify_cancel():  # its asker gave up before it ran: nothing done
                self._serve(work, future)
            return next_reconcile
        try:
            now = time.monotonic()
            if self._news() or now >= next_reconcile:
                self._reconcile()
                return now + RECONCILE_S
        except Exception as exc:  # noqa: BLE001  (pycups raises RuntimeError, IPPError, HTTPError)
            self._drop(exc)
        return next_reconcile

    def _serve(self, work: Callable[[Any], Any], future: Future[Any]) -> None:
        try:
            future.set_result(work(self._conn))
        except DriverError as exc:
            future.set_exception(exc)
        except self._cups.IPPError as exc:
            status, text = exc.args if len(exc.args) == 2 else (0, str(exc))
            future.set_exception(DriverError(f"CUPS refused: {text} (IPP status {status:#06x})"))
            if not 0x0400 <= status < 0x0500:  # not the client's mistake: the server is in trouble
                self._drop(exc)
        except Exception as exc:  # noqa: BLE001
            future.set_exception(DriverError(f"CUPS: {_words(exc)}"))
            self._drop(exc)

    def _fail_requests(self) -> None:
        while True:
            try:
                _, future = self._requests.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(DriverError(f"CUPS is not reachable: {self._lost or 'stopping'}"))

    def _connect(self) -> bool:
        try:
            conn = self._connection()
            self._authenticate(conn)
            self._subscribe(conn)
            self._conn = conn
            # Every waiting job is reported again, and compared with those reported before the
            # outage: one cancelled meanwhile is found gone.
            self._reconcile(again=True)
        except Exception as exc:  # noqa: BLE001
            self._conn = None
            self._lose(_words(exc))
            return False
        if self._lost is not None:
            log.info("%s: CUPS reached again", self.name)
            self._lost = None
            self._send(PrintServerBack(source=self.name))
        return True

    def _connection(self) -> Any:
        cups = self._cups
        if not self.server:
            return cups.Connection()
        if self.server.startswith("/"):
            return cups.Connection(host=self.server)
        host, _, port = self.server.rpartition(":")
        if host and port.isdigit():
            return cups.Connection(host=host, port=int(port))
        return cups.Connection(host=self.server)

    def _authenticate(self, conn: Any) -> None:
        """Stop the holding queue, which it should be already: an operation only the system group
        may do, so CUPS asks who we are (over its socket, the process's own user: PeerCred), and
        the connection keeps the answer. Without it every later request is anonymous, and CUPS
        hides each job's user and title (JobPrivateValues) from an anonymous request."""
        try:
            conn.disablePrinter(self.hold_queue, reason=HOLD_REASON)
        except self._cups.IPPError as exc:
            if exc.args and exc.args[0] == self._cups.IPP_NOT_FOUND:
                log.error("%s: CUPS has no holding queue %r (docs/printing.md sets it up)", self.name, self.hold_queue)
                return
            raise

    def _subscribe(self, conn: Any) -> None:
        if self._subscription is not None:
            # The last one (before an outage or a renewal that failed): it would count against
            # cupsd's MaxSubscriptions until its lease ran out. Gone with a restarted cupsd.
            try:
                conn.cancelSubscription(self._subscription)
            except self._cups.IPPError:
                pass
        self._subscription = conn.createSubscription("ipp://localhost/", events=EVENTS, lease_duration=LEASE_S)
        self._sequence = 0
        self._renew_at = time.monotonic() + LEASE_S / 3

    def _drop(self, exc: BaseException) -> None:
        """The connection failed: report the server lost and start again from a new one."""
        self._conn = None
        self._lose(_words(exc))

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            log.warning("%s: cannot reach CUPS at %s: %s", self.name, self.server or "its default socket", reason)
            self._send(PrintServerLost(source=self.name, reason=reason))
        elif reason != self._lost:
            log.warning("%s: still cannot reach CUPS: %s", self.name, reason)
        self._lost = reason

    def _news(self) -> bool:
        """Notifications since the last pull; True when there were any."""
        conn = self._conn
        try:
            if time.monotonic() >= self._renew_at:
                conn.renewSubscription(self._subscription, lease_duration=LEASE_S)
                self._renew_at = time.monotonic() + LEASE_S / 3
            answer = conn.getNotifications([self._subscription], [self._sequence + 1])
        except self._cups.IPPError:
            self._subscribe(conn)  # gone (cupsd restarted between pulls): a new one, and a full look
            return True
        events = answer.get("events", [])
        for event in events:
            self._sequence = max(self._sequence, int(event.get("notify-sequence-number", 0)))
        return bool(events)

    def _reconcile(self, again: bool = False) -> None:
        """Compare the jobs waiting now with those reported; ``again`` reports every waiting job,
        known or not (after an outage: the controller may have restarted meanwhile)."""
        conn = self._conn
        self._keep_holding(conn)
        jobs = conn.getJobs(which_jobs="not-completed", requested_attributes=JOB_ATTRIBUTES)
        waiting = {job: a for job, a in jobs.items() if _queue(a) == self.hold_queue}
        for job in sorted(waiting if again else set(waiting) - self._waiting):
            a = waiting[job]
            self._hold(conn, job)
            self._send(PrintJobHeld(source=self.name, job=job, user=str(a.get("job-originating-user-name", "")),
                                    title=str(a.get("job-name", "")), pages=_count(a.get("job-impressions")),
                                    submitted=float(a.get("time-at-creation") or time.time()),
                                    size_kb=int(a.get("job-k-octets") or 0)))
        for job in sorted(self._waiting - set(waiting)):
            # Still not completed, yet not waiting: someone with the right moved it elsewhere.
            state, pages = ("moved", None) if job in jobs else self._ended(conn, job)
            self._send(PrintJobLeft(source=self.name, job=job, state=state, pages=pages))
        self._waiting = set(waiting)
        for job in sorted(self._released - set(jobs)):
            state, pages = self._ended(conn, job)
            self._released.discard(job)
            self._send(PrintJobLeft(source=self.name, job=job, state=state, pages=pages, released=True))

    def _hold(self, conn: Any, job: int) -> None:
        """A job's own hold as well: were the holding queue ever started, the job still waits."""
        try:
            conn.setJobHoldUntil(job, "indefinite")
        except self._cups.IPPError as exc:
            log.warning("%s: cannot set job %d to wait indefinitely: %s", self.name, job, _words(exc))

    def _keep_holding(self, conn: Any) -> None:
        """The holding queue must stay stopped: someone who started it is undone at once. One
        that does not exist holds nothing and lists no job: a set-up problem ``check`` names."""
        try:
            attrs = conn.getPrinterAttributes(self.hold_queue, requested_attributes=["printer-state"])
        except self._cups.IPPError as exc:
            if exc.args and exc.args[0] == self._cups.IPP_NOT_FOUND:
                return
            raise
        if attrs.get("printer-state") != PRINTER_STOPPED:
            log.warning("%s: the holding queue %s was printing; stopped it again", self.name, self.hold_queue)
            conn.disablePrinter(self.hold_queue, reason=HOLD_REASON)
            self.warnings.append(f"the holding queue {self.hold_queue} was found printing and was stopped")

    def _ended(self, conn: Any, job: int) -> tuple[str, int | None]:
        try:
            a = conn.getJobAttributes(job, requested_attributes=["job-state", "job-impressions-completed"])
        except self._cups.IPPError:
            return "gone", None  # purged already (PreserveJobHistory off)
        state = STATES.get(int(a.get("job-state", 0)), "gone")
        return state, _count(a.get("job-impressions-completed")) if state == "completed" else None

    # ------------------------------------------------------------------------- requests, in the thread
    def _release(self, conn: Any, job: int) -> None:
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
        self._waiting.discard(job)
        self._released.add(job)

    def _cancel(self, conn: Any, job: int) -> None:
        self._waiting_here(conn, job)
        conn.cancelJob(job)
        self._waiting.discard(job)

    def _waiting_here(self, conn: Any, job: int) -> None:
        try:
            a = conn.getJobAttributes(job, requested_attributes=["job-state", "job-printer-uri"])
        except self._cups.IPPError:
            raise DriverError(f"no job {job} at CUPS") from None
        if _queue(a) != self.hold_queue or int(a.get("job-state", 0)) >= 7:
            raise DriverError(f"job {job} is not waiting in the holding queue {self.hold_queue}")

    def _check(self, conn: Any) -> list[str]:
        found = list(self.warnings)
        wanted = ["printer-state", "printer-is-accepting-jobs", "printer-is-shared", "printer-op-policy"]
        for name, policy in ((self.hold_queue, HOLD_POLICY), (self.printer, PRINTER_POLICY)):
            try:
                a = conn.getPrinterAttributes(name, requested_attributes=wanted)
            except self._cups.IPPError:
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


def _words(exc: BaseException) -> str:
    """pycups' exceptions as one line: IPPError and HTTPError carry a status and text in args."""
    args = [a for a in exc.args if a not in (None, "")]
    return " ".join(str(a) for a in args) or type(exc).__name__
