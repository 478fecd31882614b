"""What the daemon tells systemd about itself, over ``$NOTIFY_SOCKET`` (sd_notify(3)): ``READY=1``
once it serves, ``STATUS=`` with the broker and the outbox, ``WATCHDOG=1`` from the loop, and
``STOPPING=1`` at the stop.

The protocol is one datagram per message, ``KEY=value`` lines, to an AF_UNIX socket whose path
systemd puts in the environment (a leading ``@`` is Linux's abstract namespace); no library is
needed. Without that variable (a daemon started by hand, by the tests, under another supervisor)
every call here does nothing.

The watchdog pings come from a task on the asyncio loop, never from a thread: a loop blocked in a
system call (a sysfs write the kernel holds, a store commit on a dying disk) stops them, and
systemd restarts the daemon after ``WatchdogSec`` (systemd/sekisho.service says what it is).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Datagrams to the service manager's notify socket; a no-op where there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        if address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif address and not address.startswith("/"):
            log.warning("NOTIFY_SOCKET %r is neither a path nor an abstract name; systemd is not told", address)
            address = ""
        return cls(address or None)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> None:
        """One message of ``KEY=value`` lines. A failure is logged, never raised: telling
        systemd must not stop the daemon from doing its work (a missed ping is then what systemd
        acts on)."""
        if self.sock is None or self.address is None:
            return
        try:
            self.sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            log.warning("cannot notify the service manager at %s: %s", self.address.replace("\0", "@"), exc)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises), or
    None when systemd wants none from this process: no ``WATCHDOG_USEC``, or a
    ``WATCHDOG_PID`` that is another process's (a child that inherited the environment)."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC %r is not a number of microseconds; no watchdog pings", usec)
        return None
    return value / 2e6 if value > 0 else None


STATUS_EVERY_S = 1.0
"""How often the status line is looked at; it is sent only when its text changed."""


class ServiceManager:
    """The daemon's side of the conversation with systemd, on the loop. ``status`` makes the
    one-line state (broker, outbox) that ``systemctl status`` shows."""

    def __init__(self, notifier: Notifier, loop: asyncio.AbstractEventLoop, *, status: Callable[[], str],
                 watchdog_s: float | None) -> None:
        self.notifier = notifier
        self.loop = loop
        self.status = status
        self.watchdog_s = watchdog_s
        self.said = ""
        self.tasks: list[asyncio.Task[None]] = []

    def ready(self) -> None:
        """The daemon serves: READY with the first status, then the pings and status updates."""
        if not self.notifier.enabled:
            return
        self.said = self.status()
        self.notifier.send("READY=1", f"STATUS={self.said}")
        self.tasks.append(self.loop.create_task(self._status_updates()))
        if self.watchdog_s:
            self.tasks.append(self.loop.create_task(self._pings(self.watchdog_s)))

    def stopping(self) -> None:
        """The stop has begun: systemd waits for the exit from here on (TimeoutStopSec)."""
        for task in self.tasks:
            task.cancel()
        self.tasks = []
        self.notifier.send("STOPPING=1", "STATUS=stopping: flushing the outbox, readers stopped")

    def close(self) -> None:
        self.notifier.close()

    async def _pings(self, interval: float) -> None:
        while True:
            self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _status_updates(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            now = self.status()
            if now != self.said:
                self.said = now
                self.notifier.send(f"STATUS={now}")
