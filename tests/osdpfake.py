"""OSDP readers without hardware: libosdp's own peripheral-device mode on one end of a pty pair.

``OsdpBus`` opens a pty pair (both ends raw); the daemon opens the slave end by its /dev/pts
path, the file a daemon opens for /dev/ttyUSB0, as its RS-485 line. Each ``FakeReader`` is a
libosdp ``PeripheralDevice`` at its own address on the master end. A pump thread copies what
the panel writes to every reader's inbox, as an RS-485 bus shows every frame to every device
(each ignores frames not addressed to it); what a reader writes goes to the master end.

Every thread here is stopped by ``close()``: a test leaves no libosdp thread running.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Callable
from typing import Any

import osdp


class _ReaderChannel(osdp.Channel):
    def __init__(self, bus: OsdpBus) -> None:
        super().__init__()
        self.bus = bus
        self.inbox = bytearray()

    def read(self, max_bytes: int) -> bytes:
        with self.bus.lock:
            data = bytes(self.inbox[:max_bytes])
            del self.inbox[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        with self.bus.write_lock:
            try:
                return os.write(self.bus.master, buf)
            except OSError:
                return -1

    def flush(self) -> None:
        with self.bus.lock:
            self.inbox.clear()


class OsdpBus:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        """The line as the daemon's config names it. The fixture keeps the slave open, so the
        master end never reads as hung up while the daemon has it closed."""
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.channels: list[_ReaderChannel] = []
        self.readers: list[FakeReader] = []
        self.forge: Callable[[bytes], bytes | None] | None = None
        """Someone on the cable: given each whole frame the panel sends, bytes to answer it with
        in the reader's place (the frame then reaches no reader), or None to let it pass."""
        self._frames = bytearray()
        self._stopping = threading.Event()
        self._pump = threading.Thread(target=self._run, name="osdp bus", daemon=True)
        self._pump.start()

    def channel(self) -> _ReaderChannel:
        c = _ReaderChannel(self)
        with self.lock:
            self.channels.append(c)
        return c

    def _run(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                continue
            if self.forge is not None:
                data = self._forged(data)
            with self.lock:
                for c in self.channels:
                    c.inbox.extend(data)

    def _forged(self, data: bytes) -> bytes:
        """What of ``data`` reaches the readers once ``forge`` has answered the frames it wants."""
        buf = self._frames
        buf.extend(data)
        passed = bytearray()
        while True:
            start = buf.find(SOM)
            if start < 0:
                passed.extend(buf)
                buf.clear()
                break
            passed.extend(buf[:start])
            del buf[:start]
            if len(buf) < 4 or len(buf) < (buf[2] | buf[3] << 8):
                break
            size = buf[2] | buf[3] << 8
            frame = bytes(buf[:size])
            del buf[:size]
            answer = self.forge(frame) if self.forge else None
            if answer is None:
                passed.extend(frame)
            else:
                with self.write_lock:
                    os.write(self.master, answer)
        return bytes(passed)

    def reader(self, address: int, scbk: bytes | None, **kw: Any) -> FakeReader:
        r = FakeReader(self, address, scbk, **kw)
        self.readers.append(r)
        return r

    def close(self) -> None:
        """Stop every reader and the pump, and hang up (idempotent)."""
        for r in self.readers:
            r.stop()
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._pump.join(5)
        os.close(self.master)
        os.close(self.slave)


SOM = 0x53


def crc16(data: bytes) -> int:
    """OSDP's CRC (CRC-16/AUG-CCITT: polynomial 0x1021, seed 0x1D0F)."""
    crc = 0x1D0F
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def reply_frame(address: int, sequence: int, reply: bytes, security_block: bytes = b"") -> bytes:
    """A reply frame from ``address``: ``reply`` (its id then its data) after an optional security
    block (its length byte first), with a CRC and no MAC."""
    control = sequence & 3 | 0x04 | (0x08 if security_block else 0)
    size = 5 + len(security_block) + len(reply) + 2
    frame = bytes([SOM, address | 0x80, size & 0xFF, size >> 8, control]) + security_block + reply
    crc = crc16(frame)
    return frame + bytes([crc & 0xFF, crc >> 8])


CAPABILITIES = [
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.AudibleControl, 1, 1),
    (osdp.Capability.TextOutput, 1, 1),
    (osdp.Capability.CommunicationSecurity, 1, 1),
]


class FakeReader:
    """A wall reader at ``address``: with ``scbk`` None, a reader in install mode (SCBK-D); LED,
    buzzer and, unless ``display`` is False, a text display."""

    def __init__(self, bus: OsdpBus, address: int, scbk: bytes | None, display: bool = True) -> None:
        self.capabilities = [c for c in CAPABILITIES if display or c[0] != osdp.Capability.TextOutput]
        self.bus = bus
        self.address = address
        self.scbk = scbk
        self.pd: Any = None

    def start(self) -> FakeReader:
        flags = [osdp.LibFlag.EnforceSecure] if self.scbk else [osdp.LibFlag.InstallMode]
        self.pd = osdp.PeripheralDevice(osdp.PDInfo(self.address, self.bus.channel(), scbk=self.scbk, flags=flags),
                                        osdp.PDCapabilities(self.capabilities), log_level=osdp.LogLevel.Error)
        self.pd.start()
        return self

    def stop(self) -> None:
        if self.pd is not None:
            pd, self.pd = self.pd, None
            pd.teardown()

    @property
    def secure(self) -> bool:
        return self.pd is not None and bool(self.pd.is_sc_active())

    def card(self, uid: bytes, fmt: int = osdp.CardFormat.Unspecified, bits: int | None = None) -> None:
        assert self.pd.submit_event({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                                     "length": len(uid) * 8 if bits is None else bits, "format": fmt,
                                     "data": uid}) is not False

    def keys(self, text: str) -> None:
        assert self.pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0,
                                     "data": text.encode()}) is not False

    def tamper(self, active: bool) -> None:
        self.pd.submit_event({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                              "report": bytes([1 if active else 0, 0])})

    def command(self, timeout: float = 5) -> dict[str, Any] | None:
        """The next command the panel sent (notifications skipped), or None after ``timeout``."""
        while True:
            cmd = self.pd.get_command(timeout=timeout)
            if cmd is None or cmd.get("command") in (osdp.Command.LED, osdp.Command.Buzzer, osdp.Command.Text,
                                                     osdp.Command.Keyset, osdp.Command.Output):
                return cmd

    def next(self, kind: int, timeout: float = 5) -> dict[str, Any]:
        """The next command of ``kind`` (osdp.Command.LED ...), skipping others; fails after ``timeout``."""
        while True:
            cmd = self.command(timeout)
            assert cmd is not None, f"no command {kind} from the panel within {timeout} s"
            if cmd["command"] == kind:
                return cmd


SITE = """\
[site]
id = "test"
node = "door-a"
reader_lost_after_s = 1

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"
auth = "{auth}"
"""
READER = """
[readers.{name}]
driver = "osdp"
line = "{line}"
baud = 115200
address = {address}
door = "entrance"
direction = "{direction}"
"""


def osdp_config(url: str, line: str, readers: dict[str, int], auth: str = "card") -> str:
    """A node with one door whose readers (name: address) share the line; the first is "in"."""
    return SITE.format(url=url, auth=auth) + "".join(
        READER.format(name=name, line=line, address=address, direction="in" if i == 0 else "out")
        for i, (name, address) in enumerate(readers.items()))
