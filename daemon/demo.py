"""``sekisho demo``: the whole system on one machine, for a first look.

Starts a private mosquitto on the port the config names, enrolls two demo people (one with a
card that opens, one whose card is revoked), runs the daemon, and prints every message that
reaches the bus, so a newcomer can tap a card in a second terminal and watch the event arrive.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .app import open_store
from .config import Config
from .errors import SekishoError
from .logind_sim import SimulatedLogind
from .pins import hash_pin

# (id, name, card UID, card still valid, level); Demo Operator's PIN is 1234.
PEOPLE = [("u1001", "Demo Operator", "04a1b2c3d4e5f6", True, "operators"),
          ("u1002", "Demo Leaver", "04deadbeef0001", False, "operators")]
PIN = "1234"


def _enroll(cfg: Config, data_dir: Path) -> None:
    store, key = open_store(cfg, data_dir)
    try:
        known = {p["id"] for p in store.people()}
        for person_id, name, uid, active, level in PEOPLE:
            if person_id in known:
                continue
            card = key.card_hash(bytes.fromhex(uid))
            store.add_person(person_id, name, "demo")
            store.add_card(person_id, card, "demo")
            if level in cfg.rules.levels:
                store.grant_level(person_id, level, "demo")
            store.set_pin_hash(person_id, hash_pin(PIN), "demo")
            if not active:
                store.revoke_card(card, "demo")
    finally:
        store.close()


def _start_broker(cfg: Config, data_dir: Path) -> subprocess.Popen:
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
    conf = data_dir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=open(data_dir / "mosquitto.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
        proc.kill()
        raise SekishoError(f"mosquitto did not start; see {data_dir / 'mosquitto.log'}")


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


def demo(cfg: Config, data_dir: Path, cli_args: list[str]) -> int:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _enroll(cfg, data_dir)
    broker = _start_broker(cfg, data_dir)
    env = dict(os.environ)
    logind = None
    if cfg.desks:
        # Desks lock a session through logind: the demo's own, never the desktop you are on.
        logind = SimulatedLogind(data_dir)
        try:
            logind.start()
        except SekishoError:
            broker.terminate()
            raise
        env["DBUS_SYSTEM_BUS_ADDRESS"] = logind.address
    me = [sys.executable, "-m", "sekisho.daemon.cli"]
    # The watcher first, subscribed before the daemon starts: the daemon's first events
    # (the desk's start-up lock) are not retained, and a newcomer should see them too.
    watcher = subprocess.Popen([*me, "watch", *cli_args], env=env, stderr=subprocess.PIPE)
    _until_watching(watcher)
    daemon = subprocess.Popen([*me, "run", *cli_args], env=env)
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
    .venv/bin/sekisho sim tap desk-01 04a1b2c3d4e5f6 {args}       # the card in the desk's slot:
                                                                  #   in_use (once inside the room)
    .venv/bin/sekisho sim pull desk-01 {args}                      # pulled: the session locks
    .venv/bin/sekisho muster {args}                                # who is inside
    .venv/bin/sekisho events {args}
    .venv/bin/sekisho audit verify {args}

  (shorter: make tap CARD=04a1b2c3d4e5f6 READER=entrance-in, make pin PIN={PIN})
  Every message on the bus is printed below. Ctrl-C stops everything.
""", flush=True)
    try:
        rc = daemon.wait()
    except KeyboardInterrupt:
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait()
    finally:
        watcher.terminate()
        watcher.wait()
        broker.terminate()
        broker.wait()
        if logind:
            logind.stop()
    return rc
