"""Site-wide answers at the recorder node (issue 15, items 2 and 7): a recorder store filled,
through ``store()`` and ``store_alarm_steps()``, with contract-conformant payloads of two door
nodes of one area and a desk node, on SQLite and on a real PostgreSQL; the recorder node's own
store holds the people (names) and the audit log (changes). Muster across both door nodes, the
occupancy fold and its publisher, the month's report over every node (CSV and HTML, both
languages, sealed, ``--verify``), ``events``/``alarms``/``muster`` through the command, and each
mistake as one line."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
import subprocess
import zoneinfo
from pathlib import Path

import pytest

from conftest import wait_for
from harness import DEMO_CONFIG, DESK_CONFIG, RECORDER_CONFIG, SEKISHO, Site, node_site
from sekisho.daemon import report_csv, report_html
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.recorder_store import AlarmStep, Received, open_store
from sekisho.daemon.report import period
from sekisho.daemon.site_occupancy import EVER as EVER_UTC
from sekisho.daemon.site_occupancy import SiteOccupancy
from sekisho.daemon.site_report import gather_site
from sekisho.daemon.store import people as people_mod
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People
from sekisho.daemon.timestamps import rfc3339
from sekisho.daemon.topics import Topics
from sekisho.daemon.whereabouts import Whereabouts

TZ = "Asia/Tokyo"
ZONE = zoneinfo.ZoneInfo(TZ)
UNKNOWN = "ffffeeeeddddcccc"  # a pseudonym nobody at the recorder node matches

RECORDER_NODE = """\
[site]
id = "test"
node = "rec"
timezone = "Asia/Tokyo"
roles = ["recorder"]
occupancy_from = "{occupancy_from}"

[mqtt]
url = "{url}"

[recorder]
database = "{database}"

[areas.operator-room]
[areas.lobby]
"""


def utc(local: str) -> str:
    return rfc3339(dt.datetime.fromisoformat(local).replace(tzinfo=ZONE))


class Recorder:
    """A recorder node: its config, its own store (people, audit log) and the recorder's store."""

    def __init__(self, tmp_path: Path, where: str | None, monkeypatch: pytest.MonkeyPatch,
                 url: str = "mqtt://127.0.0.1:1", occupancy_from: str = "doors") -> None:
        self.dir = tmp_path
        self.data_dir = tmp_path / "data"
        self.database = Database(self.data_dir)
        self.key = SiteKey.load_or_create(self.data_dir / "site.key")
        self.people = People(self.database)
        self.store = open_store(where, self.data_dir)
        self.config = tmp_path / "sekisho.toml"
        self.config.write_text(RECORDER_NODE.format(database=where or "", url=url, occupancy_from=occupancy_from))
        self.seqs: dict[str, itertools.count] = {}
        self.now = "2026-10-20T01:00:00.000Z"
        monkeypatch.setattr(people_mod, "utc_now", lambda: self.now)

    def subject(self, person: str | None) -> str | None:
        return None if person is None else UNKNOWN if person == "?" else self.key.pseudonym(person)

    def event(self, node: str, topic: str, local: str, payload: dict) -> Received:
        seq = next(self.seqs.setdefault(node, itertools.count(1)))
        ts = utc(local)
        eid = f"{node}-{seq}"
        text = json.dumps({"id": eid, "seq": seq, "node": node, "ts": ts, **payload}, ensure_ascii=False)
        return Received(node, seq, eid, f"sekisho/v1/test/{topic}", ts, text)

    def door(self, node: str, local: str, person: str | None, door: str, direction: str, area: str | None,
             result: str = "granted", reason: str = "card") -> Received:
        return self.event(node, f"door/{door}/event", local, {
            "kind": "access", "door": door, "reader": f"{door}-{direction}", "direction": direction,
            "result": result, "reason": reason, "rule": "level:staff", "subject": self.subject(person),
            "area": area if result == "granted" else None})

    def desk(self, node: str, local: str, kind: str, reason: str, person: str | None, desk: str = "desk-01",
             area: str = "operator-room") -> Received:
        return self.event(node, f"desk/{desk}/event", local, {
            "desk": desk, "area": area, "kind": kind, "subject": self.subject(person), "reason": reason,
            "rule": "desk.x", "latency_ms": None})

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SEKISHO, *args, "--config", str(self.config), "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request):
    return None if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()


@pytest.fixture
def rec(tmp_path, where, monkeypatch):
    r = Recorder(tmp_path, where, monkeypatch)
    yield r
    r.store.close()


def fill(r: Recorder) -> None:
    """November at a site with one area (operator-room) whose doors are on two nodes: door-a's
    entrance (in: operator-room, out: lobby) and door-b's back door (in: operator-room, out:
    outside), and a desk node. door-b's events reach the recorder first, door-a's later (a node
    that was offline): the answers must not depend on it."""
    r.people.add_person("u1042", "山田 花子", "cli:officer")
    r.people.add_card("u1042", r.key.card_hash(bytes.fromhex("04a1b2c3d4e5f6")), "cli:officer")
    r.now = utc("2026-11-10T12:00")  # enrolment at the recorder node, in the month
    r.people.add_person("u2001", "Taro <b>Suzuki</b> & co", "cli:officer")
    r.people.revoke_card(r.key.card_hash(bytes.fromhex("04a1b2c3d4e5f6"))[:12], "cli:officer")
    door_a = [r.door("door-a", "2026-10-30T19:00", "u2001", "entrance", "out", "lobby"),  # October: the way out
              r.door("door-a", "2026-11-02T09:00", "u1042", "entrance", "in", "operator-room"),
              r.door("door-a", "2026-11-02T11:00", "?", "entrance", "in", "operator-room"),
              r.door("door-a", "2026-12-01T00:30", "u2001", "entrance", "in", "operator-room")]  # December
    door_b = [r.door("door-b", "2026-11-02T10:00", "u2001", "back", "in", "operator-room"),
              r.door("door-b", "2026-11-02T12:00", "u2001", "back", "in", None, "denied", "no_access"),
              r.door("door-b", "2026-11-02T18:00", "u1042", "back", "out", None),
              r.door("door-b", "2026-11-02T18:05", None, "back", "out", None, reason="exit_button")]
    desk = [r.desk("desk-a", "2026-11-02T10:05", "card_inserted", "card", "u2001"),
            r.desk("desk-a", "2026-11-02T17:00", "card_removed", "removed", "u2001"),
            r.desk("desk-a", "2026-11-02T17:00:01", "lock_failed", "unconfirmed", "u2001")]
    device = {"vid": "0781", "pid": "5567", "class": "00", "interfaces": ["08:06:50"], "name": "Cruzer",
              "serial": "4C53", "port": "1-2"}
    supervisor = f"supervisor:{r.subject('u1042')}"
    exc = {"id": "x1", "match": "0781:5567:4C53", "minutes": 10, "until": utc("2026-11-05T10:12"),
           "actor": supervisor, "hash": "h", "interfaces": "rules"}
    usb = [r.event("desk-a", "usb/desk-a/event", "2026-11-05T10:00", {"action": "allowed", "device": device,
                                                                        "rule": "3", "reason": ""}),
           r.event("desk-a", "usb/desk-a/event", "2026-11-05T10:01", {"action": "blocked", "device": device,
                                                                        "rule": "IMPLICIT", "reason": ""}),
           r.event("desk-a", "usb/desk-a/event", "2026-11-05T10:02", {
               "action": "exception_granted", "device": device, "rule": "EXCEPTION",
               "reason": f"allowed for 10 min by {supervisor}", "exception": exc})]
    assert r.store.store(usb).new == 3
    assert r.store.store(door_b).new == 4
    assert r.store.store(desk).new == 3
    assert r.store.store(door_a).new == 4
    steps = [{"raised": utc("2026-11-03T08:00"), "cleared": None, "acked_by": None, "acked_at": None,
              "ts": utc("2026-11-03T08:00")},
             {"raised": utc("2026-11-03T08:00"), "cleared": utc("2026-11-03T08:01"), "acked_by": None,
              "acked_at": None, "ts": utc("2026-11-03T08:01")},
             {"raised": utc("2026-11-03T08:00"), "cleared": utc("2026-11-03T08:01"), "acked_by": "key:officer-1",
              "acked_at": utc("2026-11-03T08:30"), "ack_note": "checked the back door", "ts": utc("2026-11-03T08:30")}]
    common = {"kind": "forced", "source": "back", "severity": "critical", "subject": None, "ack_note": None}
    assert r.store.store_alarm_steps([AlarmStep("door-b.back.forced", "door-b", {**common, **s}, s["ts"])
                                      for s in steps]) == 3
    r.store.store_alarm_steps([AlarmStep("desk-a.desk-01.lock-failed", "desk-a", {
        "kind": "lock_failed", "source": "desk-01", "severity": "critical", "subject": r.subject("u2001"),
        "raised": utc("2026-11-02T17:00:01"), "cleared": utc("2026-11-02T17:00:01"), "acked_by": None,
        "acked_at": None, "ack_note": None, "ts": utc("2026-11-02T17:00:01")}, utc("2026-11-02T17:00:02"))])


def november(r: Recorder, area: str = ""):
    from sekisho.daemon import config as config_mod
    cfg = config_mod.load(str(r.config))
    return gather_site(r.store, r.database, r.key, cfg, period(month="2026-11", timezone=TZ), area=area,
                       now=dt.datetime(2026, 12, 4, 9, 0, tzinfo=ZONE))


# ----------------------------------------------------------------------------- occupancy
def test_muster_across_two_door_nodes_of_one_area(rec):
    fill(rec)
    assert [e.node for e in rec.store.events(*EVER_UTC, kind="desk")] == ["desk-a"] * 3
    assert len(rec.store.events(*EVER_UTC, kind="door")) == 8
    with pytest.raises(ValueError, match="is not a topic word"):
        rec.store.events(*EVER_UTC, kind="%")
    where = rec.store.whereabouts()  # the table the batches keep
    # u1042 came in through door-a and left through door-b: out, though door-a alone would
    # still count them in. u2001 entered through door-b, then (December) door-a.
    assert set(where.inside("operator-room")) == {rec.subject("u2001"), UNKNOWN}
    assert where.inside("operator-room")[rec.subject("u2001")].node == "door-a"
    r = rec.cli("muster", "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["area"], x["person_id"], x["name"], x["node"]) for x in rows] == [
        ("operator-room", "u2001", "Taro <b>Suzuki</b> & co", "door-a"),
        ("operator-room", UNKNOWN, UNKNOWN, "door-a")]  # nobody here matches it: the pseudonym
    assert rows[0]["since"] == "2026-12-01 00:30"
    text = rec.cli("muster", "--area", "lobby").stdout
    assert text == "lobby: 0 inside\n"
    local = rec.cli("muster", "--local")  # the recorder node's own doors: none
    assert local.returncode == 0 and "operator-room: 0 inside" in local.stdout


def test_muster_and_the_reports_area_check_read_the_whereabouts_not_the_events(rec):
    """What keeps muster quick on years of records: it reads the table the batches keep. With
    the door events gone from the store (as nothing but this test does), it still answers."""
    fill(rec)
    rec.store.store([rec.door("door-b", "2026-12-02T09:00", "u1042", "back", "in", "store-room")])  # not in config
    before = rec.cli("muster", "--csv")
    assert before.returncode == 0 and before.stdout.count("operator-room") == 2, before.stderr
    assert before.stdout.count("store-room") == 1
    rec.store._query("DELETE FROM events RETURNING 1" if hasattr(rec.store, "url") else "DELETE FROM events", ())
    assert rec.store.count() == 0
    assert rec.cli("muster", "--csv").stdout == before.stdout
    report = rec.cli("report", "--month", "2026-11", "--area", "store-room", "--format", "csv")
    assert report.returncode == 0, report.stderr  # the area is known from the whereabouts alone
    assert rec.cli("report", "--month", "2026-11", "--area", "attic", "--format", "csv").returncode == 65


def test_the_fold_does_not_depend_on_arrival_order():
    r = Recorder.__new__(Recorder)
    r.seqs, r.key = {}, SiteKey(b"k" * 32)
    a = [r.door("door-a", "2026-11-02T09:00", "p1", "entrance", "in", "operator-room"),
         r.door("door-a", "2026-11-02T09:30", "p2", "entrance", "in", "operator-room")]
    b = [r.door("door-b", "2026-11-02T10:00", "p1", "back", "out", None),
         r.door("door-b", "2026-11-02T10:01", "p2", "back", "out", None),
         r.door("door-b", "2026-11-02T10:02", "p2", "back", "in", "store-room")]
    old = r.door("door-c", "2026-11-02T10:05", "p1", "side", "in", "operator-room")
    del_area = json.loads(old.payload)
    del del_area["area"]  # an older node: no area, placed nowhere
    older = Received(old.node, old.seq, old.id, old.topic, old.ts, json.dumps(del_area))
    results = []
    for events in (a + b + [older], b + a + [older], list(reversed(a + b)) + [older]):
        w = Whereabouts()
        w.fold(events)
        w.fold(events)  # a redelivery changes nothing
        results.append({s: (p.area, p.node) for s, p in w.last.items()})
    assert results[0] == results[1] == results[2] == {r.subject("p1"): ("", "door-b"),
                                                      r.subject("p2"): ("store-room", "door-b")}


def test_the_recorder_publishes_each_area_whole_and_then_what_a_batch_changed(rec, where, tmp_path):
    fill(rec)
    sent: list = []
    loop = asyncio.new_event_loop()

    def run_until(predicate) -> None:
        async def until() -> None:
            while not predicate():
                await asyncio.sleep(0.01)
        loop.run_until_complete(asyncio.wait_for(until(), 10))

    try:
        occupancy = SiteOccupancy(["lobby", "operator-room"], Topics("test"), loop, sent.append, retry_s=0.05)
        early = [rec.door("door-b", "2026-12-01T09:00", "?", "back", "out", None)]
        rec.store.store(early)
        occupancy.stored(early)  # a batch before the store was folded: it waits, nothing partial goes out
        behind: list = []
        loop.call_soon_threadsafe(behind.append, 1)
        run_until(lambda: behind)
        assert sent == []
        attempts = []

        def opener():
            attempts.append(1)
            if len(attempts) < 3:
                raise OSError("the database is down")  # tried again, the loop never waits for it
            return open_store(where, rec.data_dir)
        occupancy.start(opener)
        run_until(lambda: len(sent) == 2)
        assert {(m.topic, m.payload["count"]) for m in sent} == {
            ("sekisho/v1/test/area/lobby/occupancy", 0), ("sekisho/v1/test/area/operator-room/occupancy", 1)}
        assert len(attempts) == 3
        sent.clear()
        batch = [rec.door("door-b", "2026-12-01T09:01", "u1042", "back", "in", "operator-room")]
        rec.store.store(batch)
        occupancy.stored(batch)  # as from the recorder's writing thread
        run_until(lambda: sent)
        assert [(m.topic, m.payload) for m in sent] == [("sekisho/v1/test/area/operator-room/occupancy", {
            "count": 2, "subjects": sorted([rec.subject("u1042"), rec.subject("u2001")])})]
        occupancy.stored(batch)  # the same batch again (a redelivery): nothing changed, nothing sent
        occupancy.stored([])
        behind.clear()
        loop.call_soon_threadsafe(behind.append, 1)  # runs after the folds queued before it (FIFO)
        run_until(lambda: behind)
        assert len(sent) == 1
    finally:
        occupancy.stop()
        loop.close()


# ----------------------------------------------------------------------------- the report
def test_the_sites_month_over_every_node(rec):
    fill(rec)
    r = november(rec)
    assert r.node == "rec (recorder; nodes: desk-a, door-a, door-b)"
    moves = [(m.area, m.entered, m.at.strftime("%d %H:%M"), m.door, m.person_id, m.name) for m in r.movements
             if m.area == "operator-room"]
    assert moves == [
        ("operator-room", True, "02 09:00", "entrance", "u1042", "山田 花子"),
        ("operator-room", True, "02 10:00", "back", "u2001", "Taro <b>Suzuki</b> & co"),
        ("operator-room", True, "02 11:00", "entrance", UNKNOWN, UNKNOWN),
        ("operator-room", False, "02 18:00", "back", "u1042", "山田 花子"),
        ("operator-room", False, "02 18:05", "back", "", "")]  # the exit button: no person
    # Where the entrance leads out (lobby) only an October pass said: the layout is learned
    # from every door event up to the period's end, the movements are the period's.
    lobby = [(m.area, m.entered, m.at.strftime("%d %H:%M"), m.person_id) for m in r.movements if m.area == "lobby"]
    assert lobby == [("lobby", False, "02 09:00", "u1042"), ("lobby", False, "02 11:00", UNKNOWN)]
    assert [(c.door, c.direction, c.result, c.reason, c.count) for c in r.doors] == [
        ("back", "in", "denied", "no_access", 1), ("back", "in", "granted", "card", 1),
        ("back", "out", "granted", "card", 1), ("back", "out", "granted", "exit_button", 1),
        ("entrance", "in", "granted", "card", 2)]
    assert [(s.desk, s.area, s.name, s.start.strftime("%H:%M"), s.end.strftime("%H:%M"), s.ended)
            for s in r.desk_sessions] == [("desk-01", "operator-room", "Taro <b>Suzuki</b> & co", "10:05", "17:00",
                                           "removed")]
    assert [(d.kind, d.reason, d.person_id) for d in r.desk_events] == [("lock_failed", "unconfirmed", "u2001")]
    assert r.usb_allowed == 1
    assert [(u.action, u.approved_by, u.approver_id, u.approver_name, u.exception) for u in r.usb] == [
        ("blocked", "", "", "", ""),
        ("exception_granted", f"supervisor:{rec.subject('u1042')}", "u1042", "山田 花子", "x1 until 2026-11-05 10:12")]
    forced = [a for a in r.alarms if a.id == "door-b.back.forced"][0]
    assert (forced.severity, forced.raised.strftime("%d %H:%M"), forced.cleared.strftime("%H:%M"),
            forced.acked_by, forced.acked_at.strftime("%H:%M"), forced.note, forced.closed.strftime("%H:%M")) == (
        "critical", "03 08:00", "08:01", "key:officer-1", "08:30", "checked the back door", "08:30")
    lock = [a for a in r.alarms if a.kind == "lock_failed"][0]
    assert lock.acked_by == "" and lock.closed is None  # an incident nobody has seen yet
    assert [(c.action, c.person_id, c.name) for c in r.changes] == [("person.add", "u2001", "Taro <b>Suzuki</b> & co"),
                                                                     ("card.revoke", "", "")]
    assert "04a1b2c3d4e5f6" not in r.changes[1].detail
    assert r.integrity.ok and "site_wide" in r.notes and "one_node" not in r.notes and "gaps_open" not in r.notes
    # The area: desks and doors of it, the entries counted into it.
    assert dict(november(rec, "operator-room").entries_per_day())[dt.date(2026, 11, 2)] == 3
    assert november(rec, "lobby").desk_sessions == ()


def test_a_gap_is_stated(rec):
    fill(rec)
    rec.seqs["door-a"] = itertools.count(10)  # door-a's 4..9 never came
    rec.store.store([rec.door("door-a", "2026-11-20T09:00", "u1042", "entrance", "in", "operator-room")])
    assert "gaps_open" in november(rec).notes


@pytest.mark.parametrize("lang, heading", [("en", "Entries and exits by area and day"), ("ja", "エリア別・日別の入退室")])
def test_the_page_and_the_csv_are_sealed_and_verify(rec, lang, heading):
    fill(rec)
    out = rec.dir / f"site-{lang}.html"
    r = rec.cli("report", "--month", "2026-11", "--lang", lang, "-o", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert heading in page and "山田 花子" in page and "Taro &lt;b&gt;Suzuki&lt;/b&gt; &amp; co" in page
    assert "desk-a, door-a, door-b" in page and UNKNOWN in page and "checked the back door" in page
    verified = rec.cli("report", "--verify", str(out))
    assert verified.returncode == 0 and "intact" in verified.stdout
    out.write_text(page.replace("山田 花子", "山田 太郎"))
    assert rec.cli("report", "--verify", str(out)).returncode == 65
    csv_out = rec.dir / "site.csv"
    assert rec.cli("report", "--month", "2026-11", "-o", str(csv_out)).returncode == 0
    assert rec.cli("report", "--verify", str(csv_out)).returncode == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text(encoding="utf-8-sig"))))
    presence = [(x["name"], x["door"], x["direction"]) for x in rows if x["section"] == "presence"]
    assert ("山田 花子", "entrance", "entered") in presence and ("山田 花子", "back", "left") in presence
    assert {x["ref"] for x in rows if x["section"] == "alarm"} == {"door-b.back.forced", "desk-a.desk-01.lock-failed"}


def test_the_renderers_take_the_sites_report_unchanged(rec):
    fill(rec)
    r = november(rec)
    text = report_csv.render(r, None)
    assert report_csv.check(text)[0] == report_csv.check(text)[1]
    for lang in ("en", "ja"):
        page = report_html.render(r, lang)
        assert report_html.check(page)[0] == report_html.check(page)[1]
    assert "recorder" in report_html.render(r, "en") and "レコーダー" in report_html.render(r, "ja")


# ----------------------------------------------------------------------------- printing
def fill_print(r: Recorder) -> None:
    """A print node's events (issue 19, docs/mqtt.md ``print/<node>/event``) around November:
    a job held in October and released in November, a ``held`` said twice for one job (the
    driver reconnected), a refused card, a release by a signed command and one by a card, an
    expiry of a job whose CUPS user is no person, a cancel at the command line, one withdrawn
    at CUPS, one of a subject nobody at the recorder matches, and one held in December."""
    def ev(local: str, action: str, job: int, person: str | None, **more) -> Received:
        return r.event("print-1", "print/print-1/event", local, {
            "action": action, "job": job, "subject": r.subject(person), "user_known": person is not None,
            "pages": more.pop("pages", None), "document": {"hash": "9d1e" * 8}, "submitted": utc(local), **more})
    card = {"by": "card", "actor": f"supervisor:{r.subject('u2001')}"}
    assert r.store.store([
        ev("2026-10-31T23:50", "held", 1, "u1042"),
        ev("2026-11-01T00:10", "released", 1, "u1042", **card),
        ev("2026-11-01T00:12", "printed", 1, "u1042", pages=3),
        ev("2026-11-02T09:00", "held", 2, "u1042", pages=2),
        ev("2026-11-02T09:01", "held", 2, "u1042", pages=2),
        ev("2026-11-02T09:05", "release_refused", 2, "u1042", by="card", actor=f"supervisor:{r.subject('u1042')}",
           reason="not_supervisor"),
        ev("2026-11-02T09:06", "released", 2, "u1042", by="command", actor="key:officer-1"),
        ev("2026-11-02T09:08", "printed", 2, "u1042", pages=2),
        ev("2026-11-02T10:00", "held", 3, None),
        ev("2026-11-02T11:00", "expired", 3, None, by="expiry"),
        ev("2026-11-03T10:00", "held", 4, "u2001"),
        ev("2026-11-03T10:01", "cancelled", 4, "u2001", by="cli", actor="cli:root"),
        ev("2026-11-03T11:00", "held", 5, "u2001"),
        ev("2026-11-03T11:02", "left", 5, "u2001", by="owner"),
        ev("2026-11-04T12:00", "held", 6, "?"),
        ev("2026-12-01T00:30", "held", 7, "u1042")]).new == 16


def test_print_jobs_per_operator_and_per_supervisor(rec):
    fill(rec)
    fill_print(rec)
    r = november(rec)
    assert [(o.person_id, o.name, o.held, o.released, o.cancelled, o.expired, o.withdrawn, o.printed, o.pages)
            for o in r.print_operators] == [
        ("u2001", "Taro <b>Suzuki</b> & co", 2, 0, 1, 0, 1, 0, 0),
        (UNKNOWN, UNKNOWN, 1, 0, 0, 0, 0, 0, 0),
        ("u1042", "山田 花子", 1, 2, 0, 0, 0, 2, 5),  # job 1 held in October, job 2 held twice: once
        ("", "", 1, 0, 0, 1, 0, 0, 0)]  # a CUPS user who is no person, last
    assert [(s.actor, s.person_id, s.name, s.released, s.cancelled) for s in r.print_supervisors] == [
        ("cli:root", "", "", 0, 1), ("key:officer-1", "", "", 1, 0),
        (f"supervisor:{rec.subject('u2001')}", "u2001", "Taro <b>Suzuki</b> & co", 1, 0)]
    assert "print_fates" in r.notes
    # The area does not narrow printing, and says so.
    assert november(rec, "operator-room").print_operators == r.print_operators
    assert "site_area" in november(rec, "operator-room").notes
    # A day without print events has an empty section, not a missing one.
    quiet = gather_site(rec.store, rec.database, rec.key, __import__("sekisho.daemon.config", fromlist=["load"]).load(
        str(rec.config)), period(day="2026-11-20", timezone=TZ), now=dt.datetime(2026, 12, 4, 9, 0, tzinfo=ZONE))
    assert quiet.print_operators == () and quiet.print_supervisors == ()
    # A print node's payload as it came, however odd (the recorder keeps what was sent): it is
    # counted where it makes sense and stops nothing.
    odd = rec.event("print-2", "print/print-2/event", "2026-11-21T09:00", {
        "action": "printed", "job": [1, {"a": 2}], "subject": {"x": 1}, "pages": "3", "actor": 5, "by": None})
    assert rec.store.store([odd]).new == 1
    day = gather_site(rec.store, rec.database, rec.key, __import__("sekisho.daemon.config", fromlist=["load"]).load(
        str(rec.config)), period(day="2026-11-21", timezone=TZ), now=dt.datetime(2026, 12, 4, 9, 0, tzinfo=ZONE))
    assert [(o.person_id, o.printed, o.pages) for o in day.print_operators] == [("", 1, 0)]
    assert day.print_supervisors == ()


@pytest.mark.parametrize("lang, operators, supervisors, withdrawn", [
    ("en", "Printing: jobs per operator", "Printing: jobs released or cancelled per supervisor", "Withdrawn at CUPS"),
    ("ja", "印刷：利用者別のジョブ", "印刷：承認者別の許可・取消", "利用者が取消")])
def test_printing_in_the_page_and_the_csv(rec, lang, operators, supervisors, withdrawn):
    fill(rec)
    fill_print(rec)
    out = rec.dir / f"print-{lang}.html"
    made = rec.cli("report", "--month", "2026-11", "--lang", lang, "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert rec.cli("report", "--verify", str(out)).returncode == 0
    page = out.read_text()
    assert operators in page and supervisors in page and withdrawn in page
    section = page.split(f"<h2>{operators}</h2>")[1].split("</section>")[0]
    assert section.count("<tr><td") == 4 + 3  # four operators, then three supervisors
    yamada = section.split("<tr><td>山田 花子</td>")[1].split("</tr>")[0]
    assert yamada == ('<td>u1042</td><td class="n">1</td><td class="n">2</td><td class="n">0</td><td class="n">0</td>'
                      '<td class="n">0</td><td class="n">2</td><td class="n">5</td>')
    assert "山田 花子" in section and "Taro &lt;b&gt;Suzuki&lt;/b&gt; &amp; co" in section and "key:officer-1" in section
    # The notes, in the page's language.
    assert ("pages printed are those the printer reported" if lang == "en" else "印刷枚数はプリンターが報告") in page
    csv_text = rec.cli("report", "--month", "2026-11", "--format", "csv", "--section", "print_operator").stdout
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    counts = {(x["person_id"], x["what"]): int(x["count"]) for x in rows if x["section"] == "print_operator"}
    assert counts[("u1042", "released")] == 2 and counts[("u1042", "pages_printed")] == 5
    assert counts[("", "expired")] == 1 and counts[("u2001", "withdrawn")] == 1
    assert {x["section"] for x in rows} == {"report", "print_operator", "digest"}  # the seal, last
    sup = list(csv.DictReader(io.StringIO(rec.cli("report", "--month", "2026-11", "--format", "csv", "--section",
                                                  "print_supervisor").stdout)))
    got = {(x["by"], x["person_id"], x["by_name"], x["what"]): int(x["count"]) for x in sup
           if x["section"] == "print_supervisor"}
    assert got[(f"supervisor:{rec.subject('u2001')}", "u2001", "Taro <b>Suzuki</b> & co", "released")] == 1
    assert got[("cli:root", "", "", "cancelled")] == 1 and len(got) == 6


def test_print_events_are_listed_with_their_action_and_how_it_came(rec):
    fill_print(rec)
    r = rec.cli("events", "--node", "print-1", "--since", "2026-11-01", "--until", "2026-12-01", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [e["result"] for e in listed][:3] == ["released", "printed", "held"]
    [refused] = [e for e in listed if e["result"] == "release_refused"]
    assert (refused["kind"], refused["reason"], refused["rule"]) == ("print", "not_supervisor", "card")


# ----------------------------------------------------------------------------- listings
def test_events_and_alarms_of_every_node(rec):
    fill(rec)
    r = rec.cli("events", "--since", "2026-11-01", "--until", "2026-12-01", "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["node"], x["kind"]) for x in rows] == [
        ("door-a", "door"), ("door-b", "door"), ("desk-a", "desk"), ("door-a", "door"), ("door-b", "door"),
        ("desk-a", "desk"), ("desk-a", "desk"), ("door-b", "door"), ("door-b", "door"), ("desk-a", "usb"),
        ("desk-a", "usb"), ("desk-a", "usb")]
    assert rows[-1]["result"] == "exception_granted"
    assert rows[0]["ts"] == "2026-11-02T09:00:00+09:00" and rows[0]["name"] == "山田 花子"
    assert rows[0]["area"] == "operator-room"
    mine = rec.cli("events", "--person", "u1042", "--json")
    assert [(e["node"], e["direction"]) for e in json.loads(mine.stdout)] == [("door-a", "in"), ("door-b", "out")]
    desk = rec.cli("events", "--door", "desk-01", "--node", "desk-a", "--json")
    assert [e["result"] for e in json.loads(desk.stdout)] == ["card_inserted", "card_removed", "lock_failed"]
    alarms = rec.cli("alarms", "--csv")
    got = [(x["id"], x["node"], x["state"], x["acked_by"]) for x in csv.DictReader(io.StringIO(alarms.stdout))]
    assert got == [("desk-a.desk-01.lock-failed", "desk-a", "cleared", ""),
                   ("door-b.back.forced", "door-b", "closed", "key:officer-1")]
    opened = rec.cli("alarms", "--open", "--json")
    assert [a["id"] for a in json.loads(opened.stdout)] == ["desk-a.desk-01.lock-failed"]
    assert rec.cli("alarms", "--local").stdout == "no alarms\n"  # the recorder node's own


@pytest.mark.parametrize("args, code, message", [
    (("muster", "--area", "nowhere"), 65, "no area 'nowhere' in the site's records (areas: lobby, operator-room)"),
    (("events", "--person", "nobody"), 65, "no person 'nobody' in the recorder node's people"),
    (("report", "--month", "2026-11", "--area", "nowhere", "--format", "csv"), 65, "no area 'nowhere'"),
])
def test_mistakes_are_one_line(rec, args, code, message):
    fill(rec)
    r = rec.cli(*args)
    assert r.returncode == code and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_recorder_that_stored_nothing_is_said(tmp_path, monkeypatch):
    r = Recorder(tmp_path, None, monkeypatch)
    r.store.close()
    (r.data_dir / "recorder.db").unlink()
    got = r.cli("events")
    assert got.returncode == 66 and "no recorder store in" in got.stderr and got.stderr.count("\n") == 1
    assert not (r.data_dir / "recorder.db").exists()
    assert r.cli("events", "--local").returncode == 0


def test_a_postgresql_that_cannot_be_reached_is_one_line_without_its_password(tmp_path, monkeypatch):
    r = Recorder(tmp_path, None, monkeypatch)
    r.store.close()
    r.config.write_text(r.config.read_text().replace(
        'database = ""', f'database = "postgresql://sekisho:secret-pw@/site?host={tmp_path}/no-socket"'))
    got = r.cli("muster")
    assert got.returncode == 74 and got.stderr.count("\n") == 1, got.stderr
    assert "cannot open the recorder's store" in got.stderr and "secret-pw" not in got.stderr


def test_node_is_only_for_a_recorder(site):
    site.enroll("u1", "04a1b2c3d4e5f6")
    r = site.cli("events", "--node", "door-a", check=False)
    assert r.returncode == 64 and "--node is for a recorder node" in r.stderr


# ----------------------------------------------------------------------------- the daemons
def test_with_occupancy_from_the_recorder_one_publisher_speaks_for_each_area(tmp_path, broker, subscribe,
                                                                             monkeypatch):
    """A door node told that the recorder speaks for occupancy publishes none, however many pass
    its doors; the recorder node (a real daemon) publishes each area from the whole store."""
    (tmp_path / "door").mkdir()
    door = Site(tmp_path / "door", broker)
    door.config.write_text(door.config.read_text().replace('timezone = "Asia/Tokyo"',
                                                           'timezone = "Asia/Tokyo"\noccupancy_from = "recorder"'))
    door.enroll("u1", "04a1b2c3d4e5f6")
    sub = subscribe()
    door.start()
    try:
        door.tap("04a1b2c3d4e5f6")
        door.tap("04a1b2c3d4e5f6", reader="entrance-out")
        events = wait_for(lambda: len(sub.events()) == 2 and sub.events(), what="both passes")
        assert [e["area"] for e in events] == ["operator-room", "lobby"]
        # The passes' own messages came after anything the start or the first pass queued.
        assert sub.on("/occupancy") == []
    finally:
        door.stop()
    (tmp_path / "rec").mkdir()
    node = Site(tmp_path / "rec", broker)
    rec = Recorder(tmp_path / "rec", None, monkeypatch, url=broker.url, occupancy_from="recorder")  # its config
    fill(rec)
    rec.store.close()
    node.start()
    try:
        got = wait_for(lambda: {m.topic.split("/")[-2]: m.json for m in sub.on("/occupancy")}
                       if len(sub.on("/occupancy")) >= 2 else None, what="the recorder's occupancy")
        assert got["operator-room"]["count"] == 2
        assert set(got["operator-room"]["subjects"]) == {rec.subject("u2001"), UNKNOWN}
        assert got["lobby"]["count"] == 0
    finally:
        assert node.stop() == 0


DOOR_B = DEMO_CONFIG.replace('doors = ["entrance"]', 'doors = ["back"]').replace('''[doors.entrance]
area_in = "operator-room"
area_out = "lobby"''', '''[doors.back]
area_in = "operator-room"''').replace('''[readers.entrance-in]
driver = "sim"
door = "entrance"''', '''[readers.back-in]
driver = "sim"
door = "back"''').replace('''[readers.entrance-out]
driver = "sim"
door = "entrance"''', '''[readers.back-out]
driver = "sim"
door = "back"''')
"""door-b: the operator room's back door, to the outside."""

DESK_C = DESK_CONFIG


def test_two_door_nodes_a_desk_and_the_recorder_as_daemons(tmp_path, broker, subscribe, logind):
    """One area, its doors on two nodes: the recorder (a real daemon on a real mosquitto) is the
    one voice of its occupancy, the desk node decides on it, and the recorder answers muster and
    the report for the site."""
    logind.add_session("c1")
    logind.patch_lock()
    SiteKey.load_or_create(tmp_path / "site.key")

    def node(name: str, config: str) -> Site:
        one_voice = config.replace('timezone = "Asia/Tokyo"', 'timezone = "Asia/Tokyo"\noccupancy_from = "recorder"')
        return node_site(tmp_path, broker, name, one_voice, tmp_path / "site.key")
    recorder = node("recorder", RECORDER_CONFIG)
    door_a, door_b, desk = node("door-a", DEMO_CONFIG), node("door-b", DOOR_B), node("desk-c", DESK_C)
    people = {"alice": ("04a1a1a1", "Alice Ito"), "bob": ("04b0b0b0", "Bob Sato")}
    made = [recorder, door_a, door_b, desk]
    try:
        key = SiteKey.load_or_create(tmp_path / "site.key")
        for s in made:  # in-process, as `sekisho person add` and `card add` would (a CLI run each is slow)
            database = Database(s.data_dir)
            enrolment = People(database)
            for pid, (uid, name) in people.items():
                enrolment.add_person(pid, name, "cli:test")  # the names the recorder node shows
                if s is not recorder:
                    enrolment.add_card(pid, key.card_hash(bytes.fromhex(uid)), "cli:test")
                    enrolment.grant_level(pid, "staff", "cli:test")
            database.close()
        sub = subscribe()
        for s in made:
            s.start()
        alice, bob = key.pseudonym("alice"), key.pseudonym("bob")

        def inside() -> list | None:
            got = sub.on("/area/operator-room/occupancy")
            return sorted(got[-1].json["subjects"]) if got else None

        # bob in through door-b, alice in through door-a, alice out through door-b: door-a alone
        # would say [alice] to the end, door-b alone never saw alice; the recorder sees both.
        door_b.tap("04b0b0b0", reader="back-in")
        wait_for(lambda: inside() == [bob], what="bob inside, said by the recorder")
        door_a.tap("04a1a1a1", reader="entrance-in")
        wait_for(lambda: inside() == sorted([alice, bob]), what="alice and bob inside, across both door nodes")
        door_b.tap("04a1a1a1", reader="back-out")
        wait_for(lambda: inside() == [bob], what="alice out through the other node's door")
        desk.tap("04b0b0b0", reader="desk-01")  # bob's entry was at door-b: the desk node knows it from the recorder
        desk_events = wait_for(lambda: [(m.json["kind"], m.json["reason"]) for m in sub.on("/desk/desk-01/event")
                                        if m.json["kind"] in ("card_inserted", "tailgating")], what="the desk's decision")
        assert desk_events[0] == ("card_inserted", "card")

        with open_store(None, recorder.data_dir) as store:
            wait_for(lambda: len(store.events(*EVER_UTC)) == len(sub.on("/event")), what="every event at the recorder")
        muster = list(csv.DictReader(io.StringIO(recorder.cli("muster", "--csv").stdout)))
        assert [(r["area"], r["person_id"], r["name"], r["door"], r["node"]) for r in muster] == [
            ("operator-room", "bob", "Bob Sato", "back", "door-b")]
        today = dt.datetime.now(ZONE).date().isoformat()
        out = tmp_path / "site.csv"
        recorder.cli("report", "--day", today, "-o", str(out))
        assert recorder.cli("report", "--verify", str(out)).returncode == 0
        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
        moves = [(r["name"], r["door"], r["direction"]) for r in rows if r["section"] == "presence"]
        # (The entrance was only ever passed inward: where its out side leads, lobby, no event said.)
        assert moves == [("Bob Sato", "back", "entered"), ("Alice Ito", "entrance", "entered"),
                         ("Alice Ito", "back", "left")]
        sessions = [(r["desk"], r["name"]) for r in rows if r["section"] == "desk_session"]
        assert sessions == [("desk-01", "Bob Sato")]
    finally:
        for s in made:
            s.kill()
