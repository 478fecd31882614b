"""Start-up to retained `online`, idle RSS, and sim tap -> event at a subscriber over 1,000 taps,
each beside its anchor, measured in the same run on the same broker:

- start-up and RSS: a bare Python process (the same interpreter) that imports paho, connects and
  publishes a retained status (``_site.BARE_NODE``), from exec to that status at a subscriber,
  and its RSS then: what any Python node on MQTT costs before it does anything;
- tap latency: a bare paho client publishing QoS 1 to a bare subscriber, one message at a time:
  what the broker and paho cost alone.

Targets (issue 3): start-up <= 1 s, idle RSS <= 60 MB, tap latency p99 <= 50 ms.
Run: .venv/bin/python bench/tap_latency.py [--taps 1000] [--starts 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import threading
import time

from _site import (
    UID,
    Broker,
    Subscriber,
    answers,
    bare_node,
    bare_round_trips,
    enrolled_site,
    figure,
    parse,
    rss_mb,
    summary,
    wait_for,
    workdir,
)


def main() -> None:
    args = parse(argparse.ArgumentParser(), taps=(1000, 20), starts=(5, 1))
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    site = enrolled_site(tmp, broker)
    try:
        measure(site, broker, args)
    finally:
        site.kill()
        broker.stop()


def measure(site, broker: Broker, args: argparse.Namespace) -> None:  # noqa: ANN001
    n = args.taps
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

    starts, bare_starts, bare_rss = [], [], []
    for _ in range(args.starts):
        if site.proc is not None:
            site.stop()
            with got:
                arrived.pop(0, None)
        t0 = time.perf_counter()
        site.proc = subprocess.Popen([*site_cmd(site)], stdout=open(site.log, "ab"), stderr=subprocess.STDOUT)
        with got:
            if not got.wait_for(lambda: 0 in arrived, timeout=30):
                raise SystemExit(f"the daemon never said online; its log:\n{site.daemon_log()}")
        starts.append((arrived[0] - t0) * 1000)
        wait_for(lambda: answers(site.data_dir, site.proc.pid), what="the daemon to answer on its control socket")
        took, rss = bare_node(broker.port)
        bare_starts.append(took)
        bare_rss.append(rss)
    print(summary("start-up to retained online", starts))
    print(summary("  anchor: bare paho node, exec -> retained status", bare_starts))
    threading.Event().wait(2)  # let start-up garbage settle before reading idle RSS
    idle = rss_mb(site.proc.pid)
    print(f"idle RSS: {idle:.1f} MB (anchor: the bare paho node {min(bare_rss):.1f} MB)")
    figure(args, "start-up: exec -> retained online", samples=starts,
           anchor="a bare paho node: exec -> retained status", anchor_samples=bare_starts)
    figure(args, "idle RSS (one door, 2 sim readers)", unit="MB", value=idle,
           anchor="a bare paho node's RSS", anchor_value=min(bare_rss))

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
    bare = bare_round_trips(broker.port, n)
    print(summary("  anchor: bare paho publish -> bare subscriber", bare))
    print(f"RSS after {n} taps: {rss_mb(site.proc.pid):.1f} MB")
    figure(args, "tap to event: sim tap -> event at a subscriber", samples=latencies,
           anchor="bare paho publish -> bare subscriber", anchor_samples=bare)
    site.stop()
    sub.close()


def site_cmd(site) -> list[str]:  # noqa: ANN001
    from harness import SEKISHO
    return [*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)]


if __name__ == "__main__":
    main()
