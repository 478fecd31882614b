"""outbox.replay (issue 15, item 2): a node publishes again the events a subscriber missed, byte for
byte as first published, through its outbox. In process: the store's side (what is queued, what
is not and why, no new seq or event audit row), schema 7 on a store made by schema 6 (topics
derived for the old rows), the range refusals. As processes on a real mosquitto: an event whose
outbox row was lost is missing at a subscriber until a signed replay brings it, with its
original id and ts; a key without the op and a bad range are refused; a purged seq is reported
through `sekisho outbox replay`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from conftest import free_port, wait_for
from harness import Site
from sekisho.daemon.errors import DataError
from sekisho.daemon.ops import Parts, Table, declared
from sekisho.daemon.outbox_replay import MAX_SEQS, OutboxReplay
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.outbox import Outbox
from sekisho.daemon.store.record import NewEvent, Record
from sekisho.daemon.store.schema import MIGRATIONS
from sekisho.daemon.topics import Topics

TOPICS = Topics("test")


def door_event(door: str = "entrance", result: str = "granted") -> NewEvent:
    return NewEvent(kind="door", topic=TOPICS.door_event(door), payload={"kind": "access", "door": door,
                                                                         "result": result, "subject": "é-ß"},
                    columns={"door": door, "result": result})


def replayer(record: Record, usb_host: str | None = None) -> tuple[OutboxReplay, list[int]]:
    kicks: list[int] = []
    return OutboxReplay(record, TOPICS, usb_host=usb_host, committed=lambda: kicks.append(1)), kicks


def audit_actions(database: Database) -> list[str]:
    return [r[0] for r in database.db.execute("SELECT action FROM audit ORDER BY n")]


# ----------------------------------------------------------------------------- the store's side
def test_replay_queues_the_stored_payloads_on_their_topics_and_takes_no_seq(tmp_path):
    database = Database(tmp_path)
    record, outbox = Record(database, "door-a"), Outbox(database)
    record.record([door_event("entrance"), door_event("vault", "denied"), door_event("entrance")])
    first = outbox.after(0, 100)
    outbox.sent([row.n for row in first])  # the broker acknowledged them
    audit_before = audit_actions(database)
    replay, kicks = replayer(record)

    answer = replay.replay(1, 3, "key:recorder")
    again = outbox.after(first[-1].n, 100)
    assert answer == {"from_seq": 1, "to_seq": 3, "queued": 3, "last_seq": 3, "purged": [], "beyond": [],
                      "unreplayable": []}
    # Byte for byte what went out first, on the same topics, in seq order, QoS 1, not retained.
    assert [(r.topic, r.payload, r.qos, r.retain) for r in again] == [(r.topic, r.payload, 1, False) for r in first]
    assert [json.loads(r.payload)["seq"] for r in again] == [1, 2, 3]
    assert kicks == [1]
    # No new event: the sequence stands, no event row or event audit row more; one row for the replay.
    assert record.last_seq() == 3 and len(record.events()) == 3
    assert audit_actions(database) == [*audit_before, "outbox.replay"]
    detail = json.loads(database.db.execute("SELECT detail, actor FROM audit ORDER BY n DESC").fetchone()[0])
    assert detail == {"from_seq": 1, "to_seq": 3, "queued": 3}
    # A repeat is harmless: the same bytes once more, which subscribers drop by id.
    replay.replay(2, 2, "key:recorder")
    assert outbox.after(again[-1].n, 100)[0].payload == first[1].payload
    assert record.last_seq() == 3


def test_purged_and_beyond_seqs_are_reported_not_refused(tmp_path):
    database = Database(tmp_path)
    record, outbox = Record(database, "door-a"), Outbox(database)
    record.record([door_event() for _ in range(6)])
    outbox.sent([row.n for row in outbox.after(0, 100)])
    # Seqs 1-2 and 4 as the retention purge leaves them: gone from the events table.
    with database.transaction() as db:
        db.execute("DELETE FROM events WHERE seq IN (1, 2, 4)")
    replay, kicks = replayer(record)
    answer = replay.replay(1, 9, "cli:root")
    assert answer == {"from_seq": 1, "to_seq": 9, "queued": 3, "last_seq": 6, "purged": [[1, 2], [4, 4]],
                      "beyond": [[7, 9]], "unreplayable": []}
    assert [json.loads(r.payload)["seq"] for r in outbox.after(0, 100)] == [3, 5, 6]
    # Nothing held at all: answered, nothing queued, the publisher not woken.
    kicks.clear()
    assert replay.replay(10, 12, "cli:root")["beyond"] == [[10, 12]]
    assert replay.replay(1, 2, "cli:root")["purged"] == [[1, 2]]
    assert kicks == [] and outbox.count() == 3


def test_the_retention_purge_makes_seqs_purged(tmp_path):
    database = Database(tmp_path)
    record = Record(database, "door-a")
    record.record([door_event(), door_event()])
    record.purge("9999-01-01T00:00:00.000Z", "daemon")  # everything is older than that
    answer = replayer(record)[0].replay(1, 2, "cli:root")
    assert (answer["queued"], answer["purged"], answer["beyond"]) == (0, [[1, 2]], [])


def test_only_this_nodes_events_are_replayed(tmp_path):
    database = Database(tmp_path)
    Record(database, "door-old").record([door_event()])  # a node name this store had before
    record = Record(database, "door-a")
    record.record([door_event()])
    answer = replayer(record)[0].replay(1, 1, "cli:root")
    assert answer["queued"] == 1
    assert json.loads(Outbox(database).after(2, 10)[0].payload)["node"] == "door-a"


@pytest.mark.parametrize("first, last, error", [
    (5, 4, "bad range: from_seq 5 is after to_seq 4"),
    (1, MAX_SEQS + 1, f"bad range: {MAX_SEQS + 1:,} seqs; at most {MAX_SEQS:,} in one replay"),
])
def test_a_bad_range_is_refused_whole(tmp_path, first, last, error):
    database = Database(tmp_path)
    record = Record(database, "door-a")
    record.record([door_event()])
    before = audit_actions(database)
    with pytest.raises(DataError, match=error):
        replayer(record)[0].replay(first, last, "cli:root")
    assert audit_actions(database) == before and Outbox(database).count() == 1


def test_the_op_checks_its_arguments_before_the_replay(tmp_path):
    database = Database(tmp_path)
    record = Record(database, "door-a")
    record.record([door_event()])
    table = Table(Parts(replay=replayer(record)[0]), declared())
    assert table.remote().ops.keys() == {"outbox.replay"}

    def run(request: dict) -> dict:
        return asyncio.run(table.run("outbox.replay", request, "key:recorder"))
    assert run({"from_seq": 1, "to_seq": 1})["queued"] == 1
    assert run({"from_seq": "1", "to_seq": 1.0})["queued"] == 1  # as the control socket may carry them
    assert run({"from_seq": 0, "to_seq": 1}) == {"ok": False,
                                                 "error": "from_seq must be between 1 and 9,007,199,254,740,992"}
    assert run({"from_seq": 1.5, "to_seq": 2}) == {"ok": False, "error": "from_seq must be a whole number, not 1.5"}
    assert run({"from_seq": 1}) == {"ok": False, "error": "bad request: outbox.replay needs 'to_seq'"}
    assert run({"from_seq": 3, "to_seq": 2}) == {"ok": False, "error": "bad range: from_seq 3 is after to_seq 2"}
    # The summary says the cap the replay holds to.
    assert f"{MAX_SEQS:,}" in next(op for op in declared() if op.name == "outbox.replay").summary


# ----------------------------------------------------------------------------- schema 7 on a schema 6 store
def schema_6_store(data_dir: Path) -> None:
    """A store as the release before schema 7 made it (database.py's migrations up to 6), with
    events written as its Record.record wrote them: no topic."""
    data_dir.mkdir(mode=0o700)
    db = sqlite_utils.Database(sqlite3.connect(data_dir / "sekisho.db", isolation_level=None))
    for version, migration in enumerate(MIGRATIONS[:6], start=1):
        migration(db)
        if version == 1:
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (1)")
        else:
            db.execute("UPDATE schema_version SET version = ?", [version])
    rows = [
        ("door", {"kind": "access", "door": "entrance", "result": "granted"}, {"door": "entrance"}),
        ("desk", {"desk": "desk-01", "kind": "session_locked"}, {"reader": "desk-01"}),
        ("usb", {"action": "blocked", "device": {"vid": "0781"}}, {"result": "blocked"}),
        ("door", {"kind": "access", "result": "denied"}, {"result": "denied"}),  # no door named: no topic
        ("door", {"kind": "access", "door": "a/#", "result": "denied"}, {"result": "denied"}),  # not a topic segment
        ("door", {"kind": "fire", "door": "entrance", "state": "active"}, {"door": "entrance"}),
    ]
    for seq, (kind, payload, columns) in enumerate(rows, start=1):
        body = {**payload, "id": f"old-{seq}", "seq": seq, "node": "door-a", "ts": f"2026-11-0{seq}T00:00:00.000Z"}
        db.execute("INSERT INTO events (id, seq, ts, node, kind, payload, " + ", ".join(columns) + ") VALUES "
                   "(?, ?, ?, ?, ?, ?" + ", ?" * len(columns) + ")",
                   [body["id"], seq, body["ts"], "door-a", kind, json.dumps(body, sort_keys=True), *columns.values()])
    db.execute("INSERT INTO sequence (node, last) VALUES ('door-a', ?)", [len(rows)])
    db.close()


def test_schema_7_and_later_on_a_schema_6_store_keep_its_events_and_derive_their_topics(tmp_path):
    data_dir = tmp_path / "data"
    schema_6_store(data_dir)
    old_payloads = {r[0]: r[1] for r in sqlite3.connect(data_dir / "sekisho.db").execute(
        "SELECT seq, payload FROM events")}
    database = Database(data_dir)
    assert database.schema_version() == len(MIGRATIONS) >= 7
    columns = {c.name for c in database.db.table("events").columns}
    assert "topic" in columns
    assert [r[0] for r in database.db.execute("SELECT topic FROM events ORDER BY seq")] == [None] * 6
    record, outbox = Record(database, "door-a"), Outbox(database)
    record.record([door_event("vault")])  # a new event keeps its topic, and the sequence goes on
    assert database.db.execute("SELECT seq, topic FROM events WHERE seq = 7").fetchone() == (
        7, "sekisho/v1/test/door/vault/event")
    outbox.sent([row.n for row in outbox.after(0, 10)])

    answer = replayer(record, usb_host="pc-7")[0].replay(1, 7, "key:recorder")
    assert (answer["queued"], answer["unreplayable"], answer["purged"]) == (5, [[4, 5]], [])
    replayed = {json.loads(r.payload)["seq"]: r for r in outbox.after(0, 10)}
    assert {seq: r.topic for seq, r in replayed.items()} == {
        1: "sekisho/v1/test/door/entrance/event", 2: "sekisho/v1/test/desk/desk-01/event",
        3: "sekisho/v1/test/usb/pc-7/event", 6: "sekisho/v1/test/door/entrance/event",
        7: "sekisho/v1/test/door/vault/event"}
    assert all(replayed[seq].payload == old_payloads[seq].encode() for seq in (1, 2, 3, 6))
    # Without [usb] the node cannot tell a USB event's host: reported, not guessed.
    assert replayer(record, usb_host=None)[0].replay(3, 3, "cli:root")["unreplayable"] == [[3, 3]]
    database.close()


# ----------------------------------------------------------------------------- through the daemon
KEYS = """
[commands]
max_skew_s = 300

[commands.keys.recorder]
public_key = "{recorder}"
ops = ["outbox.replay"]

[commands.keys.officer]
public_key = "{officer}"
ops = ["door.*"]
"""


@pytest.fixture
def replay_site(site: Site, tmp_path: Path):
    """The test site with a recorder's key (outbox.replay) and an officer's (door.* only)."""
    keys = {}
    for name in ("recorder", "officer"):
        out = site.cli("cmd", "keygen", str(tmp_path / f"{name}.key")).stdout
        keys[name] = out.split('public_key = "')[1].split('"')[0]
    section = KEYS.format(**keys)

    def point_at(url: str) -> None:
        site.use_broker(url)
        with site.config.open("a") as f:
            f.write(section)
    point_at(site.broker.url)
    site.enroll("u1", "04a1b2c3")
    yield site, point_at
    if site.proc is not None:
        site.stop()


def send(site: Site, tmp_path: Path, key: str, *args: str) -> tuple[int, dict]:
    r = site.cli("cmd", "send", "outbox.replay", *args, "--key", str(tmp_path / f"{key}.key"), check=False)
    return r.returncode, json.loads(r.stdout)


def stored_seqs(site: Site) -> list[int]:
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        return [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]


def by_seq(sub) -> dict[int, list[bytes]]:
    seen: dict[int, list[bytes]] = {}
    for m in sub.on("/door/entrance/event"):
        seen.setdefault(m.json["seq"], []).append(m.payload)
    return seen


def test_an_event_lost_from_the_outbox_arrives_by_a_signed_replay(replay_site, subscribe, tmp_path):
    site, point_at = replay_site
    sub = subscribe("sekisho/v1/test/#")
    site.start()
    for _ in range(2):
        site.tap("04a1b2c3")
    wait_for(lambda: set(by_seq(sub)) == {1, 2}, what="seqs 1 and 2 at the subscriber")
    site.stop()

    # Seq 3 is recorded while the node cannot reach the broker, and its outbox row is lost.
    point_at(f"mqtt://127.0.0.1:{free_port()}")
    site.start()
    site.tap("04a1b2c3")
    wait_for(lambda: stored_seqs(site) == [1, 2, 3], what="seq 3 recorded")
    site.stop()
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        lost = db.execute("SELECT id, ts, payload FROM events WHERE seq = 3").fetchone()
        assert db.execute("DELETE FROM outbox WHERE event_id = ?", [lost[0]]).rowcount == 1
    point_at(site.broker.url)
    site.start()
    site.tap("04a1b2c3")
    wait_for(lambda: 4 in by_seq(sub), what="seq 4 at the subscriber")
    assert sorted(by_seq(sub)) == [1, 2, 4]  # the subscriber sees the skip

    # Refused, and nothing published: a key without the op, and ranges that are not ones.
    assert send(site, tmp_path, "officer", "from_seq=3", "to_seq=3")[1]["error"] == \
        "not permitted: key 'officer' may not run 'outbox.replay'"
    code, answer = send(site, tmp_path, "recorder", "from_seq=3", "to_seq=2")
    assert (code, answer["ok"], answer["error"]) == (1, False, "bad range: from_seq 3 is after to_seq 2")
    code, answer = send(site, tmp_path, "recorder", "from_seq=0", "to_seq=3")
    assert (code, answer["error"]) == (1, "from_seq must be between 1 and 9,007,199,254,740,992")
    code, answer = send(site, tmp_path, "recorder", "from_seq=1", f"to_seq={MAX_SEQS + 1}")
    assert (code, answer["error"]) == (1, f"bad range: {MAX_SEQS + 1:,} seqs; at most {MAX_SEQS:,} in one replay "
                                          "(ask for the rest in another)")

    code, answer = send(site, tmp_path, "recorder", "from_seq=3", "to_seq=6")
    assert code == 0 and answer["ok"] is True, answer
    assert answer["result"] == {"from_seq": 3, "to_seq": 6, "queued": 2, "last_seq": 4, "purged": [],
                                "beyond": [[5, 6]], "unreplayable": []}
    wait_for(lambda: 3 in by_seq(sub), what="seq 3 replayed")
    # The lost event, exactly as recorded: its original id, ts and bytes; and seq 4 a second time.
    replayed = by_seq(sub)
    assert replayed[3] == [lost[2].encode()]
    assert (json.loads(replayed[3][0])["id"], json.loads(replayed[3][0])["ts"]) == (lost[0], lost[1])
    wait_for(lambda: len(by_seq(sub)[4]) == 2, what="seq 4 again")
    assert by_seq(sub)[4][0] == by_seq(sub)[4][1]
    # The events were queued ahead of the answer, and published ahead of it.
    wait_for(lambda: len(sub.on("/cmd/door-a/result")) == 5, what="the five answers")
    order = ["result" if m.topic.endswith("/result") else m.json["seq"] for m in sub.messages
             if m.topic.endswith(("/entrance/event", "/cmd/door-a/result"))]
    assert order[-3:] == [3, 4, "result"], order
    # No new event, no event audit row: the sequence still ends at 4; the replay audited once.
    site.stop()
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        assert db.execute("SELECT last FROM sequence").fetchone()[0] == 4
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 4
        actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY n")]
    assert actions.count("outbox.replay") == 1
    assert len([a for a in actions if a in ("door.granted", "door.denied")]) == 4
    assert actions.count("command.done") == 1 and actions.count("command.failed") == 3
    assert actions.count("command.refused") == 1
    assert site.cli("audit", "verify").returncode == 0


def test_outbox_replay_on_the_control_socket_reports_a_purged_seq(replay_site, subscribe):
    site, _ = replay_site
    sub = subscribe("sekisho/v1/test/door/+/event")
    site.start()
    for _ in range(2):
        site.tap("04a1b2c3")
    wait_for(lambda: len(sub.on("/event")) == 2, what="two events published")
    site.stop()
    # Seq 1 older than [site] retention_days: the start's purge deletes it.
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        db.execute("UPDATE events SET ts = '2000-01-01T00:00:00.000Z' WHERE seq = 1")
    site.start()
    r = site.cli("outbox", "replay", "1", "3")
    assert r.stdout.splitlines() == [
        "1 event of seq 1 to 3 queued to publish again (the node's last seq is 2)",
        "no longer held (past [site] retention_days): 1",
        "never recorded (after the last seq): 3"]
    wait_for(lambda: len(sub.on("/event")) == 3, what="seq 2 again")
    assert sub.on("/event")[2].payload == sub.on("/event")[1].payload
    answer = json.loads(site.cli("outbox", "replay", "2", "2", "--json").stdout)
    assert answer == {"from_seq": 2, "to_seq": 2, "queued": 1, "last_seq": 2, "purged": [], "beyond": [],
                      "unreplayable": []}
    r = site.cli("outbox", "replay", "2", "1", check=False)
    assert (r.returncode, r.stderr.strip()) == (1, "sekisho: bad range: from_seq 2 is after to_seq 1")
    r = site.cli("outbox", "replay", "two", "3", check=False)
    assert r.returncode == 64 and "invalid int value: 'two'" in r.stderr
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        actors = [r[0] for r in db.execute("SELECT actor FROM audit WHERE action = 'outbox.replay'")]
    assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)


def test_outbox_replay_help_reads_like_a_man_page(site):
    text = site.cli("outbox", "replay", "--help").stdout
    for words in ("retention_days", "byte for byte", "purged", "beyond", "unreplayable", "100,000", "exit status",
                  "examples:"):
        assert words in text, words
