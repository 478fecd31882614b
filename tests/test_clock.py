"""The wall clock stepped while the daemon runs (issue 16, item 6; docs/time.md): the daemon is a
real process under libfaketime, whose timestamp file this test rewrites to step the wall clock
back an hour or forward a day. The monotonic clock is left alone, as ``date -s`` or an NTP step
leaves it. Each test says what it would see were the behaviour on the other clock."""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import wait_for
from harness import DOOR_WITH_CONTACT

START = dt.datetime(2026, 12, 7, 7, 30, tzinfo=dt.timezone.utc)
"""A Monday, 16:30 in Tokyo (the test site's zone): inside a 09:00-17:00 window."""


class SteppedClock:
    """The wall clock of the processes given ``env()``: libfaketime reads ``@<time>`` from a file
    at every call (no cache), and each new one sets their clock to that time at once, as
    ``date -s`` does; it runs on from there in real time. ``step(d)`` sets it to the last time
    set plus ``d``: a step of ``d`` less the seconds since that last setting."""

    def __init__(self, tmp_path: Path, start: dt.datetime = START) -> None:
        found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")  # the multiarch dir: amd64, arm64
        if not found:
            pytest.fail("needs libfaketime (make deps installs it)")
        self.lib = found[0]
        self.sleep_fix = tmp_path / "monotonic_sleep_preload.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(self.sleep_fix),
                        str(Path(__file__).with_name("monotonic_sleep_preload.c")), "-ldl"], check=True, timeout=60)
        self.file = tmp_path / "faketime"
        self.start = start
        self._write()

    def _write(self) -> None:
        self.file.write_text(self.start.astimezone(dt.timezone.utc).strftime("@%Y-%m-%d %H:%M:%S") + "\n")

    def step(self, delta: dt.timedelta) -> None:
        self.start += delta
        self._write()

    def env(self) -> dict[str, str]:
        # Prepended: under umockdev-wrapper, umockdev's preload is there already and stays.
        # NO_FAKE_STAT: libfaketime's stat() and umockdev's fopen() call each other and deadlock
        # at start (libfaketime 0.9.10, umockdev 0.17); file times need no faking here.
        # The sleep fix before libfaketime: it fails an absolute sleep on the monotonic clock
        # (EINVAL), which Python's time.sleep is, and paho sleeps so between reconnects.
        preload = ":".join(p for p in (str(self.sleep_fix), self.lib, os.environ.get("LD_PRELOAD", "")) if p)
        return {**os.environ, "LD_PRELOAD": preload, "TZ": "UTC", "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}


HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)

SCHEDULED = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"
pin_max_wrong = 3
pin_lockout_s = 4

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[schedules.monday]
mon = ["09:00-17:00"]

[levels.staff]
doors = ["entrance", "vault"]

[levels.monday]
doors = ["entrance"]
schedule = "monday"

[doors.entrance]
area_in = "room"

[doors.vault]
auth = "card_and_pin"
pin_timeout_s = 3

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.vault-in]
driver = "sim"
door = "vault"
direction = "in"
"""
ALICE, BOB = "04a1a1a1", "04b0b0b0"


@pytest.fixture
def clock(tmp_path):
    return SteppedClock(tmp_path)


def enroll(site, tmp_path: Path) -> None:
    """Alice on Mondays' level, Bob on staff: one CLI run (each costs a second under load)."""
    roster = tmp_path / "roster.csv"
    roster.write_text(f"id,name,levels,cards\nalice,Alice,monday,{ALICE}\nbob,Bob,staff,{BOB}\n")
    site.cli("person", "import", str(roster))


@pytest.fixture
def door_site(site, subscribe, clock, tmp_path):
    site.config.write_text(SCHEDULED.format(url=site.broker.url))
    enroll(site, tmp_path)
    site.cli("person", "pin", "bob", input_text="2468\n")
    sub = subscribe()
    site.start(env=clock.env())
    yield site, sub
    site.stop()


def decisions(sub) -> list[tuple[str, str]]:
    return [(e["result"], e["reason"]) for e in sub.events()]


def next_decision(site, sub, act) -> tuple[str, str]:
    n = len(sub.events())
    act()
    return wait_for(lambda: len(sub.events()) > n and decisions(sub)[n], what="the door's decision")


def test_a_schedule_follows_the_wall_clock_each_way(door_site, clock):
    # Were the schedule read from a clock taken at start and run on the monotonic one, the
    # steps would change nothing and every tap would be granted.
    site, sub = door_site
    tap = lambda: site.tap(ALICE)  # noqa: E731 - the act each decision follows
    assert next_decision(site, sub, tap)[0] == "granted"  # Monday 16:30
    clock.step(DAY)
    assert next_decision(site, sub, tap) == ("denied", "outside_schedule")  # Tuesday 16:30
    clock.step(-DAY)
    assert next_decision(site, sub, tap)[0] == "granted"  # Monday 16:30 again
    clock.step(HOUR)
    assert next_decision(site, sub, tap) == ("denied", "outside_schedule")  # 17:30, past the window
    clock.step(-HOUR)
    assert next_decision(site, sub, tap)[0] == "granted"
    # The node's own listing is in the order the taps happened, though their times go back.
    listed = json.loads(site.cli("events", "--json").stdout)
    assert [e["result"] for e in listed] == ["granted", "denied", "granted", "denied", "granted"]
    assert listed[1]["ts"] > listed[2]["ts"]  # Tuesday's refusal, then Monday again


def waiting_for_pin(site, reader: str, uid: str) -> None:
    before = site.daemon_log().count(f"{reader}: waiting")
    site.tap(uid, reader=reader)
    wait_for(lambda: site.daemon_log().count(f"{reader}: waiting") > before, what=f"{reader} waiting for a PIN")


def test_the_pin_wait_is_a_duration(door_site, clock):
    # On the wall clock, the day forward would end the wait at once (pin_timeout, not granted),
    # and the hour back would hold it open an hour (no pin_timeout within the wait below).
    site, sub = door_site
    waiting_for_pin(site, "vault-in", BOB)
    clock.step(DAY)
    pin = lambda: site.sim("vault-in", {"op": "pin", "digits": "2468"})  # noqa: E731
    assert next_decision(site, sub, pin) == ("granted", "card_and_pin")
    waiting_for_pin(site, "vault-in", BOB)
    clock.step(-HOUR)
    assert wait_for(lambda: decisions(sub)[1:], timeout=12, what="the PIN wait's end (pin_timeout_s 3)") == \
        [("denied", "pin_timeout")]


def test_a_lockout_is_a_duration(door_site, clock, subscribe):
    # On the wall clock, the day forward would end the lockout at once (the tap asked for a PIN),
    # and the hour back would hold it an hour (its alarm not cleared within the wait below).
    site, sub = door_site
    for _ in range(3):
        waiting_for_pin(site, "vault-in", BOB)
        assert next_decision(site, sub, lambda: site.sim("vault-in", {"op": "pin", "digits": "0000"}))[1] == \
            "pin_wrong"
    clock.step(DAY)
    assert next_decision(site, sub, lambda: site.tap(BOB, reader="vault-in")) == ("denied", "locked_out")
    clock.step(-DAY - HOUR)
    alarms = lambda: [m.json for m in sub.messages  # noqa: E731 - a probe for wait_for
                      if "/alarm/" in m.topic and m.payload and m.json["kind"] == "pin_lockout"]
    wait_for(lambda: any(a["cleared"] for a in alarms()), timeout=12,
             what="the lockout's end (pin_lockout_s 4), its alarm cleared")
    waiting_for_pin(site, "vault-in", BOB)
    assert next_decision(site, sub, lambda: site.sim("vault-in", {"op": "pin", "digits": "2468"}))[0] == "granted"


HELD = DOOR_WITH_CONTACT.replace("unlock_s = 1.0", "unlock_s = 10.0\nheld_open_s = 3")


def test_the_held_open_alarm_is_a_duration(site, subscribe, clock):
    # On the wall clock, the day forward would raise held_open at once, before held_open_s had
    # passed (the lower bound below), and the hour back would put it off an hour.
    site.config.write_text(HELD.format(url=site.broker.url))
    site.enroll("alice", ALICE)
    sub = subscribe()
    site.start(env=clock.env())
    assert next_decision(site, sub, lambda: site.tap(ALICE))[0] == "granted"
    site.sim("entrance-contact", {"op": "set", "active": True})
    wait_for(lambda: [m for m in sub.on("/door/entrance/state") if m.json["contact"] == "open"], what="the door open")
    opened = time.monotonic()
    clock.step(DAY)
    # The daemon has seen the day forward (its watch audited it) before the clock goes back.
    wait_for(lambda: rows(site, "SELECT count(*) FROM audit WHERE action = 'clock.step'") == [(1,)],
             what="the day forward noticed")
    clock.step(-DAY - HOUR)
    held = wait_for(lambda: [m.json for m in sub.messages if "/alarm/" in m.topic and m.payload
                             and m.json["kind"] == "held_open"], timeout=12, what="held_open (held_open_s 3)")
    assert time.monotonic() - opened >= 2.5, "held_open came before held_open_s had passed"
    assert held[0]["raised"].startswith("2026-12-07T06:")  # stamped by the stepped wall clock
    site.stop()


def rows(site, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{site.data_dir / 'sekisho.db'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def test_a_step_is_audited_and_the_retention_purge_follows_the_wall_clock(site, subscribe, clock, tmp_path):
    # The purge runs once a day of the monotonic clock. Without the daemon noticing the step,
    # the day forward would leave the day-old event in the store for up to another day.
    site.config.write_text(SCHEDULED.format(url=site.broker.url).replace("pin_lockout_s = 4", "retention_days = 1"))
    enroll(site, tmp_path)
    sub = subscribe()
    site.start(env=clock.env())
    assert next_decision(site, sub, lambda: site.tap(BOB))[0] == "granted"  # recorded at START
    steps = lambda: [json.loads(d) for (d,) in rows(site, "SELECT detail FROM audit WHERE action = 'clock.step'")]  # noqa: E731
    clock.step(-HOUR)
    (back,) = wait_for(steps, what="the hour back audited")
    assert -3660 < back["seconds"] < -3500 and back["after"].startswith("2026-12-07T06:")
    assert rows(site, "SELECT count(*) FROM events") == [(1,)]  # a step back makes nothing older
    clock.step(DAY + 2 * HOUR)  # 08:30 the next day: the 07:30 event is past retention_days 1
    wait_for(lambda: rows(site, "SELECT count(*) FROM events") == [(0,)], timeout=5,
             what="the purge at the step forward")
    # The purge took the hour back's audit row too (stamped 06:30 the day before); the step
    # forward's row was written first, at the new time, and stays.
    assert [s["seconds"] > 86400 for s in steps()] == [True]
    (purge,) = [json.loads(d) for (d,) in rows(site, "SELECT detail FROM audit WHERE action = 'retention.purge'")]
    assert purge["events"] == 1 and purge["before"].startswith("2026-12-07T08:")
    site.stop()


def test_a_usb_exception_lasts_its_minutes_whatever_the_wall_clock_says(site, subscribe, testbed, clock):
    # On the wall clock, the day forward would end the exception at once (exception_expired
    # before the in-force list moved), and the hour back would stretch it by an hour.
    from test_usb_daemon import CALL_CENTRE, FLASH
    from usbfake import Kernel, read
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n')
    sub = subscribe()
    # The testbed's dir is in the C environment, not in os.environ, which env() starts from.
    site.start(env=clock.env() | {"UMOCKDEV_DIR": testbed.get_root_dir()})
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731 - a probe for wait_for
    in_force = lambda: [m.json["exceptions"] for m in sub.on("/usb/door-a/exceptions")]  # noqa: E731
    wait_for(lambda: any(e["action"] == "blocked" for e in usb()), what="the flash drive blocked")
    site.cli("usb", "allow", "0781:5567:4C530001230417116225", "--minutes", "0.1")  # 6 s
    granted = time.monotonic()
    (exc,) = wait_for(lambda: in_force()[-1], what="the exception in force")
    clock.step(DAY)
    (moved,) = wait_for(lambda: in_force()[-1] != [exc] and in_force()[-1],
                        what="the exceptions in force said again after the step")
    shift = dt.datetime.fromisoformat(moved["until"]) - dt.datetime.fromisoformat(exc["until"])
    assert DAY - dt.timedelta(seconds=30) < shift <= DAY, shift
    assert not any(e["action"] == "exception_expired" for e in usb())
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"
    clock.step(-DAY - HOUR)
    wait_for(lambda: any(e["action"] == "exception_expired" for e in usb()), timeout=12, what="the exception's end")
    assert time.monotonic() - granted >= 5, "the exception ended before its minutes"
    assert read(f"{kernel.devices['1-2']}/authorized") == "0"
    site.stop()


def test_the_watch_tells_a_step_from_a_slew():
    # In process, on a loop that is never run: the checks are called by hand, and the wall
    # clock is the loop's plus an offset the test sets.
    import asyncio

    from sekisho.daemon.clock_watch import STEP_S, ClockWatch
    loop = asyncio.new_event_loop()
    offset, seen = [1_796_000_000.0], []
    watch = ClockWatch(loop, lambda s, before, after: seen.append((round(s), before, after)),
                       wall=lambda: loop.time() + offset[0])
    try:
        watch.start()
        for _ in range(10):  # slewed STEP_S / 2 at a time: each check sees less than a step
            offset[0] += STEP_S / 2
            watch._check()
        assert seen == []
        offset[0] -= 3600
        watch._check()
        offset[0] += 86400
        watch._check()
        assert [s for s, _, _ in seen] == [-3600, 86400]
        before, after = (dt.datetime.fromisoformat(t) for t in seen[1][1:])
        assert dt.timedelta(seconds=86399) < after - before < dt.timedelta(seconds=86401)
    finally:
        watch.stop()
        loop.close()


def test_the_outbox_waits_out_a_broker_outage_on_the_monotonic_clock(site, subscribe, clock, tmp_path):
    # paho's wait between reconnects (reconnect_max_s 1) timed on the wall clock would, after
    # the hour back, wait an hour: the event recorded while the broker was down would not come.
    site.config.write_text(SCHEDULED.format(url=site.broker.url))
    enroll(site, tmp_path)
    sub = subscribe(persistent=True)
    site.start(env=clock.env())
    wait_for(lambda: sub.on("/status"), what="the daemon online")
    site.broker.stop()
    site.tap(BOB)
    wait_for(lambda: rows(site, "SELECT count(*) FROM events") == [(1,)], what="the tap recorded, for the outbox")
    clock.step(-HOUR)
    wait_for(lambda: rows(site, "SELECT count(*) FROM audit WHERE action = 'clock.step'") == [(1,)],
             what="the hour back noticed")
    site.broker.start()
    (event,) = wait_for(sub.events, timeout=12, what="the event sent once the broker is back")
    assert event["seq"] == 1 and event["result"] == "granted" and event["ts"].startswith("2026-12-07T07:")
    assert "Invalid argument" not in site.daemon_log()  # paho's sleeps work under libfaketime
    site.stop()
