"""``sekisho demo``: the whole system on one machine, for a first look.

Starts a private mosquitto on the port the config names (and a WebSockets listener beside it,
for the officer's console), enrolls two demo people (one with a card that opens, one whose card
is revoked), runs the daemon, serves the officer's console on localhost, and prints every
message that reaches the bus, so a newcomer can tap a card in a second terminal and watch the
event arrive, in the terminal and in the browser.

It stops on SIGINT (Ctrl-C) and on SIGTERM, by handlers of its own, as the daemon does: a
process started in the background by a non-interactive shell (a CI runner, ``nohup``, ``cmd &``
in a script) inherits SIGINT ignored, so waiting for a KeyboardInterrupt would wait forever,
and SIGTERM's default action would kill the demo alone and leave its broker, daemon and watcher
running. However it stops (a signal, the daemon exiting, an error while starting), it takes down
everything it started, in reverse order: the daemon first, so it can say offline to the broker,
each given a bounded time and then killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .app import open_store
from .config import Config
from .errors import SekishoError
from .instance import AlreadyRunning, hold_data_dir
from .logind_sim import SimulatedLogind
from .pins import hash_pin
from .store.people import People
from .topics import Topics

# (id, name, card UID, card still valid, level); Demo Operator's PIN is 1234.
PEOPLE = [("u1001", "Demo Operator", "04a1b2c3d4e5f6", True, "operators"),
          ("u1002", "Demo Leaver", "04deadbeef0001", False, "operators")]
PIN = "1234"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_DAEMON_S = 20.0
"""As the unit's TimeoutStopSec: the daemon flushes its outbox and says offline."""
STOP_OTHERS_S = 5.0
CONSOLE_PORT = 18080
"""Where the demo serves the console when the port is free (else one the kernel picks)."""


def _port_near(port: int) -> int:
    """``port`` when nothing on this machine listens there, else a free one the kernel picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _stop(signum: int, frame: object) -> None:
    # One stop is enough; ignoring the rest keeps a second Ctrl-C from cutting the take-down
    # short, which is itself bounded (each part is killed after its time).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signum)


def _end(proc: subprocess.Popen, sig: int, within: float) -> int:
    """Signal ``proc`` and reap it; killed when it has not exited ``within`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(within)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _enroll(cfg: Config, data_dir: Path) -> None:
    database, key = open_store(cfg, data_dir)
    people = People(database)
    try:
        known = {p["id"] for p in people.people()}
        for person_id, name, uid, active, level in PEOPLE:
            if person_id in known:
                continue
            card = key.card_hash(bytes.fromhex(uid))
            people.add_person(person_id, name, "demo")
            people.add_card(person_id, card, "demo")
            if level in cfg.rules.levels:
                people.grant_level(person_id, level, "demo")
            people.set_pin_hash(person_id, hash_pin(PIN), "demo")
            if not active:
                people.revoke_card(card, "demo")
    finally:
        database.close()


def _start_broker(cfg: Config, data_dir: Path, started: Callable[[Callable[[], object]], None]) -> int:
    """Start mosquitto; the port of its WebSockets listener (the MQTT port + 1 when free)."""
    tls, host, port = cfg.mqtt.endpoint
    if tls or host not in ("127.0.0.1", "localhost"):
        raise SekishoError(f"the demo runs its own broker on this machine; {cfg.path} must use mqtt://127.0.0.1:PORT")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise SekishoError("mosquitto is not installed (make demo installs it: apt-get install mosquitto)")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise SekishoError(f"something already listens on 127.0.0.1:{port}; stop it, or change [mqtt] url "
                               f"in {cfg.path}")
    ws_port = _port_near(port + 1)
    # Debian's mosquitto (2.0.11) binds a WebSockets listener to every interface whatever address
    # it is given. So that listener gets its own rules: anyone who reaches it may read the demo
    # site and send commands, which the daemon runs only when signed; nobody may speak for a node.
    # mosquitto reads the ACL after it has dropped root for its own user, who cannot enter the
    # data dir (0700): the file, no secret, goes to a folder of its own that mosquitto can read.
    base = Topics(cfg.site.id).base
    acl_dir = Path(tempfile.mkdtemp(prefix="sekisho-demo-acl-"))
    started(lambda: shutil.rmtree(acl_dir, ignore_errors=True))
    acl_dir.chmod(0o755)
    acl = acl_dir / "websockets.acl"
    acl.write_text(f"topic read {base}/#\ntopic write {base}/cmd/+\n")
    acl.chmod(0o644)
    conf = data_dir / "mosquitto.conf"
    conf.write_text(f"per_listener_settings true\npersistence false\n"
                    f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"listener {ws_port} 127.0.0.1\nprotocol websockets\nallow_anonymous true\nacl_file {acl}\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=open(data_dir / "mosquitto.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    started(lambda: _end(proc, signal.SIGTERM, STOP_OTHERS_S))
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return ws_port
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
        raise SekishoError(f"mosquitto did not start; see {data_dir / 'mosquitto.log'}")


def _start_console(cfg: Config, broker_ws: str, started: Callable[[Callable[[], object]], None]) -> str:
    """Serve console/ on localhost, in this process (sekisho console does the same); its URL."""
    from .console_server import CONSOLE_DIR, ConsoleServer, load_page, site_layout
    page = load_page(CONSOLE_DIR, site_layout(cfg, broker_ws, "auto"))
    server = ConsoleServer(page, "127.0.0.1", _port_near(CONSOLE_PORT), broker_ws)
    server.start()
    started(server.close)
    return server.url


def _until_watching(watcher: subprocess.Popen, timeout: float = 10.0) -> None:
    """Pass the watcher's stderr through, and return once it says it is subscribed (or gave up)."""
    subscribed = threading.Event()

    def relay() -> None:
        assert watcher.stderr is not None
        for line in iter(watcher.stderr.readline, b""):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            if line.startswith(b"# watching"):
                subscribed.set()
        subscribed.set()  # it exited: its message says why; the demo goes on without it

    threading.Thread(target=relay, name="watch stderr", daemon=True).start()
    subscribed.wait(timeout)


class _Parts:
    """What the demo started, each with its way to end, and the daemon's exit status."""

    def __init__(self) -> None:
        self.ends: list[Callable[[], object]] = []
        self.rc = 0

    def started(self, end: Callable[[], object]) -> None:
        self.ends.append(end)

    def daemon(self, proc: subprocess.Popen) -> None:
        def end() -> None:
            rc = _end(proc, signal.SIGTERM, STOP_DAEMON_S)
            # Killed by our SIGTERM before its handlers were in place (stopped while starting)
            # is a stop like any other; killed by another signal, the shell's 128 + n.
            self.rc = 0 if rc == -signal.SIGTERM else 128 - rc if rc < 0 else rc
        self.started(end)

    def take_down(self) -> None:
        for end in reversed(self.ends):
            end()


def demo(cfg: Config, data_dir: Path, cli_args: list[str]) -> int:
    """Runs until the daemon exits or a stop signal arrives; the daemon's exit status."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(hold_data_dir(data_dir))  # a look only: the daemon takes it for itself
    except AlreadyRunning as exc:
        raise SekishoError(f"a demo already runs from this data dir ({exc}); its terminal prints the "
                           "console's URL, and Ctrl-C there stops it") from None
    _enroll(cfg, data_dir)
    parts = _Parts()
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    try:
        _run(cfg, data_dir, cli_args, parts)
    except _Stop:
        pass  # asked to stop: what the daemon says to its SIGTERM is the demo's exit status
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # the take-down runs to its end
        parts.take_down()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return parts.rc


def _run(cfg: Config, data_dir: Path, cli_args: list[str], parts: _Parts) -> None:
    """Start the parts, each registered as soon as it exists, then wait for the daemon to exit;
    a stop signal arrives here as _Stop."""
    ws_port = _start_broker(cfg, data_dir, parts.started)
    console = _start_console(cfg, f"ws://127.0.0.1:{ws_port}/", parts.started)
    env = dict(os.environ)
    if cfg.desks:
        # Desks lock a session through logind: the demo's own, never the desktop you are on.
        logind = SimulatedLogind(data_dir)
        parts.started(logind.stop)  # stops whatever part of it started
        logind.start()
        env["DBUS_SYSTEM_BUS_ADDRESS"] = logind.address
    me = [sys.executable, "-m", "sekisho.daemon.cli"]
    # The watcher first, subscribed before the daemon starts: the daemon's first events
    # (the desk's start-up lock) are not retained, and a newcomer should see them too.
    # Raw: the demo shows the contract at work, in a terminal the daemon logs to as well.
    watcher = subprocess.Popen([*me, "watch", "--raw", *cli_args], env=env, stderr=subprocess.PIPE)
    parts.started(lambda: _end(watcher, signal.SIGTERM, STOP_OTHERS_S))
    _until_watching(watcher)
    daemon = subprocess.Popen([*me, "run", *cli_args], env=env)
    parts.daemon(daemon)
    readers = ", ".join(cfg.readers)
    args = " ".join(cli_args)
    print(f"""
  sekisho demo: broker on {cfg.mqtt.url}, readers {readers}.
  In another terminal, from this directory:

    .venv/bin/sekisho sim tap entrance-in 04a1b2c3d4e5f6 {args}   # Demo Operator's card, then
    .venv/bin/sekisho sim pin entrance-in {PIN} {args}             # the PIN: granted, now inside
    .venv/bin/sekisho sim tap entrance-out 04a1b2c3d4e5f6 {args}  # leaving by card: granted
    .venv/bin/sekisho sim tap entrance-out 04deadbeef0001 {args}  # a revoked card: denied
    .venv/bin/sekisho sim tap entrance-in 0411223344 {args}       # an unknown card: denied
    .venv/bin/sekisho sim tap entrance-in 04a1b2c3d4e5f6 {args}   # back in (card, then the PIN)
    .venv/bin/sekisho sim pin entrance-in {PIN} {args}
    .venv/bin/sekisho sim tap desk-01 04a1b2c3d4e5f6 {args}       # the card in the desk's slot:
                                                                  #   in_use (once inside the room)
    .venv/bin/sekisho sim pull desk-01 {args}                      # pulled: the session locks
    .venv/bin/sekisho sim input entrance-contact open {args}      # the door opened without a card
    .venv/bin/sekisho sim input entrance-contact closed {args}    #   and closed: a forced-door alarm,
    .venv/bin/sekisho alarms --open {args}                         #   open until a person has seen it:
    .venv/bin/sekisho alarm ack door-a.entrance.forced {args}      #   acknowledged, and closed
    .venv/bin/sekisho muster {args}                                # who is inside
    .venv/bin/sekisho events {args}
    .venv/bin/sekisho audit verify {args}

  The officer's console: {console}  (the broker's WebSockets on ws://127.0.0.1:{ws_port}/)
  Import examples/demo-officer.key in the page, key name demo-officer, to acknowledge alarms
  and set the door's mode.

  (shorter: make tap CARD=04a1b2c3d4e5f6 READER=entrance-in, make pin PIN={PIN} READER=entrance-in)
  The demo keeps its records in .demo/ across runs (Demo Operator may still be inside from the
  last one: the door then refuses a second entry, anti-passback); rm -rf .demo starts afresh.
  Every message on the bus is printed below. Ctrl-C stops everything.
""", flush=True)
    daemon.wait()
