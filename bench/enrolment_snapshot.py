"""An enrolment snapshot of 100,000 people and cards to a fresh node (issue 15: target under
10 s): each step's time, the bytes at each layer, and the process's RSS.

The recorder's store is filled directly in one transaction (not timed: it stands for an
enrolment made over years), 100,000 people each with a card (keyed hash), a level or two, a PIN
hash for one in two and validity dates for one in four, and one card in ten revoked. Then, timed
one by one, in this process: ``build`` (read the store), ``sign`` (canonical JSON, zlib, chunks,
Ed25519), ``verify`` on the node (signature, chunks, hashes, decompress, parse) and ``apply`` on
a fresh node store (one transaction, fsync'd, with the copy kept on disk). No broker: the bytes
that would travel are counted, not sent.
Run: .venv/bin/python bench/enrolment_snapshot.py [--people 100000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from _site import figure, parse, rss_mb, workdir
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People

SITE = "bench"
TARGET_S = 10.0


def fill(database: Database, n: int) -> None:
    rng = random.Random(15)
    people, levels, cards = [], [], []
    for i in range(n):
        pid = f"u{i:06d}"
        pin = f"scrypt$16384$8$1${rng.randbytes(16).hex()}${rng.randbytes(32).hex()}" if i % 2 else None
        dates = ("2026-04-01", "2027-03-31") if i % 4 == 0 else (None, None)
        people.append((pid, f"Person {i}", 1, "2026-01-01T00:00:00.000Z", *dates, pin))
        levels.append((pid, "staff"))
        if i % 3 == 0:
            levels.append((pid, "server-room"))
        revoked = i % 10 == 0
        cards.append((hashlib.sha256(rng.randbytes(8)).hexdigest(), pid, 0 if revoked else 1,
                       "2026-01-01T00:00:00.000Z", "2026-06-01T00:00:00.000Z" if revoked else None))
    with database.transaction() as db:
        db.conn.executemany("INSERT INTO people (id, name, active, created, valid_from, valid_until, pin_hash) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", people)
        db.conn.executemany("INSERT INTO person_levels VALUES (?, ?)", levels)
        db.conn.executemany("INSERT INTO cards (hash, person_id, active, created, revoked) VALUES (?, ?, ?, ?, ?)",
                            cards)


def node_side(tmp: Path, public: str) -> int:
    """Verify and apply what the recorder wrote, on a fresh node store; one JSON line out."""
    received = es.unpack((tmp / "received").read_bytes())
    database = Database(tmp / "node")
    rss_start = rss_mb_self()
    started = time.perf_counter()
    verified = es.verify(received, site=SITE, keys={"recorder": Ed25519PublicKey.from_public_bytes(
        bytes.fromhex(public))}, permitted={"recorder"}, current=es.current_version(database, SITE))
    verify_s = time.perf_counter() - started
    started = time.perf_counter()
    done = es.apply(database, verified)
    apply_s = time.perf_counter() - started
    assert People(database).card_holder(verified.snapshot.cards[1].hash) is not None
    print(json.dumps({"verify": verify_s, "apply": apply_s, "people": done.people, "cards": done.cards,
                      "levels": done.levels, "pins": done.pins, "rss_start": rss_start, "hwm": hwm_mb()}))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--node"]:
        return node_side(Path(sys.argv[2]), sys.argv[3])
    args = parse(argparse.ArgumentParser(description=__doc__), people=(100_000, 1_000))
    tmp = workdir()
    try:
        recorder = Database(tmp / "recorder")
        fill(recorder, args.people)
        key = Ed25519PrivateKey.generate()
        rss_start = rss_mb_self()
        times: dict[str, float] = {}

        def timed(step: str, fn, *a, **kw):  # noqa: ANN001, ANN202 - a stopwatch around one call
            started = time.perf_counter()
            out = fn(*a, **kw)
            times[step] = time.perf_counter() - started
            return out

        snapshot = timed("build", es.build, People(recorder), SITE, 1)
        body = len(snapshot.body())
        signed = timed("sign", es.sign, snapshot, key, "recorder")
        recorder_hwm = hwm_mb()
        # The node's side in a process of its own, as a fresh node runs it: its time and its RSS
        # are not the recorder's.
        (tmp / "received").write_bytes(es.pack(signed))
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        child = subprocess.run([sys.executable, __file__, "--node", str(tmp), public], capture_output=True,
                               text=True)
        if child.returncode:
            raise SystemExit(f"the node's side failed:\n{child.stderr}")
        node = json.loads(child.stdout)
        times |= {"verify": node["verify"], "apply": node["apply"]}
        assert node["people"] == args.people and node["cards"] == args.people

        compressed = sum(len(c.partition(b"\n")[2]) for c in signed.chunks)
        sent = len(signed.manifest) + sum(len(c) for c in signed.chunks)
        print(f"enrolment snapshot: {args.people:,} people, {len(snapshot.cards):,} cards, "
              f"{node['levels']:,} level grants, {node['pins']:,} PIN hashes")
        for step in ("build", "sign", "verify", "apply"):
            print(f"  {step:<7}{times[step] * 1000:>9.0f} ms")
        total = sum(times.values())
        print(f"recorder -> node (build + sign + verify + apply): {total * 1000:.0f} ms"
              + ("" if args.quick else f" (target under {TARGET_S:g} s: {'met' if total < TARGET_S else 'MISSED'})"))
        figure(args, f"snapshot of {args.people:,} people in one process: build + sign + verify + apply",
               value=total * 1000)
        print(f"bytes: body {body:,} raw, {compressed:,} compressed ({compressed / body:.1%}), "
              f"{len(signed.chunks)} chunks of at most {es.CHUNK_BYTES:,}, {sent:,} sent with headers and manifest")
        print(f"node store after apply: {(tmp / 'node' / 'sekisho.db').stat().st_size:,} bytes, kept copy "
              f"{(tmp / 'node' / es.KEPT).stat().st_size:,} bytes")
        print(f"RSS: recorder before build {rss_start:.1f} MB, peak {recorder_hwm:.1f} MB; "
              f"node before verify {node['rss_start']:.1f} MB, peak {node['hwm']:.1f} MB")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rss_mb_self() -> float:
    return rss_mb(os.getpid())


def hwm_mb() -> float:
    """The process's peak RSS, as the kernel counts it (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


if __name__ == "__main__":
    raise SystemExit(main())
