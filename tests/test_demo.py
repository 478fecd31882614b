"""`sekisho demo` (what `make demo` runs) works for a newcomer: broker, daemon, bus monitor."""

from __future__ import annotations

import os
import signal
import stat
import subprocess

from conftest import REPO, SEKISHO, free_port, wait_for


def test_demo_runs_end_to_end(tmp_path):
    port = free_port()
    args = ["--config", str(REPO / "examples" / "demo.toml"), "--data-dir", str(tmp_path / "data"),
            "--mqtt", f"mqtt://127.0.0.1:{port}"]
    out = tmp_path / "demo.out"
    demo = subprocess.Popen([*SEKISHO, "demo", *args], stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    try:
        sock = tmp_path / "data" / "sim" / "entrance-in.sock"
        wait_for(lambda: sock.exists() and "node/door-a/status" in out.read_text(), timeout=20,
                 what=f"the demo to come up: {out.read_text() if out.exists() else ''}")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        text = out.read_text()
        assert "sim tap entrance-in 04a1b2c3d4e5f6" in text  # the printed instructions
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
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, out.read_text()
    # A second run is idempotent: the demo people are not enrolled twice.
    demo = subprocess.Popen([*SEKISHO, "demo", *args], stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "node/door-a/status" in out.read_text(), timeout=20, what="the second demo")
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, out.read_text()
    assert "Traceback" not in out.read_text()
