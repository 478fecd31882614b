"""Nothing lost, ever visible: a damaged store, a full disk at the stop, a WAL that fills a small
disk by itself, a second daemon on one data dir or one node name, and the files' modes. Each
through the daemon as a process, on a real filesystem and a real broker."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess

import pytest

from conftest import SEKISHO, wait_for
from harness import Site
from sekisho.daemon.errors import StoreDamaged
from sekisho.daemon.store.database import DB_NAME, Database
from sekisho.daemon.store.record import NewEvent, Record
from test_store import fill

CARD = "04a1b2c3"
PAGE_FILL = b"\xa5" * 4096


def enrolled(site: Site) -> Site:
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("card", "add", "--person", "p1", "--uid", CARD)
    site.cli("person", "grant", "p1", "staff")
    return site


def run_daemon(site: Site, timeout: float = 30) -> subprocess.CompletedProcess:
    """``sekisho run`` expected to end by itself."""
    return subprocess.run([*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)],
                          capture_output=True, text=True, timeout=timeout)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def btrees(db_path) -> list[tuple[str, int]]:
    """Every table and index of the store with its root page (the schema's own page 1 aside)."""
    with sqlite3.connect(db_path) as conn:
        return [(name, page) for name, page in
                conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 1 ORDER BY name")]


def overwrite_page(db_path, page: int) -> None:
    with open(db_path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(PAGE_FILL)


def checkpoint(db_path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


BTREES = ["alarms", "audit", "cards", "commands", "door_modes", "enrolment_policy", "enrolment_version", "events",
          "idx_cards_person_id", "idx_commands_received", "idx_events_door_ts", "idx_events_node_seq",
          "idx_events_person_id_ts", "idx_events_ts", "locations", "meta", "outbox", "people", "person_levels",
          "schema_version", "sequence", "sqlite_autoindex_alarms_1", "sqlite_autoindex_cards_1",
          "sqlite_autoindex_commands_1", "sqlite_autoindex_door_modes_1", "sqlite_autoindex_enrolment_policy_1",
          "sqlite_autoindex_enrolment_version_1", "sqlite_autoindex_events_1", "sqlite_autoindex_locations_1",
          "sqlite_autoindex_meta_1", "sqlite_autoindex_people_1", "sqlite_autoindex_person_levels_1",
          "sqlite_autoindex_sequence_1", "sqlite_sequence"]


@pytest.fixture
def filled(site) -> Site:
    """A store holding people, cards, events, a door mode and a command, with no daemon running."""
    enrolled(site)
    database = Database(site.data_dir)
    record = Record(database, "door-a")
    record.record([NewEvent(kind="door", topic="t/door/entrance/event", payload={"result": "granted"},
                            columns={"door": "entrance", "result": "granted", "person_id": "p1"})] * 5)
    record.set_door_mode("entrance", "normal", "test")
    record.claim_command("c1", "k", "door.list")
    database.close()
    return site


def test_the_damage_tests_cover_every_table_and_index(filled):
    assert sorted(name for name, _ in btrees(filled.data_dir / DB_NAME)) == BTREES


@pytest.mark.parametrize("victim", BTREES)
def test_a_damaged_page_in_any_table_or_index_is_found_before_anything_is_written(filled, victim, capsys):
    from sekisho.daemon.cli import main
    db = filled.data_dir / DB_NAME
    overwrite_page(db, dict(btrees(db))[victim])
    before = digest(db)
    with pytest.raises(StoreDamaged, match="damaged and was not opened"):
        Database(filled.data_dir, check=True)  # as the daemon opens it
    assert main(["audit", "verify", "--config", str(filled.config), "--data-dir", str(filled.data_dir)]) == 65
    err = capsys.readouterr().err
    assert f"store damaged: {db}" in err or "damaged" in err
    assert digest(db) == before, "the damaged file was written to"


@pytest.mark.parametrize("victim", ["sequence", "idx_events_ts", "people", "audit"])
def test_the_daemon_refuses_a_damaged_store_and_audit_verify_names_it(filled, victim):
    db = filled.data_dir / DB_NAME
    overwrite_page(db, dict(btrees(db))[victim])
    before = digest(db)
    verify = filled.cli("audit", "verify", check=False)
    assert verify.returncode == 65, verify.stderr
    assert f"store damaged: {db}" in verify.stderr and "Traceback" not in verify.stderr
    run = run_daemon(filled)
    assert run.returncode == 65, run.stderr
    assert str(db) in run.stderr and "damaged" in run.stderr and "Traceback" not in run.stderr
    assert digest(db) == before, "the damaged file was written to"


@pytest.mark.parametrize("victim", ["idx_events_ts", "sequence"])
def test_damage_found_while_running_raises_the_alarm_and_stops(site, subscribe, victim):
    enrolled(site)
    sub = subscribe()
    site.start()
    site.tap(CARD)
    wait_for(lambda: len(sub.events()) == 1, what="the first tap on the bus")
    db = site.data_dir / DB_NAME
    checkpoint(db)
    overwrite_page(db, dict(btrees(db))[victim])
    site.cli("person", "add", "--id", "p2", "--name", "B")  # another process writes: the daemon's cache is stale
    site.tap(CARD)
    alarm = wait_for(lambda: [m for m in sub.messages if "/alarm/" in m.topic and m.payload
                              and m.json["kind"] == "store_damaged"], what="the store_damaged alarm")[0]
    assert alarm.json["severity"] == "critical" and alarm.json["source"] == "door-a"
    assert site.proc.wait(30) == 65
    late = subscribe(alarm.topic)
    assert wait_for(lambda: late.messages, what="the retained alarm")[0].retain
    site.proc = None
    log = site.daemon_log()
    assert "the store is damaged" in log
    # The tap whose record the store refused is in the journal, not dropped.
    unrecorded = [json.loads(line.split("unrecorded ", 1)[1]) for line in log.splitlines() if "unrecorded {" in line]
    assert [u["payload"]["result"] for u in unrecorded if u["record"] == "NewEvent"] == ["granted"]
    assert CARD not in log.lower()


def test_a_stop_on_a_full_disk_journals_what_it_holds_and_the_next_start_says_so(tiny_disk, site, subscribe):
    site.data_dir = tiny_disk / "data"
    enrolled(site)
    sub = subscribe()
    site.start()
    site.tap(CARD)
    wait_for(lambda: len(sub.events()) == 1, what="the first tap")
    fill(tiny_disk / "filler")
    for _ in range(20):
        site.tap(CARD, reader="entrance-out")
        site.tap(CARD)
    wait_for(lambda: "kept in memory" in site.daemon_log(), what="the store refusing writes")
    assert site.stop() == 74
    log = site.daemon_log()
    unrecorded = [json.loads(line.split("unrecorded ", 1)[1]) for line in log.splitlines() if "unrecorded {" in line]
    events = [u for u in unrecorded if u["record"] == "NewEvent"]
    assert len(events) == 40 and all(e["payload"]["subject"] for e in events)
    assert CARD not in log.lower(), "a card UID in the journal"
    assert (site.data_dir / "records-lost").exists()

    (tiny_disk / "filler").unlink()
    site.start()
    alarm = wait_for(lambda: [m for m in sub.messages if "/alarm/" in m.topic and m.payload
                              and m.json["kind"] == "records_lost"], what="the records_lost alarm")[0]
    assert alarm.json["count"] == len(unrecorded)
    assert not (site.data_dir / "records-lost").exists()
    assert site.stop() == 0


def test_a_small_disk_that_the_wal_fills_recovers_by_itself(tiny_disk, site, subscribe):
    """No filler: the WAL alone outgrows a 2 MB filesystem long before SQLite's automatic
    checkpoint (1,000 pages) would cut it back. (The site fixture kills a daemon a failure left.)"""
    site.data_dir = tiny_disk / "data"
    enrolled(site)
    sub = subscribe()
    site.start()
    for n in range(1, 201):
        site.tap(CARD, reader="entrance-in" if n % 2 else "entrance-out")
        wait_for(lambda n=n: len(sub.events()) >= n, what=f"tap {n} on the bus")
    assert [e["seq"] for e in sub.events()] == list(range(1, 201))
    assert site.stop() == 0
    assert site.cli("audit", "verify").returncode == 0


def test_a_second_daemon_on_one_data_dir_is_refused(site):
    site.start()
    second = run_daemon(site)
    assert second.returncode == 75
    pid = site.proc.pid
    assert f"already running (pid {pid})" in second.stderr and "Traceback" not in second.stderr
    # The first one still has its sockets and still answers.
    assert (site.data_dir / "control.sock").exists()
    assert "entrance" in site.cli("door", "list").stdout
    site.tap(CARD)
    assert site.stop() == 0


def test_two_nodes_with_one_name_on_one_broker_are_reported_on_both(site, subscribe, tmp_path):
    sub = subscribe()
    site.start()
    wait_for(lambda: sub.on("/node/door-a/status"), what="the first online")
    (tmp_path / "twin").mkdir()
    twin = Site(tmp_path / "twin", site.broker)
    try:
        twin.start()
        for s in (site, twin):
            wait_for(lambda s=s: "duplicate node name 'door-a'" in s.daemon_log(), timeout=20,
                     what="the duplicate reported")
        alarms = wait_for(lambda: [m for m in sub.messages if "/alarm/" in m.topic and m.payload
                                   and m.json["kind"] == "duplicate_node"], timeout=20, what="the alarm")
        assert alarms[0].json["severity"] == "critical"
    finally:
        twin.kill()


def test_the_store_files_are_private_and_an_open_data_dir_is_refused(site):
    site.start()
    site.tap(CARD)
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        assert stat.S_IMODE(os.stat(site.data_dir / name).st_mode) == 0o600, name
    assert site.stop() == 0
    os.chmod(site.data_dir, 0o755)
    refused = run_daemon(site)
    assert refused.returncode == 74
    assert f"{site.data_dir}: the data dir is open to others (mode 0755); run: chmod 700" in refused.stderr
    listing = site.cli("events", check=False)
    assert listing.returncode == 74 and "chmod 700" in listing.stderr
