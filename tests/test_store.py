"""The store's guarantees: migrations, the site key, the sequence, one transaction per batch,
and a full disk that loses nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from conftest import wait_for
from sekisho.daemon.errors import SekishoError, StoreError
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.store.audit import verify
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.outbox import Outbox
from sekisho.daemon.store.people import People
from sekisho.daemon.store.record import NewEvent, Record
from sekisho.daemon.store.schema import MIGRATIONS


def ev(result: str = "granted") -> NewEvent:
    return NewEvent(kind="door", topic="sekisho/v1/t/door/d/event", payload={"result": result},
                    columns={"door": "d", "result": result})


def opened(path, node: str = "n1") -> tuple[Database, Record]:
    database = Database(path)
    return database, Record(database, node)


def test_fresh_store_is_at_latest_schema_in_wal(tmp_path):
    d = Database(tmp_path / "data")
    assert d.schema_version() == len(MIGRATIONS)
    assert d.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert d.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700


def test_newer_schema_is_refused(tmp_path):
    Database(tmp_path).close()
    db = sqlite3.connect(tmp_path / "sekisho.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    with pytest.raises(StoreError, match="store schema 99 is newer than this sekisho knows"):
        Database(tmp_path)


def test_reopen_does_not_migrate_again_and_seq_continues(tmp_path):
    d, s = opened(tmp_path)
    s.record([ev(), ev()])
    d.close()
    d, s = opened(tmp_path)
    s.record([ev()])
    seqs = [r["seq"] for r in s.events()]
    assert seqs == [1, 2, 3]
    _, other = opened(tmp_path, "n2")
    other.record([ev()])
    assert other.last_seq() == 1 and s.last_seq() == 3


def test_a_second_connection_in_the_process_leaves_the_first_one_seeing_other_processes_writes(tmp_path):
    """A daemon's enrolment worker opens the store a second time. Closing a descriptor of the
    file would drop the first connection's POSIX locks; a command-line process would then think
    itself the last one, checkpoint and delete the WAL, and the daemon would read its old store
    from then on (a revoked card still let in)."""
    first = Database(tmp_path)
    first.db.execute("CREATE TABLE t (n INTEGER)")
    assert first.db.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    Database(tmp_path)  # the second connection, kept open
    for n in (1, 2):
        subprocess.run([sys.executable, "-c", "import sys, sqlite3; c = sqlite3.connect(sys.argv[1]); "
                        "c.execute('INSERT INTO t VALUES (1)'); c.commit(); c.close()", str(first.path)], check=True)
        assert first.db.execute("SELECT count(*) FROM t").fetchall() == [(n,)]


def test_event_audit_outbox_in_one_transaction(tmp_path):
    d, s = opened(tmp_path)
    bad = NewEvent(kind="door", topic="t", payload={}, columns={"no_such_column": 1})
    with pytest.raises(StoreError, match="nothing of it was kept"):
        s.record([ev(), bad])
    counts = [d.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "audit", "outbox")]
    assert counts == [0, 0, 0]
    assert s.last_seq() == 0
    s.record([ev()])
    row = Outbox(d).after(0, 10)[0]
    payload = json.loads(row.payload)
    assert payload["seq"] == 1 and payload["node"] == "n1" and row.qos == 1 and not row.retain
    assert verify(d.db).ok


def test_an_acknowledged_row_leaves_the_file_with_the_next_commit_or_without_a_sync(tmp_path):
    d, s = opened(tmp_path)
    outbox = Outbox(d)
    syncs: list[int] = []  # PRAGMA synchronous in each transaction, just before its COMMIT

    def watch(conn):
        syncs.append(conn.execute("PRAGMA synchronous").fetchone()[0])
        return lambda: None
    d.riders.append(watch)
    on_disk = sqlite3.connect(d.path)  # another reader: what the file holds, not this view

    def rows_on_disk() -> list[int]:
        return [r[0] for r in on_disk.execute("SELECT n FROM outbox ORDER BY n")]
    s.record([ev(), ev()])
    first, second = (row.n for row in outbox.after(0, 10))
    assert outbox.sent([first]) is False
    # Gone from the publisher's view at once; still in the file, and no transaction of its own.
    assert [row.n for row in outbox.after(0, 10)] == [second] and outbox.count() == 1
    assert rows_on_disk() == [first, second] and syncs == [2]
    s.record([ev()])  # the next event's transaction, with its full sync, takes the delete along
    third = outbox.after(second, 10)[0].n
    assert rows_on_disk() == [second, third] and syncs == [2, 2] and not outbox.pending
    outbox.sent([second, third])
    outbox.forget()  # nothing else came: committed alone, without a sync, and FULL again after
    assert rows_on_disk() == [] and outbox.count() == 0 and syncs == [2, 2, 1]
    assert d.db.execute("PRAGMA synchronous").fetchone()[0] == 2
    outbox.forget()  # nothing pending: no transaction at all
    assert syncs == [2, 2, 1]
    assert verify(d.db).ok


def test_a_delete_that_fails_with_its_transaction_is_kept_for_the_next(tmp_path):
    d, s = opened(tmp_path)
    outbox = Outbox(d)
    s.record([ev()])
    n = outbox.after(0, 1)[0].n
    outbox.sent([n])
    with pytest.raises(StoreError):
        s.record([NewEvent(kind="door", topic="t", payload={}, columns={"no_such_column": 1})])
    assert outbox.pending == {n} and outbox.count() == 0
    assert d.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    s.record([ev()])
    assert not outbox.pending and [r[0] for r in d.db.execute("SELECT n FROM outbox")] == [n + 1]


def test_site_key_created_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "site.key"
    k1 = SiteKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    k2 = SiteKey.load_or_create(path)
    assert path.read_bytes() == before
    assert k1.card_hash(b"\x04\x01") == k2.card_hash(b"\x04\x01")
    assert len(k1.pseudonym("p1")) == 16 and k1.pseudonym("p1") != k1.pseudonym("p2")


def test_site_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "site.key"
    SiteKey.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(SekishoError, match=r"readable by others \(mode 0644\); run: chmod 600"):
        SiteKey.load_or_create(path)


def test_garbled_site_key_is_refused(tmp_path):
    path = tmp_path / "site.key"
    path.write_text("not a key\n")
    path.chmod(0o600)
    with pytest.raises(SekishoError, match="not a site key"):
        SiteKey.load_or_create(path)


def fill(path) -> None:
    with open(path, "wb", buffering=0) as f:  # unbuffered: nothing left to fail at close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            return  # ENOSPC: the disk is full, which is the point


def test_full_disk_store_keeps_nothing_half_written(tiny_disk):
    d, s = opened(tiny_disk / "data")
    s.record([ev()])
    fill(tiny_disk / "filler")
    with pytest.raises(StoreError, match="full"):
        s.record([ev()] * 200)
    (tiny_disk / "filler").unlink()
    assert s.last_seq() == 1
    s.record([ev()])
    assert [r["seq"] for r in s.events()] == [1, 2] and verify(d.db).ok


def test_full_disk_daemon_keeps_events_and_publishes_them_later(tiny_disk, site, subscribe):
    site.data_dir = tiny_disk / "data"
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("card", "add", "--person", "p1", "--uid", "04a1b2c3")
    sub = subscribe()
    site.start()
    site.tap("04a1b2c3")
    wait_for(lambda: len(sub.events()) == 1, what="first event")
    fill(tiny_disk / "filler")
    for _ in range(30):
        site.tap("04a1b2c3")
    wait_for(lambda: "kept in memory" in site.daemon_log(), what="the store error in the log")
    assert len(sub.events()) == 1, "published before it was committed"
    (tiny_disk / "filler").unlink()
    events = wait_for(lambda: len(sub.events()) == 31 and sub.events(), what="the 30 kept events")
    assert [e["seq"] for e in events] == list(range(1, 32))
    site.stop()
    r = site.cli("audit", "verify")
    assert r.returncode == 0


def test_a_rider_that_fails_is_put_off_and_the_write_it_rode_with_is_kept(tmp_path):
    """A rider (the outbox's lazy delete) that fails, on a full disk or by a bug, is undone alone
    and tried again later; the event or enrolment it rode with is committed all the same."""
    database = Database(tmp_path / "data")
    people = People(database)
    tries: list[int] = []

    def full_disk(conn: sqlite3.Connection):
        tries.append(1)
        conn.execute("DELETE FROM people")  # its own write, which must not survive its failure
        raise sqlite3.OperationalError("database or disk is full")

    database.riders.append(full_disk)
    people.add_person("p1", "One", "test")
    people.add_person("p2", "Two", "test")
    assert [p["id"] for p in people.people()] == ["p1", "p2"] and len(tries) == 2
