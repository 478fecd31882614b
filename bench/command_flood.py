"""A tap during a flood of junk on cmd/<node>: how long the tap takes to reach a subscriber while
thousands of unsigned, malformed and forged commands arrive, and what the flood costs the daemon
(RSS, audit rows).

Target (issue 12): a tap reaches the bus within 50 ms at p99 during a flood of 20,000 junk
messages; RSS and the audit log do not grow with the flood.
Run: .venv/bin/python bench/command_flood.py [--junk 20000] [--taps 200] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from _site import UID, Broker, Subscriber, enrolled_site, figure, parse, rss_mb, summary, wait_for, workdir

JUNK = [b"{not json", b"[]", json.dumps({"a\nb": 1}).encode(),
        json.dumps({"id": "x", "ts": "2026-01-01T00:00:00Z", "site": "test", "node": "door-a", "op": "door.unlock",
                    "args": {"door": "entrance"}, "key": "officer",
                    "sig": base64.b64encode(b"\0" * 64).decode()}).encode()]


def main() -> None:
    args = parse(argparse.ArgumentParser(), junk=(20000, 2000), taps=(200, 20))
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    site = enrolled_site(tmp, broker)
    site.cli("person", "grant", "u1", "staff")
    try:
        measure(site, broker, args)
    finally:
        site.kill()
        broker.stop()


def audit_rows(site) -> int:  # noqa: ANN001
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        return db.execute("SELECT count(*) FROM audit").fetchone()[0]


def measure(site, broker: Broker, args: argparse.Namespace) -> None:  # noqa: ANN001
    junk, taps = args.junk, args.taps
    arrived: dict[int, float] = {}
    got = threading.Condition()
    sub = Subscriber(broker.port, "sekisho/v1/test/door/+/event")

    def on_message(client, userdata, msg):  # noqa: ANN001
        with got:
            arrived[json.loads(msg.payload)["seq"]] = time.perf_counter()
            got.notify_all()
    sub.client.on_message = on_message
    site.start()
    threading.Event().wait(1)
    rss_before, rows_before = rss_mb(site.proc.pid), audit_rows(site)

    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    flooder.max_inflight_messages_set(1000)
    flooder.connect("127.0.0.1", broker.port)
    flooder.loop_start()
    sent_junk = 0
    done = threading.Event()

    def flood() -> None:
        nonlocal sent_junk
        while sent_junk < junk:
            flooder.publish("sekisho/v1/test/cmd/door-a", JUNK[sent_junk % len(JUNK)], qos=1)
            sent_junk += 1
        done.set()

    started = time.perf_counter()
    threading.Thread(target=flood, daemon=True).start()
    latencies = []
    every = 0.01
    for seq in range(1, taps + 1):
        tapped = time.perf_counter()
        site.tap(UID, reader="entrance-in" if seq % 2 else "entrance-out")
        with got:
            if not got.wait_for(lambda: seq in arrived, timeout=30):
                raise SystemExit(f"tap {seq} never reached the bus")
        latencies.append((arrived[seq] - tapped) * 1000)
        time.sleep(max(0.0, every - (time.perf_counter() - tapped)))
    done.wait(120)
    flood_s = time.perf_counter() - started
    flooder.loop_stop()
    flooder.disconnect()
    wait_for(lambda: site.cli("door", "list").returncode == 0, what="the daemon answering after the flood")
    print(f"flood: {sent_junk} junk commands in {flood_s:.1f} s ({sent_junk / flood_s:.0f}/s), "
          f"{taps} taps meanwhile")
    print(summary("sim tap -> subscriber during the flood", latencies))
    print(f"RSS: {rss_before:.1f} MB before, {rss_mb(site.proc.pid):.1f} MB after; "
          f"audit rows added: {audit_rows(site) - rows_before} (taps: {taps})")
    figure(args, f"sim tap -> subscriber during a flood of {sent_junk:,} junk commands", samples=latencies)
    sub.close()
    site.stop()


if __name__ == "__main__":
    main()
