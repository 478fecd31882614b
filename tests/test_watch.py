"""``sekisho watch`` (issue 14, item 6): the bus read into the site's state (watch_state, from the
contract's own payloads), the words it is shown in (watch_view), the line mode against a real
mosquitto and the daemon on sim readers, and the full screen under a real pseudo-terminal: an
alarm above the events, the door by its name, q and Ctrl-C giving the terminal back."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import zoneinfo
from pathlib import Path

import pytest

from harness import SEKISHO, Broker, Site, free_port, wait_for
from sekisho.daemon.watch import Mode, choose_mode
from sekisho.daemon.watch_state import STREAM_MAX, Layout
from sekisho.daemon.watch_state import Site as State
from sekisho.daemon.watch_view import Clock, clean, fit, frame, line, screen, width

BASE = "sekisho/v1/test"
LAYOUT = Layout(base=BASE, timezone="Asia/Tokyo", doors=("entrance",), desks=("desk-01",),
                areas=("operator-room", "lobby"), nodes=("door-a",))
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)  # 18:00 in Tokyo, the day of the payloads
CLOCK = Clock(TOKYO, NOW)

# The examples of docs/mqtt.md, as a node publishes them.
STATUS = {"state": "online", "version": "0.1.0", "started": "2026-11-23T07:00:00.000Z", "instance": "9f3c0a1b2d4e",
          "ts": "2026-11-23T07:00:00.012Z"}
ACCESS = {"id": "5d0c-1", "seq": 42, "node": "door-a", "ts": "2026-11-23T07:12:03.114Z", "kind": "access",
          "door": "entrance", "reader": "entrance-in", "direction": "in", "result": "granted",
          "reason": "card_and_pin", "rule": "level:operators", "subject": "3f2c9a0b5e7d1c44"}
DENIED = {**ACCESS, "id": "5d0c-2", "seq": 43, "result": "denied", "reason": "unknown_card", "rule": "card.unknown",
          "subject": None, "ts": "2026-11-23T07:13:00.000Z"}
FIRE = {"id": "9a1e", "seq": 44, "node": "door-a", "ts": "2026-11-23T07:20:00.000Z", "kind": "fire",
        "door": "back", "input": "fire", "state": "active", "released": True}
DOOR_STATE = {"lock": "locked", "mode": "normal", "contact": "closed", "alarm": None, "ts": "2026-11-23T07:12:09.001Z"}
OCCUPANCY = {"count": 2, "subjects": ["3f2c9a0b5e7d1c44", "a90e11d2c3b4f5a6"], "ts": "2026-11-23T07:12:03.120Z"}
FORCED = {"kind": "forced", "source": "entrance", "severity": "critical", "subject": None,
          "raised": "2026-11-23T07:30:11.152Z", "cleared": None, "acked_by": None, "acked_at": None,
          "ack_note": None, "ts": "2026-11-23T07:30:11.159Z"}
HELD = {**FORCED, "kind": "held_open", "severity": "warning", "raised": "2026-11-23T07:00:00.000Z"}
DESK_STATE = {"state": "in_use", "subject": "3f2c9a0b5e7d1c44", "since": "2026-11-23T08:01:12.440Z",
              "ts": "2026-11-23T08:01:12.441Z"}
DESK_EVENT = {"id": "d-77", "seq": 77, "node": "desk-a", "ts": "2026-11-23T08:02:00.000Z", "desk": "desk-01",
              "kind": "session_locked", "subject": "3f2c9a0b5e7d1c44", "reason": "locked",
              "rule": "desk.lock-confirmed", "latency_ms": 3.91}
USB = {"id": "u-1", "seq": 5, "node": "desk-a", "ts": "2026-11-23T08:03:00.000Z", "action": "blocked",
       "device": {"vid": "0781", "pid": "5583", "class": "00", "interfaces": ["08:06:50"], "name": "Cruzer Blade",
                  "serial": "4C530001", "port": "1-2"}, "rule": None}

REFUSED = {"id": "p-3", "seq": 3, "node": "print-1", "ts": "2026-11-23T08:04:00.000Z", "action": "release_refused",
           "job": 12, "subject": "3f2c9a0b5e7d1c44", "user_known": True, "pages": 2, "document": {"hash": "9d1e"},
           "submitted": "2026-11-23T08:00:00.000Z", "by": "card", "actor": "supervisor:a90e11d2c3b4f5a6",
           "reason": "not_supervisor"}


def put(site: State, topic: str, payload: dict | None, retained: bool = False):
    return site.apply(f"{BASE}/{topic}", b"" if payload is None else json.dumps(payload).encode(), retained)


# ----------------------------------------------------------------------------- watch_state
def test_config_names_are_listed_before_the_bus_says_anything():
    site = State(LAYOUT)
    assert list(site.doors) == ["entrance"] and site.doors["entrance"].state is None
    assert site.desks == {"desk-01": None} and list(site.areas) == ["operator-room", "lobby"]
    assert site.nodes_offline_first() == [("door-a", None)]


def test_the_layout_comes_from_the_config(tmp_path):
    from sekisho.daemon.config import load
    path = tmp_path / "sekisho.toml"
    path.write_text(CONFIG.format(url="mqtt://127.0.0.1:1883").replace(
        'timezone = "Asia/Tokyo"\n', 'timezone = "Asia/Tokyo"\nwatch_nodes = ["desk-a", "door-b"]\n'))
    layout = Layout.of(load(path))
    assert layout == Layout(base="sekisho/v1/test", timezone="Asia/Tokyo", doors=("entrance",), desks=(),
                            areas=layout.areas, nodes=("door-a", "desk-a", "door-b"))
    assert sorted(layout.areas) == ["lobby", "room"]
    # Nodes it watches are listed, not heard from, until they say something.
    assert [n for n, s in State(layout).nodes_offline_first()] == ["desk-a", "door-a", "door-b"]


def test_retained_topics_replace_what_was_known():
    site = State(LAYOUT)
    put(site, "door/entrance/state", DOOR_STATE, retained=True)
    put(site, "door/entrance/state", {**DOOR_STATE, "lock": "unlocked", "contact": "open"})
    assert site.doors["entrance"].state["lock"] == "unlocked"
    put(site, "area/operator-room/occupancy", OCCUPANCY)
    put(site, "area/operator-room/occupancy", {"count": 0, "subjects": [], "ts": OCCUPANCY["ts"]})
    assert site.areas["operator-room"]["count"] == 0
    put(site, "desk/desk-01/state", DESK_STATE)
    assert site.desks["desk-01"]["state"] == "in_use"
    assert not site.events  # states are not events


def test_events_are_streamed_once_each_and_bounded():
    site = State(LAYOUT)
    assert put(site, "door/entrance/event", ACCESS) is not None
    assert put(site, "door/entrance/event", ACCESS) is None  # QoS 1's repeat: dropped, not shown
    put(site, "desk/desk-01/event", DESK_EVENT)
    put(site, "usb/desk-a/event", USB)
    put(site, "print/print-1/event", REFUSED)
    assert put(site, "print/print-1/event", REFUSED) is None
    assert [(e.group, e.where) for e in site.events] == [("door", "entrance"), ("desk", "desk-01"), ("usb", "desk-a"),
                                                         ("print", "print-1")]
    assert site.doors["entrance"].last == ACCESS
    for n in range(STREAM_MAX + 5):
        put(site, "door/entrance/event", {**ACCESS, "id": f"e{n}"})
    assert len(site.events) == STREAM_MAX and site.events[-1].payload["id"] == f"e{STREAM_MAX + 4}"
    assert len(site.seen) == STREAM_MAX  # an id that left the stream is forgotten with it
    assert put(site, "door/entrance/event", ACCESS) is not None


def test_alarms_open_until_emptied_or_cleared_and_acknowledged():
    site = State(LAYOUT)
    msg = put(site, "alarm/door-a.entrance.forced", FORCED, retained=True)
    assert msg.alarm.kind == "forced" and not msg.closes_alarm
    assert [a.id for a in site.open_alarms()] == ["door-a.entrance.forced"]
    cleared = {**FORCED, "cleared": "2026-11-23T07:30:20.000Z"}
    put(site, "alarm/door-a.entrance.forced", cleared)
    assert site.alarms["door-a.entrance.forced"].cleared  # cleared, but waiting for a person
    acked = {**cleared, "acked_by": "cli:root", "acked_at": "2026-11-23T07:31:00.000Z"}
    assert put(site, "alarm/door-a.entrance.forced", acked).closes_alarm
    assert not site.alarms
    put(site, "alarm/door-a.entrance.forced", FORCED)  # raised again
    msg = put(site, "alarm/door-a.entrance.forced", None, retained=True)
    assert msg.closes_alarm and msg.alarm.kind == "forced" and not site.alarms
    # An empty message for an alarm never seen open is shown, and changes nothing.
    assert put(site, "alarm/door-a.back.held-open", None).alarm is None


def test_alarms_by_severity_then_raised_and_nodes_offline_first():
    site = State(LAYOUT)
    put(site, "alarm/door-a.entrance.held-open", HELD)
    put(site, "alarm/door-a.back.forced", {**FORCED, "source": "back", "raised": "2026-11-23T07:40:00.000Z"})
    put(site, "alarm/door-a.entrance.forced", FORCED)
    put(site, "alarm/x.y.odd", {**FORCED, "severity": "info", "raised": "2026-11-23T06:00:00.000Z"})
    assert [a.id for a in site.open_alarms()] == ["door-a.entrance.forced", "door-a.back.forced",
                                                  "door-a.entrance.held-open", "x.y.odd"]
    put(site, "node/door-b/status", {**STATUS, "state": "offline"})
    put(site, "node/desk-a/status", STATUS)
    assert [n for n, _ in site.nodes_offline_first()] == ["door-b", "door-a", "desk-a"]
    nodes = next(t for t in texts(screen(site, CLOCK, 120, 40, "x")) if t.startswith("NODES"))
    assert nodes == "NODES door-b offline · door-a not heard from · desk-a online since 16:00:00"
    assert next(t for t in texts(screen(site, CLOCK, 30, 40, "x")) if t.startswith("NODES")) == \
        "NODES door-b offline"  # wrapped: the rest on the next rows


@pytest.mark.parametrize("topic, body", [
    ("sekisho/v1/other/door/entrance/state", json.dumps(DOOR_STATE).encode()),  # another site
    (f"{BASE}/door/entrance/state", b"not json"),
    (f"{BASE}/door/entrance/state", b"\xff\xfe"),
    (f"{BASE}/door/entrance/state", b"[1, 2]"),
    (f"{BASE}/door/entrance/state", b""),  # only an alarm is closed by an empty message
    (f"{BASE}/door/entrance/other", json.dumps(DOOR_STATE).encode()),
    (f"{BASE}/alarm", json.dumps(FORCED).encode()),
])
def test_what_the_contract_does_not_name_is_ignored(topic, body):
    site = State(LAYOUT)
    assert site.apply(topic, body) is None
    assert site.doors["entrance"].state is None and not site.alarms and not site.events


def test_commands_and_answers_are_shown_but_change_nothing():
    site = State(LAYOUT)
    cmd = {"id": "c-1", "ts": ACCESS["ts"], "site": "test", "node": "door-a", "op": "door.unlock",
           "args": {"door": "entrance"}, "key": "officer-1", "sig": "x"}
    assert put(site, "cmd/door-a", cmd).leaf == ""
    assert put(site, "cmd/door-a/result", {"id": "c-1", "ok": False, "error": "not permitted: door.unlock",
                                           "node": "door-a", "op": "door.unlock", "ts": ACCESS["ts"]}).leaf == "result"
    assert not site.events


# ----------------------------------------------------------------------------- watch_view
def test_lines_name_doors_desks_and_hosts_in_local_time():
    site = State(LAYOUT)

    def said(topic, payload, retained=False):
        return line(put(site, topic, payload, retained), site, CLOCK)

    granted = said("door/entrance/event", ACCESS)
    assert granted.startswith("2026-11-23T16:12:03+09:00  door ")
    assert re.search(r" entrance +in granted \(card_and_pin\)  3f2c9a0b5e7d1c44$", granted)
    assert "door/entrance" not in granted
    assert "in denied (unknown_card)" in said("door/entrance/event", DENIED)
    assert "fire fire active, door released" in said("door/back/event", FIRE)
    assert re.search(r"desk-01 +session_locked \(locked\), 4 ms  3f2c9a0b5e7d1c44", said("desk/desk-01/event", DESK_EVENT))
    assert re.search(r"usb +desk-a +usb blocked Cruzer Blade", said("usb/desk-a/event", USB))
    assert re.search(r"print +print-1 +print #12 release_refused \(not_supervisor\) by supervisor:a90e11d2c3b4f5a6  "
                     r"3f2c9a0b5e7d1c44$", said("print/print-1/event", REFUSED))
    assert "state: locked, normal, contact closed, no alarm  (retained)" in said("door/entrance/state", DOOR_STATE, True)
    assert "2 inside: 3f2c9a0b5e7d1c44 a90e11d2c3b4f5a6" in said("area/operator-room/occupancy", OCCUPANCY)
    assert "online since 16:00:00, sekisho 0.1.0" in said("node/door-a/status", STATUS)
    raised = said("alarm/door-a.entrance.forced", FORCED)
    assert re.search(r"alarm +entrance +CRITICAL forced  raised 16:30:11  not cleared  NOT ACKED", raised)
    assert raised.endswith("(door-a.entrance.forced)")
    assert "closed forced  (door-a.entrance.forced)" in said("alarm/door-a.entrance.forced", None)
    result = said("cmd/door-a/result", {"id": "c-1", "ok": False, "error": "not permitted", "op": "door.unlock",
                                         "node": "door-a", "ts": ACCESS["ts"]})
    assert "command door.unlock: refused: not permitted" in result


def test_a_payload_cannot_move_the_cursor_or_split_a_line():
    site = State(LAYOUT)
    evil = {**USB, "device": {**USB["device"], "name": "Stick\x1b[2J\x1b[31m\nroot\u202e"}}
    text = line(put(site, "usb/desk-a/event", evil), site, CLOCK)
    assert "\x1b" not in text and "\n" not in text and "\u202e" not in text and "Stick?[2J?[31m?root?" in text
    rows = screen(site, CLOCK, 80, 24, "test")
    assert not any("\x1b" in s.text or "\n" in s.text for r in rows for s in r)


def test_a_payload_nobody_foresaw_is_shown_safely_or_ignored():
    """Valid JSON can still hold a lone surrogate (no terminal encodes it), a number too big for
    any format, or nesting too deep for the parser: the first two are shown harmlessly, the
    third is ignored like any payload that is not the contract's."""
    site = State(LAYOUT)
    surrogate = json.dumps({**DESK_EVENT, "subject": "\ud800x", "latency_ms": 10 ** 400}).encode()
    took = site.apply(f"{BASE}/desk/desk-01/event", surrogate, False)
    text = line(took, site, CLOCK)
    assert "?x" in text and "ms" not in text
    text.encode("utf-8")  # strict: what the terminal gets
    assert site.apply(f"{BASE}/alarm/x.y.forced", b"[" * 100_000, True) is None
    for row in screen(site, CLOCK, 80, 24, "test"):
        "".join(s.text for s in row).encode("utf-8")


def test_wide_names_are_measured_in_columns():
    assert width("山田花子") == 8 and fit("山田花子", 5) == "山田…" and width(fit("山田花子", 5)) == 5
    assert clean("a\tb") == "a?b"
    site = State(LAYOUT)
    put(site, "desk/desk-01/state", {**DESK_STATE, "subject": "山田花子" * 10})  # publish_names
    rows = screen(site, CLOCK, 40, 24, "test")
    assert all(sum(width(s.text) for s in r) <= 40 for r in rows)


def texts(rows) -> list[str]:
    return ["".join(s.text for s in r) for r in rows]


def test_the_screen_puts_alarms_first_and_events_newest_at_the_bottom():
    site = State(LAYOUT)
    for topic, payload in [("node/door-a/status", STATUS), ("door/entrance/state", DOOR_STATE),
                           ("area/operator-room/occupancy", OCCUPANCY), ("desk/desk-01/state", DESK_STATE),
                           ("door/entrance/event", ACCESS), ("door/entrance/event", DENIED),
                           ("desk/desk-01/event", DESK_EVENT), ("alarm/door-a.entrance.held-open", HELD),
                           ("alarm/door-a.entrance.forced", FORCED)]:
        put(site, topic, payload)
    shown = texts(screen(site, CLOCK, 120, 40, "site test"))
    assert shown[0].startswith("sekisho watch · site test")
    assert shown[1] == "ALARMS (2 open)"
    assert re.match(r" CRITICAL +forced +entrance +raised 16:30:11 +not cleared +NOT ACKED", shown[2])
    assert "WARNING" in shown[3] and "held_open" in shown[3]
    door = next(t for t in shown if t.startswith(" entrance"))
    assert re.search(r"locked +normal +contact closed +no alarm +last 16:13:00 +in denied \(unknown_card\)", door)
    assert any(re.match(r" desk-01 +in_use +3f2c9a0b5e7d1c44 +since 17:01:12", t) for t in shown)
    assert "AREAS operator-room 2 inside · lobby —" in shown
    assert "NODES door-a online since 16:00:00" in shown
    events = shown[shown.index("EVENTS  newest at the bottom") + 1:]
    assert [e.split()[1] for e in events] == ["entrance", "entrance", "desk-01"]
    assert events[0].startswith(" 16:12:03") and "in granted (card_and_pin)" in events[0]


def test_a_small_window_keeps_the_alarms():
    site = State(LAYOUT)
    for n in range(6):
        put(site, f"alarm/door-a.door-{n}.forced", {**FORCED, "source": f"door-{n}"})
    put(site, "door/entrance/event", ACCESS)
    shown = texts(screen(site, CLOCK, 30, 5, "site test"))
    assert len(shown) == 5 and shown[1] == "ALARMS (6 open)" and "door-0" in shown[2]
    assert shown[4] == "  … 4 more alarms" and all(width(t) <= 30 for t in shown)
    assert texts(screen(site, CLOCK, 30, 1, "x")) == ["sekisho watch · x · q quits"]
    assert screen(site, CLOCK, 0, 0, "x") == []


def test_colour_repeats_the_words_and_no_colour_keeps_them():
    site = State(LAYOUT)
    put(site, "alarm/door-a.entrance.forced", FORCED)
    rows = screen(site, CLOCK, 80, 10, "test")
    coloured, plain = frame(rows, 10, colour=True), frame(rows, 10, colour=False)
    assert "\x1b[1;37;41mCRITICAL" in coloured
    assert not re.search(r"\x1b\[[0-9;]*(3|4)[0-7]m", plain) and "CRITICAL" in plain and "NOT ACKED" in plain


def test_the_mode_follows_the_terminal():
    assert choose_mode(raw=False, lines=False, terminal=True, term="xterm") is Mode.SCREEN
    assert choose_mode(raw=False, lines=False, terminal=False, term="xterm") is Mode.LINES
    assert choose_mode(raw=False, lines=False, terminal=True, term="dumb") is Mode.LINES
    assert choose_mode(raw=False, lines=False, terminal=True, term="") is Mode.LINES
    assert choose_mode(raw=False, lines=True, terminal=True, term="xterm") is Mode.LINES
    assert choose_mode(raw=True, lines=False, terminal=True, term="xterm") is Mode.RAW


# ----------------------------------------------------------------------------- against the bus
CONFIG = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[areas.lobby]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"
area_out = "lobby"
unlock_s = 1.0

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[inputs.entrance-contact]
driver = "sim"
kind = "contact"
door = "entrance"
"""
UID = "04a1b2c3d4e5f6"


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    """One broker and one daemon on sim readers for the module; Ana's card opens the door."""
    tmp = tmp_path_factory.mktemp("watch")
    broker = Broker(tmp)
    broker.start()
    site = Site(tmp, broker)
    site.config.write_text(CONFIG.format(url=broker.url))
    site.enroll("ana", UID, name="Ana")
    site.start()
    yield site
    site.kill()
    broker.stop()


def watch_args(site: Site, *more: str) -> list[str]:
    return [*SEKISHO, "watch", *more, "--config", str(site.config), "--data-dir", str(site.data_dir)]


class Watcher:
    """``sekisho watch`` with stdout to a file (not a terminal)."""

    def __init__(self, site: Site, tmp: Path, *more: str) -> None:
        self.out, self.err = tmp / "watch.out", tmp / "watch.err"
        self.proc = subprocess.Popen(watch_args(site, *more), stdout=open(self.out, "wb"),
                                     stderr=open(self.err, "wb"))
        wait_for(lambda: self.alive() and "# watching" in self.err.read_text(), 15, "the watch to subscribe")

    def alive(self) -> bool:
        assert self.proc.poll() is None, self.err.read_text()
        return True

    def text(self) -> str:
        return self.out.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(15)


def contact(site: Site, state: str) -> None:
    site.cli("sim", "input", "entrance-contact", state)


def test_lines_when_piped_say_names_not_topics(bus, tmp_path):
    watcher = Watcher(bus, tmp_path)
    try:
        bus.tap(UID)
        bus.tap("0411223344")
        wait_for(lambda: "in denied (unknown_card)" in watcher.text(), what="the denied tap")
        text = watcher.text()
        assert re.search(r"\+09:00  door +entrance +in granted \(card\)  [0-9a-f]{16}\n", text), text
        assert re.search(r"\+09:00  node +door-a +online since .* \(retained\)\n", text), text
        assert re.search(r"\+09:00  area +room +1 inside: [0-9a-f]{16}", text), text
        assert "sekisho/v1" not in text and "door/entrance" not in text and "{" not in text
        assert all(len(t.split("  ")) >= 3 for t in text.splitlines())  # time, what, name, ...
    finally:
        assert watcher.stop() == 0


def test_raw_keeps_the_topics_and_payloads(bus, tmp_path):
    watcher = Watcher(bus, tmp_path, "--raw")
    try:
        bus.tap("0411223344")
        wait_for(lambda: '"reason": "unknown_card"' in watcher.text(), what="the raw event")
        assert re.search(r"^node/door-a/status \(retained\) \{", watcher.text(), re.M)
        assert re.search(r"^door/entrance/event \{.*\"result\": \"denied\"", watcher.text(), re.M)
    finally:
        assert watcher.stop() == 0


def test_a_hostile_retained_alarm_neither_ends_nor_stalls_the_lines(bus, tmp_path):
    """Any node may write alarm/+, and a retained message is read at every start of the watch."""
    for topic, body in (("alarm/door-a.x.surrogate", b'{"kind": "forced", "source": "\\ud800"}'),
                        ("alarm/door-a.x.deep", b"[" * 100_000)):
        subprocess.run(["mosquitto_pub", "-p", str(bus.broker.port), "-q", "1", "-r", "-t", f"{BASE}/{topic}", "-s"],
                       input=body, check=True, timeout=10)
    watcher = Watcher(bus, tmp_path)
    try:
        bus.tap("0411223344")
        wait_for(lambda: "in denied (unknown_card)" in watcher.text(), what="the tap after the hostile alarms")
        assert "alarm" in watcher.text() and "\ud800" not in watcher.text()
    finally:
        assert watcher.stop() == 0
        for topic in ("alarm/door-a.x.surrogate", "alarm/door-a.x.deep"):
            subprocess.run(["mosquitto_pub", "-p", str(bus.broker.port), "-q", "1", "-r", "-n", "-t",
                            f"{BASE}/{topic}"], check=True, timeout=10)


def test_broker_errors_keep_their_exit_status(bus, tmp_path):
    nobody = watch_args(bus, "--mqtt", f"mqtt://127.0.0.1:{free_port()}")
    r = subprocess.run(nobody, capture_output=True, text=True, timeout=30)
    assert r.returncode == 69 and r.stderr.startswith("sekisho: cannot reach the broker at mqtt://127.0.0.1:")
    refusing = Broker(tmp_path)
    refusing.conf.write_text(refusing.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    refusing.start()
    try:
        r = subprocess.run(watch_args(bus, "--lines", "--mqtt", refusing.url), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and "sekisho: broker refused: Not authorized" in r.stderr, r.stderr
    finally:
        refusing.stop()
    # TLS files that cannot be read: the config's broker settings unusable.
    cfg = tmp_path / "tls.toml"
    cfg.write_text(CONFIG.format(url="mqtts://127.0.0.1:1").replace(
        "reconnect_max_s = 1\n", f'reconnect_max_s = 1\nca_file = "{tmp_path / "none.crt"}"\n'))
    r = subprocess.run([*SEKISHO, "watch", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and "none.crt" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- the screen, in a pty
class Terminal:
    """A pseudo-terminal of ``rows`` x ``columns`` with TERM=xterm, ``sekisho watch`` on it as the
    session leader (so the terminal's Ctrl-C and window changes reach it as a real one's do),
    and as much of a VT100 as the watch may use: placing the cursor, erasing, SGR, the private
    modes. Anything else it writes fails the test."""

    CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")

    def __init__(self, argv: list[str], rows: int, columns: int, env: dict[str, str] | None = None) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, columns)
        self.before = termios.tcgetattr(self.slave)
        env = {**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, "TERM": "xterm", **(env or {})}
        # setsid (start_new_session), then the pty as the controlling terminal, then exec.
        take = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execvp(sys.argv[1], sys.argv[1:])"
        self.proc = subprocess.Popen([sys.executable, "-c", take, *argv], stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, env=env, start_new_session=True)
        self.raw = b""

    def resize(self, rows: int, columns: int) -> None:
        self.rows, self.columns = rows, columns
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def read(self) -> str:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.raw += chunk
        return self.raw.decode("utf-8", "replace")

    def screen(self, since: int = 0) -> list[str]:
        """The screen as the escapes written (from character ``since``) leave it."""
        grid = [[" "] * self.columns for _ in range(self.rows)]
        y = x = 0
        text = self.read()[since:]
        pos = 0
        while pos < len(text):
            m = self.CSI.match(text, pos)
            if m:
                args, cmd = m.groups()
                if cmd == "H":
                    parts = [int(p or 1) for p in args.split(";")] if args else [1, 1]
                    y, x = parts[0] - 1, parts[1] - 1
                elif cmd == "K":
                    if 0 <= y < self.rows:
                        grid[y][x:] = [" "] * (self.columns - x)
                elif cmd == "J":
                    for row in range(y + 1, self.rows):
                        grid[row] = [" "] * self.columns
                    if 0 <= y < self.rows:
                        grid[y][x:] = [" "] * (self.columns - x)
                elif cmd in "hl" and args.startswith("?"):
                    pass
                elif cmd == "m":
                    pass
                else:
                    raise AssertionError(f"an escape the watch should not write: {m.group()!r}")
                pos = m.end()
                continue
            ch = text[pos]
            assert ch == "\x1b" or ch >= " ", f"a control character on the screen: {ch!r}"
            assert 0 <= y < self.rows and x < self.columns, f"written outside the window at {y},{x}: {ch!r}"
            grid[y][x] = ch
            x += 1
            pos += 1
        return ["".join(r).rstrip() for r in grid]

    def shows(self, *wanted: str) -> list[str] | None:
        s = self.screen()
        return s if all(any(w in row for row in s) for w in wanted) else None

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def row_of(screen: list[str], text: str) -> int:
    return next(i for i, row in enumerate(screen) if text in row)


@pytest.fixture
def terminal():
    made: list[Terminal] = []

    def make(*args, **kwargs) -> Terminal:
        made.append(Terminal(*args, **kwargs))
        return made[-1]
    yield make
    for t in made:
        t.close()


def test_the_screen_shows_the_alarm_above_the_events_and_q_gives_the_terminal_back(bus, terminal):
    term = terminal(watch_args(bus), rows=30, columns=110)
    wait_for(lambda: term.shows("connected", "DOORS", "EVENTS"), 15, "the screen")
    assert term.read().startswith("\x1b[?1049h")  # the alternate screen: the shell's is kept
    contact(bus, "open")  # no card: forced
    bus.tap(UID)
    screen = wait_for(lambda: term.shows("ALARMS (1 open)", "CRITICAL", "contact open", "in granted (card)"),
                      what="the forced door and the tap")
    alarm, events = row_of(screen, "CRITICAL"), row_of(screen, "EVENTS")
    assert alarm < events and "forced" in screen[alarm] and "entrance" in screen[alarm]
    assert "NOT ACKED" in screen[alarm]
    assert "\x1b[1;37;41mCRITICAL" in term.read()  # xterm has colours: the severity in them too
    door = screen[row_of(screen, "DOORS") + 1]
    assert door.startswith(" entrance") and "contact open" in door and "ALARM forced" in door, "\n".join(screen)
    assert re.search(r"entrance +in granted \(card\) +[0-9a-f]{16}", "\n".join(screen[events:]))
    assert "door/entrance" not in "\n".join(screen)
    contact(bus, "closed")
    term.type(b"q")
    assert term.proc.wait(15) == 0
    assert term.read().endswith("\x1b[0m\x1b[?25h\x1b[?1049l")  # cursor shown, the shell's screen back
    assert termios.tcgetattr(term.slave) == term.before  # echo and line editing as they were
    bus.cli("alarm", "ack", "door-a.entrance.forced")


def test_the_screen_follows_a_resize_and_ctrl_c_quits(bus, terminal):
    term = terminal(watch_args(bus), rows=30, columns=100, env={"NO_COLOR": "1"})
    wait_for(lambda: term.shows("connected", "EVENTS"), 15, "the screen")
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", term.read())  # NO_COLOR: no colour, bold and reverse only
    mark = len(term.read())
    term.resize(8, 40)  # the kernel tells the watch with SIGWINCH

    def last_frame() -> list[str]:
        """The screen as the last frame drawn leaves it (each frame starts at row 1 and draws all)."""
        return term.screen(max(mark, term.read().rfind("\x1b[1;1H")))

    def redrawn() -> list[str] | None:
        try:
            s = last_frame()
        except AssertionError:
            return None  # a frame for the old size, drawn as the window changed: the next one counts
        return s if s[0].startswith("sekisho watch") and "ALARMS" in s[1] else None
    wait_for(redrawn, what="the screen redrawn for 8 x 40")
    small = last_frame()  # every row within 8 x 40, or the interpreter says where it was not
    assert small[0].startswith("sekisho watch · site test") and small[1].startswith("ALARMS")
    term.type(b"\x03")  # Ctrl-C, through the terminal's line discipline
    assert term.proc.wait(15) == 0
    assert term.read().endswith("\x1b[?1049l") and termios.tcgetattr(term.slave) == term.before


def test_the_screen_says_why_it_cannot_start(bus, terminal):
    term = terminal(watch_args(bus, "--mqtt", f"mqtt://127.0.0.1:{free_port()}"), rows=24, columns=80)
    assert term.proc.wait(30) == 69
    text = wait_for(lambda: "cannot reach" in term.read() and term.read(), what="the message")
    assert "sekisho: cannot reach the broker at" in text and "\x1b[?1049h" not in text


def test_a_dumb_terminal_gets_lines(bus, terminal):
    term = terminal(watch_args(bus), rows=24, columns=80, env={"TERM": "dumb"})
    wait_for(lambda: re.search(r"node +door-a +online", term.read()), 15, "a line on the dumb terminal")
    assert "\x1b[" not in term.read()
    term.type(b"\x03")
    assert term.proc.wait(15) == 0


def test_lines_say_where_a_lost_connection_left_a_gap(bus, tmp_path):
    own = Broker(tmp_path)
    own.start()
    try:
        watcher = Watcher(bus, tmp_path, "--lines", "--mqtt", own.url)
        own.stop()
        wait_for(lambda: watcher.alive() and " LOST " in watcher.err.read_text(), what="the loss said")
        own.start()
        wait_for(lambda: watcher.err.read_text().count("# watching") == 2, 20, "subscribed again")
        assert watcher.err.read_text().count(" LOST ") == 1
        assert watcher.stop() == 0
    finally:
        own.stop()


def test_the_screen_refused_by_the_broker_gives_the_terminal_back_and_says_why(bus, terminal, tmp_path):
    refusing = Broker(tmp_path)
    refusing.conf.write_text(refusing.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    refusing.start()
    try:
        term = terminal(watch_args(bus, "--mqtt", refusing.url), rows=24, columns=80)
        assert term.proc.wait(30) == 1
        text = wait_for(lambda: "refused" in term.read() and term.read(), what="the message")
        screen_left = text.index("\x1b[?1049l")
        assert text.index("sekisho: broker refused: Not authorized") > screen_left  # on the shell's screen
        assert termios.tcgetattr(term.slave) == term.before
    finally:
        refusing.stop()
