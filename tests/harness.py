"""Real parts for tests and benchmarks: a mosquitto broker on a free port, a TCP relay that can
cut a connection, a recording subscriber, and a site (config, data dir, the daemon as a process,
the sekisho command line). bench/ imports this too, so both measure the same thing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parent.parent
SEKISHO = [sys.executable, "-m", "sekisho.daemon.cli"]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``predicate`` is truthy; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.02)


def control(data_dir: Path, request: dict[str, Any], timeout: float = 10.0) -> tuple[int, dict[str, Any]] | None:
    """One request on the daemon's control socket: (the pid that answered, its answer), or None
    when nothing listens there (no file yet, or one left by a daemon that is gone)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(Path(data_dir) / "control.sock"))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        pid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        s.sendall(json.dumps(request).encode() + b"\n")
        line = s.makefile("rb").readline()
    return (pid, json.loads(line)) if line else None


def answers(data_dir: Path, pid: int | None = None) -> bool:
    """Is the daemon ready: does it (the process ``pid``, when given) answer ``door list`` on its
    control socket? The socket opens after every driver has started, and an answer means the
    loop is running, which a socket file existing does not (it may be a dead daemon's)."""
    got = control(data_dir, {"op": "door.list"})
    return got is not None and got[1].get("ok") is True and pid in (None, got[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on 127.0.0.1:<free port>; stop() and start() again on the same port."""

    def __init__(self, workdir: Path, websockets: bool = False, extra: str = "") -> None:
        """``extra``: more lines for its config (a bridge, tests/bridge.py)."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        assert os.path.exists(exe), "mosquitto is not installed (make test installs it)"
        self.exe = exe
        self.port = free_port()
        self.ws_port = free_port() if websockets else None
        """MQTT over WebSockets, as the officer's console speaks it (``ws_url``)."""
        self.conf = workdir / "mosquitto.conf"
        # Persistence, so a subscriber's session and its queued messages survive a broker restart
        # the way they do on a production broker.
        (workdir / "mosquitto-db").mkdir()
        # user root: run as root, mosquitto would switch to its own user and could not write here.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\n"
                             f"persistence_location {workdir / 'mosquitto-db'}/\n"
                             "max_queued_messages 0\nmax_inflight_messages 0\n"
                             + (f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n" if websockets else "")
                             + extra)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        assert self.ws_port is not None, "this broker has no WebSockets listener (Broker(websockets=True))"
        return f"ws://127.0.0.1:{self.ws_port}/"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.proc.poll() is None, f"mosquitto exited: {self.log.read_text()}"
            try:
                for port in (self.port, self.ws_port):
                    if port is not None:
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


@dataclass
class Subscriber:
    """A real MQTT client, subscribed at QoS 1, recording every message with its flags."""

    port: int
    topic: str
    persistent: bool = False
    """Keep the session (and the broker's queue for it) across disconnects and broker restarts."""
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        client_id = f"test-sub-{id(self)}" if self.persistent else ""
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        props = None
        if self.persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=not self.persistent, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscriber did not get SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, msg.payload, msg.qos, bool(msg.retain)))

    def events(self) -> list[dict[str, Any]]:
        """The door events, in arrival order."""
        return [m.json for m in self.on("/event") if "/door/" in m.topic]

    def on(self, suffix: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


DOOR_WITH_CONTACT = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"
unlock_s = 1.0

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[inputs.entrance-contact]
driver = "sim"
kind = "contact"
door = "entrance"
"""
"""One door with a sim reader and a sim contact, on node door-a of site "test": what the alarm
tests force open (test_alarms, test_report)."""


DEMO_CONFIG = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1
flush_timeout_s = 5

[areas.operator-room]

[areas.lobby]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "operator-room"
area_out = "lobby"

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.entrance-out]
driver = "sim"
door = "entrance"
direction = "out"
"""


DESK_CONFIG = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.operator-room]

[levels.staff]
desks = ["desk-01"]

[desks.desk-01]
area = "operator-room"

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""
"""A desk-only node in the operator room (the room DEMO_CONFIG's door leads into)."""


RECORDER_CONFIG = """\
[site]
id = "test"
node = "recorder"
timezone = "Asia/Tokyo"
roles = ["recorder"]

[mqtt]
url = "{url}"
reconnect_max_s = 1

[recorder]
gap_grace_s = 0.5
"""
"""A node that is only the site's recorder (SQLite in its data dir); more ``[recorder]`` keys
go after it."""


def node_site(tmp_path: Path, broker: Broker, name: str, config: str, site_key: Path | None = None) -> Site:
    """One more node of the test site, in its own dir (``tmp_path/name``) on the same broker:
    ``config`` is its whole config (``{url}`` filled in, ``door-a`` renamed ``name``), and the
    site's key, when given, is copied into its data dir (every node of a site shares it)."""
    home = tmp_path / name
    home.mkdir()
    s = Site(home, broker)
    s.config.write_text(config.format(url=broker.url).replace('node = "door-a"', f'node = "{name}"'))
    if site_key is not None:
        s.data_dir.mkdir(mode=0o700)
        shutil.copy2(site_key, s.data_dir / "site.key")
    return s


class Proxy:
    """A TCP relay in front of the broker, so a test can cut the daemon's connection mid-stream
    (bytes in transit are lost both ways, as on a real network cut) while the broker and the
    test's subscriber stay up."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.refusing = False
        """While set, a connection is closed as soon as it is accepted: the network is down."""
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.refusing:
                    client.close()
                    upstream.close()
                    continue
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # the other direction was cut; closing below ends this one too
        for s in (src, dst):
            s.close()

    def cut(self) -> int:
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its pump
                s.close()
        return len(pairs)

    def take_down(self) -> int:
        """Cut every connection and refuse new ones until ``bring_up``: a link that stays down,
        where ``cut`` alone is a blip the client reconnects through at once."""
        with self.lock:
            self.refusing = True
        return self.cut()

    def bring_up(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.listener.close()
        self.cut()


class Site:
    """A config file and a data dir, and the sekisho command line pointed at them."""

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.broker = broker
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "sekisho.toml"
        self.use_broker(broker.url)
        self.proc: subprocess.Popen | None = None
        self.log = tmp_path / "daemon.log"

    def use_broker(self, url: str, **mqtt_keys: Any) -> None:
        """Point the config at a broker; extra keyword arguments become [mqtt] keys."""
        text = DEMO_CONFIG.format(url=url)
        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in mqtt_keys.items())
        self.config.write_text(text.replace(f'url = "{url}"\n', f'url = "{url}"\n{extra}'))

    def cli(self, *args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
        cmd = [*SEKISHO, *args, "--config", str(self.config), "--data-dir", str(self.data_dir)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, input=input_text)
        if check:
            assert r.returncode == 0, f"{args} failed ({r.returncode}): {r.stderr}"
        return r

    def start(self, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()) -> None:
        """Run the daemon and wait until it answers on its control socket; ``env`` replaces the
        environment (a test double's preload), ``wrapper`` is a command that execs the daemon
        (``prlimit --nofile=...``)."""
        self.proc = subprocess.Popen([*wrapper, *SEKISHO, "run", "--config", str(self.config), "--data-dir",
                                      str(self.data_dir)], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     env=env)

        def ready() -> bool:
            assert self.proc.poll() is None, f"daemon exited: {self.log.read_text()}"
            return answers(self.data_dir, self.proc.pid)
        wait_for(ready, 15, "the daemon to answer on its control socket")

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Speak the control socket directly, as `sekisho door list` and the others do."""
        got = control(self.data_dir, request)
        assert got is not None, "no daemon answers on the control socket"
        return got[1]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the daemon did not stop within 30 s of signal {sig}; its log ends:\n"
                                 + "\n".join(self.daemon_log().splitlines()[-30:])) from None
        self.proc = None
        return rc

    def sim(self, reader: str, request: dict[str, Any]) -> dict[str, Any]:
        """Speak the sim reader's socket protocol directly: a CLI process per tap is too slow
        for a hundred taps. test_cli drives the same socket through `sekisho sim`."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.data_dir / "sim" / f"{reader}.sock"))
            s.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())

    def sim_answers(self, reader: str) -> bool:
        """Does the reader's socket answer? A request no reader knows changes nothing, and any
        answer to it means the socket listens (its file exists a moment before that)."""
        try:
            return "error" in self.sim(reader, {"op": "probe"})
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def enroll(self, person: str, uid: str, level: str = "staff", name: str = "") -> None:
        """A new person with a card, holding ``level`` (the test config's one level by default)."""
        self.cli("person", "add", "--id", person, "--name", name or f"Person {person}")
        self.cli("card", "add", "--person", person, "--uid", uid)
        self.cli("person", "grant", person, level)

    def tap(self, uid: str, reader: str = "entrance-in") -> None:
        assert self.sim(reader, {"op": "tap", "uid": uid}) == {"ok": True}

    def daemon_log(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
