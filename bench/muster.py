"""``sekisho muster``'s read of the recorder's store (issue 15, item 2), before and after the
whereabouts table, on SQLite and on PostgreSQL.

A store of N events from 100 nodes, a third each door, desk and USB events; the door events are
granted passes of 2,000 people into and out of 20 areas. Before: what muster did until schema
3, the fold of every stored door event (``events(..., kind="door")`` and ``Whereabouts.fold``).
After: the table the batches keep (``RecorderStore.whereabouts``). Both must give the same
answer; each is timed as the best of 3. Also: what the table costs while storing (events/s,
batches of 500), and how long the migration of such a store made before the table takes
(filled from its events, once, when a newer sekisho opens it).

SQLite is a file in a temp dir with the store's own settings; PostgreSQL a throw-away cluster
(tests/postgres.py) on a Unix socket.
Run: .venv/bin/python bench/muster.py [--events 300000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _site import figure, parse, workdir
from postgres import Postgres
from sekisho.daemon.recorder_store import Received, RecorderStore, open_store
from sekisho.daemon.site_occupancy import EVER
from sekisho.daemon.whereabouts import Whereabouts

NODES, PEOPLE, AREAS = 100, 2000, 20


def events(n: int) -> list[Received]:
    out = []
    for i in range(n):
        node, seq = f"node-{i % NODES:03d}", i // NODES + 1
        ts = f"2026-{1 + i // 2_000_000 % 12:02d}-{1 + i // 80_000 % 28:02d}T{i // 3600 % 24:02d}:" \
             f"{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        subject = f"{(i * 7919) % PEOPLE:016x}"
        kind = ("door", "desk", "usb")[i % 3]
        p: dict[str, Any] = {"id": f"{node}-{seq}", "seq": seq, "node": node, "ts": ts, "subject": subject}
        if kind == "door":
            inward = i % 2 == 0
            p |= {"kind": "access", "door": f"door-{i % 40}", "reader": "r", "direction": "in" if inward else "out",
                  "result": "granted", "reason": "card", "rule": "level:staff",
                  "area": f"area-{i % AREAS}" if inward else None}
        elif kind == "desk":
            p |= {"kind": "card", "desk": f"desk-{i % 50}", "area": f"area-{i % AREAS}", "reason": "card"}
        else:
            p |= {"kind": "usb", "device": "0781:5581", "result": "allowed"}
        out.append(Received(node, seq, p["id"], f"sekisho/v1/bench/{kind}/{kind}-{i % 40}/event", ts, json.dumps(p)))
    return out


def best_of(n: int, f: Callable[[], Whereabouts]) -> tuple[float, Whereabouts]:
    times, result = [], Whereabouts()
    for _ in range(n):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def fold(store: RecorderStore) -> Whereabouts:
    where = Whereabouts()
    where.fold(store.events(*EVER, kind="door"))
    return where


def measure(name: str, where: str | None, tmp: Path, all_events: list[Received], args: argparse.Namespace) -> None:
    with open_store(where, tmp) as store:
        t0 = time.perf_counter()
        for i in range(0, len(all_events), 500):
            store.store(all_events[i:i + 500])
        took = time.perf_counter() - t0
        doors = len(store.events(*EVER, kind="door"))
        print(f"{name}: {len(all_events):,} events ({doors:,} door events) stored with the table: "
              f"{len(all_events) / took:,.0f} events/s")
        before, folded = best_of(3, lambda: fold(store))
        after, table = best_of(3, store.whereabouts)
        assert table.last == folded.last and table.last, "the table is not the fold"
        print(f"{name}: muster's read of {len(all_events):,} events: before (fold of every door event) "
              f"{before * 1000:,.0f} ms, after (whereabouts table, {len(table.last):,} people) {after * 1000:,.1f} ms")
        figure(args, f"muster's read, {name}, {len(all_events):,} events (best of 3)", value=after * 1000,
               anchor="the fold of every door event it replaced", anchor_value=before * 1000)
        store.conn.execute("DROP TABLE whereabouts")  # type: ignore[attr-defined] # as schema 2 left it
        store.conn.execute("UPDATE schema_version SET version = 2")  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    with open_store(where, tmp) as store:
        took = time.perf_counter() - t0
        assert store.whereabouts().last == folded.last, "the migration did not fill the table as the fold"
    print(f"{name}: opening it as a schema-2 store (the migration fills the table): {took * 1000:,.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parse(ap, events=(300_000, 3_000))
    all_events = events(args.events)
    tmp = workdir()
    pg = Postgres()
    try:
        measure("sqlite", None, tmp / "sqlite", all_events, args)
        pg.start()
        measure("postgresql", pg.new_database(), tmp, all_events, args)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
