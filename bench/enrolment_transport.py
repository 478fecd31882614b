"""Enrolment over MQTT, measured end to end with real daemons on a real mosquitto (issue 15):

1. Revocation at the recorder to refusal at a door: a recorder node and a door node (each a
   daemon in its own dir), ``--revocations`` people enrolled; each card revoked in turn at the
   recorder's store (as `sekisho card revoke` writes it, without the command's start-up), timed
   until the door's store holds the card revoked (what the door's next decision reads); the
   door's own tap confirms the refusal at the end. p50/p99/max.
2. A snapshot of ``--people`` people and cards to a fresh node through the broker: the recorder
   starts on a filled store and publishes its snapshot (time to the retained manifest); a fresh
   door node starts and takes it from what the broker retains (time from its start to the
   snapshot applied in its store), with the bytes on the wire and the node's peak RSS.
Run: .venv/bin/python bench/enrolment_transport.py [--revocations 50] [--people 100000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from _site import Broker, Site, Subscriber, figure, parse, summary, wait_for, workdir
from enrolment_snapshot import fill
from harness import control
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.commands import keygen, load_private_key, public_key_text
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.store.database import DB_NAME, Database
from sekisho.daemon.store.people import People

TARGET_REVOKE_MS = 2000.0
TARGET_SNAPSHOT_S = 10.0


def node_pair(tmp: Path, broker: Broker, key: Path, site_key: Path) -> tuple[Site, Site]:
    """A recorder (door-a, roles door and recorder) and a door (door-b) trusting its key."""
    (tmp / "rec").mkdir(parents=True)
    (tmp / "door").mkdir()
    rec, door = Site(tmp / "rec", broker), Site(tmp / "door", broker)
    text = rec.config.read_text()
    roles = 'timezone = "Asia/Tokyo"\nroles = ["door", "recorder"]\n'
    rec.config.write_text(text.replace('timezone = "Asia/Tokyo"\n', roles) + f'\n[recorder]\nsigning_key = "{key}"\n')
    public = public_key_text(load_private_key(key))
    door.config.write_text(text.replace('node = "door-a"', 'node = "door-b"')
                           + f'\n[commands.keys.recorder]\npublic_key = "{public}"\nops = ["enrolment.*"]\n')
    for site in (rec, door):
        site.data_dir.mkdir(mode=0o700)
        (site.data_dir / "site.key").write_bytes(site_key.read_bytes())
        (site.data_dir / "site.key").chmod(0o600)
    return rec, door


def poll(predicate, timeout: float) -> None:  # noqa: ANN001
    """As harness.wait_for, at 1 ms: the figure is in milliseconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


def revocations(tmp: Path, broker: Broker, key: Path, site_key: Path, args: argparse.Namespace, n: int,
                enrolled: int, gap_s: float = 0.0) -> None:
    """``n`` revocations, with ``enrolled`` more people and cards in the store, each ``gap_s``
    after the last reached the door (with a gap, the snapshot that follows each delta is under
    way when the next revocation comes)."""
    rec, door = node_pair(tmp, broker, key, site_key)
    if enrolled:
        fill(Database(rec.data_dir), enrolled)
    people = People(Database(rec.data_dir))
    hashes = []
    k = SiteKey.load_or_create(site_key)
    for i in range(n):
        hashes.append(k.card_hash(bytes.fromhex(f"04{i:08x}")))
        people.add_person(f"p{i}", f"Person {i}", "cli:bench")
        people.add_card(f"p{i}", hashes[-1], "cli:bench")
        people.grant_level(f"p{i}", "staff", "cli:bench")
    sub = Subscriber(broker.port, "sekisho/v1/test/enrolment/delta")
    try:
        rec.start()
        door.start()
        door_db = sqlite3.connect(door.data_dir / DB_NAME)
        wait_for(lambda: door_db.execute("SELECT count(*) FROM cards WHERE active AND person_id GLOB 'p*'")
                 .fetchone()[0] == n, timeout=120, what="every card at the door")
        samples = []
        for h in hashes:
            started = time.perf_counter()
            people.revoke_card(h[:16], "cli:bench")
            poll(lambda: door_db.execute("SELECT active FROM cards WHERE hash = ?", [h]).fetchone()[0] == 0, 30)
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(gap_s)
        last = door.cli("sim", "tap", "entrance-in", f"04{n - 1:08x}").stdout
        assert last == "entrance-in: denied (revoked, rule card.revoked)\n", last
        by_delta = sum(1 for m in sub.on("/delta") for c in json.loads(m.payload)["changes"]
                       if c["op"] == "card.revoke")
        print(summary(f"revocation at the recorder -> revoked in the door's store, {n + enrolled:,} people enrolled"
                      + (f", {gap_s:g} s apart" if gap_s else ""), samples))
        figure(args, f"revocation at the recorder -> revoked in the door's store, {n + enrolled:,} people"
               + (f", {gap_s:g} s apart" if gap_s else ""), samples=samples)
        print(f"revocations carried by a delta: {by_delta} of {n}; the door's tap after the last: {last.strip()}")
        if samples and sorted(samples)[min(len(samples) - 1, int(0.99 * len(samples)))] > TARGET_REVOKE_MS:
            print(f"  above the target of {TARGET_REVOKE_MS:.0f} ms")
    finally:
        sub.close()
        door.kill()
        rec.kill()


def snapshot(tmp: Path, broker: Broker, key: Path, site_key: Path, args: argparse.Namespace, n: int) -> None:
    rec, door = node_pair(tmp, broker, key, site_key)
    fill(Database(rec.data_dir), n)
    sub = Subscriber(broker.port, "sekisho/v1/test/enrolment/snapshot/#")
    try:
        started = time.perf_counter()
        rec.start()
        manifest = wait_for(lambda: [m.json for m in sub.on("/manifest") if m.payload], timeout=120,
                            what="the recorder's retained snapshot")[-1]
        published_s = time.perf_counter() - started
        chunks = {m.topic: len(m.payload) for m in sub.on("") if "/chunk/" in m.topic and m.payload
                  and json.loads(m.payload.split(b"\n", 1)[0])["version"] == manifest["version"]}
        wire = sum(chunks.values()) + len(json.dumps(manifest))
        started = time.perf_counter()
        door.start()
        db = Database(door.data_dir)
        # The door's loop while it checks and applies: a control request's round trip, again
        # and again until the snapshot is in its store (the work is in a worker thread, but
        # json.loads and zlib hold the GIL for a while at a time).
        answers_ms = []
        while es.current_version(db, "test") != manifest["version"]:
            asked = time.perf_counter()
            assert control(door.data_dir, {"op": "door.list"}) is not None
            answers_ms.append((time.perf_counter() - asked) * 1000)
            assert time.perf_counter() - started < 120, "the snapshot was not applied at the fresh door"
        applied_s = time.perf_counter() - started
        assert door.proc is not None
        hwm = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{door.proc.pid}/status").read_text()
                   .splitlines() if line.startswith("VmHWM:"))
        cards = db.db.execute("SELECT count(*) FROM cards").fetchone()[0]
        print(f"snapshot of {n:,} people, {cards:,} cards: recorder start -> retained manifest {published_s:.2f} s; "
              f"fresh door start -> applied {applied_s:.2f} s (target {TARGET_SNAPSHOT_S:.0f} s"
              f"{'' if applied_s < TARGET_SNAPSHOT_S else ', MISSED'})")
        figure(args, f"snapshot sync of {n:,} people over MQTT: fresh door start -> applied in its store",
               value=applied_s * 1000)
        print(summary("the door's control socket while it checks and applies", answers_ms or [0.0]))
        print(f"bytes on the wire: {wire:,} in {len(chunks)} chunks of at most {es.CHUNK_BYTES:,} bytes plus a "
              f"header line, and the manifest; body {manifest['size']:,} bytes; door peak RSS {hwm:.0f} MB")
    finally:
        sub.close()
        door.kill()
        rec.kill()


def main() -> int:
    args = parse(argparse.ArgumentParser(description=__doc__.splitlines()[0]), revocations=(50, 5),
                 people=(100_000, 1_000), spaced=(10, 2))
    tmp = workdir()
    keygen(tmp / "recorder.key")
    SiteKey.load_or_create(tmp / "site.key")
    # Each part on a broker of its own: the second recorder's versions start again at 1, and
    # the first one's retained snapshot would be what a fresh node takes.
    parts = (("few", lambda *a: revocations(*a, args, args.revocations, 0)),
             ("many", lambda *a: revocations(*a, args, args.revocations, args.people)),
             ("spaced", lambda *a: revocations(*a, args, args.spaced, args.people, 1.5)),
             ("snapshot", lambda *a: snapshot(*a, args, args.people)))
    for name, part in parts:
        (tmp / name).mkdir()
        broker = Broker(tmp / name)
        broker.start()
        try:
            part(tmp / name, broker, tmp / "recorder.key", tmp / "site.key")
        finally:
            broker.stop()
    print("mosquitto: message_size_limit left at its default (0: no limit but MQTT's 256 MB); the largest "
          f"message is one chunk, {es.CHUNK_BYTES // 1024} KiB plus a header line")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
