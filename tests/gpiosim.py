"""GPIO chips in userspace for the tests: the simulator side of gpiosim_preload.c.

The kernel's gpio-sim needs configfs and a module that a CI container does not have, and
umockdev cannot hand a new file descriptor to its client, which a GPIO line request is. So the
tests replace the GPIO character device itself: a process started with ``GpioSim.env()`` has
the preload, and libgpiod in it talks to this simulator as it would to the kernel (uAPI v2).

What the simulator keeps per line is what the kernel's gpio-sim keeps: the level the outside
world drives (``drive``), who requested the line with which flags, an output's level
(``level``), and for an input with edge detection the events, debounced as the kernel does it:
a change is reported only once the line has held its new level for the debounce period.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("gpiosim_preload.c")

OP_OPEN, OP_IOCTL, OP_REQUEST = 1, 2, 3
HEADER = struct.Struct("=IIQ")
REPLY = struct.Struct("=iiII")
ENOENT, EBUSY, EINVAL, EPERM, ENOTTY = 2, 16, 22, 1, 25

# linux/gpio.h, uAPI v2
FLAG_USED, FLAG_ACTIVE_LOW, FLAG_INPUT, FLAG_OUTPUT = 1, 2, 4, 8
FLAG_EDGE_RISING, FLAG_EDGE_FALLING = 16, 32
ATTR_FLAGS, ATTR_OUTPUT_VALUES, ATTR_DEBOUNCE = 1, 2, 3
EVENT_RISING, EVENT_FALLING = 1, 2
NR_CHIPINFO, NR_LINEINFO, NR_GET_LINE, NR_UNWATCH = 0x01, 0x05, 0x07, 0x0C
NR_SET_CONFIG, NR_GET_VALUES, NR_SET_VALUES = 0x0D, 0x0E, 0x0F
CONFIG = struct.Struct("=QI20x" + "IIQQ" * 10)  # flags, num_attrs, padding, 10 x (id, pad, value, mask)
REQUEST_HEAD = struct.Struct("=64I32s")
REQUEST_TAIL = struct.Struct("=II20xi")  # num_lines, event_buffer_size, padding, fd
LINE_INFO = struct.Struct("=32s32sIIQ160x16x")
VALUES = struct.Struct("=QQ")
EVENT = struct.Struct("=QIIII24x")


def build(out_dir: Path) -> Path:
    """Compile the preload (the C compiler comes with build-essential, which make test installs)."""
    lib = out_dir / "libgpiosim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(lib), str(SOURCE), "-ldl", "-lpthread"],
                   check=True, capture_output=True, text=True)
    return lib


@dataclass
class Line:
    driven: int = 0
    """The physical level the outside world puts on the line (an input's contact, a button)."""
    output: int | None = None
    """The physical level an output request sets; None while the line is no output."""
    outputs: list[int] = field(default_factory=list)
    """Every level an output request has set, in order: a strike released for one second is
    seen afterwards however late a busy machine lets the test look."""
    stable: int = 0
    """The debounced level, as reported."""
    request: Request | None = None
    flags: int = 0
    debounce_us: int = 0
    seqno: int = 0
    timer: threading.Timer | None = None
    generation: int = 0
    """Bumped by every drive: a debounce timer that fired while a newer drive held the lock
    finds it changed and does nothing (a cancelled Timer may already be running)."""

    @property
    def level(self) -> int:
        return self.output if self.output is not None else self.driven


@dataclass
class Request:
    chip: int
    offsets: list[int]
    consumer: str
    events: socket.socket
    seqno: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class GpioSim:
    def __init__(self, workdir: Path, lib: Path, chips: dict[int, int] | None = None,
                 names: dict[tuple[int, int], str] | None = None) -> None:
        self.lib = lib
        self.chips = {n: [Line() for _ in range(count)] for n, count in (chips or {0: 32}).items()}
        self.names = names or {}
        self.on_output: Callable[[int, int, int], None] | None = None
        """Called (chip, offset, level) as an output request sets a line: a benchmark's timestamp."""
        self.path = workdir / "gpiosim.sock"
        self.lock = threading.RLock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(16)
        self.closing = False
        threading.Thread(target=self._accept, name="gpiosim", daemon=True).start()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_PRELOAD"] = f"{self.lib} {env.get('LD_PRELOAD', '')}".strip()
        env["GPIOSIM_SOCKET"] = str(self.path)
        return env

    # ------------------------------------------------------------------------- the test's side
    def drive(self, chip: int, offset: int, level: int) -> None:
        """Put a physical level on an input line, as a door contact or a button would."""
        with self.lock:
            line = self.chips[chip][offset]
            line.driven = level
            line.generation += 1
            if line.timer is not None:
                line.timer.cancel()
                line.timer = None
            if line.debounce_us and line.request is not None:
                line.timer = threading.Timer(line.debounce_us / 1e6, self._settle, (chip, offset, line.generation))
                line.timer.start()
            else:
                self._settle(chip, offset)

    def bounce(self, chip: int, offset: int, levels: list[int]) -> None:
        """A contact's bounce: the levels one after another, faster than any debounce period
        (under one lock, so no debounce timer can end between them)."""
        with self.lock:
            for level in levels:
                self.drive(chip, offset, level)

    def level(self, chip: int, offset: int) -> int:
        """The physical level of a line: what an output request drives, else what is driven on it."""
        with self.lock:
            return self.chips[chip][offset].level

    def outputs(self, chip: int, offset: int) -> list[int]:
        """Every physical level output requests have set on a line, oldest first."""
        with self.lock:
            return list(self.chips[chip][offset].outputs)

    def consumer(self, chip: int, offset: int) -> str | None:
        with self.lock:
            request = self.chips[chip][offset].request
            return request.consumer if request else None

    def close(self) -> None:
        self.closing = True
        self.server.close()
        with self.lock:
            for lines in self.chips.values():
                for line in lines:
                    if line.timer is not None:
                        line.timer.cancel()

    # ------------------------------------------------------------------------- kernel behaviour
    def _settle(self, chip: int, offset: int, generation: int | None = None) -> None:
        """The line has held its driven level long enough: report the edge, if asked for."""
        with self.lock:
            line = self.chips[chip][offset]
            if generation is not None and generation != line.generation:
                return  # a newer level was driven meanwhile; its own timer decides
            line.timer = None
            if line.driven == line.stable:
                return
            line.stable = line.driven
            request = line.request
            if request is None or line.output is not None:
                return
            logical = line.stable ^ bool(line.flags & FLAG_ACTIVE_LOW)
            wanted = FLAG_EDGE_RISING if logical else FLAG_EDGE_FALLING
            if not line.flags & wanted:
                return
            request.seqno += 1
            line.seqno += 1
            record = EVENT.pack(time.monotonic_ns(), EVENT_RISING if logical else EVENT_FALLING, offset,
                                request.seqno, line.seqno)
        try:
            request.events.sendall(record)
        except OSError:
            pass  # released meanwhile

    def _configure(self, request: Request, config: bytes) -> None:
        """Apply a gpio_v2_line_config to the request's lines (at request and on SET_CONFIG)."""
        values = CONFIG.unpack(config)
        flags, num_attrs, attrs = values[0], values[1], values[2:]
        per_line = [{"flags": flags, "value": 0, "debounce": 0} for _ in request.offsets]
        for i in range(min(num_attrs, 10)):
            attr_id, _, value, mask = attrs[i * 4:i * 4 + 4]
            for idx in range(len(request.offsets)):
                if mask >> idx & 1:
                    if attr_id == ATTR_FLAGS:
                        per_line[idx]["flags"] = value
                    elif attr_id == ATTR_OUTPUT_VALUES:
                        per_line[idx]["value"] = value >> idx & 1
                    elif attr_id == ATTR_DEBOUNCE:
                        per_line[idx]["debounce"] = value & 0xFFFFFFFF
        for idx, offset in enumerate(request.offsets):
            line, want = self.chips[request.chip][offset], per_line[idx]
            line.flags, line.debounce_us = want["flags"], want["debounce"]
            if line.flags & FLAG_OUTPUT:
                line.output = want["value"] ^ bool(line.flags & FLAG_ACTIVE_LOW)
                line.outputs.append(line.output)
            else:
                line.output = None
                line.stable = line.driven

    def _request(self, chip: int, data: bytearray, events_fd: int) -> tuple[int, int, Request | None]:
        head = REQUEST_HEAD.unpack_from(data, 0)
        offsets, consumer = head[:64], head[64].split(b"\0")[0].decode()
        num_lines, _, _ = REQUEST_TAIL.unpack_from(data, REQUEST_HEAD.size + CONFIG.size)
        lines = self.chips.get(chip)
        if lines is None or not 0 < num_lines <= 64 or any(o >= len(lines) for o in offsets[:num_lines]):
            return -1, EINVAL, None
        with self.lock:
            if any(lines[o].request is not None for o in offsets[:num_lines]):
                return -1, EBUSY, None
            request = Request(chip, list(offsets[:num_lines]), consumer, socket.socket(fileno=events_fd))
            for o in request.offsets:
                lines[o].request = request
            self._configure(request, bytes(data[REQUEST_HEAD.size:REQUEST_HEAD.size + CONFIG.size]))
        return 0, 0, request

    def _release(self, request: Request) -> None:
        with self.lock:
            for o in request.offsets:
                line = self.chips[request.chip][o]
                if line.request is request:
                    # As the kernel does: an output keeps its level once released.
                    line.request, line.flags, line.debounce_us = None, 0, 0
        request.events.close()

    def _line_ioctl(self, request: Request, nr: int, data: bytearray) -> tuple[int, int]:
        with self.lock:
            lines = [self.chips[request.chip][o] for o in request.offsets]
            if nr == NR_GET_VALUES:
                _, mask = VALUES.unpack(data)
                bits = 0
                for idx, line in enumerate(lines):
                    if mask >> idx & 1:
                        level = line.output if line.output is not None else (line.stable if line.debounce_us
                                                                             else line.driven)
                        bits |= (level ^ bool(line.flags & FLAG_ACTIVE_LOW)) << idx
                VALUES.pack_into(data, 0, bits, mask)
                return 0, 0
            if nr == NR_SET_VALUES:
                bits, mask = VALUES.unpack(data)
                if any(mask >> idx & 1 and line.output is None for idx, line in enumerate(lines)):
                    return -1, EPERM
                for idx, line in enumerate(lines):
                    if mask >> idx & 1:
                        line.output = (bits >> idx & 1) ^ bool(line.flags & FLAG_ACTIVE_LOW)
                        line.outputs.append(line.output)
                        if self.on_output is not None:
                            self.on_output(request.chip, request.offsets[idx], line.output)
                return 0, 0
            if nr == NR_SET_CONFIG:
                self._configure(request, bytes(data))
                return 0, 0
        return -1, ENOTTY

    def _chip_ioctl(self, chip: int, nr: int, data: bytearray) -> tuple[int, int]:
        lines = self.chips[chip]
        if nr == NR_CHIPINFO:
            struct.pack_into("=32s32sI", data, 0, f"gpiochip{chip}".encode(), b"sekisho-gpiosim", len(lines))
            return 0, 0
        if nr == NR_LINEINFO:
            offset = struct.unpack_from("=I", data, 64)[0]
            if offset >= len(lines):
                return -1, EINVAL
            with self.lock:
                line = lines[offset]
                flags = (line.flags | FLAG_USED) if line.request else FLAG_INPUT
                consumer = line.request.consumer.encode() if line.request else b""
            data[:] = LINE_INFO.pack(self.names.get((chip, offset), "").encode(), consumer, offset, 0, flags)
            return 0, 0
        return -1, ENOTTY

    # ------------------------------------------------------------------------- the socket
    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="gpiosim conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        chip: int | None = None
        request: Request | None = None
        try:
            while True:
                head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 1)
                if len(head) < HEADER.size:
                    return  # the client closed the chip or released the line
                op, length, number = HEADER.unpack(head)
                data = bytearray()
                while len(data) < length:
                    chunk = conn.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                if op == OP_OPEN:
                    wanted = struct.unpack("=I", data)[0]
                    result, err = (0, 0) if wanted in self.chips else (-1, ENOENT)
                    chip = wanted if result == 0 else None
                    data = bytearray()
                elif op == OP_REQUEST:
                    # A line request comes over a connection of its own, with the chip's number.
                    result, err, request = self._request(number, data, fds[0])
                    if request is None:
                        os.close(fds[0])
                elif request is not None:
                    result, err = self._line_ioctl(request, number & 0xFF, data)
                elif chip is not None:
                    result, err = self._chip_ioctl(chip, number & 0xFF, data)
                else:
                    result, err = -1, ENOTTY
                conn.sendall(REPLY.pack(result, err, len(data) if result >= 0 else 0, 0) +
                             (bytes(data) if result >= 0 else b""))
        except OSError:
            return
        finally:
            if request is not None:
                self._release(request)
            conn.close()
