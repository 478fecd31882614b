"""Sustained load: taps at a fixed rate for a fixed time, every event persisted and published;
counts distinct event ids at a real subscriber (zero loss is the pass mark).

Its anchor, in the same run on the same broker: a bare paho client publishing QoS 1 messages at
the same rate for the same time to a bare subscriber (what the broker and paho carry alone).
Beside it, the two ceilings any node on this machine is under, measured in the same run: the
most QoS 1 messages a second one paho client carries through this broker (``_site.paho_ceiling``),
and the most events a second plain sqlite3 commits in WAL mode with a full sync, writing what the
store writes for one event, one event per transaction and in transactions of 100
(``_site.sqlite_ceiling``).

Target (issue 3): 2,000 events/s for 60 s with zero loss. Issue 20: sustained zero-loss
throughput at least half the lower ceiling (offer more than it can take: --rate 8000).
Run: .venv/bin/python bench/throughput.py [--rate 2000] [--seconds 60] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path

from _site import (
    PAHO_RATES,
    UID,
    Broker,
    Subscriber,
    bare_stream,
    enrolled_site,
    figure,
    paho_ceiling,
    parse,
    rss_mb,
    sqlite_ceiling,
    wait_for,
    workdir,
)


async def drive(sock: str, rate: int, seconds: int) -> tuple[int, float]:
    reader, writer = await asyncio.open_unix_connection(sock)
    line = json.dumps({"op": "tap", "uid": UID}).encode() + b"\n"
    total = rate * seconds
    answered = 0

    async def read_replies() -> None:
        nonlocal answered
        while answered < total:
            reply = await reader.readline()
            if reply != b'{"ok": true}\n':
                raise SystemExit(f"bad reply {reply!r}")
            answered += 1

    replies = asyncio.create_task(read_replies())
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = int((time.perf_counter() - start) * rate) + 1
        while sent < min(due, total):
            writer.write(line)
            sent += 1
        await writer.drain()
        await asyncio.sleep(0.005)
    await replies
    elapsed = time.perf_counter() - start
    writer.close()
    return sent, elapsed


def main() -> None:
    args = parse(argparse.ArgumentParser(), rate=(2000, 200), seconds=(60, 2), ceiling_events=(20000, 1000))
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    site = enrolled_site(tmp, broker)
    try:
        measure(site, broker, args)
        ceilings(tmp, broker, args)
    finally:
        site.kill()
        broker.stop()


def measure(site, broker: Broker, args: argparse.Namespace) -> None:  # noqa: ANN001
    rate, seconds = args.rate, args.seconds
    ids: set[str] = set()
    lock = threading.Lock()
    sub = Subscriber(broker.port, "sekisho/+/+/door/+/event")

    def on_message(client, userdata, msg):  # noqa: ANN001
        with lock:
            ids.add(json.loads(msg.payload)["id"])
    sub.client.on_message = on_message
    site.start()  # returns once the daemon answers on its control socket

    peak = [0.0]

    def sample() -> None:
        while (proc := site.proc) and proc.poll() is None:
            try:
                peak[0] = max(peak[0], rss_mb(proc.pid))
            except (OSError, RuntimeError):
                return  # it exited between the poll and the read (the stop at the end)
            threading.Event().wait(1)
    threading.Thread(target=sample, daemon=True).start()

    sent, elapsed = asyncio.run(drive(str(site.data_dir / "sim" / "entrance-in.sock"), rate, seconds))
    print(f"offered {sent} taps in {elapsed:.1f} s = {sent / elapsed:.0f}/s (all answered by the reader)")
    t_end = time.perf_counter()
    wait_for(lambda: len(ids) >= sent, timeout=120, what="every event at the subscriber")
    drain = time.perf_counter() - t_end
    with lock:
        received = len(ids)
    print(f"received {received} distinct events at the subscriber, {sent - received} lost; "
          f"drained {drain:.2f} s after the last tap; end-to-end {received / (elapsed + drain):.0f} events/s")
    print(f"daemon peak RSS {peak[0]:.1f} MB")
    site.stop()
    sub.close()
    bare_sent, bare_received, bare_s = bare_stream(broker.port, rate, seconds)
    print(f"  anchor: bare paho, {bare_sent} QoS 1 messages offered at {rate}/s: {bare_received} received, "
          f"{bare_sent - bare_received} lost; end-to-end {bare_received / bare_s:.0f} messages/s")
    figure(args, f"throughput: taps offered at {rate:,}/s for {seconds} s, events at a subscriber "
           f"({sent - received} lost)", unit="events/s", value=received / (elapsed + drain),
           anchor=f"bare paho at the same rate ({bare_sent - bare_received} lost)", anchor_value=bare_received / bare_s)
    figure(args, "peak RSS during the throughput run", unit="MB", value=peak[0])


def ceilings(tmp: Path, broker: Broker, args: argparse.Namespace) -> None:
    n = args.ceiling_events
    paho = paho_ceiling(broker.port, n)
    one, hundred = sqlite_ceiling(tmp, max(n // 10, 100), 1), sqlite_ceiling(tmp, n, 100)
    print(f"  ceiling: bare paho, {n} QoS 1 messages at each of {', '.join(f'{r:,}' for r in PAHO_RATES)}/s, the "
          f"best with none lost: {paho:,.0f} messages/s")
    print(f"  ceiling: sqlite3 WAL synchronous=FULL, what the store writes per event: {one:,.0f} events/s one per "
          f"transaction, {hundred:,.0f} events/s 100 per transaction")
    print(f"  lower ceiling: {min(paho, hundred):,.0f}/s")
    figure(args, "ceiling: sqlite3 WAL full sync, 100 events per transaction", unit="events/s", value=hundred,
           anchor="bare paho QoS 1, the best rate with none lost", anchor_value=paho)


if __name__ == "__main__":
    main()
