"""Events stored per second by the recorder's store (issue 15), on SQLite and on PostgreSQL.

200 nodes, each publishing seq 1..N; the events arrive interleaved across the nodes, as a
recorder receives them from the broker, and are stored in batches (one transaction each, the
node locks and gap bookkeeping included). Then the same events once more, all repeats (what a
second recorder, or a broker's redelivery after a reconnect, costs). Then one writer per node
group at once on PostgreSQL: two stores sharing the work, as two recorders on a shared
subscription would.

SQLite is a file in a temp dir with the store's own settings (WAL, synchronous=FULL);
PostgreSQL a throw-away cluster (tests/postgres.py) with its defaults (fsync on), on a Unix
socket.

The anchor, measured in the same run on the same backend: the same events as bare rows (id as
primary key, node, seq, topic, ts, payload) in a table of their own, ``executemany`` in one
transaction per batch, with the same SQLite settings: what the database costs alone.
Run: .venv/bin/python bench/recorder_store.py [--nodes 200] [--per-node 500] [--batch 500] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from _site import figure, parse, workdir
from postgres import Postgres
from sekisho.daemon.recorder_store import Received, RecorderStore, open_store


def events(nodes: int, per_node: int) -> list[Received]:
    out = []
    for seq in range(1, per_node + 1):
        for n in range(nodes):
            node = f"node-{n:03d}"
            ts = f"2026-12-05T09:{seq // 60000 % 60:02d}:{seq // 1000 % 60:02d}.{seq % 1000:03d}Z"
            eid = f"{node}-{seq}"
            payload = json.dumps({"id": eid, "seq": seq, "node": node, "ts": ts, "kind": "access", "door": node,
                                  "reader": f"{node}-in", "direction": "in", "result": "granted",
                                  "reason": "ok", "rule": "level:staff", "subject": "p-3f9a1c"})
            out.append(Received(node, seq, eid, f"sekisho/site/door/{node}/event", ts, payload))
    return out


def run(store: RecorderStore, batch: list[Received], size: int) -> tuple[int, float]:
    new = 0
    t0 = time.perf_counter()
    for i in range(0, len(batch), size):
        new += store.store(batch[i:i + size]).new
    return new, time.perf_counter() - t0


def bare_insert(where: str | None, tmp: Path, all_events: list[Received], size: int) -> float:
    """The anchor: ``all_events`` as bare rows, one transaction per batch of ``size``; events/s."""
    create = "CREATE TABLE bare (id TEXT PRIMARY KEY, node TEXT, seq INTEGER, topic TEXT, ts TEXT, payload TEXT)"
    rows = [(e.id, e.node, e.seq, e.topic, e.ts, e.payload) for e in all_events]
    if where:
        import psycopg
        with psycopg.connect(where) as conn:
            conn.execute(create)
            conn.commit()
            t0 = time.perf_counter()
            for i in range(0, len(rows), size):
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO bare VALUES (%s, %s, %s, %s, %s, %s)", rows[i:i + size])
                conn.commit()
            return len(rows) / (time.perf_counter() - t0)
    tmp.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(tmp / "bare.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(create)
        t0 = time.perf_counter()
        for i in range(0, len(rows), size):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO bare VALUES (?, ?, ?, ?, ?, ?)", rows[i:i + size])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)
    finally:
        conn.close()


def measure(name: str, where: str | None, tmp, all_events: list[Received], size: int,
            args: argparse.Namespace) -> None:
    with open_store(where, tmp) as store:
        new, took = run(store, all_events, size)
        assert new == len(all_events) and store.gaps() == [], "the bench's events were not all stored once"
        bare = bare_insert(where, Path(tmp) / "bare", all_events, size)
        print(f"{name}: {len(all_events)} events, {len(all_events) // size} batches of {size}: "
              f"{len(all_events) / took:,.0f} events/s stored ({took:.2f} s)")
        print(f"{name}:   anchor: the same rows, bare inserts, batches of {size}: {bare:,.0f} events/s")
        figure(args, f"recorder store ({name}), {len(all_events):,} events in batches of {size}", unit="events/s",
               value=len(all_events) / took, anchor=f"bare {name} inserts of the same rows", anchor_value=bare)
        again, took = run(store, all_events, size)
        assert again == 0
        print(f"{name}: the same again, all repeats: {len(all_events) / took:,.0f} events/s ({took:.2f} s)")


def two_writers(where: str, tmp, all_events: list[Received], size: int) -> None:
    """Two stores at once, each taking every other batch (a shared subscription's split)."""
    batches = [all_events[i:i + size] for i in range(0, len(all_events), size)]
    done: list[int] = []

    def writer(mine: list[list[Received]]) -> None:
        with open_store(where, tmp) as store:
            done.extend(store.store(b).new for b in mine)

    threads = [threading.Thread(target=writer, args=(batches[k::2],)) for k in (0, 1)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    assert sum(done) == len(all_events), "two writers did not store every event once"
    print(f"postgresql, two writers sharing the batches: {len(all_events) / took:,.0f} events/s ({took:.2f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parse(ap, nodes=(200, 200), per_node=(500, 10), batch=(500, 500))
    all_events = events(args.nodes, args.per_node)
    print(f"{args.nodes} nodes x {args.per_node} events, batches of {args.batch}")
    tmp = workdir()
    pg = Postgres()
    try:
        measure("sqlite", None, tmp / "sqlite", all_events, args.batch, args)
        pg.start()
        measure("postgresql", pg.new_database(), tmp, all_events, args.batch, args)
        two_writers(pg.new_database(), tmp, all_events, args.batch)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
