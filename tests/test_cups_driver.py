"""The CUPS driver against a real cupsd and ippeveprinter (tests/cupsfake.py): what holds a job is
CUPS, set up as docs/printing.md says; the driver reports, releases and cancels."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cupsfake import HOLD, PRINTER, Cups
from harness import wait_for
from sekisho.drivers.base import DriverError
from sekisho.drivers.cups import CupsQueue
from sekisho.policies.events import Event, PrintJobHeld, PrintJobLeft, PrintServerBack, PrintServerLost


class Running:
    """The driver on a loop of its own thread, as the daemon runs it; what it emits, in order."""

    def __init__(self, cups: Cups, server: str | None = None) -> None:
        self.events: list[Event] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.driver = CupsQueue("print", {"server": cups.server if server is None else server, "hold_queue": HOLD,
                                          "printer": PRINTER, "poll_s": 0.1}, self.events.append)
        self.call(self.driver.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in list(self.events) if isinstance(e, kind)]

    def held(self, job: int) -> PrintJobHeld:
        return wait_for(lambda: next((e for e in self.of(PrintJobHeld) if e.job == job), None), what=f"job {job} held")

    def left(self, job: int) -> PrintJobLeft:
        return wait_for(lambda: next((e for e in self.of(PrintJobLeft) if e.job == job), None), what=f"job {job} left")

    def close(self) -> None:
        self.call(self.driver.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def running(cups: Cups) -> Iterator[Running]:
    r = Running(cups)
    try:
        yield r
    finally:
        r.close()


def test_a_job_waits_even_with_no_hold_and_a_release_prints_it(cups: Cups, running: Running) -> None:
    first = cups.submit("tanaka", "customer list", options=("job-hold-until=no-hold",))
    held = running.held(first)
    assert (held.user, held.title, held.pages) == ("tanaka", "customer list", None)
    assert held.submitted > 0 and held.size_kb >= 0
    second = cups.submit("suzuki", "invoice", "second\n")
    running.held(second)
    # Only the second is released. Had the hold not held, the first would have printed before it.
    running.call(running.driver.release(second))
    ended = running.left(second)
    assert (ended.released, ended.state) == (True, "completed")
    assert [p.read_text() for p in cups.printed()] == ["second\n"]
    assert cups.job_state(first) == HOLD


def test_cancel_and_what_cannot_be_released(cups: Cups, running: Running) -> None:
    job = cups.submit()
    running.held(job)
    running.call(running.driver.cancel(job))
    wait_for(lambda: cups.job_state(job) == "done", what="cancelled")
    with pytest.raises(DriverError, match=f"job {job} is not waiting"):
        running.call(running.driver.release(job))
    with pytest.raises(DriverError, match="no job 999"):
        running.call(running.driver.cancel(999))
    assert cups.printed() == []
    assert running.of(PrintJobLeft) == []  # its own cancel is the daemon's to record, not news


def test_an_owner_cancelling_their_job_is_reported(cups: Cups, running: Running) -> None:
    job = cups.submit("suzuki")
    running.held(job)
    assert cups.as_user("suzuki", "cancel", str(job)).returncode == 0
    assert running.left(job).state == "cancelled"


MOVE = """
import sys, cups
c = cups.Connection(host=sys.argv[1])
try:
    c.moveJob(job_id=int(sys.argv[2]), job_printer_uri="ipp://localhost/printers/" + sys.argv[3])
except Exception as exc:
    print("refused", exc)
else:
    print("moved")
"""


def _move_as_nobody(cups: Cups, job: int) -> str:
    # A local user over cupsd's socket, where CUPS knows who they are (PeerCred), with the same
    # binding the daemon uses (Debian's python3-cups).
    return subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", MOVE, cups.socket, str(job),
                           PRINTER], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_an_owner_cannot_move_their_job_to_the_printer_under_the_sekisho_policy(cups: Cups) -> None:
    job = cups.submit("nobody")
    assert _move_as_nobody(cups, job).startswith("refused")
    assert cups.job_state(job) == HOLD
    # Under CUPS's default policy the job's owner may move it: why the policy is in the set-up.
    cups.lpadmin("-p", HOLD, "-o", "printer-op-policy=default")
    cups.lpadmin("-p", PRINTER, "-o", "printer-op-policy=default")
    assert _move_as_nobody(cups, job) == "moved"


def test_nobody_prints_to_the_printer_directly(cups: Cups) -> None:
    doc = str(cups.dir / "cupsd.conf")
    # Over the network under any name, root's included (CUPS believes the name a request gives) ...
    for user in ("tanaka", "root"):
        done = cups.as_user(user, "lp", "-d", PRINTER, doc)
        assert done.returncode != 0, (user, done.stdout)
    # ... and as a local user over cupsd's socket, where CUPS knows who they are.
    done = subprocess.run(["runuser", "-u", "nobody", "--", "lp", "-h", cups.socket, "-d", PRINTER, doc],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stdout
    assert cups.run("lpstat", "-o").stdout == "" and cups.printed() == []


def test_a_started_holding_queue_is_stopped_again(cups: Cups, running: Running) -> None:
    job = cups.submit()
    running.held(job)
    cups.run("cupsenable", HOLD)
    wait_for(lambda: "disabled" in cups.run("lpstat", "-p", HOLD).stdout, what="the holding queue stopped again")
    assert cups.job_state(job) == HOLD and cups.printed() == []
    assert any("was found printing" in w for w in running.call(running.driver.check()))


def test_check_names_what_is_set_up_wrong(cups: Cups, running: Running) -> None:
    assert running.call(running.driver.check()) == []
    cups.lpadmin("-p", PRINTER, "-o", "printer-is-shared=true", "-o", "printer-op-policy=default")
    cups.lpadmin("-p", HOLD, "-o", "printer-op-policy=default")
    cups.run("cupsreject", HOLD)
    found = "\n".join(running.call(running.driver.check()))
    assert f"queue {HOLD}: operation policy 'default', not 'sekisho': its users may move" in found
    assert f"queue {PRINTER}: operation policy 'default', not 'sekisho-printer': anyone may print" in found
    assert f"{PRINTER} is shared" in found
    assert f"the holding queue {HOLD} rejects jobs" in found


def test_cupsd_down_and_back_loses_nothing(cups: Cups, running: Running) -> None:
    first = cups.submit()
    running.held(first)
    withdrawn = cups.submit("suzuki")
    running.held(withdrawn)
    cups.stop_cupsd()
    lost = wait_for(lambda: running.of(PrintServerLost), what="server lost")
    assert lost[0].reason
    with pytest.raises(DriverError, match="not reachable"):
        running.call(running.driver.release(first))
    cups.start_cupsd()
    # Cancelled by its owner as cupsd comes back, before the driver (retrying every 2 s) is
    # there to see it go: found gone by the comparison with what was reported before.
    assert cups.as_user("suzuki", "cancel", str(withdrawn)).returncode == 0
    wait_for(lambda: running.of(PrintServerBack), what="server back")
    assert running.left(withdrawn).state == "cancelled"
    assert len(running.of(PrintServerLost)) == 1
    second = cups.submit("sato", "second")
    running.held(second)
    # The job kept by cupsd over its restart is reported again, so a restarted controller has it.
    wait_for(lambda: len([e for e in running.of(PrintJobHeld) if e.job == first]) == 2, what="first reported again")
    running.call(running.driver.release(first))
    wait_for(lambda: len(cups.printed()) == 1, what="printed after the outage")


def test_no_cupsd_at_start_is_reported_not_fatal(cups: Cups, tmp_path: Path) -> None:
    r = Running(cups, server=str(tmp_path / "nothing.sock"))
    try:
        assert wait_for(lambda: r.of(PrintServerLost), what="server lost")[0].reason
        with pytest.raises(DriverError, match="not reachable"):
            r.call(r.driver.check())
    finally:
        r.close()


def test_without_pycups_start_says_what_to_install(cups: Cups, tmp_path: Path) -> None:
    probe = ("import asyncio, sys; sys.modules['cups'] = None\n"
             "from sekisho.drivers.cups import CupsQueue\n"
             "d = CupsQueue('print', {'hold_queue': 'h', 'printer': 'p'}, print)\n"
             "try:\n    asyncio.run(d.start())\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30).stdout
    assert out.startswith("DriverError pycups is not installed") and "python3-cups" in out
