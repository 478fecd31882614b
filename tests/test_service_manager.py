"""The daemon as systemd sees it (Type=notify, WatchdogSec): a real daemon process told of a
notify socket the test listens on, as systemd's would be, with the variables systemd sets.

The listener plays systemd's part: it records every datagram, and it keeps systemd's watchdog
deadline itself (no ping within WATCHDOG_USEC of the last is a missed deadline, where systemd
would kill and restart the daemon; tests/notify_socket.py). A loop is blocked for real: a USB
interface whose driver probe never returns holds the daemon's write to drivers_probe in the
kernel, and the daemon authorizes on its loop (usb_sysfs.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from conftest import REPO, free_port, wait_for
from notify_socket import NotifyListener, notify_env
from sekisho.daemon.service_manager import Notifier, watchdog_interval
from usbfake import Kernel, Spec, read

WATCHDOG_USEC = 1_000_000
"""One second: pings every half second, a deadline missed a second after the last."""


def test_ready_once_serving_then_status_pings_and_stopping(site, broker, tmp_path):
    """READY after the drivers serve (the sim reader answers at that moment) and the broker was
    tried; STATUS follows the broker and the outbox, each line only when it changes; WATCHDOG
    pings keep coming; STOPPING at the stop."""
    listener = NotifyListener(str(tmp_path / "notify.sock"), on_ready=lambda: site.sim_answers("entrance-in"),
                              watchdog_s=WATCHDOG_USEC / 1e6)
    try:
        site.start(env=notify_env(listener.address, WATCHDOG_USEC=str(WATCHDOG_USEC)))
        (ready,) = wait_for(lambda: listener.with_key("READY"), what="READY=1")
        assert ready.sim_answered is True, "READY came before the sim reader served"
        assert ready.fields["STATUS"].startswith("broker connected, outbox ")
        wait_for(lambda: len(listener.with_key("WATCHDOG")) >= 3, what="three watchdog pings")
        assert all(m.fields == {"WATCHDOG": "1"} for m in listener.with_key("WATCHDOG"))
        wait_for(lambda: listener.statuses()[-1] == "broker connected, outbox 0", what="the outbox drained")
        # The broker goes: the status says so, and a tap recorded meanwhile waits in the outbox.
        broker.stop()
        wait_for(lambda: listener.statuses()[-1].startswith("broker lost, outbox 0")
                 or listener.statuses()[-1] == "broker unreachable, outbox 0", what="the broker lost, in STATUS")
        site.tap("04AABBCCDD")  # no such card: a denial, recorded
        wait_for(lambda: listener.statuses()[-1] == "broker unreachable, outbox 1", what="one row waiting")
        broker.start()
        wait_for(lambda: listener.statuses()[-1] == "broker connected, outbox 0", what="connected and drained")
        said = listener.statuses()
        assert all(a != b for a, b in zip(said, said[1:], strict=False)), f"a status said twice in a row: {said}"
        assert not listener.missed.is_set(), "a watchdog deadline was missed while the loop ran"
        assert site.stop() == 0
        stopping = wait_for(lambda: listener.with_key("STOPPING"), what="STOPPING=1")[0]
        assert stopping.fields["STOPPING"] == "1" and stopping.fields["STATUS"].startswith("stopping")
    finally:
        listener.close()


def test_ready_without_a_broker_abstract_socket(site, tmp_path):
    """A node whose broker is down is ready all the same (it works offline), and says so in
    STATUS; the notify socket here is in the abstract namespace (``@``). The watchdog variables
    name another process (WATCHDOG_PID): they were meant for it, and this one sends no ping."""
    site.use_broker(f"mqtt://127.0.0.1:{free_port()}")  # nothing listens there
    listener = NotifyListener(f"@sekisho-test-{uuid.uuid4().hex}", on_ready=lambda: site.sim_answers("entrance-in"))
    try:
        site.start(env=notify_env(listener.address, WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID=str(os.getpid())))
        (ready,) = wait_for(lambda: listener.with_key("READY"), what="READY=1 with no broker")
        assert ready.sim_answered is True
        assert ready.fields["STATUS"].startswith("broker unreachable, outbox ")
        assert "cannot reach the broker" in site.daemon_log()
        assert site.stop() == 0
        wait_for(lambda: listener.with_key("STOPPING"), what="STOPPING=1")
        assert not listener.with_key("WATCHDOG"), "pings with a WATCHDOG_PID that is not the daemon's"
    finally:
        listener.close()


HEADSET = Spec("1-4", 0x0B0E, 0x24C8, ("01:01:00", "01:02:00", "01:02:00", "03:00:00", "ff:00:00"),
               name="Jabra Evolve", serial="70BF92E1A2")
"""Allowed by the call-centre rules with its vendor interface blocked: its interfaces start
unauthorized, and the daemon authorizes the others one by one, each probed through
/sys/bus/usb/drivers_probe (usb_sysfs.py)."""


def test_a_blocked_loop_stops_the_pings(site, testbed, tmp_path):
    """A headset whose driver probe hangs: the kernel runs a probe inside the write to
    /sys/bus/usb/drivers_probe, so the daemon's write (on its loop) does not return. Here that
    file is a FIFO nobody reads, so the write's open() waits the same way. The loop is held in
    that system call, the pings stop, and the watchdog deadline passes. Released, the loop pings
    again and carries on."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    site.config.write_text(site.config.read_text()
                           + f'\n[usb]\nrules = "{REPO / "examples" / "usb" / "call-centre.rules"}"\n')
    listener = NotifyListener(str(tmp_path / "notify.sock"), watchdog_s=WATCHDOG_USEC / 1e6)
    try:
        # os.environ is Python's copy from start-up: the testbed's directory must be named.
        site.start(env=notify_env(listener.address, WATCHDOG_USEC=str(WATCHDOG_USEC),
                                  UMOCKDEV_DIR=testbed.get_root_dir()))
        wait_for(lambda: listener.with_key("READY"), what="READY=1")
        wait_for(lambda: len(listener.with_key("WATCHDOG")) >= 2, what="pings")
        # The testbed's own path: link and rename are not redirected by umockdev's preload.
        probe = Path(testbed.get_root_dir()) / "sys" / "bus" / "usb" / "drivers_probe"
        held = tmp_path / "drivers_probe.fifo"
        os.mkfifo(held)
        probe.unlink()
        os.link(held, probe)
        device = kernel.plug(HEADSET)
        testbed.uevent(device, "add")  # reported again now that its descriptors are written
        wait_for(lambda: read(f"{device}/authorized") == "1", what="the headset authorized")
        kernel.configure("1-4")  # its interfaces appear, unauthorized (interface_authorized_default 0)
        pid = site.proc.pid
        wait_for(lambda: Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner",
                 what="the daemon's loop held in its write to drivers_probe")
        pings = len(listener.with_key("WATCHDOG"))
        assert listener.missed.wait(10), "no watchdog deadline passed while the loop was held"
        assert len(listener.with_key("WATCHDOG")) == pings, "a ping came from a held loop"
        assert Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
        # Released: drivers_probe is a plain file again, and the held write completes.
        plain = tmp_path / "drivers_probe.plain"
        plain.write_text("")
        os.rename(plain, probe)
        fd = os.open(held, os.O_RDWR | os.O_NONBLOCK)
        try:
            def probed() -> bytes | None:
                try:
                    return os.read(fd, 100)
                except BlockingIOError:
                    return None
            assert wait_for(probed, what="the held write") == b"1-4:1.0"
        finally:
            os.close(fd)
        wait_for(lambda: len(listener.with_key("WATCHDOG")) > pings, what="pings again once released")
        wait_for(lambda: read(f"{device}/1-4:1.3/authorized") == "1", what="the other interfaces authorized")
        assert read(f"{device}/1-4:1.4/authorized") == "0"
        assert site.stop() == 0
    finally:
        listener.close()


def test_watchdog_interval_and_notify_address():
    """Half of WATCHDOG_USEC, for this process only; ``@`` is the abstract namespace; no socket,
    no messages."""
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@abc"}).address == "\0abc"
    assert Notifier.from_environ({"NOTIFY_SOCKET": "/run/systemd/notify"}).address == "/run/systemd/notify"
    assert not Notifier.from_environ({}).enabled
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "relative"}).enabled
