"""The data-protection audit report (issue 15, item 7): gathered from a store filled through the
store's own API at chosen local times (the month's and day's bounds in Asia/Tokyo, names, the
area filter, desks, USB approvals, alarms, changes), rendered as CSV and HTML (parsed back, no
script and nothing fetched, both languages, data escaped, no card UID), sealed (the digest
recomputes and a changed byte is found), and through the command on a store the real daemon
wrote (files 0600, a tampered audit chain stated as broken)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
import stat
import zoneinfo
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO, wait_for
from harness import DOOR_WITH_CONTACT
from sekisho.daemon import report_csv, report_html
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.report import Layout, gather, period
from sekisho.daemon.store import people as people_mod
from sekisho.daemon.store import record as record_mod
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People
from sekisho.daemon.store.record import AlarmChange, NewEvent, Record
from sekisho.daemon.timestamps import rfc3339

TZ = "Asia/Tokyo"
ZONE = zoneinfo.ZoneInfo(TZ)
LAYOUT = Layout({"entrance": ("operator-room", "lobby"), "back": ("store-room", "")},
                {"desk-01": "operator-room", "desk-09": "store-room"})
UID = bytes.fromhex("04a1b2c3d4e5f6")
UID_TEXTS = ("04a1b2c3d4e5f6", "04A1B2C3D4E5F6")


class Store:
    """A store in a temp dir whose clock a test sets: every row written gets the local time given."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.database = Database(tmp_path / "data")
        self.key = SiteKey.load_or_create(tmp_path / "data" / "site.key")
        self.record = Record(self.database, "door-a")
        self.people = People(self.database)
        self.now = "2026-11-01T00:00:00.000Z"
        monkeypatch.setattr(record_mod, "utc_now", lambda: self.now)
        monkeypatch.setattr(people_mod, "utc_now", lambda: self.now)

    def at(self, local: str) -> Store:
        self.now = rfc3339(dt.datetime.fromisoformat(local).replace(tzinfo=ZONE))
        return self

    def door(self, local: str, person: str | None, door: str = "entrance", direction: str = "in",
             result: str = "granted", reason: str = "card") -> None:
        self.at(local)
        reader = f"{door}-{direction}"
        self.record.record([NewEvent("door", f"door/{door}/event", {
            "kind": "access", "door": door, "reader": reader, "direction": direction, "result": result,
            "reason": reason, "rule": "level:staff", "subject": self.key.pseudonym(person) if person else None},
            {"door": door, "reader": reader, "direction": direction, "person_id": person, "result": result,
             "reason": reason, "rule": "level:staff", "card": self.key.card_hash(UID)[:16] if person else None})])

    def desk(self, local: str, kind: str, reason: str, person: str | None, desk: str = "desk-01") -> None:
        self.at(local)
        self.record.record([NewEvent("desk", f"desk/{desk}/event", {
            "desk": desk, "kind": kind, "subject": None, "reason": reason, "rule": "desk.x", "latency_ms": None},
            {"reader": desk, "person_id": person, "reason": reason, "rule": "desk.x", "result": kind})])

    def usb(self, local: str, payload: dict, actor: str = "daemon", **columns: object) -> None:
        self.at(local)
        self.record.record([NewEvent("usb", "usb/desk-a/event", payload, {"result": payload["action"],
                                                                           "reason": payload.get("reason", ""),
                                                                           "rule": payload.get("rule", ""),
                                                                           **columns}, actor=actor)])

    def alarm(self, local: str, action: str, actor: str = "daemon", closed: bool = False, **payload: object) -> None:
        self.at(local)
        self.record.record([AlarmChange("door-a.entrance.forced", "forced", "entrance", "critical",
                                        "alarm/door-a.entrance.forced", {"raised": None, **payload}, action=action,
                                        actor=actor, closed=closed)])


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    return Store(tmp_path, monkeypatch)


def enrol(s: Store) -> None:
    s.at("2026-10-20T10:00")
    s.people.add_person("u1042", "山田 花子", "cli:officer")
    s.people.add_person("u2001", "Taro <b>Suzuki</b> & co", "cli:officer")
    s.people.add_card("u1042", s.key.card_hash(UID), "cli:officer")
    s.people.grant_level("u1042", "staff", "cli:officer")


def month(s: Store, label: str = "2026-11", area: str = ""):
    return gather(s.database, "door-a", "test", period(month=label, timezone=TZ), LAYOUT, area=area,
                  pseudonym=s.key.pseudonym, now=dt.datetime(2026, 12, 4, 9, 0, tzinfo=ZONE))


# ----------------------------------------------------------------------------- the period
def test_a_local_month_and_day_are_bounded_in_the_sites_zone():
    p = period(month="2026-11", timezone=TZ)
    assert (p.since, p.until) == ("2026-10-31T15:00:00.000Z", "2026-11-30T15:00:00.000Z")
    assert (p.first, p.last, len(p.days)) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30), 30)
    d = period(day="2026-11-30", timezone=TZ)
    assert (d.since, d.until) == ("2026-11-29T15:00:00.000Z", "2026-11-30T15:00:00.000Z")
    assert period(month="2026-12", timezone=TZ).last == dt.date(2026, 12, 31)


@pytest.mark.parametrize("kwargs, message", [
    ({"month": "2026-13"}, "--month: '2026-13' is not a month like 2026-11"),
    ({"month": "2026-1"}, "--month: '2026-1' is not a month like 2026-11"),
    ({"day": "2026-11-31"}, "--day: '2026-11-31' is not a day like 2026-11-30"),
    ({}, "name one period"),
])
def test_a_period_that_is_none_is_a_data_error(kwargs, message):
    from sekisho.daemon.errors import DataError
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        period(timezone=TZ, **kwargs)


def test_events_at_2330_on_the_last_day_are_in_and_at_0030_the_next_day_out(store):
    enrol(store)
    store.door("2026-10-31T23:59:59", "u1042")          # October, local: out
    store.door("2026-11-01T00:00:00", "u1042", direction="out")  # the first instant: in
    store.door("2026-11-30T23:30:00", "u1042")          # the last day, local, 14:30 UTC: in
    store.door("2026-12-01T00:30:00", "u1042", direction="out")  # 15:30 UTC on Nov 30, but December here: out
    r = month(store)
    times = sorted({m.at.isoformat() for m in r.movements})
    assert times == ["2026-11-01T00:00:00+09:00", "2026-11-30T23:30:00+09:00"]
    day = gather(store.database, "door-a", "test", period(day="2026-11-30", timezone=TZ), LAYOUT)
    assert {m.at.isoformat() for m in day.movements} == {"2026-11-30T23:30:00+09:00"}
    assert dict(r.entries_per_day())[dt.date(2026, 11, 30)] == 1
    assert dict(r.entries_per_day())[dt.date(2026, 11, 1)] == 0  # that one left


# ----------------------------------------------------------------------------- the sections
def test_presence_doors_and_the_area_filter(store):
    enrol(store)
    store.door("2026-11-10T09:00", "u1042")                                      # lobby -> operator-room
    store.door("2026-11-10T09:05", "u2001", result="denied", reason="no_access")
    store.door("2026-11-10T09:06", None, result="denied", reason="unknown_card")
    store.door("2026-11-10T12:00", "u1042", direction="out")                     # operator-room -> lobby
    store.door("2026-11-10T13:00", "u2001", door="back")                         # into the store room
    r = month(store)
    rows = [(m.area, m.entered, m.person_id, m.name, m.at.strftime("%H:%M")) for m in r.movements]
    assert rows == [("lobby", False, "u1042", "山田 花子", "09:00"), ("lobby", True, "u1042", "山田 花子", "12:00"),
                    ("operator-room", True, "u1042", "山田 花子", "09:00"),
                    ("operator-room", False, "u1042", "山田 花子", "12:00"),
                    ("store-room", True, "u2001", "Taro <b>Suzuki</b> & co", "13:00")]
    counts = {(c.door, c.direction, c.result, c.reason): c.count for c in r.doors}
    assert counts == {("entrance", "in", "granted", "card"): 1, ("entrance", "in", "denied", "no_access"): 1,
                      ("entrance", "in", "denied", "unknown_card"): 1, ("entrance", "out", "granted", "card"): 1,
                      ("back", "in", "granted", "card"): 1}
    assert r.denials_by_reason() == [("no_access", 1), ("unknown_card", 1)]

    room = month(store, area="operator-room")
    assert {m.area for m in room.movements} == {"operator-room"}
    assert {c.door for c in room.doors} == {"entrance"}
    assert "node_wide" in room.notes and "node_wide" not in r.notes
    store_room = month(store, area="store-room")
    assert [(m.person_id, m.door) for m in store_room.movements] == [("u2001", "back")]


def test_desk_sessions_and_lock_failures(store):
    enrol(store)
    store.desk("2026-11-01T00:05", "session_locked", "locked", "u2001")
    store.desk("2026-11-01T00:10", "card_removed", "removed", "u2001")       # began in October
    store.desk("2026-11-02T09:00", "card_inserted", "card", "u1042")
    store.desk("2026-11-02T09:00", "unlocked", "card", "u1042")
    store.desk("2026-11-02T12:00", "card_removed", "removed", "u1042")
    store.desk("2026-11-02T12:00", "lock_failed", "unconfirmed", "u1042")
    store.desk("2026-11-02T13:00", "card_inserted", "no_access", "u2001")   # refused
    store.desk("2026-11-30T22:00", "card_inserted", "card", "u1042")        # still in at the end
    store.desk("2026-11-03T09:00", "card_inserted", "card", "u2001", desk="desk-09")
    r = month(store)
    sessions = [(s.desk, s.person_id, s.start and s.start.strftime("%d %H:%M"), s.end and s.end.strftime("%d %H:%M"),
                 s.ended) for s in r.desk_sessions]
    assert sessions == [("desk-01", "u2001", None, "01 00:10", "removed"),
                        ("desk-01", "u1042", "02 09:00", "02 12:00", "removed"),
                        ("desk-01", "u1042", "30 22:00", None, ""),
                        ("desk-09", "u2001", "03 09:00", None, "")]
    assert [(d.kind, d.reason, d.name) for d in r.desk_events] == [
        ("lock_failed", "unconfirmed", "山田 花子"), ("card_inserted", "no_access", "Taro <b>Suzuki</b> & co")]
    assert {s.desk for s in month(store, area="store-room").desk_sessions} == {"desk-09"}


def test_usb_blocks_and_exceptions_name_who_approved(store):
    enrol(store)
    device = {"vid": "0781", "pid": "5567", "class": "00", "interfaces": ["08:06:50"], "name": "Cruzer",
              "serial": "4C53", "port": "1-2"}
    store.usb("2026-11-05T10:00", {"action": "allowed", "device": device, "rule": "3", "reason": ""})
    store.usb("2026-11-05T10:01", {"action": "blocked", "device": device, "rule": "IMPLICIT", "reason": ""})
    supervisor = f"supervisor:{store.key.pseudonym('u2001')}"
    exc = {"id": "x1", "match": "0781:5567:4C53", "minutes": 10, "until": "2026-11-05T01:12:00.000Z",
           "actor": supervisor, "hash": "h", "interfaces": "rules"}
    store.usb("2026-11-05T10:02", {"action": "exception_granted", "device": device, "rule": "EXCEPTION",
                                   "reason": f"allowed for 10 min by {supervisor}", "exception": exc},
              actor=supervisor)
    store.usb("2026-11-05T10:03", {"action": "exception_granted", "device": device, "rule": "EXCEPTION",
                                   "reason": "allowed for 5 min by key:officer",
                                   "exception": {**exc, "id": "x2", "actor": "key:officer"}}, actor="key:officer")
    r = month(store)
    assert r.usb_allowed == 1
    assert [(u.action, u.approved_by, u.approver_id, u.approver_name) for u in r.usb] == [
        ("blocked", "", "", ""), ("exception_granted", supervisor, "u2001", "Taro <b>Suzuki</b> & co"),
        ("exception_granted", "key:officer", "", "")]
    assert "Cruzer" in r.usb[0].device and "serial 4C53" in r.usb[0].device
    assert r.usb[1].exception == "x1 until 2026-11-05 10:12"  # local, as every time in the report


def test_alarms_with_who_acknowledged_them_and_when(store):
    store.alarm("2026-11-07T02:00", "alarm.raise", raised=None)
    raised = store.now
    store.alarm("2026-11-07T02:01", "alarm.clear", raised=raised, cleared=store.now)
    cleared = store.now
    store.alarm("2026-11-07T08:30", "alarm.ack", actor="cli:sato", closed=True, raised=raised, cleared=cleared,
                acked_by="cli:sato", acked_at=rfc3339(dt.datetime(2026, 11, 7, 8, 30, tzinfo=ZONE)),
                ack_note="courier, checked")
    store.alarm("2026-11-20T03:00", "alarm.raise", raised=None)              # its next life, still open
    r = month(store)
    lives = [(a.id, a.severity, a.raised and a.raised.strftime("%d %H:%M"), a.cleared and a.cleared.strftime("%H:%M"),
              a.acked_by, a.acked_at and a.acked_at.strftime("%H:%M"), a.note, bool(a.closed)) for a in r.alarms]
    assert lives == [("door-a.entrance.forced", "critical", "07 02:00", "02:01", "cli:sato", "08:30",
                      "courier, checked", True),
                     ("door-a.entrance.forced", "critical", "20 03:00", None, "", None, "", False)]


def test_changes_from_the_audit_log_with_card_hash_prefixes_only(store):
    enrol(store)                                                # in October: not in November's report
    store.at("2026-11-15T11:00")
    store.people.grant_level("u2001", "staff", "cli:officer")
    store.people.revoke_card(store.key.card_hash(UID)[:12], "cli:officer")
    store.people.set_person_active("u2001", False, "key:officer")
    r = month(store)
    assert [(c.action, c.actor, c.person_id, c.name) for c in r.changes] == [
        ("level.grant", "cli:officer", "u2001", "Taro <b>Suzuki</b> & co"),
        ("card.revoke", "cli:officer", "", ""), ("person.disable", "key:officer", "u2001", "Taro <b>Suzuki</b> & co")]
    assert r.changes[1].detail == f"card {store.key.card_hash(UID)[:12]}"
    october = month(store, "2026-10")
    assert [c.action for c in october.changes] == ["person.add", "person.add", "card.add", "level.grant"]


# ----------------------------------------------------------------------------- the renderers
def filled(store: Store):
    enrol(store)
    store.door("2026-11-10T09:00", "u1042")
    store.door("2026-11-10T09:05", "u2001", result="denied", reason="no_access")
    store.desk("2026-11-10T09:10", "card_inserted", "card", "u1042")
    store.desk("2026-11-10T10:00", "lock_failed", "unconfirmed", "u1042")
    store.alarm("2026-11-10T11:00", "alarm.raise", raised=None)
    store.at("2026-11-11T10:00")
    store.people.grant_level("u2001", "staff", "cli:officer")
    return month(store)


def no_uid(text: str, store: Store) -> None:
    for uid in UID_TEXTS:
        assert uid not in text
    assert store.key.card_hash(UID) not in text  # the whole hash neither: only its first 12 digits


def test_csv_parses_names_every_section_and_holds_no_uid(store):
    r = filled(store)
    text = report_csv.render(r)
    no_uid(text, store)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[-1]["section"] == "digest" and rows[-1]["date"] == "sha256"
    sections = {row["section"] for row in rows}
    assert sections == {"report", "presence", "door", "desk_session", "desk_event", "alarm", "change", "digest"}
    assert all(None not in row and len(row) == len(report_csv.COLUMNS) for row in rows)
    presence = [row for row in rows if row["section"] == "presence"]
    assert {(row["name"], row["person_id"], row["time"], row["date"]) for row in presence} == {
        ("山田 花子", "u1042", "09:00:00", "2026-11-10")}
    meta = {row["what"]: row["note"] for row in rows if row["section"] == "report"}
    assert meta["audit_chain"].startswith("OK") and meta["timezone"] == TZ and meta["period"] == "2026-11"
    only = list(csv.DictReader(io.StringIO(report_csv.render(r, "alarm"))))
    assert {row["section"] for row in only} == {"report", "alarm", "digest"}


def test_the_csv_seal_recomputes_and_finds_a_changed_byte(store):
    text = report_csv.render(filled(store))
    stated, actual = report_csv.check(text)
    assert stated == actual and len(stated) == 64
    changed = text.replace("山田 花子", "山田 花男", 1)
    stated2, actual2 = report_csv.check(changed)
    assert stated2 == stated and actual2 != stated
    with pytest.raises(ValueError):  # a row after the seal is not covered by it: refused
        report_csv.check(text + "presence,2026-11-10,10:00:00,lobby" + "," * 15 + "\r\n")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.open: list[str] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self.attrs_seen: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs_seen += [v or "" for _, v in attrs]
        if tag not in ("meta", "br", "line", "rect", "dt", "dd"):
            self.open.append(tag)
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs_seen += [v or "" for _, v in attrs]

    def handle_endtag(self, tag):
        if tag in ("line", "rect", "dt", "dd"):
            return
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()
        self._in_heading = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_heading:
            self.headings.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.open == [], page.open
    return page


@pytest.mark.parametrize("lang, headings", [
    ("en", ["Access and device report", "Entries and exits by area and day", "Doors: entries, exits and denials",
            "Desks: sessions", "Desks: lock failures and other problems", "USB: blocks and exceptions", "Alarms",
            "Changes to people, cards and levels"]),
    ("ja", ["入退室・端末管理報告書", "エリア別・日別の入退室", "扉別：入室・退室・拒否", "座席：利用記録",
            "座席：ロック失敗などの異常", "USB：遮断と例外許可", "警報", "人・カード・権限の変更"]),
])
def test_the_page_is_self_contained_escaped_and_in_both_languages(store, lang, headings):
    r = filled(store)
    text = report_html.render(r, lang)
    page = parse(text)
    for h in headings:
        assert h in page.headings, (h, page.headings)
    assert "script" not in page.tags and "<script" not in text.lower()
    assert "http:" not in text and "https:" not in text and "//" not in "".join(page.attrs_seen)
    assert {"svg", "rect", "table", "thead", "footer"} <= set(page.tags)
    assert "@media print" in text and "size: A4" in text and "thead { display: table-header-group; }" in text
    assert "Taro <b>Suzuki</b> & co" in "".join(page.text)      # the name as data ...
    assert "<b>Suzuki</b>" not in text                           # ... never as markup
    assert "山田 花子" in text and "u1042" in text
    no_uid(text, store)
    stated, actual = report_html.check(text)
    assert stated == actual
    assert report_html.check(text.replace("u1042", "u1043", 1))[1] != stated
    with pytest.raises(ValueError):  # a browser shows what follows the seal: refused
        report_html.check(text + "<p>all fine</p>")
    assert f'<html lang="{lang}">' in text


def test_a_broken_chain_is_stated_in_the_report(store):
    r = filled(store)
    assert r.integrity.ok
    with sqlite3.connect(store.database.path) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'cli:nobody' WHERE n = 3")
    broken = month(store)
    assert not broken.integrity.ok and broken.integrity.problem == "row 3: content does not match its hash (edited)"
    assert "BROKEN: row 3: content does not match its hash (edited)" in report_csv.render(broken)
    assert "破損：row 3: content does not match its hash (edited)" in report_html.render(broken, "ja")


# ----------------------------------------------------------------------------- through the command
def test_the_command_on_a_store_the_daemon_wrote(site, tmp_path):
    site.enroll("u1042", "04a1b2c3d4e5f6", name="山田 花子")
    site.start()
    site.tap("04a1b2c3d4e5f6", "entrance-in")
    site.tap("0411223344", "entrance-in")                 # unknown: denied
    site.tap("04a1b2c3d4e5f6", "entrance-out")
    wait_for(lambda: len(site.cli("events").stdout.splitlines()) == 4, what="three events recorded")
    site.stop()
    # The local day of the first tap (a run across local midnight puts the rest on the next day).
    first = json.loads(site.cli("events", "--json").stdout)[0]["ts"]
    today = dt.datetime.fromisoformat(first).astimezone(ZONE).date().isoformat()
    html_path, csv_path = tmp_path / "r.html", tmp_path / "r.csv"
    r = site.cli("report", "--day", today, "-o", str(html_path), "--lang", "ja")
    assert "audit chain OK" in r.stderr
    seal = r.stderr.split("sha256 ")[1].split()[0]
    site.cli("report", "--day", today, "-o", str(csv_path), "--area", "operator-room")
    for path in (html_path, csv_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        data = path.read_bytes().decode()
        assert "山田 花子" in data and "u1042" in data
        for uid in ("04a1b2c3d4e5f6", "0411223344"):
            assert uid not in data.lower()
        v = site.cli("report", "--verify", str(path))
        assert "intact" in v.stdout
    assert seal in html_path.read_text()
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8-sig"))))
    assert [(row["area"], row["direction"]) for row in rows if row["section"] == "presence"] == [
        ("operator-room", "entered"), ("operator-room", "left")]
    assert {(row["direction"], row["what"], row["reason"], row["count"]) for row in rows
            if row["section"] == "door"} == {("in", "granted", "card", "1"), ("in", "denied", "unknown_card", "1"),
                                             ("out", "granted", "card", "1")}

    html_path.write_bytes(html_path.read_bytes().replace("山田".encode(), "山口".encode(), 1))
    v = site.cli("report", "--verify", str(html_path), check=False)
    assert v.returncode == 65 and "ALTERED" in v.stderr

    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET detail = replace(detail, 'u1042', 'u9999') WHERE n = 1")
    r = site.cli("report", "--day", today, "--format", "html", "--lang", "en")
    assert "BROKEN: row 1: content does not match its hash (edited)" in r.stdout
    assert "audit chain BROKEN" in r.stderr


@pytest.mark.parametrize("args, code, message", [
    (["--month", "2026-11"], 64, "sekisho: to standard output, say --format csv or --format html"),
    (["--month", "2026-11", "-o", "x.txt"], 64, "sekisho: -o x.txt: say --format csv or --format html"),
    (["--month", "2026-11", "--day", "2026-11-01"], 64, "sekisho: argument --day: not allowed with argument --month"),
    ([], 64, "sekisho: name the period: --month YYYY-MM or --day YYYY-MM-DD"),
    (["--month", "2026-11", "--format", "html", "--section", "usb"], 64, "sekisho: --section is for --format csv"),
    (["--month", "2026-11", "--format", "csv", "--area", "roof"], 65, "sekisho: no area 'roof' in "),
    (["--month", "11/2026", "--format", "csv"], 65, "sekisho: --month: '11/2026' is not a month like 2026-11"),
    (["--verify", "/nonexistent/r.html"], 66, "sekisho: /nonexistent/r.html: no such file"),
    (["--verify", str(REPO / "README.md")], 65,
     f"sekisho: {REPO / 'README.md'}: not a sealed report: its last line is not a digest"),
])
def test_mistakes_are_one_line(site, args, code, message):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli("report", *args, check=False)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr


def test_stdout_csv_has_no_bom(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli("report", "--month", "2026-11", "--format", "csv")
    assert not r.stdout.startswith("\ufeff") and r.stdout.startswith("section,date,")
    assert list(csv.DictReader(io.StringIO(r.stdout)))[-1]["section"] == "digest"




def test_an_alarm_the_daemon_raised_is_reported_with_who_acknowledged_it(site):
    site.config.write_text(DOOR_WITH_CONTACT.format(url=site.broker.url))
    site.cli("person", "add", "--id", "u1042", "--name", "山田 花子")
    site.start()
    site.sim("entrance-contact", {"op": "set", "active": True})     # forced open
    alarm_id = "door-a.entrance.forced"
    wait_for(lambda: alarm_id in site.cli("alarms", "--open").stdout, what="the forced alarm")
    site.cli("alarm", "ack", alarm_id, "--note", "guard <on> the way")
    site.sim("entrance-contact", {"op": "set", "active": False})    # cleared: closed
    wait_for(lambda: alarm_id not in site.cli("alarms", "--open").stdout, what="the alarm closed")
    site.stop()
    raised = json.loads(site.cli("alarms", "--json").stdout)[0]["raised"]
    day = raised[:10]  # the listing's local time
    rows = list(csv.DictReader(io.StringIO(site.cli("report", "--day", day, "--format", "csv", "--section",
                                                    "alarm").stdout)))
    alarms = [row for row in rows if row["section"] == "alarm"]
    assert len(alarms) == 1, alarms
    a = alarms[0]
    assert (a["ref"], a["what"], a["reason"], a["door"], a["note"]) == (alarm_id, "forced", "critical", "entrance",
                                                                       "guard <on> the way")
    assert a["by"].startswith("cli:") and a["from"] and a["to"] and a["at"] and a["from"] <= a["at"]
    page = site.cli("report", "--day", day, "--format", "html", "--lang", "en").stdout
    assert "guard &lt;on&gt; the way" in page and "guard <on>" not in page


def test_the_pages_language_comes_from_lang_then_the_site_then_the_environment(site, monkeypatch):
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    site.cli("person", "add", "--id", "p1", "--name", "A")
    page = ["report", "--month", "2026-11", "--format", "html"]
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    assert '<html lang="ja">' in site.cli(*page).stdout
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert '<html lang="en">' in site.cli(*page).stdout
    site.config.write_text(site.config.read_text().replace('timezone = "Asia/Tokyo"\n',
                                                           'timezone = "Asia/Tokyo"\nlanguage = "ja"\n'))
    assert '<html lang="ja">' in site.cli(*page).stdout
    assert '<html lang="en">' in site.cli(*page, "--lang", "en").stdout
    site.config.write_text(site.config.read_text().replace('language = "ja"', 'language = "fr"'))
    r = site.cli("check-config", check=False)
    assert r.returncode == 78 and "site.language: 'fr' is not a language sekisho writes (ja, en" in r.stderr


def test_print_jobs_at_a_print_node_per_operator_and_supervisor(store):
    """One node's report of its own print events (issue 19), recorded as every event is; the
    operator is named from the event's subject (the store's column may be empty) and a
    supervisor's card from its actor, through the site key."""
    enrol(store)

    def printed(local: str, action: str, job: int, person: str | None, **more: object) -> None:
        store.at(local)
        payload = {"action": action, "job": job, "subject": store.key.pseudonym(person) if person else None,
                   "user_known": person is not None, "pages": more.pop("pages", None),
                   "document": {"hash": "9d1e" * 8}, "submitted": store.now, **more}
        store.record.record([NewEvent("print", "print/door-a/event", payload,
                                      {"result": action, "reason": str(more.get("reason", ""))})])
    card = f"supervisor:{store.key.pseudonym('u2001')}"
    printed("2026-11-06T09:00", "held", 1, "u1042", pages=4)
    printed("2026-11-06T09:03", "release_refused", 1, "u1042", by="card", actor=card, reason="not_in_area")
    printed("2026-11-06T09:05", "released", 1, "u1042", by="card", actor=card)
    printed("2026-11-06T09:06", "printed", 1, "u1042", pages=4)
    printed("2026-11-06T10:00", "held", 2, None)
    printed("2026-11-06T11:00", "cancelled", 2, None, by="command", actor="key:officer")
    r = month(store)
    assert [(o.person_id, o.name, o.held, o.released, o.cancelled, o.printed, o.pages) for o in r.print_operators] == [
        ("u1042", "山田 花子", 1, 1, 0, 1, 4), ("", "", 1, 0, 1, 0, 0)]
    assert [(s.actor, s.person_id, s.name, s.released, s.cancelled) for s in r.print_supervisors] == [
        ("key:officer", "", "", 0, 1), (card, "u2001", "Taro <b>Suzuki</b> & co", 1, 0)]
    assert "print_fates" in r.notes
    assert month(store, "2026-12").print_operators == ()
