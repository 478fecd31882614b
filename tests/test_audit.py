"""The audit log is append-only and hash-chained; `sekisho audit verify` names the first row
that was edited or removed."""

from __future__ import annotations

import sqlite3

import pytest

from sekisho.daemon.store.audit import verify
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People
from sekisho.daemon.store.record import NewEvent, Record


@pytest.fixture
def store(tmp_path):
    d = Database(tmp_path)
    people = People(d)
    people.add_person("p1", "A", "test")
    people.add_person("p2", "B", "test")
    Record(d, "n1").record([NewEvent(kind="door", topic="t", payload={"result": "granted"}, columns={"door": "d"})] * 3)
    people.add_card("p1", "ab" * 32, "test")
    yield d
    d.close()


def tamper(store: Database, sql: str) -> None:
    """What an attacker with the file can do: drop the append-only triggers, then write."""
    db = sqlite3.connect(store.path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute(sql)
    db.commit()
    db.close()


def test_intact_log_verifies(store):
    report = verify(store.db)
    assert report.ok and report.rows == 6


def test_triggers_refuse_update_and_delete(store):
    db = sqlite3.connect(store.path)
    for sql in ("UPDATE audit SET actor = 'x' WHERE n = 2", "DELETE FROM audit WHERE n = 2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)


def test_edited_row_is_named(store):
    tamper(store, "UPDATE audit SET detail = replace(detail, 'p2', 'p9') WHERE n = 2")
    report = verify(store.db)
    assert not report.ok and report.rows == 1
    assert report.problem == "row 2: content does not match its hash (edited)"


def test_deleted_row_is_named(store):
    tamper(store, "DELETE FROM audit WHERE n = 4")
    report = verify(store.db)
    assert not report.ok
    assert report.problem.startswith("row 4 is missing")


def test_renumbered_rows_after_delete_are_caught(store):
    tamper(store, "DELETE FROM audit WHERE n = 4")
    tamper_db = sqlite3.connect(store.path)
    tamper_db.execute("UPDATE audit SET n = n - 1 WHERE n > 4")
    tamper_db.commit()
    report = verify(store.db)
    assert not report.ok and report.problem.startswith("row 4: does not follow row 3")


def test_truncated_tail_is_caught(store):
    tamper(store, "DELETE FROM audit WHERE n = 6")
    report = verify(store.db)
    assert not report.ok and "rows removed from the end" in report.problem


def test_cli_exit_codes(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "disable", "p1")
    r = site.cli("audit", "verify")
    assert r.stdout.strip() == "audit log intact: 2 rows"
    tamper(Database(site.data_dir), "UPDATE audit SET actor = 'someone-else' WHERE n = 1")
    r = site.cli("audit", "verify", check=False)
    assert r.returncode == 65
    assert "row 1: content does not match its hash (edited)" in r.stderr


def test_retention_purge_keeps_the_chain_verifiable(store):
    # Age the first four audit rows and two events, as time would. (Editing ts breaks those
    # rows' hashes, but they are exactly what the purge removes.)
    db = sqlite3.connect(store.path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET ts = '2000-01-01T00:00:00.000Z' WHERE n <= 4")
    db.execute("UPDATE events SET ts = '2000-01-01T00:00:00.000Z' WHERE seq <= 2")
    db.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
    db.commit()
    events, audit_rows = Record(store, "n1").purge("2001-01-01T00:00:00.000Z", "test")
    assert (events, audit_rows) == (2, 4)
    report = verify(store.db)
    assert report.ok, report.problem
    assert report.rows == 3  # rows 5, 6 and the purge's own row
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite3.connect(store.path).execute("DELETE FROM audit WHERE n = 5")


def test_deleting_the_oldest_rows_without_a_purge_is_caught(store):
    tamper(store, "DELETE FROM audit WHERE n <= 2")
    report = verify(store.db)
    assert not report.ok and report.problem.startswith("row 1 is missing")


def test_purge_command(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli("purge")
    assert r.stdout.startswith("deleted 0 events and 0 audit rows from before ")
    assert site.cli("audit", "verify").stdout.strip() == "audit log intact: 1 rows"
