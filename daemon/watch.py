"""``sekisho watch``: the site as it happens, for an officer at a terminal (over SSH too).

Three ways to show it (``choose_mode``):

- the screen, on a terminal: open alarms on top, doors, desks, areas and nodes, and the event
  stream below, redrawn on each message and each change of the window's size (SIGWINCH);
- lines, when stdout is not a terminal (``| grep``, a file) or with ``--lines``: one readable
  line per message, names rather than topics (watch_view.line);
- raw, with ``--raw``: each message's topic (under the site's base) and payload, as they came.

The bus is read into a ``watch_state.Site`` on paho's thread, under a lock; the screen is drawn
from it on the main thread, which also reads the keyboard (q quits). Nothing is kept at module
level: one call of ``watch`` owns its client, its site and its terminal.

Failure model. The broker unreachable at start: exit 69; the config's TLS or password file
unusable: 78; the broker refusing the connection (a wrong password, no permission): 1, with
paho's reason. These lines are the ones this command has always printed. A connection lost
later is retried by paho; the screen's title line says so meanwhile, and what was retained comes
again once it is back. However the screen ends (q, Ctrl-C, SIGTERM, the broker refusing, an
error), the terminal is given back as it was found: its modes restored, the cursor shown, the
alternate screen left, so the shell's screen reappears untouched. A terminal that cannot place
the cursor (``TERM=dumb`` or unset) gets lines instead of a broken screen.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import signal
import sys
import termios
import threading
import tty
import zoneinfo
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt

from .broker_connection import make_client
from .config import Config
from .errors import SekishoError
from .topics import Topics
from .watch_state import Layout, Site
from .watch_view import ENTER, LEAVE, Clock, clean, frame, line, screen


class Mode(StrEnum):
    SCREEN = "screen"
    LINES = "lines"
    RAW = "raw"


def choose_mode(*, raw: bool, lines: bool, terminal: bool, term: str) -> Mode:
    """``--raw`` and ``--lines`` as asked; else the screen on a terminal that can place the
    cursor, lines anywhere else."""
    if raw:
        return Mode.RAW
    if lines or not terminal or term in ("", "dumb"):
        return Mode.LINES
    return Mode.SCREEN


def has_colours(env: dict[str, str] | os._Environ[str], fd: int) -> bool:
    """Colours unless NO_COLOR is set (no-color.org) or terminfo gives the terminal fewer than 8."""
    if env.get("NO_COLOR"):
        return False
    import curses
    try:
        curses.setupterm(env.get("TERM") or "dumb", fd)
        return curses.tigetnum("colors") >= 8
    except curses.error:
        return False


class _Bus:
    """paho's callbacks: subscribe on every connection, keep a status for the title line, hand
    each message to ``receive``; ``changed`` after anything the screen shows. On paho's thread."""

    def __init__(self, cfg: Config, receive: Callable[[mqtt.MQTTMessage], None], changed: Callable[[], None],
                 subscribed: Callable[[], None]) -> None:
        self.topics = Topics(cfg.site.id)
        self.url = cfg.mqtt.url
        self.receive = receive
        self.changed = changed
        self.subscribed = subscribed
        self.status = f"connecting to {self.url}"
        self.refused: str | None = None
        self.lost = False
        """The connection went after it stood; until the next subscription, messages are missed."""
        self.skipped = 0
        """Messages no view could show (a bug of ours, or a payload nobody foresaw): counted, not fatal."""

    def wire(self, client: mqtt.Client) -> None:
        client.on_connect = self.on_connect
        client.on_subscribe = self.on_subscribe
        client.on_disconnect = self.on_disconnect
        client.on_message = lambda c, userdata, msg: self._message(msg)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        # Any node may write alarm/+, and a retained one is read at every start: whatever it
        # holds, it must not end paho's thread and leave a screen that says "connected".
        try:
            self.receive(msg)
        except Exception:  # noqa: BLE001 - see above
            self.skipped += 1
            self.changed()

    def on_connect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refused = f"broker refused: {reason}"
            self.status = self.refused
            c.disconnect()
        else:
            c.subscribe(self.topics.everything, qos=1)
        self.changed()

    def on_subscribe(self, c: mqtt.Client, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        # From here on nothing is missed.
        self.status = f"{self.url} connected"
        self.lost = False
        self.subscribed()
        self.changed()

    def on_disconnect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.refused is None:
            self.lost = True
            self.status = f"{self.url} LOST ({reason}), reconnecting; events meanwhile are missed"
        self.changed()


def watch(cfg: Config, mode: Mode) -> int:
    """Runs until interrupted (or q on the screen); the exit status."""
    try:
        client = make_client(cfg.mqtt)
    except SekishoError as exc:
        print(f"sekisho: {exc}", file=sys.stderr)
        return 78
    if mode is Mode.SCREEN:
        return _Screen(cfg, client).run()
    return _lines(cfg, client, mode)


def _connect(cfg: Config, client: mqtt.Client) -> bool:
    _, host, port = cfg.mqtt.endpoint
    try:
        client.connect(host, port)
    except OSError as exc:
        print(f"sekisho: cannot reach the broker at {cfg.mqtt.url}: {exc}", file=sys.stderr)
        return False
    return True


def _lines(cfg: Config, client: mqtt.Client, mode: Mode) -> int:
    site = Site(Layout.of(cfg))
    zone = zoneinfo.ZoneInfo(cfg.site.timezone)
    base = Topics(cfg.site.id).base

    def receive(msg: mqtt.MQTTMessage) -> None:
        if mode is Mode.RAW:
            flag = " (retained)" if msg.retain else ""
            body = msg.payload.decode("utf-8", "replace") or "<empty: cleared>"
            print(clean(f"{msg.topic[len(base) + 1:]}{flag} {body}"), flush=True)
            return
        took = site.apply(msg.topic, bytes(msg.payload), bool(msg.retain))
        if took is not None:
            print(line(took, site, Clock(zone, dt.datetime.now(dt.timezone.utc))), flush=True)

    gap_said = threading.Event()

    def subscribed() -> None:
        gap_said.clear()
        print(f"# watching {bus.topics.everything} on {cfg.mqtt.url}", file=sys.stderr, flush=True)

    def changed() -> None:
        # A gap in the lines is said where it happens, once; "# watching" again when it ends.
        if bus.lost and not gap_said.is_set():
            gap_said.set()
            print(f"# {bus.status}", file=sys.stderr, flush=True)

    bus = _Bus(cfg, receive, changed, subscribed)
    bus.wire(client)
    if not _connect(cfg, client):
        return 69
    try:
        client.loop_forever(retry_first_connection=False)
    except KeyboardInterrupt:
        client.disconnect()
    if bus.refused:
        print(f"sekisho: {bus.refused}", file=sys.stderr)
        return 1
    return 0


class _Stop(Exception):
    """SIGTERM: leave the screen as q does."""


class _Screen:
    """The full-screen view on the terminal that stdin and stdout are."""

    def __init__(self, cfg: Config, client: mqtt.Client) -> None:
        self.cfg = cfg
        self.client = client
        self.site = Site(Layout.of(cfg))
        self.zone = zoneinfo.ZoneInfo(cfg.site.timezone)
        self.lock = threading.Lock()
        self.out = sys.stdout.fileno()
        self.keys = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.colour = has_colours(os.environ, self.out)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.bus = _Bus(cfg, self.receive, self.poke, lambda: None)
        self.bus.wire(client)

    def receive(self, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            took = self.site.apply(msg.topic, bytes(msg.payload), bool(msg.retain))
        if took is not None:
            self.poke()

    def poke(self) -> None:
        """Wake the main thread to draw again (from paho's thread or a signal handler)."""
        try:
            os.write(self.wake_w, b".")
        except BlockingIOError:
            pass  # a wake is pending already; one draw shows everything

    def run(self) -> int:
        try:
            if not _connect(self.cfg, self.client):
                return 69
            self.client.loop_start()
            try:
                self._show()
            finally:
                self.client.disconnect()
                self.client.loop_stop()
        finally:
            os.close(self.wake_r)
            os.close(self.wake_w)
        if self.bus.refused:
            print(f"sekisho: {self.bus.refused}", file=sys.stderr)
            return 1
        return 0

    def _show(self) -> None:
        saved = termios.tcgetattr(self.keys) if self.keys is not None else None
        handlers = {signal.SIGWINCH: signal.signal(signal.SIGWINCH, lambda s, f: self.poke()),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, self._term)}
        try:
            if self.keys is not None:
                tty.setcbreak(self.keys)  # keys one at a time, no echo; Ctrl-C still interrupts
            self._write(ENTER)
            self._loop()
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            try:
                self._write(LEAVE)
            except OSError:
                pass  # the terminal is gone (a dropped SSH connection): nothing to give back
            if self.keys is not None and saved is not None:
                try:
                    termios.tcsetattr(self.keys, termios.TCSADRAIN, saved)
                except termios.error:
                    pass
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    @staticmethod
    def _term(signum: int, frame: Any) -> None:
        raise _Stop()

    def _loop(self) -> None:
        watched = [self.wake_r] + ([self.keys] if self.keys is not None else [])
        while True:
            self._draw()
            ready, _, _ = select.select(watched, [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
            if self.keys is not None and self.keys in ready:
                typed = os.read(self.keys, 1024)
                if not typed or b"q" in typed.lower():
                    return
            if self.bus.refused:
                return

    def _draw(self) -> None:
        size = os.get_terminal_size(self.out)
        clock = Clock(self.zone, dt.datetime.now(dt.timezone.utc))
        status = f"site {self.cfg.site.id} · {self.bus.status}"
        if self.bus.skipped:
            status += f" · {self.bus.skipped} unreadable messages skipped"
        with self.lock:
            rows = screen(self.site, clock, size.columns, size.lines, status)
        self._write(frame(rows, size.lines, self.colour))

    def _write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "replace"))
        while data:
            data = data[os.write(self.out, data):]
