"""A contactless card on vsmartcard-vpcd's virtual reader, answering the PC/SC part 3 GET UID
pseudo-APDU (``FF CA 00 00 00``) the way a real reader answers it for a MIFARE card.

vpcd listens on a TCP port per reader. Connecting to it is inserting the card; closing the
socket is removing it. Every message both ways is a 2-byte big-endian length and a payload. A
1-byte payload from vpcd is a control code (0 power off, 1 power on, 2 reset, 4 "send your
ATR"); only 4 gets a reply. Anything longer is a command APDU and gets a response APDU.

``mode`` makes the card misbehave the way worn, foreign or half-read cards do:

- ``ok``       the UID and ``90 00``;
- ``status``   only the status word ``sw`` (default ``6A 81``, function not supported);
- ``short``    a single byte, too short to hold a status word;
- ``garbage``  17 bytes of noise and ``90 00``: a status that says yes and a UID no card has;
- ``hangup``   closes the connection on the first APDU, as a card pulled away mid-read;
- ``silent``   reads the APDU and never answers, until ``remove()``.

``Pcscd`` runs the real pcscd in the foreground with vpcd on a free port pair, for the tests
and for bench/pcsc_latency.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from harness import wait_for

# PC/SC part 3 ATR of a contactless MIFARE Classic 1K, as a CCID reader builds it.
ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
GET_UID = b"\xFF\xCA\x00"
MODES = ("ok", "status", "short", "garbage", "hangup", "silent")


class FakeCard:
    def __init__(self, uid: bytes | str, port: int, *, mode: str = "ok", sw: bytes = b"\x6A\x81",
                 host: str = "127.0.0.1") -> None:
        assert mode in MODES, f"mode {mode!r} is not one of {MODES}"
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else uid
        self.addr = (host, port)
        self.mode = mode
        self.sw = sw
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.apdus: list[bytes] = []
        """Every command APDU the card received, for assertions."""
        self.inserted_at = 0.0
        self.removed_at = 0.0
        """``time.monotonic()`` when the socket connected and just before it closed: the moments
        a person put the card down and took it away, which the benchmark measures from."""
        self.ended = threading.Event()
        """Set when the conversation ended, by ``remove()`` or by vpcd (pcscd stopped)."""

    # ------------------------------------------------------------------------- the person
    def insert(self, timeout: float = 5.0) -> None:
        """Put the card on the reader; fails if vpcd is not listening within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(self.addr, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                threading.Event().wait(0.05)  # vpcd opens its port a moment after pcscd starts
        self.inserted_at = time.monotonic()
        if self.sock is not None:
            self.sock.close()  # the previous insertion's socket, which vpcd already dropped
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.ended.clear()
        self.thread = threading.Thread(target=self._serve, args=(sock,), name="fakecard", daemon=True)
        self.thread.start()

    def remove(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self.removed_at = time.monotonic()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # vpcd already closed its end (pcscd stopped): the card is out either way
        sock.close()
        if self.thread is not None:
            self.thread.join(5)

    # ------------------------------------------------------------------------- the card
    def answer(self, apdu: bytes) -> bytes | None:
        """The response APDU, or None to say nothing."""
        if not apdu.startswith(GET_UID):
            return b"\x6D\x00"  # instruction not supported
        if self.mode == "ok":
            le = apdu[4] if len(apdu) > 4 else 0
            return (self.uid[:le] if le else self.uid) + b"\x90\x00"
        if self.mode == "status":
            return self.sw
        if self.mode == "short":
            return b"\x90"
        if self.mode == "garbage":
            return bytes.fromhex("5a17c3e8019f44d2b6000e7f31a8c50b6d") + b"\x90\x00"
        return None  # silent

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                (n,) = struct.unpack("!H", self._recv(sock, 2))
                message = self._recv(sock, n)
                if n == 1:
                    if message[0] == 4:
                        self._send(sock, ATR)
                    continue
                self.apdus.append(message)
                if self.mode == "hangup":
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                reply = self.answer(message)
                if reply is not None:
                    self._send(sock, reply)
        except OSError:
            pass  # EOF or reset: vpcd went away or remove() closed the socket; the card is out
        finally:
            self.ended.set()

    @staticmethod
    def _recv(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            # vpcd writes a frame's length and payload in two sends; with a delayed ACK here,
            # Nagle holds the payload back 40 ms, which no real reader does. Linux clears
            # QUICKACK after each ACK, so it is set before every read.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            data += chunk
        return data

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack("!H", len(payload)) + payload)


# ----------------------------------------------------------------------------- pcscd
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path(os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm"))
MARK = "sekisho-test-pcscd"
"""In the name of every config dir this module gives pcscd, so a pcscd left behind by a killed
test run is recognised as ours and stopped, while any other pcscd stops the run instead."""
READER = "Virtual PCD 00 00"
"""vpcd makes two readers per config entry, on ``port`` and ``port + 1``; cards go to the first."""


MACHINE_LOCK = Path("/tmp/sekisho-test-pcscd.lock")
"""pcscd is one per machine: a ``Pcscd`` holds an exclusive lock on this file from creation to
``release()``, so two test runs (or a run and a benchmark) on one machine take turns at pcscd
instead of failing each other's tests."""
MACHINE_LOCK_WAIT_S = 900.0


class Pcscd:
    """The real pcscd (``--foreground``), reading its reader config from a directory of our own
    that holds one vpcd entry on a free port. pcscd is a system singleton (it owns
    /run/pcscd): creating a ``Pcscd`` waits for the machine's turn (``MACHINE_LOCK``), and
    ``start()`` refuses to run beside a pcscd it did not start. ``stop()``, ``kill()`` and
    ``start()`` again work on the same port, for the restart tests; ``release()`` ends the turn."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        assert os.path.exists(exe), "pcscd is not installed (make test installs it: apt-get install pcscd)"
        assert VPCD_DRIVER.exists(), f"{VPCD_DRIVER} is missing (apt-get install vsmartcard-vpcd)"
        self._turn = open(MACHINE_LOCK, "a")  # closed with the object, if release() is never called

        def my_turn() -> bool:
            try:
                fcntl.flock(self._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        wait_for(my_turn, MACHINE_LOCK_WAIT_S, f"another test run to let go of pcscd ({MACHINE_LOCK})")
        self.exe = exe
        self.port = _free_port_pair()
        self.conf = workdir / f"{MARK}-conf"
        self.log = workdir / "pcscd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, reader: bool = True, timeout: float = 10.0) -> None:
        """Start pcscd; with ``reader=False`` it runs with no reader configured at all."""
        self.conf.mkdir(exist_ok=True)
        entry = self.conf / "vpcd"
        if reader:
            entry.write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{self.port:04X}\n'
                             f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{self.port:04X}\n")
        else:
            entry.unlink(missing_ok=True)
        ensure_no_other_pcscd()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "--foreground", "--config", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                f"pcscd exited with {self.proc.returncode if self.proc else '?'}: {self.log.read_text()}"
            return _accepts(PCSCD_SOCKET) and (not reader or _listening(self.port))
        wait_for(up, timeout, "pcscd and vpcd to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, /run/pcscd keeps its stale socket and pid file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def release(self) -> None:
        """Stop pcscd and give the machine's pcscd to the next test run."""
        self.stop()
        self._turn.close()


def ensure_no_other_pcscd() -> None:
    """Stop a pcscd that a killed test run left behind; fail if any other pcscd runs."""
    for pid, ppid, cmdline in _pcscds():
        if MARK not in cmdline:
            raise AssertionError(f"another pcscd runs (pid {pid}: {cmdline}); these tests start their own. "
                                 "Stop it first (systemctl stop pcscd.socket pcscd)")
        if _comm(ppid).startswith("python"):
            raise AssertionError(f"pcscd {pid} belongs to a test run or benchmark still running (pid {ppid}, "
                                 "or this one); pcscd is one per machine, so run them one at a time")
        # Orphaned (reparented to init or a subreaper): its test run was killed.
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), 10, f"leftover pcscd {pid} to exit")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pcscds() -> list[tuple[int, int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if (entry / "comm").read_text().strip() != "pcscd" or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited while we looked
        found.append((int(entry.name), int(fields[1]), cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _listening(port: int) -> bool:
    """Whether something listens on TCP ``port``, read from /proc: connecting to vpcd's port
    would insert a card."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "0A":
                return True
    return False


def _free_port_pair() -> int:
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("0.0.0.0", 0))
            port = a.getsockname()[1]
            if port >= 0xFFFF:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two adjacent free TCP ports")

