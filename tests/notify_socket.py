"""systemd's notify socket, played by a test: records what a daemon tells systemd, and keeps
systemd's watchdog deadline (tests/test_service_manager.py, tests/test_sandbox.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Message:
    at: float
    fields: dict[str, str]
    sim_answered: bool | None = None
    """For READY=1: did the daemon's sim reader answer at the moment READY arrived?"""


@dataclass
class NotifyListener:
    """systemd's notify socket: an AF_UNIX datagram socket (a path, or ``@name`` abstract)."""

    address: str
    on_ready: Callable[[], bool] | None = None
    """Called (in the listener's thread) the moment READY=1 arrives; its answer is kept."""
    watchdog_s: float | None = None
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self.lock = threading.Lock()
        self.missed = threading.Event()
        """Set when a ping was due and none came: systemd's watchdog would fire."""
        self.closed = False
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while not self.closed:
            # Once pinging, and until a deadline was missed: then the next ping is awaited unbounded.
            pinging = any("WATCHDOG" in m.fields for m in self.snapshot()) and not self.missed.is_set()
            try:
                self.sock.settimeout(self.watchdog_s if pinging and self.watchdog_s else None)
            except OSError:
                return  # closed
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                self.missed.set()  # systemd's deadline: WATCHDOG_USEC since the last ping
                continue
            except OSError:
                return  # closed
            message = Message(time.monotonic(), dict(line.split("=", 1) for line in data.decode().splitlines()))
            if message.fields.get("READY") == "1" and self.on_ready is not None:
                message.sim_answered = self.on_ready()
            with self.lock:
                self.messages.append(message)

    def snapshot(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def with_key(self, key: str) -> list[Message]:
        return [m for m in self.snapshot() if key in m.fields]

    def statuses(self) -> list[str]:
        return [m.fields["STATUS"] for m in self.with_key("STATUS")]

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def notify_env(address: str, **extra: str) -> dict[str, str]:
    """The daemon's environment as systemd gives it (the testbed's preload included, if any)."""
    return {**os.environ, "NOTIFY_SOCKET": address, **extra}
