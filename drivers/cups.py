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
not-completed jobs and compare them with what it reported (``HoldingQueue.reconcile``, cups_holding.py): the list is the
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

from sekisho.policies.events import PrintServerBack, PrintServerLost

from .base import DriverError, Emit, ThreadedDriver, check_options
from .cups_holding import HoldingQueue, words
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
STOP_S = 5.0


class CupsQueue(ThreadedDriver):
    OPTIONS: ClassVar[Mapping[str, Option]] = {
        "server": Option(str, "", "The local cupsd: a socket path, or localhost[:port]; empty: CUPS's default "
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
        self.holding = HoldingQueue(self.name, None, self.hold_queue, self.printer, self._send)

    # ------------------------------------------------------------------------- the daemon's side
    async def start(self) -> None:
        check_options(self.OPTIONS, [("poll_s", self.poll_s)])
        try:
            import cups  # noqa: PLC0415  (Debian's python3-cups; only a print node needs it)
        except ImportError as exc:
            raise DriverError(f"pycups is not installed ({exc}): apt-get install python3-cups") from None
        self._cups = cups
        self.holding.cups = cups
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
        await self._ask(lambda holding: holding.release(job))

    async def cancel(self, job: int) -> None:
        """Cancel ``job``, which must be waiting in the holding queue."""
        await self._ask(lambda holding: holding.cancel(job))

    async def check(self) -> list[str]:
        """What is wrong with the queues' set-up, each a sentence (docs/printing.md says how to
        set them up); the holding queue found printing is stopped here first."""
        return list(await self._ask(lambda holding: holding.check()))

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
                self.holding.reconcile()
                return now + RECONCILE_S
        except Exception as exc:  # noqa: BLE001  (pycups raises RuntimeError, IPPError, HTTPError)
            self._drop(exc)
        return next_reconcile

    def _serve(self, work: Callable[[Any], Any], future: Future[Any]) -> None:
        try:
            future.set_result(work(self.holding))
        except DriverError as exc:
            future.set_exception(exc)
        except self._cups.IPPError as exc:
            status, text = exc.args if len(exc.args) == 2 else (0, str(exc))
            future.set_exception(DriverError(f"CUPS refused: {text} (IPP status {status:#06x})"))
            if not 0x0400 <= status < 0x0500:  # not the client's mistake: the server is in trouble
                self._drop(exc)
        except Exception as exc:  # noqa: BLE001
            future.set_exception(DriverError(f"CUPS: {words(exc)}"))
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
            self.holding.authenticate(conn)
            self._subscribe(conn)
            self._conn = self.holding.conn = conn
            # Every waiting job is reported again, and compared with those reported before the
            # outage: one cancelled meanwhile is found gone.
            self.holding.reconcile(again=True)
        except Exception as exc:  # noqa: BLE001
            self._conn = None
            self._lose(words(exc))
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
        self._lose(words(exc))

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

