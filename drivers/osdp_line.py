"""One RS-485 line under libosdp's control panel: the serial device, the panel, and a thread that
supervises both. libosdp is imported by ``libosdp()``, when a line starts or a reader is keyed.

The serial device is opened with os and termios (raw, 8N1, the configured baud rate) behind an
``osdp.Channel``; libosdp's own refresh thread (every 20 ms) reads and writes it. A
``FrameWatch`` on the bytes read notes which addresses answered, so an offline reader can be told
apart: one that says nothing, and one that answers but fails the secure channel (a wrong SCBK, or
a reader still in install mode); it also drops a reply forged past libosdp's MAC check (see there).

The supervisor thread (``LineRunner._run``):
- opens the device; when it cannot, or a read or write fails later (the adapter unplugged: EIO,
  ENODEV), every reader of the line is lost with the reason, the panel is torn down, and the
  device is opened again with backoff (0.5 s doubling to 30 s). Nothing of this stops the daemon.
- follows libosdp's PD-status notifications: offline is ``ReaderLost`` (libosdp declares a
  reader offline after 8 unanswered probes, about 8 s, or at once when the secure channel fails),
  online is ``ReaderBack``; each time a reader comes online it is asked for its local status
  (tamper), which libosdp asks for only when told.
- restarts an offline reader's session itself with backoff (1 s doubling to 30 s) by disabling
  and enabling it: libosdp alone waits 300 s (OSDP_ONLINE_RETRY_WAIT_MAX_MS in its
  osdp_config.h) before it tries an offline reader again.
- sends the commands the loop queued (LED, buzzer, text), so the loop never waits on the
  panel's lock.

Everything libosdp calls back (cards, keys, notifications) runs on its refresh thread with its
lock held: the handler only hands the event on, and never calls the panel.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import termios
import threading
import time
import tty
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .osdp import BAUDS

log = logging.getLogger(__name__)

TERMIOS_BAUDS = {baud: getattr(termios, f"B{baud}") for baud in BAUDS}
OPEN_BACKOFF_FIRST_S = 0.5
OPEN_BACKOFF_MAX_S = 30.0
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
TICK_S = 0.05
HEARD_RECENTLY_S = 3.0
SOM = 0x53
"""OSDP's start of message; the address byte follows (bit 7 set in a reply), then the length."""


class Port(Protocol):
    """What the line tells one reader (drivers/osdp.py ``OsdpReader``), from its own threads."""

    name: str
    address: int

    def osdp_event(self, event: Mapping[str, Any]) -> None: ...

    def osdp_status(self, online: bool, reason: str) -> None: ...


class FrameWatch:
    """Between the line and libosdp: notes which addresses sent a reply, and holds back a reply
    whose security block names a handshake type its reply is not.

    libosdp 3.2.9 checks a reply's MAC only for the types SCS_15 to SCS_18 (osdp_phy.c
    ``osdp_phy_decode_packet``): inside an active secure channel, a reply marked SCS_11 to SCS_14
    (the handshake's types, which carry no MAC) reaches the panel's reply decoder unchecked, so
    anyone on the cable could answer a poll with a card read of their making. OSDP gives SCS_12
    only to osdp_CCRYPT and SCS_14 only to osdp_RMAC_I (and SCS_11, SCS_13 to commands): any
    other reply with a handshake type is dropped here, before libosdp sees it (libosdp itself
    refuses CCRYPT and RMAC_I while a channel is active, osdp_cp.c). The panel then has no
    answer to that poll and polls again.

    The stream is cut into frames by their header (SOM, address, length); a frame is passed on
    whole once all of it has come. A byte that does not start a plausible frame is passed on as
    it is (libosdp skips it too), so the watch finds its way back after noise."""

    def __init__(self) -> None:
        self.heard: dict[int, float] = {}
        self.dropped = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` (and of what came before it) to hand to libosdp now."""
        buf = self._buf
        buf.extend(data)
        out = bytearray()
        while True:
            start = buf.find(SOM)
            if start < 0:
                out.extend(buf)
                buf.clear()
                break
            out.extend(buf[:start])
            del buf[:start]
            if len(buf) < 4:
                break
            length = buf[2] | buf[3] << 8
            if not 8 <= length <= 1440:
                out.append(buf.pop(0))
                continue
            if len(buf) < length:
                break
            frame = bytes(buf[:length])
            del buf[:length]
            if frame[1] & 0x80:
                if _forged_handshake(frame):
                    self.dropped += 1
                    log.warning("dropped a reply from address %d marked as a secure channel handshake (type "
                                "%#x) that is not one: forged on the line, or a faulty reader", frame[1] & 0x7F,
                                frame[6])
                    continue
                self.heard[frame[1] & 0x7F] = time.monotonic()
            out.extend(frame)
        return bytes(out)

    def clear(self) -> None:
        self._buf.clear()


HANDSHAKE_REPLIES = {0x12: 0x76, 0x14: 0x78}
"""The reply each handshake security block type belongs to: SCS_12 osdp_CCRYPT, SCS_14 osdp_RMAC_I."""


def _forged_handshake(frame: bytes) -> bool:
    """A reply with a security block of a handshake type (SCS_11 to SCS_14) that is not that
    type's reply. Header: SOM, address, length (2), control (SCB flag 0x08); then the security
    block (its length, its type, ...) and the reply's id."""
    if not frame[4] & 0x08 or len(frame) < 8:
        return False
    block, kind = frame[5], frame[6]
    if not 0x11 <= kind <= 0x14:
        return False
    reply = frame[5 + block] if 2 <= block and 5 + block < len(frame) else None
    return HANDSHAKE_REPLIES.get(kind) != reply


def libosdp() -> Any:
    """The ``osdp`` module (libosdp's bindings); ImportError when it is not installed."""
    import osdp
    osdp.Channel.register(SerialChannel)
    return osdp


def missing_libosdp(exc: ImportError) -> str:
    return f"the osdp driver needs libosdp >= 3.2.9 ({exc}); install sekisho with the 'osdp' extra"


NOT_IN_INSTALL_MODE = ("it is not in install mode (it has a key already; rotate a key sekisho holds with --rotate, "
                       "or put the reader back in install mode)")


class _Discard:
    """Stands in for a queue of libosdp's ``ControlPanel.event_queue``: its event handler puts every
    event there (for ``get_event``, which sekisho never calls) before calling ours, and nothing
    would ever take them out: key presses (PIN digits) and card data would pile up in memory."""

    def put(self, event: Any) -> None:
        pass


def control_panel(osdp: Any, infos: list[Any], **handlers: Any) -> Any:
    """libosdp's ``ControlPanel`` with its unread event queues replaced by ``_Discard`` (osdp/
    control_panel.py 3.2.9 ``_internal_event_handler``). Its ``set_event_callback`` is left to
    libosdp's wrapper, which catches what a handler raises rather than letting it into the C code."""
    panel = osdp.ControlPanel(infos, log_level=osdp.LogLevel.Error, **handlers)
    panel.event_queue = [_Discard() for _ in infos]
    return panel


def close_panel(panel: Any) -> None:
    """``teardown`` raises on a panel whose thread never started (a ``start`` that failed)."""
    if panel.thread is not None:
        panel.teardown()


class SerialChannel:
    """The serial device as libosdp's channel (an ``osdp.Channel``, registered as one by
    ``libosdp()``; libosdp calls ``read``, ``write`` and ``flush`` by name): raw, 8N1,
    non-blocking. A read or write that fails for good sets ``failed`` (the supervisor then
    reopens the line)."""

    def __init__(self, path: str, baud: int) -> None:
        self.id = 0  # what osdp.Channel.__init__ sets
        self.path = path
        self.failed = ""
        self.watch = FrameWatch()
        self._ready = bytearray()
        """What the watch has passed on and libosdp has not read yet."""
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[2] = (attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
                        | termios.CS8 | termios.CLOCAL | termios.CREAD)
            attrs[4] = attrs[5] = TERMIOS_BAUDS[baud]
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except (OSError, termios.error):
            os.close(self.fd)
            raise

    def read(self, max_bytes: int) -> bytes:
        if self.failed:
            return b""
        if len(self._ready) < max_bytes:
            try:
                self._ready.extend(self.watch.feed(os.read(self.fd, max_bytes)))
            except BlockingIOError:
                pass
            except OSError as exc:
                self._fail(exc)
                return b""
        data = bytes(self._ready[:max_bytes])
        del self._ready[:max_bytes]
        return data

    def write(self, buf: bytes) -> int:
        if self.failed:
            return -1
        try:
            return os.write(self.fd, buf)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._fail(exc)
            return -1

    def flush(self) -> None:
        self._ready.clear()
        self.watch.clear()
        if not self.failed:
            try:
                termios.tcflush(self.fd, termios.TCIOFLUSH)
            except (OSError, termios.error):
                pass

    def _fail(self, exc: OSError) -> None:
        self.failed = f"{self.path}: {exc.strerror or errno.errorcode.get(exc.errno or 0, exc)}"

    def close(self) -> None:
        os.close(self.fd)


class LineRunner:
    """The panel of one line and the thread that supervises it (module docstring)."""

    def __init__(self, path: str, baud: int, ports: Sequence[Port], keys: Mapping[str, bytes]) -> None:
        self.path = path
        self.baud = baud
        self.ports = {p.address: p for p in ports}
        self._keys = dict(keys)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        """Set with each command queued (and to stop), so a command waits for no tick."""
        self._thread: threading.Thread | None = None
        self._commands: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self._notes: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
        self.panel: Any = None
        self.osdp = libosdp()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"osdp {self.path}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Blocking: ends the supervisor and libosdp's refresh thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def command(self, address: int, command: dict[str, Any]) -> None:
        """Queue a command for a reader; sent by the supervisor, dropped while it is offline."""
        self._commands.put((address, command))
        self._wake.set()

    # ------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        backoff = OPEN_BACKOFF_FIRST_S
        while not self._stopping.is_set():
            try:
                channel = SerialChannel(self.path, self.baud)
            except (OSError, termios.error) as exc:
                self._all_lost(f"line {self.path}: cannot open ({getattr(exc, 'strerror', None) or exc})")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, OPEN_BACKOFF_MAX_S)
                continue
            try:
                failed = self._serve(channel)
            except Exception as exc:  # a bug here must not end the line for the daemon's lifetime
                log.exception("line %s: supervisor failed; opening the line again", self.path)
                failed = f"driver error ({exc!r})"
            finally:
                channel.close()
            if failed:
                backoff_used = backoff
                self._all_lost(f"line {failed}")
                self._stopping.wait(backoff_used)
                backoff = min(backoff * 2, OPEN_BACKOFF_MAX_S)
            else:
                backoff = OPEN_BACKOFF_FIRST_S

    def _serve(self, channel: SerialChannel) -> str:
        """Run the panel on an open line until stopping (returns "") or the line fails (its reason)."""
        osdp = self.osdp
        flags = [osdp.LibFlag.EnforceSecure, osdp.LibFlag.EnableNotification]
        infos = [osdp.PDInfo(address, channel, scbk=self._keys[port.name], name=port.name[:15], flags=flags)
                 for address, port in self.ports.items()]
        panel = control_panel(osdp, infos, event_handler=self._event)
        online: dict[int, bool] = {}
        offline_since: dict[int, float] = {}
        retry_after = {address: RETRY_FIRST_S for address in self.ports}
        enabling: set[int] = set()
        try:
            panel.start()
            self.panel = panel
            while not self._stopping.is_set():
                if channel.failed:
                    return channel.failed
                while True:
                    try:
                        address, up = self._notes.get_nowait()
                    except queue.Empty:
                        break
                    if address in enabling:
                        # Between disable_pd and enable_pd: whatever libosdp says of the session
                        # being torn down is no news; the reader is back when the new one is up.
                        continue
                    if up:
                        online[address] = True
                        offline_since.pop(address, None)
                        retry_after[address] = RETRY_FIRST_S
                        self.ports[address].osdp_status(True, "")
                        # libosdp asks for the local status (tamper) only when told to: ask at
                        # each start of a session, so a tamper under way is seen.
                        if not panel.submit_command(address, {"command": osdp.Command.Status,
                                                              "type": osdp.StatusReportType.Local}):
                            log.warning("line %s: %s: libosdp refused the status request", self.path,
                                        self.ports[address].name)
                    else:
                        online[address] = False
                        offline_since[address] = time.monotonic()
                        self.ports[address].osdp_status(False, self._why(channel, address))
                self._send_commands(panel, online)
                now = time.monotonic()
                for address in list(enabling):
                    if not panel.is_pd_enabled(address):
                        panel.enable_pd(address)
                        enabling.discard(address)
                        offline_since[address] = now
                for address, since in list(offline_since.items()):
                    if address in enabling or online.get(address):
                        continue
                    if now - since >= retry_after[address]:
                        # libosdp waits 300 s before it tries an offline reader again: start over now.
                        retry_after[address] = min(retry_after[address] * 2, RETRY_MAX_S)
                        if panel.disable_pd(address):
                            enabling.add(address)
                self._wake.wait(TICK_S)
                self._wake.clear()
            return ""
        finally:
            self.panel = None
            close_panel(panel)
            # Whatever libosdp said while stopping is of no one's concern now.
            while not self._notes.empty():
                self._notes.get_nowait()

    def _send_commands(self, panel: Any, online: dict[int, bool]) -> None:
        while True:
            try:
                address, command = self._commands.get_nowait()
            except queue.Empty:
                return
            if not online.get(address):
                continue
            if not self._can(panel, address, command["command"]):
                # A reader NAKs a command it has no function for, and libosdp takes a NAK to
                # anything but a manufacturer command as the reader failing: offline (osdp_cp.c).
                continue
            # libosdp 3.2.9 queues what it accepts without a bound (cp_cmd_enqueue, osdp_cp.c; no
            # command pool), and refuses only a reader not online or a malformed command.
            if not panel.submit_command(address, command):
                log.warning("line %s: %s: libosdp refused a command", self.path, self.ports[address].name)

    def _can(self, panel: Any, address: int, command: int) -> bool:
        """Whether the reader reported the function ``command`` needs (LED, buzzer, display)."""
        osdp = self.osdp
        needs = {osdp.Command.LED: osdp.Capability.LEDControl, osdp.Command.Buzzer: osdp.Capability.AudibleControl,
                 osdp.Command.Text: osdp.Capability.TextOutput}.get(command)
        if needs is None:
            return True
        try:
            level, _ = panel.check_capability(address, needs)
        except Exception:  # libosdp raises when the reader reported nothing for it
            return False
        return bool(level)

    def _why(self, channel: SerialChannel, address: int) -> str:
        heard = channel.watch.heard.get(address)
        if heard is not None and time.monotonic() - heard < HEARD_RECENTLY_S:
            return (f"secure channel failed at address {address} on {self.path}: the reader answers but not "
                    f"with this SCBK (a wrong key, or a reader in install mode: key it with `sekisho reader "
                    f"osdp-key {self.ports[address].name}`)")
        return f"no answer from address {address} on {self.path}"

    def _all_lost(self, reason: str) -> None:
        for port in self.ports.values():
            port.osdp_status(False, reason)

    def _event(self, index: int, event: dict[str, Any]) -> int:
        """libosdp's refresh thread, its lock held: hand on, never call the panel."""
        address = list(self.ports)[index]
        if event.get("event") == self.osdp.Event.Notification:
            if event.get("type") == self.osdp.EventNotification.PeripheralDeviceStatus:
                self._notes.put((address, bool(event.get("arg0"))))
            return 0
        self.ports[address].osdp_event(event)
        return 0


class KeyingError(Exception):
    """Keying a reader failed; the message says why and what to do. The stored key is unchanged."""


def key_reader(path: str, baud: int, address: int, name: str, new_key: bytes, old_key: bytes | None,
               store: Any, timeout_s: float = 15.0) -> None:
    """Give the reader at ``address`` the SCBK ``new_key`` and call ``store()`` as soon as the
    reader holds it, or raise ``KeyingError`` (nothing stored).

    Without ``old_key``: the reader is in install mode. The panel (no EnforceSecure, as libosdp
    needs for this) opens a secure channel with SCBK-D, sets the new key (its SET_SCBK state,
    osdp_cp.c) and opens the channel again with the new key; online then means keyed. With
    ``old_key``: rotation. The panel opens the channel with the old key, enforced, and sends the
    Keyset command; once the reader confirms it, the key is stored and a new panel checks that a
    secure channel opens with it, enforced."""
    osdp = libosdp()
    if old_key is None:
        _session(path, baud, address, name, new_key, [], timeout_s, check_not_default=True)
        store()
        return

    def keyset(panel: Any) -> None:
        if not panel.submit_command(address, {"command": osdp.Command.Keyset, "type": 1, "data": new_key}):
            raise KeyingError(f"{name}: libosdp refused the Keyset command")
    _session(path, baud, address, name, old_key, [osdp.LibFlag.EnforceSecure], timeout_s, then=keyset)
    store()
    _session(path, baud, address, name, new_key, [osdp.LibFlag.EnforceSecure], timeout_s)


def _session(path: str, baud: int, address: int, name: str, key: bytes, flags: list[int], timeout_s: float,
             check_not_default: bool = False, then: Any = None) -> None:
    osdp = libosdp()
    try:
        channel = SerialChannel(path, baud)
    except (OSError, termios.error) as exc:
        raise KeyingError(f"line {path}: cannot open ({getattr(exc, 'strerror', None) or exc})") from None
    online = threading.Event()
    done = threading.Event()
    status: list[int] = []

    def on_event(index: int, event: dict[str, Any]) -> int:
        if (event.get("event") == osdp.Event.Notification
                and event.get("type") == osdp.EventNotification.PeripheralDeviceStatus and event.get("arg0")):
            online.set()
        return 0

    def on_completion(addr: int, command: dict[str, Any], result: int) -> None:
        if command.get("command") == osdp.Command.Keyset:
            status.append(result)
            done.set()

    try:
        panel = control_panel(osdp, [osdp.PDInfo(address, channel, scbk=key, name=name[:15],
                                                 flags=[*flags, osdp.LibFlag.EnableNotification])],
                              event_handler=on_event, command_completion_handler=on_completion)
    except BaseException:
        channel.close()
        raise
    try:
        panel.start()
        if not online.wait(timeout_s) or channel.failed:
            heard = channel.watch.heard.get(address)
            if channel.failed:
                raise KeyingError(f"line {channel.failed}")
            if heard is None:
                raise KeyingError(f"no answer from address {address} on {path} within {timeout_s:g} s: check the "
                                  "wiring, the reader's address and the baud rate")
            raise KeyingError(f"the reader at address {address} on {path} answers but refuses the secure channel: "
                              + (NOT_IN_INSTALL_MODE if check_not_default
                                 else "it does not hold the key sekisho has for it"))
        if not panel.is_sc_active(address):
            raise KeyingError(f"the reader at address {address} on {path} is online without a secure channel: "
                              + NOT_IN_INSTALL_MODE)
        if then is not None:
            then(panel)
            if not done.wait(timeout_s):
                raise KeyingError(f"{name}: the reader did not confirm the new key within {timeout_s:g} s; the "
                                  "stored key is unchanged")
            if status and status[0] != osdp.CompletionStatus.Ok:
                raise KeyingError(f"{name}: the reader refused the new key (status {status[0]}); the stored key "
                                  "is unchanged")
    finally:
        close_panel(panel)
        channel.close()
