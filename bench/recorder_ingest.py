"""The site recorder's ingest (issue 15): 200 desks and 10 doors publish contract events at once
through a real mosquitto into the real recorder (the daemon with roles = ["recorder"], as a
process), on SQLite and on PostgreSQL.

Each simulated node is its own MQTT client (QoS 1, as a node's publisher), spread over a few
processes so that the publishers are not what is measured; every node publishes ``--per-node``
events, seq 1.., all nodes at once, as fast as the broker takes them. Figures: events stored per
second (from the first publish to the last event stored), zero loss (the store's count equals the
count sent, no gap, each node's last seq its last), publish -> stored latency (the event's ``ts``,
set as it is published, to the ``received`` the store gives its batch as the transaction
begins; the commit follows within the batch's few milliseconds), and the recorder's peak RSS.

Target: 5,000 events/s stored with zero loss.
Each backend twice: the nodes together offering ``--rate`` events a second (the target: the
latency of a recorder that keeps up), then all at once as fast as they can (its capacity).

The anchor, in the same run on the same backend: as many events as bare rows inserted in
batches of ``--batch`` (bench/recorder_store.py's ``bare_insert``): what the database alone
stores per second, with no broker, no daemon and no bookkeeping.

Run: .venv/bin/python bench/recorder_ingest.py [--desks 200] [--doors 10] [--per-node 100] [--procs 2]
     [--rate 5000] [--batch 500] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from _site import Broker, figure, parse, wait_for, workdir
from harness import RECORDER_CONFIG, Site, node_site
from postgres import Postgres
from recorder_store import bare_insert
from recorder_store import events as store_events
from sekisho.daemon.recorder_store import open_store
from sekisho.daemon.timestamps import utc_now

TARGET = 5000


def nodes(desks: int, doors: int) -> list[tuple[str, str]]:
    """(node, the topic it publishes its events on)."""
    return ([(f"desk-{n:03d}", f"sekisho/v1/test/desk/desk-{n:03d}/event") for n in range(desks)]
            + [(f"door-{n:02d}", f"sekisho/v1/test/door/door-{n:02d}/event") for n in range(doors)])


def payload(node: str, seq: int) -> str:
    common = {"id": f"{node}-{seq:08d}", "seq": seq, "node": node, "ts": utc_now()}
    if node.startswith("desk"):
        return json.dumps({**common, "desk": node, "kind": "card_inserted", "subject": "3f2c9a0b5e7d1c44",
                           "reason": "holder", "rule": "level:staff", "latency_ms": 41})
    return json.dumps({**common, "kind": "access", "door": node, "reader": f"{node}-in", "direction": "in",
                       "result": "granted", "reason": "card", "rule": "level:staff", "subject": "3f2c9a0b5e7d1c44"})


def publisher(port: int, mine: list[tuple[str, str]], per_node: int, rate: float, go, done) -> None:
    """One process's share of the nodes: connect each, wait for the start, publish (``rate``
    messages a second, or as fast as the broker takes them when 0), wait for every PUBACK."""
    clients = []
    for node, topic in mine:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{node}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(100)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((c, node, topic))
    go.wait()
    last = []
    start, i = time.monotonic(), 0
    for seq in range(1, per_node + 1):
        for c, node, topic in clients:
            if rate:
                ahead = start + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the offered load, not waiting for a result
                i += 1
            info = c.publish(topic, payload(node, seq), qos=1)
            if seq == per_node:
                last.append(info)
    for info in last:
        info.wait_for_publish(120)
    done.put(len(clients) * per_node)
    for c, _, _ in clients:
        c.disconnect()
        c.loop_stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def ms(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


@dataclass(frozen=True)
class Run:
    """One run's counts and times, from the first publish to the last event stored."""
    total: int
    nodes: int
    lost: int
    took: float
    published: float
    latency: list[float]
    """Each event's publish -> stored, in ms, sorted."""

    def print(self, name: str, args: argparse.Namespace, rate: float, rss: str, anchor: float | None = None) -> None:
        stored = self.total / self.took
        p = lambda q: self.latency[min(len(self.latency) - 1, int(q * len(self.latency)))]  # noqa: E731
        print(f"{name}: {self.total:,} events from {self.nodes} nodes ({args.desks} desks, {args.doors} doors, "
              f"batch {args.batch}): {stored:,.0f} events/s stored, {self.lost} lost ({self.took:.2f} s; "
              f"published in {self.published:.2f} s, {self.total / self.published:,.0f}/s)")
        print(f"{name}: publish -> stored: p50={p(0.50):.0f} ms p99={p(0.99):.0f} ms "
              f"max={self.latency[-1]:.0f} ms; {rss}")
        figure(args, f"{name}: events stored/s, {self.total:,} events from {self.nodes} nodes ({self.lost} lost)",
               unit="events/s", value=stored, anchor_value=anchor,
               anchor=None if anchor is None else f"bare inserts of as many rows, batches of {args.batch}")
        figure(args, f"{name}: publish -> stored", samples=self.latency)
        if not args.quick and not rate:
            print(f"{name}: target {TARGET:,}/s: {'met' if stored >= TARGET else 'NOT met'}")


def publish_and_count(port: int, where: str | None, data_dir: Path, args: argparse.Namespace, rate: float) -> Run:
    """Every simulated node publishes ``args.per_node`` events at the broker on ``port``
    (``rate`` a second in all, or as fast as they can when 0); wait for all of them in the store
    (``where``, or SQLite in ``data_dir``), none lost, no gap, each node's last seq its last."""
    everyone = nodes(args.desks, args.doors)
    total = len(everyone) * args.per_node
    ctx = mp.get_context("fork")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=publisher, args=(port, everyone[k::args.procs], args.per_node,
                                                 rate / args.procs, go, done)) for k in range(args.procs)]
    for proc in procs:
        proc.start()
    with open_store(where, data_dir) as store:
        t0 = time.time()
        go.set()
        sent = sum(done.get(timeout=300) for _ in procs)
        published = time.time() - t0
        wait_for(lambda: store.count() >= total, timeout=300, what="every event in the store")
        for proc in procs:
            proc.join(30)
        lost = sent - store.count()
        assert lost == 0 and store.gaps() == [], f"{lost} events lost, gaps {store.gaps()[:5]}"
        assert all(store.last_seq(node) == args.per_node for node, _ in everyone), "a node's last seq is wrong"
        last_stored = store._query("SELECT max(received) FROM events", ())[0][0]
    return Run(total, len(everyone), lost, (ms(last_stored) - t0 * 1000) / 1000, published,
               latencies(where, data_dir))


def measure(name: str, where: str | None, tmp: Path, args: argparse.Namespace, rate: float) -> None:
    """One run into a new store: ``rate`` events a second offered by all nodes together, or all
    at once as fast as they can (0)."""
    name = f"{name}, {f'{rate:,.0f}/s offered' if rate else 'all at once'}"
    broker = Broker(tmp)
    broker.start()
    extra = f'batch = {args.batch}\n' + (f'database = "{where}"\n' if where else "")
    recorder: Site = node_site(tmp, broker, "recorder", RECORDER_CONFIG.replace("gap_grace_s = 0.5", "") + extra)
    try:
        recorder.start()
        assert recorder.proc is not None
        run = publish_and_count(broker.port, where, recorder.data_dir, args, rate)
        rss = peak_rss_mb(recorder.proc.pid)
        bare = bare_insert(where, recorder.data_dir / "bare", store_events(run.nodes, args.per_node), args.batch)
        run.print(name, args, rate, f"recorder peak RSS {rss:.1f} MB; anchor: bare inserts {bare:,.0f} rows/s", bare)
        assert recorder.stop() == 0
    finally:
        recorder.kill()
        broker.stop()


def latencies(where: str | None, data_dir: Path) -> list[float]:
    """Each event's ``ts`` (when it was published) to its batch's ``received``, in ms."""
    with open_store(where, data_dir) as store:
        rows = store._query("SELECT ts, received FROM events", ())
    return sorted(ms(received) - ms(ts) for ts, received in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parse(ap, desks=(200, 200), doors=(10, 10), per_node=(100, 3), procs=(2, 2), batch=(500, 500),
                 rate=(float(TARGET), 1000.0))
    tmp = workdir()
    pg = Postgres()
    try:
        for rate in (args.rate, 0):
            (tmp / f"sqlite-{rate}").mkdir()
            measure("sqlite", None, tmp / f"sqlite-{rate}", args, rate)
        pg.start()
        for rate in (args.rate, 0):
            (tmp / f"pg-{rate}").mkdir()
            measure("postgresql", pg.new_database(), tmp / f"pg-{rate}", args, rate)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
