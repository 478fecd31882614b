"""The recorder store's whereabouts table (recorder_store.py, whereabouts.py), on SQLite and on a
real PostgreSQL: the table the batches keep equals the fold of every stored door event, for any
arrival order, batching and repeats; a store made before the table gets it filled on open; two
writers at once agree."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import wait_for
from sekisho.daemon.recorder_store import MIGRATIONS, Received, RecorderStore, open_store
from sekisho.daemon.site_occupancy import EVER
from sekisho.daemon.whereabouts import Whereabouts

T0 = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
# "door-b" sorts before "doora" byte-wise, after it in a natural-language collation: a tie on
# ts is broken as Python breaks it, whatever the PostgreSQL database's collation.
NODES = ("door-b", "doora", "door-c")
SUBJECTS = ("s1", "s2", "s3")


def door_event(node: str, seq: int, second: int, subject: str | None, area: str | None, *,
               result: str = "granted", with_area: bool = True, impostor: bool = False) -> Received:
    ts = (T0 + dt.timedelta(seconds=second)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    eid = f"{node}-{seq}" + ("-other" if impostor else "")
    payload: dict[str, object] = {"id": eid, "seq": seq, "node": node, "ts": ts, "kind": "access", "door": "front",
                                  "reader": "front-in", "direction": "in", "result": result, "subject": subject}
    if with_area:
        payload["area"] = area if result == "granted" else None
    return Received(node, seq, eid, f"sekisho/v1/test/door/front-{node}/event", ts, json.dumps(payload))


def desk_event(node: str, seq: int, subject: str) -> Received:
    ts = T0.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = {"id": f"{node}-{seq}", "seq": seq, "node": node, "ts": ts, "kind": "card", "desk": "d1",
               "area": "lab", "subject": subject}
    return Received(node, seq, f"{node}-{seq}", "sekisho/v1/test/desk/d1/event", ts, json.dumps(payload))


def table(store: RecorderStore) -> dict[str, tuple[str, str, str, int, str]]:
    return {s: (p.area, p.ts, p.node, p.seq, p.door) for s, p in store.whereabouts().last.items()}


def folded(events) -> dict[str, tuple[str, str, str, int, str]]:
    where = Whereabouts()
    where.fold(events)
    return {s: (p.area, p.ts, p.node, p.seq, p.door) for s, p in where.last.items()}


def stored_fold(store: RecorderStore) -> dict[str, tuple[str, str, str, int, str]]:
    return folded(store.events(*EVER, kind="door"))


@st.composite
def histories(draw):
    """Door events of a few nodes and people (ties on ts, denials, exit buttons, an older node
    without ``area``, a desk), then an arrival: a shuffle with repeats and impostors (a stored
    node and seq with another id: a conflict, not stored, so it places nobody), cut into
    batches. Returns the events and the batches."""
    events = []
    for node in NODES:
        for seq in range(1, draw(st.integers(0, 8)) + 1):
            events.append(door_event(
                node, seq, draw(st.integers(0, 5)), draw(st.sampled_from((*SUBJECTS, None))),
                draw(st.sampled_from(("lab", "hall", None))), result=draw(st.sampled_from(("granted", "denied"))),
                with_area=draw(st.booleans()) or seq > 1))
    events.append(desk_event("desk-a", 1, "s1"))  # a desk's event places nobody
    order = draw(st.permutations(range(len(events))))
    repeats = draw(st.lists(st.sampled_from(range(len(events))), max_size=6))
    arrival = [events[i] for i in list(order) + repeats]
    for e in draw(st.lists(st.sampled_from(events[:-1]), max_size=3)) if len(events) > 1 else ():
        impostor = door_event(e.node, e.seq, draw(st.integers(0, 5)), draw(st.sampled_from(SUBJECTS)), "attic",
                              impostor=True)
        arrival.insert(draw(st.integers(arrival.index(e) + 1, len(arrival))), impostor)  # after the real one
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=5)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True)]
    return events, batches


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request, tmp_path: Path):
    """A new, empty store's place each call, as ``open_store`` takes it (hypothesis runs many
    examples in one test)."""
    made = iter(range(10_000))
    if request.param == "sqlite":
        return lambda: (None, tmp_path / f"s{next(made)}")
    pg = request.getfixturevalue("postgres")
    return lambda: (natural_database(pg), tmp_path)


def natural_database(pg) -> str:
    """A database whose text sorts in English, punctuation ignored (ICU; glibc's en_US does the
    same), not byte-wise as the throw-away cluster's own: the store must break ties as Python
    does all the same."""
    import secrets

    import psycopg

    name = f"icu_{secrets.token_hex(6)}"  # the cluster is the session's: a name no other test took
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                     "ICU_LOCALE 'en-US-u-ka-shifted' LOCALE 'C'")
        with psycopg.connect(pg.url(name)) as db:
            assert db.execute("SELECT 'door-b' > 'doora'").fetchone() == (True,)  # as this test needs
    return pg.url(name)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_the_table_equals_the_fold_for_any_arrival(fresh, history):
    events, batches = history
    with open_store(*fresh()) as store:
        for batch in batches:
            store.store(batch)
        assert table(store) == folded(events) == stored_fold(store)


def test_a_late_or_repeated_pass_never_moves_anyone_back(fresh):
    with open_store(*fresh()) as store:
        store.store([door_event("doora", 2, 10, "s1", "hall")])
        store.store([door_event("doora", 1, 5, "s1", "lab"),  # late: older ts
                     door_event("door-b", 7, 10, "s1", "lab")])  # same ts, node sorts first: older
        assert table(store)["s1"][:3] == ("hall", "2026-12-05T09:00:10.000Z", "doora")
        store.store([door_event("doora", 2, 10, "s1", "hall")])  # a repeat
        store.store([door_event("doorb", 1, 10, "s1", None)])  # same ts, node sorts last: newer, out
        assert table(store)["s1"][0] == "" and store.whereabouts().areas() == []


def test_a_version_2_store_gets_its_whereabouts_on_open(fresh):
    rng = random.Random(7)
    events = [door_event(node, seq, rng.randrange(50), rng.choice(SUBJECTS), rng.choice(("lab", "hall", None)))
              for node in NODES for seq in range(1, 60)]
    where = fresh()
    with open_store(*where) as store:
        store.store(events[:120])
        store.conn.execute("DROP TABLE whereabouts")  # type: ignore[attr-defined] # as v2 left it
        store.conn.execute("UPDATE schema_version SET version = 2")  # type: ignore[attr-defined]
    with open_store(*where) as store:
        assert store.schema_version() == len(MIGRATIONS) == 3
        assert table(store) == folded(events[:120]) and table(store)
        store.store(events[120:])  # and the batches keep it from there
        assert table(store) == folded(events)


def test_two_writers_at_once_agree(postgres, tmp_path: Path):
    """Two recorders on one PostgreSQL store the same events in other orders and batches, at
    once: batches of different nodes run side by side and place the same people. No deadlock,
    and the table is the fold."""
    url = postgres.new_database()
    nodes = [f"node-{n:02d}" for n in range(12)]
    subjects = [f"s{n}" for n in range(8)]
    rng = random.Random(3)
    events = [door_event(node, seq, rng.randrange(600), rng.choice(subjects), rng.choice(("lab", "hall", None)))
              for node in nodes for seq in range(1, 200)]
    with open_store(url, tmp_path):
        pass  # the schema exists before the race, as a running site's would
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(seed: int, first: list[str]) -> None:
        # Each writer starts with other nodes than the other's (so that their batches do not
        # wait on each other's node locks), then does the rest: the same people, at once.
        r = random.Random(seed)
        mine = r.sample(events, len(events))
        mine.sort(key=lambda e: e.node not in first)
        try:
            with open_store(url, tmp_path) as store:
                start.wait(timeout=30)
                i = 0
                while i < len(mine):
                    size = r.randrange(10, 60)
                    store.store(mine[i:i + size])
                    i += size
        except BaseException as exc:  # noqa: B036 - handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed, half)) for seed, half in ((1, nodes[:6]), (2, nodes[6:]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer did not finish in 120 s"
    assert not errors, errors
    with open_store(url, tmp_path) as store:
        assert store.count() == len(events)
        assert table(store) == folded(events) == stored_fold(store)


@pytest.mark.parametrize(("committed", "waiting", "stays"), [
    (("door-c", 9, 10, "hall"), ("door-b", 2, 5, "attic"), "hall"),  # the other's newer pass stays
    (("door-c", 9, 5, "hall"), ("door-b", 2, 10, "attic"), "attic")])  # the waiting batch's newer one wins
def test_a_batch_that_waits_for_another_writers_row_weighs_what_it_committed(postgres, tmp_path: Path,
                                                                             committed, waiting, stays):
    """Another recorder's batch of another node holds a person's row (placed, not committed):
    a batch placing the same person waits for it, then keeps whichever pass is newer."""
    import psycopg

    url = postgres.new_database()
    with open_store(url, tmp_path) as store:
        store.store([door_event("doora", 1, 0, "s1", "lab")])
    node, seq, second, area = committed
    other = psycopg.connect(url)  # a transaction open, as a batch of the other recorder's
    try:
        ts = door_event(node, seq, second, "s1", area).ts
        other.execute("UPDATE whereabouts SET area = %s, ts = %s, node = %s, seq = %s WHERE subject = 's1'",
                      (area, ts, node, seq))
        stored: list[int] = []

        def batch() -> None:
            with open_store(url, tmp_path) as s:
                stored.append(s.store([door_event(waiting[0], waiting[1], waiting[2], "s1", waiting[3])]).new)
        writer = threading.Thread(target=batch)
        writer.start()
        with psycopg.connect(url, autocommit=True) as look:
            wait_for(lambda: look.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0] > 0,
                     what="the batch to wait for the other's row")
        assert stored == []
        other.commit()
        writer.join(timeout=30)
        assert stored == [1]
    finally:
        other.close()
    with open_store(url, tmp_path) as store:
        assert store.whereabouts().last["s1"].area == stays
