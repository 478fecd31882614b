"""Start-up to retained `online`, idle RSS, and sim tap -> event at a subscriber over 1,000 taps,
each beside its anchor, measured in the same run on the same broker:

- start-up and RSS: a bare Python process (the same interpreter) that imports paho, connects and
  publishes a retained status (``_site.BARE_NODE``), from exec to that status at a subscriber,
  and its RSS then: what any Python node on MQTT costs before it does anything; below it the
  interpreter alone, bare and with paho imported (``_site.PYTHON_FLOORS``);
- tap latency: a bare paho client publishing QoS 1 to a bare subscriber, one message at a time,
  one round trip after each tap (``_site.BareRoundTrip``): what the broker and paho cost alone,
  under the same load as the tap beside it.

Targets (issue 3): start-up <= 1 s, idle RSS <= 60 MB, tap latency p99 <= 50 ms. Issue 20: tap
latency at most 3 times the bare round trip at p50 and 2 times at p99, start-up to online
<= 120 ms, idle RSS <= 35 MB.
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
    PYTHON_FLOORS,
    UID,
    BareRoundTrip,
    Broker,
    Subscriber,
    answers,
    bare_node,
    enrolled_site,
    figure,
    parse,
    python_floor,
    rss_mb,
    sqlite_ceiling,
    stats,
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
    floors: dict[str, list[tuple[float, float]]] = {name: [] for name in PYTHON_FLOORS}
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
        for name, code in PYTHON_FLOORS.items():
            floors[name].append(python_floor(code))
    print(summary("start-up to retained online", starts))
    print(summary("  anchor: bare paho node, exec -> retained status", bare_starts))
    for name, runs in floors.items():
        print(summary(f"  floor: {name}, exec -> done", [took for took, _ in runs]))
    threading.Event().wait(2)  # let start-up garbage settle before reading idle RSS
    idle = rss_mb(site.proc.pid)
    print(f"idle RSS: {idle:.1f} MB (anchor: the bare paho node {min(bare_rss):.1f} MB; "
          + "; ".join(f"{name} {min(rss for _, rss in runs):.1f} MB" for name, runs in floors.items()) + ")")
    figure(args, "start-up: exec -> retained online", samples=starts,
           anchor="a bare paho node: exec -> retained status", anchor_samples=bare_starts)
    figure(args, "idle RSS (one door, 2 sim readers)", unit="MB", value=idle,
           anchor="a bare paho node's RSS", anchor_value=min(bare_rss))

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(site.data_dir / "sim" / "entrance-in.sock"))
    replies = conn.makefile("rb")
    latencies, bare = [], []
    line = json.dumps({"op": "tap", "uid": UID}).encode() + b"\n"
    trips = BareRoundTrip(broker.port)
    for seq in range(1, n + 1):
        sent = time.perf_counter()
        conn.sendall(line)
        replies.readline()
        with got:
            if not got.wait_for(lambda: seq in arrived, timeout=10):
                raise SystemExit(f"event {seq} never arrived")
        latencies.append((arrived[seq] - sent) * 1000)
        bare.append(trips.once())  # interleaved: each anchor sample under the load of the tap before it
    trips.close()
    print(summary("sim tap -> subscriber", latencies))
    print(summary("  anchor: bare paho publish -> bare subscriber", bare))
    tap, anchor = stats(latencies), stats(bare)
    commit = 1000 / sqlite_ceiling(workdir(), 200, 1)
    print(f"  floor: one sqlite3 WAL synchronous=FULL commit of an event's rows: {commit:.2f} ms on average "
          "(the tap's own record; the bare round trip has none)")
    print(f"  tap / anchor: p50 {tap['p50'] / anchor['p50']:.1f}x, p99 {tap['p99'] / anchor['p99']:.1f}x "
          "(issue 20: at most 3x and 2x)")
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
