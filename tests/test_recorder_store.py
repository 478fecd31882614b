"""The recorder's store (daemon/recorder_store.py), each test on SQLite and on a real PostgreSQL
(a throw-away cluster, tests/postgres.py): every event once, the last seq and the gaps of each
node, also across a reopen and with two writers at once."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from sekisho.daemon.errors import StoreError
from sekisho.daemon.recorder_store import (
    DB_NAME,
    MIGRATIONS,
    AlarmStep,
    Gap,
    PostgresStore,
    Received,
    RecorderStore,
    SqliteStore,
    alarm_step,
    fill,
    missing,
    open_store,
)

T0 = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.timezone.utc)


def ev(node: str, seq: int, *, ts: dt.datetime | None = None) -> Received:
    t = (ts or T0 + dt.timedelta(milliseconds=seq)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    eid = f"{node}-{seq}"
    payload = json.dumps({"id": eid, "seq": seq, "node": node, "ts": t, "kind": "access"})
    return Received(node, seq, eid, f"sekisho/site/door/{node}/event", t, payload)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path: Path):
    """Where a store lives, to open it (again) with ``open_store(where, tmp_path)``."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def store(where, tmp_path: Path):
    s = open_store(where, tmp_path)
    yield s
    s.close()


def test_backend_is_chosen_by_the_url(where, tmp_path: Path):
    with open_store(where, tmp_path) as s:
        assert isinstance(s, SqliteStore if where is None else PostgresStore)
        assert s.schema_version() == len(MIGRATIONS)
    if where is None:
        assert (tmp_path / DB_NAME).stat().st_mode & 0o077 == 0
    with pytest.raises(StoreError, match="only a postgresql:// URL"):
        open_store("mysql://x/y", tmp_path)


def test_same_batch_twice_is_stored_once(store: RecorderStore):
    batch = [ev("door-a", s) for s in range(1, 6)] + [ev("desk-01", 1)]
    first = store.store(batch)
    assert (first.new, first.opened, first.closed, first.rejected) == (6, (), (), ())
    again = store.store(batch)
    assert again.new == 0 and again.opened == () and again.conflicts == ()
    assert store.count() == 6
    assert store.last_seq("door-a") == 5 and store.last_seq("desk-01") == 1
    assert store.last_seq("never-seen") is None


def test_a_repeat_within_one_batch_is_stored_once(store: RecorderStore):
    assert store.store([ev("door-a", 1), ev("door-a", 1), ev("door-a", 2)]).new == 2
    assert store.count() == 2


def test_a_seq_stored_with_another_id_is_a_conflict(store: RecorderStore):
    """A node whose store was replaced counts from 1 again: its new events are not lost in
    silence as repeats, they come back as conflicts (for an alarm)."""
    store.store([ev("door-a", 1), ev("door-a", 2)])
    reborn = Received("door-a", 2, "another-id", "sekisho/site/door/door-a/event", "2026-12-05T10:00:00.000Z", "{}")
    r = store.store([ev("door-a", 1), reborn, ev("door-a", 3)])
    assert r.new == 1 and r.conflicts == (reborn,)
    assert [e.id for e in store.events(T0, T0 + dt.timedelta(days=1), node="door-a")] == \
        ["door-a-1", "door-a-2", "door-a-3"]
    # Within one batch too: the first of two ids for one seq is stored, the second conflicts.
    twin = Received("door-a", 4, "twin", "sekisho/site/door/door-a/event", "2026-12-05T10:00:00.000Z", "{}")
    r = store.store([ev("door-a", 4), twin])
    assert r.new == 1 and r.conflicts == (twin,)


def test_a_skip_opens_a_gap_that_late_events_close(store: RecorderStore):
    store.store([ev("door-a", s) for s in (1, 2, 3)])
    r = store.store([ev("door-a", 6), ev("door-a", 9)])
    assert r.opened == (Gap("door-a", 4, 5), Gap("door-a", 7, 8))
    assert store.gaps("door-a") == [Gap("door-a", 4, 5), Gap("door-a", 7, 8)]
    assert store.last_seq("door-a") == 9
    # 4 arrives late: the first gap shrinks, nothing closes yet.
    r = store.store([ev("door-a", 4)])
    assert (r.new, r.opened, r.closed) == (1, (), ())
    assert store.gaps("door-a") == [Gap("door-a", 5, 5), Gap("door-a", 7, 8)]
    # 5 and 8 with 10: the first gap closes, the second shrinks, 10 extends without a gap.
    r = store.store([ev("door-a", 8), ev("door-a", 5), ev("door-a", 10)])
    assert (r.new, r.opened, r.closed) == (3, (), (Gap("door-a", 5, 5),))
    assert store.gaps("door-a") == [Gap("door-a", 7, 7)]
    r = store.store([ev("door-a", 7)])
    assert r.closed == (Gap("door-a", 7, 7),)
    assert store.gaps("door-a") == [] and store.gaps() == []
    assert store.last_seq("door-a") == 10


def test_an_event_in_the_middle_of_a_gap_splits_it(store: RecorderStore):
    store.store([ev("door-a", 1), ev("door-a", 10)])
    assert store.gaps("door-a") == [Gap("door-a", 2, 9)]
    store.store([ev("door-a", 5)])
    assert store.gaps("door-a") == [Gap("door-a", 2, 4), Gap("door-a", 6, 9)]


def test_gaps_are_per_node(store: RecorderStore):
    r = store.store([ev("door-a", 1), ev("door-a", 3), ev("desk-01", 1), ev("desk-01", 2)])
    assert r.opened == (Gap("door-a", 2, 2),)
    assert store.gaps("desk-01") == [] and store.gaps() == [Gap("door-a", 2, 2)]


def test_the_first_event_of_a_node_is_its_baseline(store: RecorderStore):
    """A recorder that first hears of a node at seq 5000 has not missed 1..4999: it was not there."""
    r = store.store([ev("door-a", 5000), ev("door-a", 5002)])
    assert r.opened == (Gap("door-a", 5001, 5001),)
    # An older event of the node is stored, and opens or closes nothing.
    r = store.store([ev("door-a", 4999)])
    assert (r.new, r.opened, r.closed) == (1, (), ())
    assert store.gaps("door-a") == [Gap("door-a", 5001, 5001)] and store.last_seq("door-a") == 5002


def test_gaps_and_last_seq_survive_a_reopen(where, tmp_path: Path):
    with open_store(where, tmp_path) as s:
        s.store([ev("door-a", 1), ev("door-a", 4)])
    with open_store(where, tmp_path) as s:
        assert s.schema_version() == len(MIGRATIONS)
        assert s.last_seq("door-a") == 4
        assert s.gaps("door-a") == [Gap("door-a", 2, 3)]
        assert s.store([ev("door-a", 2), ev("door-a", 3)]).closed == (Gap("door-a", 2, 3),)
        assert s.count() == 4


def test_a_newer_schema_is_refused(where, tmp_path: Path):
    with open_store(where, tmp_path) as s:
        s.conn.execute("UPDATE schema_version SET version = 99")  # type: ignore[attr-defined] # both autocommit
    with pytest.raises(StoreError, match="schema 99 is newer"):
        open_store(where, tmp_path)


def test_events_by_time_and_node(store: RecorderStore):
    t = [T0 + dt.timedelta(minutes=m) for m in range(4)]
    store.store([ev("door-a", 1, ts=t[0]), ev("door-a", 2, ts=t[2]), ev("desk-01", 1, ts=t[1]),
                 ev("desk-01", 2, ts=t[3])])
    got = store.events(t[1], t[3])
    assert [(e.node, e.seq) for e in got] == [("desk-01", 1), ("door-a", 2)]
    assert [(e.node, e.seq) for e in store.events(t[0], t[3] + dt.timedelta(1), node="desk-01")] == \
        [("desk-01", 1), ("desk-01", 2)]
    # The payload comes back as it came, and the row equals what was stored.
    assert got[1] == ev("door-a", 2, ts=t[2])
    # A ts in another zone is stored as UTC, so it sorts with the rest.
    late = Received("door-a", 3, "x", "sekisho/site/door/door-a/event", "2026-12-05T18:10:00+09:00", "{}")
    store.store([late])
    assert store.events(t[3], t[3] + dt.timedelta(minutes=20), node="door-a")[0].ts == "2026-12-05T09:10:00.000Z"


@pytest.mark.parametrize(("bad", "message"), [
    (Received("door-a", 2, "i", "t", "2026-12-05T09:00:00Z", "{not json"), "payload of door-a/2 is not JSON"),
    (Received("door-a", 2, "i", "t", "2026-12-05T09:00:00Z", "[1, 2]"), "payload of door-a/2 is not a JSON object"),
    (Received("door-a", 0, "i", "t", "2026-12-05T09:00:00Z", "{}"), "seq 0 of node door-a is not a positive"),
    (Received("door-a", -3, "i", "t", "2026-12-05T09:00:00Z", "{}"), "seq -3 of node door-a is not a positive"),
    (Received("door-a", "7", "i", "t", "2026-12-05T09:00:00Z", "{}"), "seq '7' of node door-a is not"),  # type: ignore[arg-type]
    (Received("door-a", True, "i", "t", "2026-12-05T09:00:00Z", "{}"), "seq True of node door-a is not"),
    (Received("door/a", 2, "i", "t", "2026-12-05T09:00:00Z", "{}"), "node 'door/a' is not a topic name"),
    (Received("Door A", 2, "i", "t", "2026-12-05T09:00:00Z", "{}"), "node 'Door A' is not a topic name"),
    (Received("door-a", 2, "", "t", "2026-12-05T09:00:00Z", "{}"), "event door-a/2 has no id"),
    (Received("door-a", 2, "i", "t", "yesterday", "{}"), "ts 'yesterday' of door-a/2 is not an RFC 3339"),
    (Received("door-a", 2, "i", "t", "2026-12-05T09:00:00", "{}"), "ts '2026-12-05T09:00:00' of door-a/2 is not"),
    (Received("door-a", 2, "i\x00", "t", "2026-12-05T09:00:00Z", "{}"), "event door-a/2 holds a NUL character"),
    (Received("door-a", 2, "i", "t", "2026-12-05T09:00:00Z", '{"subject": "3f2c\\u0000", "result": "granted"}'),
     "event door-a/2 holds a NUL character"),
])
def test_a_bad_event_is_rejected_and_the_rest_stored(store: RecorderStore, bad: Received, message: str):
    r = store.store([ev("door-a", 1), bad, ev("door-a", 3), ev("desk-01", 1)])
    assert r.new == 3
    assert len(r.rejected) == 1 and r.rejected[0].event is bad
    assert isinstance(r.rejected[0].error, ValueError) and message in str(r.rejected[0].error)
    # The bad event counts for nothing: seq 2 of door-a is still missing.
    assert store.gaps("door-a") == [Gap("door-a", 2, 2)]
    assert store.count() == 3


def test_a_batch_of_only_bad_events_writes_nothing(store: RecorderStore):
    r = store.store([Received("x/y", 1, "i", "t", "2026-12-05T09:00:00Z", "{}")])
    assert (r.new, len(r.rejected)) == (0, 1)
    assert store.count() == 0 and store.last_seq("x/y") is None


NODES, PER_NODE = 20, 500  # 10,000 events


def test_two_writers_store_each_event_once_and_see_no_phantom_gaps(where, tmp_path: Path):
    """Two recorders, each with its own connection, store overlapping shuffles of the same 10,000
    events from 20 nodes, in batches that interleave: each event is stored once, and once both
    are done no gap is left and each node's last seq is its highest."""
    import random

    events = [ev(f"node-{n:02d}", s) for n in range(NODES) for s in range(1, PER_NODE + 1)]
    with open_store(where, tmp_path):
        pass  # the schema exists before the race, as a running site's would
    new: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(seed: int, share: float) -> None:
        rng = random.Random(seed)
        mine = [e for e in events if rng.random() < share]  # overlapping subsets; together they cover all
        # Roughly in order, as a node publishes, but shuffled within windows (shared subscription).
        mine = [e for i in range(0, len(mine), 700) for e in rng.sample(mine[i:i + 700], len(mine[i:i + 700]))]
        try:
            with open_store(where, tmp_path) as s:
                start.wait(timeout=30)
                for i in range(0, len(mine), 250):
                    new.append(s.store(mine[i:i + 250]).new)
                # What the other writer may have left out: everything, again.
                for i in range(0, len(events), 1000):
                    new.append(s.store(events[i:i + 1000]).new)
        except BaseException as exc:  # noqa: B036 - handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed, 0.7)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer did not finish in 300 s"
    assert not errors, errors
    assert sum(new) == len(events)
    with open_store(where, tmp_path) as s:
        assert s.count() == len(events)
        assert s.gaps() == []
        assert all(s.last_seq(f"node-{n:02d}") == PER_NODE for n in range(NODES))
        rows = s._query("SELECT node, seq, count(*) FROM events GROUP BY node, seq HAVING count(*) > 1", ())
        assert rows == []


def test_gap_bookkeeping_matches_a_model():
    """The pure parts against the obvious definition."""
    assert missing(3, [4, 5, 6]) == []
    assert missing(3, [5, 9]) == [(4, 4), (6, 8)]
    assert fill([(4, 4), (6, 8)], {4, 7}) == [(6, 6), (8, 8)]
    assert fill([(2, 9)], {2, 9}) == [(3, 8)]
    assert fill([(2, 2)], {2}) == []


def test_a_sqlite_store_is_opened_in_wal_mode(tmp_path: Path):
    open_store(None, tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def step(alarm_id: str, minute: int, **fields: object) -> AlarmStep:
    ts = (T0 + dt.timedelta(minutes=minute)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = {"kind": "forced", "source": "entrance", "severity": "critical", "subject": None, "raised": ts,
               "cleared": None, "acked_by": None, "acked_at": None, "ack_note": None, "ts": ts, **fields}
    return AlarmStep(alarm_id, alarm_id.split(".", 1)[0], payload, "2026-12-05T10:00:00.000Z")


def test_alarm_steps_are_stored_once_and_read_back_in_time_order(store: RecorderStore):
    steps = [step("door-a.entrance.forced", 0), step("desk-a.desk-01.lock-failed", 1),
             step("door-a.entrance.forced", 2, cleared="2026-12-05T09:02:00.000Z")]
    assert store.store_alarm_steps(steps) == 3
    # The retained message every new subscription delivers again, and a repeat within a batch.
    assert store.store_alarm_steps([steps[0], steps[2], steps[2]]) == 0
    assert store.store_alarm_steps([]) == 0
    everything = store.alarm_steps(T0, T0 + dt.timedelta(hours=1))
    assert everything == steps
    assert store.alarm_steps(T0, T0 + dt.timedelta(hours=1), node="door-a") == [steps[0], steps[2]]
    assert store.alarm_steps(T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=2)) == [steps[1]]


def test_an_alarm_step_in_another_zone_sorts_by_its_utc_time(store: RecorderStore):
    early = step("door-a.entrance.forced", 30)
    tokyo = AlarmStep("door-b.entrance.forced", "door-b", {**early.payload, "ts": "2026-12-05T18:10:00.000+09:00"},
                      early.received)
    store.store_alarm_steps([early, tokyo])
    assert store.alarm_steps(T0, T0 + dt.timedelta(hours=1)) == [tokyo, early]


@pytest.mark.parametrize(("alarm_id", "text", "message"), [
    ("door-a.entrance.forced", "{oops", "alarm door-a.entrance.forced: payload is not JSON"),
    ("door-a.entrance.forced", "[1]", "alarm door-a.entrance.forced: payload is not a JSON object"),
    ("door-a.entrance.forced", '{"kind": "forced"}', "alarm door-a.entrance.forced: ts None is not an RFC 3339"),
    ("door-a.entrance.forced", '{"ts": "2026-12-05T09:00:00"}', "ts '2026-12-05T09:00:00' is not an RFC 3339"),
    ("Door A.x.forced", '{"ts": "2026-12-05T09:00:00Z"}', "alarm id 'Door A.x.forced' does not start with a node"),
])
def test_a_bad_alarm_message_is_refused_with_its_reason(alarm_id: str, text: str, message: str):
    with pytest.raises(ValueError, match=message.replace("[", "\\[")):
        alarm_step(alarm_id, text, "2026-12-05T10:00:00.000Z")


def test_a_bad_alarm_step_writes_nothing_of_its_batch(store: RecorderStore):
    good = step("door-a.entrance.forced", 0)
    bad = AlarmStep("door-a.entrance.held-open", "door-a", {"kind": "held_open"}, good.received)
    with pytest.raises(ValueError, match="ts None is not an RFC 3339"):
        store.store_alarm_steps([good, bad])
    assert store.alarm_steps(T0, T0 + dt.timedelta(days=1)) == []
    parsed = alarm_step("door-a.entrance.forced", json.dumps(good.payload), good.received)
    assert parsed == good and store.store_alarm_steps([parsed]) == 1


def test_a_version_1_store_gains_the_alarm_steps_on_open(where, tmp_path: Path):
    with open_store(where, tmp_path) as s:
        s.store([ev("door-a", 1)])
        for table in ("alarm_steps", "whereabouts"):
            s.conn.execute(f"DROP TABLE {table}")  # type: ignore[attr-defined] # as v1 left it
        s.conn.execute("UPDATE schema_version SET version = 1")  # type: ignore[attr-defined]
    with open_store(where, tmp_path) as s:
        assert s.schema_version() == len(MIGRATIONS) and s.count() == 1
        assert s.store_alarm_steps([step("door-a.entrance.forced", 0)]) == 1
