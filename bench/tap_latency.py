"""Start-up to retained `online`, idle RSS, and sim tap -> event at a subscriber over 1,000 taps.

Targets (issue 3): start-up <= 1 s, idle RSS <= 60 MB, tap latency p99 <= 50 ms.
Run: .venv/bin/python bench/tap_latency.py [--taps 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import threading
import time

from _site import UID, Broker, Subscriber, answers, enrolled_site, parse, rss_mb, summary, wait_for, workdir


def main() -> None:
    n = parse(argparse.ArgumentParser(), taps=(1000, 20)).taps
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    site = enrolled_site(tmp, broker)
    try:
        measure(site, broker, n)
    finally:
        site.kill()
        broker.stop()


def measure(site, broker: Broker, n: int) -> None:  # noqa: ANN001
    arrived: dict[int, float] = {}
    got = threading.Condition()
    sub = Subscriber(broker.port, "sekisho/#")

    def on_message(client, userdata, msg):  # noqa: ANN001
        now = time.perf_counter()
        if msg.topic.endswith("/event"):
            with got:
                arrived[json.loads(msg.payload)["seq"]] = now
                got.notify_all()
        elif msg.topic.endswith("/status") and json.loads(msg.payload)["state"] == "online":
            with got:
                arrived.setdefault(0, now)
                got.notify_all()
    sub.client.on_message = on_message

    t0 = time.perf_counter()
    site.proc = subprocess.Popen([*site_cmd(site)], stdout=open(site.log, "ab"), stderr=subprocess.STDOUT)
    with got:
        got.wait_for(lambda: 0 in arrived, timeout=30)
    print(f"start-up to retained online: {(arrived[0] - t0) * 1000:.0f} ms")
    wait_for(lambda: answers(site.data_dir, site.proc.pid), what="the daemon to answer on its control socket")
    threading.Event().wait(2)  # let start-up garbage settle before reading idle RSS
    print(f"idle RSS: {rss_mb(site.proc.pid):.1f} MB")

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(site.data_dir / "sim" / "entrance-in.sock"))
    replies = conn.makefile("rb")
    latencies = []
    line = json.dumps({"op": "tap", "uid": UID}).encode() + b"\n"
    for seq in range(1, n + 1):
        sent = time.perf_counter()
        conn.sendall(line)
        replies.readline()
        with got:
            if not got.wait_for(lambda: seq in arrived, timeout=10):
                raise SystemExit(f"event {seq} never arrived")
        latencies.append((arrived[seq] - sent) * 1000)
    print(summary("sim tap -> subscriber", latencies))
    print(f"RSS after {n} taps: {rss_mb(site.proc.pid):.1f} MB")
    site.stop()
    sub.close()


def site_cmd(site) -> list[str]:  # noqa: ANN001
    from harness import SEKISHO
    return [*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)]


if __name__ == "__main__":
    main()
