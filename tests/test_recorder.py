"""The site recorder (daemon/recorder.py) as it runs: separate daemons on one real mosquitto (door
nodes and a desk node with sim readers, a node with roles = ["recorder"] only), its store read
back, on SQLite and on a real PostgreSQL. Each event stored once, also what was published while
the recorder or the broker was down, or while its database was; a gap is an alarm and a signed
replay request, and clears when it fills."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import signal
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from conftest import wait_for
from harness import DEMO_CONFIG, RECORDER_CONFIG, Site, node_site
from sekisho.daemon.commands import keygen, signed_bytes
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.recorder_store import RecorderStore, open_store

EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))

DESK_NODE = """\
[site]
id = "test"
node = "door-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
desks = ["desk-01"]

[desks.desk-01]
area = "room"

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""


@pytest.fixture
def site_key(tmp_path: Path) -> Path:
    SiteKey.load_or_create(tmp_path / "site.key")
    return tmp_path / "site.key"


@pytest.fixture
def nodes(tmp_path, broker, site_key):
    """``make(name, config)``: a node of the site, stopped (killed if need be) at the end."""
    made: list[Site] = []

    def make(name: str, config: str = DEMO_CONFIG) -> Site:
        s = node_site(tmp_path, broker, name, config, site_key)
        made.append(s)
        return s
    yield make
    for s in made:
        s.kill()


def recorder_config(extra: str = "") -> str:
    return RECORDER_CONFIG + extra


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> str | None:
    """Where the recorder keeps the records: None for SQLite in its data dir, or a fresh
    PostgreSQL database's URL."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()


def in_(database: str | None) -> str:
    """The [recorder] line for ``database``."""
    return f'database = "{database}"\n' if database else ""


def stored(store: RecorderStore) -> list[tuple[str, int, str]]:
    return sorted((e.node, e.seq, e.id) for e in store.events(*EVER))


def published(sub) -> list[tuple[str, int, str]]:
    return sorted((m.json["node"], m.json["seq"], m.json["id"]) for m in sub.on("/event"))


def tap_unknown(site: Site, n: int, reader: str = "entrance-in") -> None:
    """``n`` taps of cards nobody holds: each a denied access event."""
    for i in range(n):
        site.tap(f"04{i:08x}", reader=reader)


def test_every_nodes_events_reach_the_recorder_once(nodes, subscribe, logind):
    logind.add_session("c1")
    logind.patch_lock()
    recorder = nodes("recorder", recorder_config())
    door_a, door_b, desk = nodes("door-a"), nodes("door-b"), nodes("desk-c", DESK_NODE)
    sub = subscribe("sekisho/v1/test/+/+/event")
    recorder.start()
    for s in (door_a, door_b, desk):
        s.start()
    tap_unknown(door_a, 2)
    tap_unknown(door_b, 1)
    desk.tap("04deadbeef", reader="desk-01")
    wait_for(lambda: {m.json["node"] for m in sub.on("/event")} == {"door-a", "door-b", "desk-c"}
             and len(sub.on("/door/entrance/event")) == 3, what="every node's events on the bus")
    with open_store(None, recorder.data_dir) as store:
        wait_for(lambda: stored(store) == published(sub), what="the recorder's store to hold what was published")
        # What the nodes published, as they published it.
        by_key = {(m.json["node"], m.json["seq"]): m.payload.decode() for m in sub.on("/event")}
        assert {(e.node, e.seq): e.payload for e in store.events(*EVER)} == by_key
        assert store.gaps() == []
    for s in (door_a, door_b, desk, recorder):
        assert s.stop() == 0
    assert "refused" not in recorder.daemon_log()


def test_what_is_published_while_the_recorder_is_down_is_stored_once_when_it_is_back(nodes, database):
    recorder = nodes("recorder", recorder_config(in_(database)))
    door = nodes("door-a")
    recorder.start()  # the session begins: from now on the broker keeps the site's events for it
    door.start()
    recorder.stop()
    tap_unknown(door, 500)
    recorder.start()
    with open_store(database, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 500, timeout=15, what="the 500 events queued at the broker")
        assert [seq for _, seq, _ in stored(store)] == list(range(1, 501))
        assert store.gaps() == [] and store.last_seq("door-a") == 500
    door.stop()
    recorder.stop()
    # Each acknowledged as it was stored: a restart gets nothing again.
    with open_store(database, recorder.data_dir) as store:
        assert store.count() == 500


def test_events_reach_the_recorder_after_the_broker_was_down(nodes, broker):
    recorder = nodes("recorder", recorder_config())
    door = nodes("door-a")
    recorder.start()
    door.start()
    tap_unknown(door, 1)
    with open_store(None, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 1, what="the first event")
        broker.stop()
        door.tap("04feedface")  # decided and kept in the door's outbox
        broker.start()  # same port, its persistence holds the recorder's session
        wait_for(lambda: store.count() == 2, timeout=15, what="the event tapped while the broker was down")
        assert stored(store)[1][:2] == ("door-a", 2)
    door.stop()
    recorder.stop()


def test_a_message_the_store_refuses_is_acknowledged_and_said_once(nodes, broker):
    recorder = nodes("recorder", recorder_config())
    recorder.start()
    topic = "sekisho/v1/test/door/entrance/event"
    good = {"id": "e-1", "seq": 1, "node": "door-z", "ts": "2026-12-05T09:00:00.000Z", "kind": "access"}
    # b"[" * 100_000 (found by tests/test_fuzz_bus.py) once stopped the recorder's worker for good.
    for payload in (b"{not json", b"[" * 100_000, json.dumps({**good, "seq": "one"}).encode(), json.dumps(good).encode()):
        publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=broker.port)
    with open_store(None, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 1, what="the good event, after the three bad ones")
    recorder.stop()
    log = recorder.daemon_log()
    assert log.count("refused a message from") == 2  # one for the topic's door, one for door-z
    assert "the payload is not JSON" in log and "seq 'one' of node door-z is not a positive integer" in log
    # Acknowledged: a new start of the same session is not handed them again.
    recorder.start()
    publish.single(topic, json.dumps({**good, "seq": 2, "id": "e-2"}), qos=1, hostname="127.0.0.1", port=broker.port)
    with open_store(None, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 2, what="the next good event")
    recorder.stop()
    assert recorder.daemon_log().count("refused a message from") == 2


def fake_event(broker, node: str, seq: int) -> None:
    """An event as a door node publishes it, straight onto the broker."""
    payload = {"id": f"{node}-{seq}", "seq": seq, "node": node, "ts": "2026-12-05T09:00:00.000Z", "kind": "access",
               "door": "x"}
    publish.single(f"sekisho/v1/test/door/{node}/event", json.dumps(payload), qos=1, hostname="127.0.0.1",
                   port=broker.port)


def test_without_a_signing_key_a_gap_is_an_alarm_and_nobody_is_asked(nodes, broker, subscribe):
    recorder = nodes("recorder", recorder_config())
    alarms = subscribe("sekisho/v1/test/alarm/#")
    recorder.start()
    for seq in (1, 3):
        fake_event(broker, "door-x", seq)
    raised = wait_for(lambda: alarms.on("/alarm/recorder.door-x.sequence-gap"), what="the alarm")[0].json
    assert (raised["first_seq"], raised["last_seq"]) == (2, 2)
    # A seq stored with another id (a node whose store was replaced): not stored, said once.
    for eid in ("reborn-1", "reborn-2"):
        publish.single("sekisho/v1/test/door/door-x/event", json.dumps(
            {"id": eid, "seq": 1, "node": "door-x", "ts": "2026-12-05T09:00:00.000Z", "kind": "access"}), qos=1,
            hostname="127.0.0.1", port=broker.port)
    fake_event(broker, "door-x", 2)  # after the two, on the same connection: stored once they are done with
    wait_for(lambda: any(m.payload and m.json["cleared"] for m in alarms.on("/alarm/recorder.door-x.sequence-gap")),
             what="the alarm cleared by the late event")
    recorder.stop()  # the worker has finished whatever followed the alarm
    log = recorder.daemon_log()
    assert "asking door-x to replay" not in log
    assert log.count("door-x seq 1 is stored with another id than reborn-") == 1
    with open_store(None, recorder.data_dir) as store:
        assert [e.id for e in store.events(*EVER)] == ["door-x-1", "door-x-2", "door-x-3"]


def test_a_gap_is_an_alarm_and_a_signed_replay_request_until_it_fills(nodes, broker, subscribe, tmp_path):
    key = keygen(tmp_path / "recorder.pem")
    recorder = nodes("recorder", recorder_config(f'signing_key = "{tmp_path / "recorder.pem"}"\n'))
    alarms = subscribe("sekisho/v1/test/alarm/#")
    commands = subscribe("sekisho/v1/test/cmd/#")
    recorder.start()
    for seq in (1, 2, 5):
        fake_event(broker, "door-x", seq)
    # A skip that fills within the grace is nothing: door-y's 2 comes late but in time.
    for seq in (1, 3, 2):
        fake_event(broker, "door-y", seq)
    gap_alarm = "/alarm/recorder.door-x.sequence-gap"
    # The bound only limits a failure: a busy machine once took longer than 10 s (the recorder
    # starting, its grace, its gap scan).
    raised = wait_for(lambda: alarms.on(gap_alarm), 30, what="the sequence_gap alarm")[0].json
    assert (raised["kind"], raised["source"], raised["severity"]) == ("sequence_gap", "door-x", "warning")
    assert (raised["first_seq"], raised["last_seq"], raised["cleared"]) == (3, 4, None)
    request = wait_for(lambda: commands.on("/cmd/door-x"), what="the replay request")[0].json
    assert (request["op"], request["args"], request["site"], request["node"], request["key"]) == \
        ("outbox.replay", {"from_seq": 3, "to_seq": 4}, "test", "door-x", "recorder")
    key.public_key().verify(base64.b64decode(request["sig"]), signed_bytes(request))  # raises when not good
    # door-y's check came before door-x's: it found its gap filled.
    assert not alarms.on("/alarm/recorder.door-y.sequence-gap") and not commands.on("/cmd/door-y")
    fake_event(broker, "door-x", 3)
    fake_event(broker, "door-x", 4)
    cleared = wait_for(lambda: [m.json for m in alarms.on(gap_alarm) if m.payload and m.json["cleared"]],
                       what="the alarm cleared once the gap filled")
    assert cleared[-1]["first_seq"] == 3
    with open_store(None, recorder.data_dir) as store:
        assert store.gaps() == [] and store.count() == 8
        # The recorder keeps the alarm's steps too, its own among them.
        wait_for(lambda: len([s for s in store.alarm_steps(*EVER) if s.alarm_id == "recorder.door-x.sequence-gap"])
                 >= 2, what="the alarm's steps in the recorder's store")
    recorder.stop()


# --- PostgreSQL -----------------------------------------------------------------------------

def test_ingest_into_postgresql(nodes, subscribe, postgres):
    url = postgres.new_database()
    recorder = nodes("recorder", recorder_config(f'database = "{url}"\n'))
    door_a, door_b = nodes("door-a"), nodes("door-b")
    sub = subscribe("sekisho/v1/test/+/+/event")
    recorder.start()
    door_a.start()
    door_b.start()
    tap_unknown(door_a, 3)
    tap_unknown(door_b, 2)
    wait_for(lambda: len(sub.on("/event")) == 5, what="five events on the bus")
    with open_store(url, recorder.data_dir) as store:
        wait_for(lambda: stored(store) == published(sub), what="PostgreSQL to hold what was published")
        recorder.stop()
        tap_unknown(door_b, 2)  # while the recorder is away
        recorder.start()
        wait_for(lambda: store.count() == 7, what="the two tapped while the recorder was away")
        assert store.last_seq("door-b") == 4 and store.gaps() == []
    for s in (door_a, door_b, recorder):
        assert s.stop() == 0


def test_a_crash_between_receipt_and_commit_loses_nothing(nodes, postgres):
    """The event is on its way into PostgreSQL, held up by a lock, when the recorder is killed:
    it was never acknowledged, so the broker hands it to the next start."""
    import psycopg

    url = postgres.new_database()
    recorder = nodes("recorder", recorder_config(f'database = "{url}"\n'))
    door = nodes("door-a")
    recorder.start()
    door.start()
    tap_unknown(door, 1)
    with open_store(url, recorder.data_dir) as store, psycopg.connect(url) as holder:
        wait_for(lambda: store.count() == 1, what="the first event")
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # until holder's transaction ends
        door.tap("04feedface")
        wait_for(lambda: store.conn.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
            .fetchone()[0] == 1, what="the recorder's insert waiting for the lock")
        recorder.stop(signal.SIGKILL)
        holder.rollback()
        wait_for(lambda: store.conn.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0] == 0,
            what="the killed recorder's backend gone")
        assert store.count() == 1
        recorder.start()
        wait_for(lambda: store.count() == 2, what="the event redelivered to the next start")
    door.stop()
    recorder.stop()


def test_postgresql_down_delays_the_records_and_blocks_nothing(nodes, postgres, subscribe):
    import psycopg

    url = postgres.new_database()
    name = url.split("///")[1].split("?")[0]
    recorder = nodes("recorder", recorder_config(f'database = "{url}"\n'))
    door = nodes("door-a")
    sub = subscribe("sekisho/v1/test/+/+/event")
    recorder.start()
    door.start()
    tap_unknown(door, 1)
    with open_store(url, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 1, what="the first event")
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        # The database refuses every connection, the recorder's own is cut: as a server that is down.
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        tap_unknown(door, 3)
        wait_for(lambda: len(sub.on("/event")) == 4, what="the door deciding and publishing all the same")
        wait_for(lambda: "storing a batch failed" in recorder.daemon_log(), what="the recorder to say so")
        assert recorder.control({"op": "door.list"})["ok"] is True  # the recorder node's loop is not held up
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    with open_store(url, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 4, timeout=15, what="the events kept at the broker, stored once back")
        assert store.gaps() == []
    assert recorder.daemon_log().count("storing a batch failed") == 1  # once per outage, not per try
    door.stop()
    recorder.stop()
    assert "the store is back" in recorder.daemon_log()


def test_an_event_lost_from_a_doors_outbox_is_replayed_into_the_recorder(nodes, subscribe, tmp_path, broker,
                                                                         database):
    """End to end: seq 2 of door-a never reaches the broker (its outbox row is lost while the
    node is away); seq 3 shows the skip, the recorder raises sequence_gap and asks door-a, by a
    signed outbox.replay, for seq 2, which fills the gap and clears the alarm."""
    import sqlite3

    from sekisho.daemon.commands import public_key_text

    key = keygen(tmp_path / "recorder.pem")
    recorder = nodes("recorder", recorder_config(f'signing_key = "{tmp_path / "recorder.pem"}"\n' + in_(database)))
    trusted = (DEMO_CONFIG + f'\n[commands.keys.recorder]\npublic_key = "{public_key_text(key)}"\n'
               'ops = ["outbox.replay"]\n')
    door = nodes("door-a", trusted)
    alarms = subscribe("sekisho/v1/test/alarm/#")
    recorder.start()
    door.start()
    tap_unknown(door, 1)
    with open_store(database, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 1, what="seq 1 at the recorder")
        door.stop()
        # Seq 2 is decided while the door cannot reach the broker, and its outbox row is lost.
        online = door.config.read_text()
        door.config.write_text(online.replace(broker.url, "mqtt://127.0.0.1:9"))
        door.start()
        door.tap("04feedface")
        database = door.data_dir / "sekisho.db"
        wait_for(lambda: sqlite3.connect(database).execute("SELECT max(seq) FROM events").fetchone()[0] == 2,
                 what="seq 2 recorded at the door")
        door.stop()
        with sqlite3.connect(database) as db:
            lost_id, lost_payload = db.execute("SELECT id, payload FROM events WHERE seq = 2").fetchone()
            assert db.execute("DELETE FROM outbox WHERE event_id = ?", [lost_id]).rowcount == 1
        door.config.write_text(online)
        door.start()
        door.tap("04c0ffee00")
        gap_alarm = "/alarm/recorder.door-a.sequence-gap"
        raised = wait_for(lambda: alarms.on(gap_alarm), what="the sequence_gap alarm at the broker")[0].json
        assert (raised["source"], raised["first_seq"], raised["last_seq"]) == ("door-a", 2, 2)
        wait_for(lambda: store.count() == 3 and store.gaps() == [], what="the replay filling the gap")
        wait_for(lambda: any(m.payload and m.json["cleared"] for m in alarms.on(gap_alarm)), what="the alarm cleared")
        replayed = store.events(*EVER, node="door-a")
        assert [e.seq for e in replayed] == [1, 2, 3]
        assert (replayed[1].id, replayed[1].payload) == (lost_id, lost_payload)  # as first recorded
    door.stop()
    recorder.stop()
    assert "replay of seq 2 to 2 for key:recorder: 1 queued" in door.daemon_log()


def test_two_recorders_on_a_shared_subscription_store_each_event_once(nodes, postgres):
    url = postgres.new_database()
    shared = recorder_config(f'database = "{url}"\nshare_group = "recorders"\n')
    recorders = [nodes(name, shared.replace('node = "recorder"', f'node = "{name}"'))
                 for name in ("recorder-1", "recorder-2")]
    door = nodes("door-a")
    for r in recorders:
        r.start()
    door.start()
    tap_unknown(door, 60)
    with open_store(url, recorders[0].data_dir) as store:
        wait_for(lambda: store.count() == 60, what="the 60 events, split between the two")
        assert [seq for _, seq, _ in stored(store)] == list(range(1, 61)) and store.gaps() == []
    for s in (door, *recorders):
        assert s.stop() == 0
    for r in recorders:
        assert "subscribing to $share/recorders/sekisho/v1/test/+/+/event" in r.daemon_log()


def test_a_recorder_whose_postgresql_is_down_at_start_runs_and_stores_once_it_is_up(nodes, postgres):
    import psycopg

    url = postgres.new_database()
    name = url.split("///")[1].split("?")[0]
    recorder = nodes("recorder", recorder_config(f'database = "{url}"\n'))
    door = nodes("door-a")
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        recorder.start()  # answers on its control socket: the daemon runs without its database
        door.start()
        tap_unknown(door, 2)
        wait_for(lambda: "recorder: opening the store failed" in recorder.daemon_log(), what="the recorder to say so")
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    with open_store(url, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 2, timeout=15, what="the events stored once the database is up")
    door.stop()
    recorder.stop()
    assert recorder.daemon_log().count("recorder: opening the store failed") == 1


def test_a_print_nodes_events_are_stored_listed_and_reported(nodes, broker, database, subscribe):
    """Print events (issue 19, ``print/<node>/event``) are recorded like every node's events: the
    recorder's subscription takes every event topic, so a print node needs nothing of its own."""
    recorder = nodes("recorder", recorder_config(in_(database)))
    sub = subscribe("sekisho/v1/test/print/+/event")
    recorder.start()
    subject = "3f2c9a0b5e7d1c44"  # a pseudonym nobody at the recorder node matches: shown as itself
    events = [{"action": "held", "job": 7, "pages": 2},
              {"action": "released", "job": 7, "pages": 2, "by": "command", "actor": "key:officer-1"},
              {"action": "printed", "job": 7, "pages": 2}]
    messages = [{"id": f"print-1-{seq}", "seq": seq, "node": "print-1", "ts": f"2026-12-05T09:0{seq}:00.000Z",
                 "subject": subject, "user_known": True, "document": {"hash": "ab" * 16},
                 "submitted": "2026-12-05T09:01:00.000Z", **e} for seq, e in enumerate(events, 1)]
    for m in [*messages, messages[1]]:  # the second twice, as QoS 1 may deliver it
        publish.single("sekisho/v1/test/print/print-1/event", json.dumps(m), qos=1, hostname="127.0.0.1",
                       port=broker.port)
    wait_for(lambda: len(sub.on("/event")) == 4, what="the print events on the bus")
    with open_store(database, recorder.data_dir) as store:
        wait_for(lambda: store.count() == 3, what="the print events stored")
        assert [(e.node, e.seq, json.loads(e.payload)["action"]) for e in store.events(*EVER)] == [
            ("print-1", 1, "held"), ("print-1", 2, "released"), ("print-1", 3, "printed")]
        assert store.gaps() == []
    listed = json.loads(recorder.cli("events", "--node", "print-1", "--json").stdout)
    assert [(e["kind"], e["result"], e["rule"]) for e in listed] == [
        ("print", "held", None), ("print", "released", "command"), ("print", "printed", None)]
    report = recorder.cli("report", "--day", "2026-12-05", "--format", "csv", "--section", "print_operator")
    counts = {x["what"]: x["count"] for x in csv.DictReader(io.StringIO(report.stdout))
              if x["section"] == "print_operator"}
    assert (counts["held"], counts["released"], counts["printed"], counts["pages_printed"]) == ("1", "1", "1", "2")
    assert recorder.stop() == 0
    assert "refused" not in recorder.daemon_log()
