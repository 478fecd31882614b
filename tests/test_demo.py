"""`sekisho demo` (what `make demo` runs) works for a newcomer: broker, daemon, bus monitor; and
it stops, taking everything it started down with it, however it was started and stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, SEKISHO, answers, free_port, wait_for


def demo_args(tmp_path: Path) -> list[str]:
    return ["--config", str(REPO / "examples" / "demo.toml"), "--data-dir", str(tmp_path / "data"),
            "--mqtt", f"mqtt://127.0.0.1:{free_port()}"]


def wait_ready(demo: subprocess.Popen, tmp_path: Path, out: Path) -> None:
    """The daemon answers on its control socket and the watcher has printed its online status."""
    def ready() -> bool:
        assert demo.poll() is None, f"the demo exited: {out.read_text()}"
        return answers(tmp_path / "data") and "node/door-a/status" in out.read_text()
    wait_for(ready, timeout=30, what="the demo to come up")


def ws_publish(port: int, topic: str) -> int:
    """Publish on the demo's WebSockets listener, as anyone on the LAN could (mosquitto 2.0.11
    binds it to every interface); the broker's reason code."""
    acked: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, transport="websockets", protocol=mqtt.MQTTv5)
    client.on_publish = lambda c, u, mid, reason, p: acked.append(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, '{"probe": true}', qos=1)
        return wait_for(lambda: acked, what=f"the PUBACK for {topic}")[0]
    finally:
        client.loop_stop()
        client.disconnect()


def test_demo_runs_end_to_end(tmp_path):
    args = demo_args(tmp_path)
    out = tmp_path / "demo.out"
    demo = subprocess.Popen([*SEKISHO, "demo", *args], stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_ready(demo, tmp_path, out)
        sock = tmp_path / "data" / "sim" / "entrance-in.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        text = out.read_text()
        assert "sim tap entrance-in 04a1b2c3d4e5f6" in text  # the printed instructions
        # The officer's console, served beside them, pointing at the broker's WebSockets listener.
        url = re.search(r"The officer's console: (http://localhost:\d+/)", text)
        assert url, text
        with urllib.request.urlopen(url[1] + "config.json", timeout=5) as r:
            layout = json.load(r)
        assert layout["site"] == "demo" and layout["doors"]["entrance"]["node"] == "door-a"
        ws_port = int(layout["broker"].rsplit(":", 1)[1].strip("/"))
        socket.create_connection(("127.0.0.1", ws_port), timeout=5).close()
        assert ws_publish(ws_port, "sekisho/v1/demo/node/door-a/status") == 0x87  # nobody speaks for a node
        assert ws_publish(ws_port, "sekisho/v1/demo/cmd/door-a") < 0x80  # a command: run only when signed
        # The forced door of the printed instructions (before any grant releases the door): an
        # alarm that waits for a person.
        for state in ("open", "closed"):
            r = subprocess.run([*SEKISHO, "sim", "input", "entrance-contact", state, *args], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr
        assert "alarm ack door-a.entrance.forced" in text
        wait_for(lambda: "door-a.entrance.forced" in subprocess.run(
            [*SEKISHO, "alarms", "--open", *args], capture_output=True, text=True).stdout, what="the open alarm")
        r = subprocess.run([*SEKISHO, "alarm", "ack", "door-a.entrance.forced", *args], capture_output=True, text=True)
        assert r.returncode == 0 and "closed" in r.stdout, r.stderr
        for sim in (["tap", "entrance-in", "04a1b2c3d4e5f6"], ["pin", "entrance-in", "1234"],
                    ["tap", "entrance-out", "04deadbeef0001"]):
            r = subprocess.run([*SEKISHO, "sim", *sim, *args], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        wait_for(lambda: out.read_text().count("door/entrance/event") == 2, what="two events printed")
        text = out.read_text()
        assert '"reason": "card_and_pin", "result": "granted"' in text and '"reason": "revoked"' in text
        assert '"count": 1' in text  # the operator room's occupancy
        muster = subprocess.run([*SEKISHO, "muster", *args], capture_output=True, text=True).stdout
        assert "operator-room: 1 inside" in muster and "Demo Operator" in muster
        for sim in (["tap", "desk-01", "04a1b2c3d4e5f6"], ["pull", "desk-01"]):
            r = subprocess.run([*SEKISHO, "sim", *sim, *args], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        wait_for(lambda: '"state": "in_use"' in out.read_text(), what="the desk in use")
        def locked_after_pull() -> bool:
            _, removed, after = out.read_text().partition('"kind": "card_removed"')
            return bool(removed) and '"kind": "session_locked"' in after
        wait_for(locked_after_pull, what="the desk locked on pull")
        # The watcher subscribes before the daemon starts, so the start-up lock is shown too.
        assert out.read_text().count('"kind": "session_locked"') == 2
        assert '"reason": "locked"' in out.read_text()
        # The demo node is the site's recorder too: the events it published are in recorder.db.
        from sekisho.daemon.recorder_store import open_store
        printed = out.read_text().count("door/entrance/event") + out.read_text().count("desk/desk-01/event")
        with open_store(None, tmp_path / "data") as records:
            wait_for(lambda: records.count() == printed, what="the demo's events in its recorder's store")
            assert records.last_seq("door-a") == printed and records.gaps() == []
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, out.read_text()
    # A second run is idempotent: the demo people are not enrolled twice.
    demo = subprocess.Popen([*SEKISHO, "demo", *args], stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_ready(demo, tmp_path, out)
        # And a third beside it says what runs, before it touches anything.
        again = subprocess.run([*SEKISHO, "demo", *args], capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "a demo already runs from this data dir" in again.stderr, again.stderr
        assert demo.poll() is None
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, out.read_text()
    assert "Traceback" not in out.read_text()


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``, each with its command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # The fields after the command name, which may itself hold spaces and parentheses.
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(proc.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has yet to reap it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_started_in_the_background_stops_and_takes_its_children_down(tmp_path, sig):
    """As a CI runner or ``nohup`` starts it: SIGINT inherited ignored (a non-interactive shell
    does this to a background job). Either signal stops it, and nothing it started outlives it."""
    out = tmp_path / "demo.out"
    # sh sets SIGINT to ignored and exec keeps it so, for the demo and for what it starts.
    demo = subprocess.Popen(["/bin/sh", "-c", 'trap "" INT; exec "$0" "$@"', *SEKISHO, "demo",
                             *demo_args(tmp_path)], stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    kids: dict[int, str] = {}
    try:
        wait_ready(demo, tmp_path, out)
        kids = children(demo.pid)
        assert any("mosquitto" in c for c in kids.values()), kids
        assert any(" run " in c for c in kids.values()), kids
        assert any(" watch " in c for c in kids.values()), kids
        demo.send_signal(sig)
        try:
            rc = demo.wait(40)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo ignored {sig.name}: {out.read_text()}") from None
        assert rc == 0, out.read_text()
        left = {pid: cmd for pid, cmd in kids.items() if alive(pid)}
        assert not left, f"still running after the demo exited: {left}"
        assert "Traceback" not in out.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
