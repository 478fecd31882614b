"""The controllers in-process, on a real store in a temp dir and a real event loop, without a
broker or a daemon: Alarms, Lockouts, Presence, DoorStates and Doors, and Desks against
dbusmock's logind. An edge case here costs milliseconds; the end-to-end tests cover the wiring."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from typing import Any

import pytest

from sekisho.daemon import config as config_mod
from sekisho.daemon.alarms import Alarms, Phase
from sekisho.daemon.door_states import DoorStates
from sekisho.daemon.doors import Doors
from sekisho.daemon.errors import SekishoError
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.lockouts import Lockouts
from sekisho.daemon.pins import hash_pin
from sekisho.daemon.presence import Presence
from sekisho.daemon.rules_in_force import RulesInForce
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People
from sekisho.daemon.store.record import AlarmChange, Move, NewEvent, NewState, Record
from sekisho.daemon.topics import Topics
from sekisho.policies.access import Mode

CONFIG = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"
pin_max_wrong = 2
pin_lockout_s = 1

[areas.room]
passback = "hard"

[areas.office]

[levels.staff]
doors = ["entrance", "vault"]
desks = ["desk-01"]

[doors.entrance]
area_in = "room"
unlock_s = 0.5

[doors.vault]
auth = "card_and_pin"
pin_timeout_s = 3
fire_exit = true

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.entrance-out]
driver = "sim"
door = "entrance"
direction = "out"

[readers.vault-in]
driver = "sim"
door = "vault"
direction = "in"

[inputs.fire]
driver = "sim"
kind = "fire"

[desks.desk-01]
area = "room"
lock_confirm_s = 30.0
lock_retries = 0

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""


class FakeStrike:
    """The hardware edge: what a strike was told, in order."""

    def __init__(self) -> None:
        self.told: list[bool] = []

    async def set(self, released: bool) -> None:
        self.told.append(released)

    def close(self) -> None:
        self.told.append(None)  # type: ignore[arg-type]


class House:
    """The door node's collaborators, built as the composition root builds them."""

    def __init__(self, tmp_path, loop: asyncio.AbstractEventLoop) -> None:
        path = tmp_path / "sekisho.toml"
        path.write_text(CONFIG)
        self.config = config_mod.load(path)
        self.database = Database(tmp_path / "data")
        self.people = People(self.database)
        self.record = Record(self.database, "door-a")
        self.key = SiteKey.load_or_create(tmp_path / "data" / "site.key")
        self.queued: list[Any] = []
        topics = Topics("test")
        self.alarms = Alarms("door-a", self.record, topics, self.queued.append)
        self.presence = Presence(self.config, self.people, self.record, self.key, topics, loop, self.queued.append)
        self.lockouts = Lockouts(self.config.site, self.alarms, loop)
        self.strikes = {door: FakeStrike() for door in self.config.doors}
        self.states = DoorStates(self.config, self.record, topics, loop, self.queued.append, self.alarms, self.strikes)
        self.doors = Doors(self.config, self.people, topics, loop, self.queued.append, states=self.states,
                           presence=self.presence, lockouts=self.lockouts, rules=RulesInForce(self.config.rules))

    def enroll(self, person: str, uid: str, pin: str = "2468") -> str:
        self.people.add_person(person, person.title(), "test")
        card = self.key.card_hash(bytes.fromhex(uid))
        self.people.add_card(person, card, "test")
        self.people.grant_level(person, "staff", "test")
        self.people.set_pin_hash(person, hash_pin(pin), "test")
        return card

    def events(self) -> list[dict]:
        return [i.payload for i in self.queued if isinstance(i, NewEvent)]

    def alarm_changes(self) -> list[AlarmChange]:
        return [i for i in self.queued if isinstance(i, AlarmChange)]

    def commit(self) -> None:
        self.record.record(self.queued)
        self.queued.clear()


def run(coro) -> Any:
    return asyncio.run(coro)


async def until(predicate, what: str, timeout: float = 10.0) -> Any:
    """Let the loop run until ``predicate`` is truthy; the deadline only bounds a failure (work
    off the loop, a PIN's scrypt or a call to the logind mock, is slow on a busy machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.01)
    return value


# ----------------------------------------------------------------------------- alarms
def audit_rows(house: House) -> list[tuple[str, str, dict]]:
    with sqlite3.connect(house.database.path) as db:
        return [(r[0], r[1], json.loads(r[2])) for r in db.execute(
            "SELECT actor, action, detail FROM audit WHERE action LIKE 'alarm.%' ORDER BY n")]


def test_an_alarm_id_names_its_condition_and_without_acknowledgement_clearing_closes_it(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        house.alarms.ack_needed = False  # [site] alarms_need_ack = false
        first = house.alarms.raise_("forced", "entrance", "critical")
        assert first == house.alarms.raise_("forced", "entrance", "critical") == "door-a.entrance.forced"
        assert house.alarms.alarm_id("pin_lockout", "vault", "3f2c") == "door-a.vault.pin-lockout.3f2c"
        house.alarms.clear("forced", "entrance")
        house.alarms.clear("forced", "entrance")  # not open any more: nothing
        changes = house.alarm_changes()
        assert [c.closed for c in changes] == [False, False, True]
        assert changes[0].payload["raised"] and changes[0].payload["acked_by"] is None
        house.commit()
        assert house.record.active_alarms() == []
        house.alarms.raise_("forced", "entrance", "critical")  # the same condition again: the same id
        house.commit()  # an upsert: the id's row is its latest life
        assert [(a["id"], a["closed"]) for a in house.record.alarms()] == [(first, None)]
        assert [(actor, action) for actor, action, _ in audit_rows(house)] == [
            ("daemon", "alarm.raise"), ("daemon", "alarm.raise"), ("daemon", "alarm.clear"), ("daemon", "alarm.raise")]
    run(go())


def test_an_alarm_waits_for_a_person_even_after_its_condition_cleared(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        assert house.alarms.ack_needed  # the default
        alarm_id = house.alarms.raise_("held_open", "entrance", "warning")
        house.alarms.clear("held_open", "entrance")
        assert house.alarms.open[alarm_id].phase is Phase.CLEARED
        cleared = house.alarm_changes()[-1]
        assert cleared.payload["cleared"] and not cleared.closed  # retained, with cleared set
        house.commit()
        assert [a["id"] for a in house.record.active_alarms()] == [alarm_id]
        acked = house.alarms.ack(alarm_id, "key:officer-1", "door checked, a delivery")
        assert acked.acked_by == "key:officer-1" and alarm_id not in house.alarms.open
        closing = house.alarm_changes()[-1]
        assert closing.closed and closing.payload["acked_by"] == "key:officer-1"
        house.commit()
        row = house.record.alarms()[0]
        assert (row["acked_by"], row["ack_note"], bool(row["closed"])) == ("key:officer-1", "door checked, a delivery",
                                                                           True)
        assert audit_rows(house)[-1] == ("key:officer-1", "alarm.ack", {
            "alarm": alarm_id, "kind": "held_open", "source": "entrance", "note": "door checked, a delivery",
            "closed": True})
        with pytest.raises(SekishoError, match="no open alarm 'door-a.entrance.held-open'"):
            house.alarms.ack(alarm_id, "key:officer-1")
    run(go())


def test_an_acknowledgement_holds_while_the_condition_lasts_and_not_for_the_next_time(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        fire = house.alarms.raise_("fire", "fire", "critical")
        house.alarms.ack(fire, "cli:guard")
        assert house.alarms.open[fire].phase is Phase.ACKED  # still burning: open, acknowledged
        house.alarms.ack(fire, "key:officer-1")  # the first acknowledgement stands
        house.alarms.raise_("fire", "fire", "critical")  # reported again while active: the same occurrence
        assert house.alarms.open[fire].acked_by == "cli:guard"
        house.alarms.clear("fire", "fire")
        assert fire not in house.alarms.open  # cleared and acknowledged: closed
        house.alarms.raise_("fire", "fire", "critical")  # a new fire: waits for a person again
        assert house.alarms.open[fire].phase is Phase.RAISED and house.alarms.open[fire].acked_by is None
    run(go())


def test_an_incident_is_cleared_as_it_is_raised_and_closes_when_acknowledged(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        failed = house.alarms.raise_("lock_failed", "desk-01", "critical", incident=True)
        raised = house.alarm_changes()[-1]
        assert raised.payload["cleared"] == raised.payload["raised"] and not raised.closed
        house.alarms.ack(failed, "cli:guard")
        assert failed not in house.alarms.open and house.alarm_changes()[-1].closed
        house.alarms.ack_needed = False  # a lab: said, and closed at once
        house.alarms.raise_("lock_failed", "desk-01", "critical", incident=True)
        assert house.alarm_changes()[-1].closed and failed not in house.alarms.open
    run(go())


def test_an_acknowledgement_names_the_occurrence_it_saw(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        forced = house.alarms.raise_("forced", "entrance", "critical")
        first = house.alarms.open[forced].raised
        house.alarms.clear("forced", "entrance")
        await asyncio.sleep(0.01)  # timestamps have milliseconds
        house.alarms.raise_("forced", "entrance", "critical")  # forced again, before anyone looked
        second = house.alarms.open[forced].raised
        assert second > first  # a new occurrence, with its own time
        with pytest.raises(SekishoError, match="was raised again"):
            house.alarms.ack(forced, "key:officer-1", raised=first)
        assert house.alarms.open[forced].acked_by is None
        assert house.alarms.ack(forced, "key:officer-1", raised=second).acked_by == "key:officer-1"
    run(go())


def test_open_alarms_outlive_a_restart_as_cleared_and_wait_for_a_person(tmp_path):
    async def go() -> None:
        loop = asyncio.get_running_loop()
        house = House(tmp_path, loop)
        forced = house.alarms.raise_("forced", "entrance", "critical")
        fire = house.alarms.raise_("fire", "fire", "critical")
        house.alarms.ack(fire, "cli:guard")
        house.commit()
        again = House(tmp_path, loop)
        again.alarms.startup()
        # The unacknowledged one stays open, its condition cleared by the restart; the acknowledged
        # one closes (raised again by the input if it is still active).
        assert [(c.alarm_id, c.closed, bool(c.payload["cleared"])) for c in again.alarm_changes()] == [
            (forced, False, True), (fire, True, True)]
        again.commit()
        assert [a["id"] for a in again.record.active_alarms()] == [forced]
        assert set(again.alarms.open) == {forced}
        third = House(tmp_path, loop)
        third.alarms.startup()  # waiting for a person already, and said so: nothing more to say
        assert third.alarm_changes() == [] and set(third.alarms.open) == {forced}
        again.alarms.ack(forced, "key:officer-1")
        again.commit()
        assert again.record.active_alarms() == []
        (tmp_path / "lab").mkdir()
        lab = House(tmp_path / "lab", loop)
        lab.alarms.raise_("forced", "entrance", "critical")
        lab.commit()
        restarted = House(tmp_path / "lab", loop)
        restarted.alarms.ack_needed = False
        restarted.alarms.startup()
        restarted.commit()
        assert restarted.record.active_alarms() == []
    run(go())


# ----------------------------------------------------------------------------- lockouts
def test_wrong_pins_lock_a_card_out_with_an_alarm_about_its_holder_until_it_ends(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        house.lockouts.count("card1", False, "vault", "3f2c")
        house.lockouts.count("card1", True, "vault", "3f2c")  # a right PIN starts the count again
        house.lockouts.count("card1", False, "vault", "3f2c")
        assert not house.lockouts.locked_out("card1")
        house.lockouts.count("card1", False, "desk-01", "3f2c")  # wherever it was typed
        assert house.lockouts.locked_out("card1") and not house.lockouts.locked_out("card2")
        raised = house.alarm_changes()[-1]
        assert raised.alarm_id == "door-a.desk-01.pin-lockout.3f2c" and raised.payload["subject"] == "3f2c"
        await asyncio.sleep(1.1)
        assert not house.lockouts.locked_out("card1")
        ended = house.alarm_changes()[-1]
        assert ended.action == "alarm.clear" and ended.payload["cleared"] and not ended.closed  # waits for a person
    run(go())


# ----------------------------------------------------------------------------- presence
def test_presence_local_moves_remote_occupancy_and_subjects(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        presence = house.presence
        assert presence.local_areas == {"room"} and presence.entered("alice", "room") is False
        presence.move("alice", "room")
        presence.move("bob", "room")
        await asyncio.sleep(0)
        occupancy = [i.payload for i in house.queued if isinstance(i, NewState)]
        assert occupancy == [{"count": 2, "subjects": sorted([presence.subject_of("alice"),
                                                              presence.subject_of("bob")])}]
        assert [i.area for i in house.queued if isinstance(i, Move)] == ["room", "room"]
        assert presence.entered("alice", "room") and presence.passback_area("alice") == "room"
        assert presence.subject_of("alice") == house.key.pseudonym("alice")
        # A remote area is unknown until its door node says, and a malformed message changes nothing.
        presence.remote_areas = frozenset({"office"})
        assert presence.entered("alice", "office") is None
        presence.occupancy_heard("sekisho/v1/test/area/office/occupancy",
                                 json.dumps({"count": 1, "subjects": [presence.subject_of("alice")]}).encode())
        presence.occupancy_heard("sekisho/v1/test/area/office/occupancy", b"{not json")
        assert presence.entered("alice", "office") is True and presence.entered("bob", "office") is False
        assert presence.remote_counts() == {"office": 1}
    run(go())


def test_presence_when_the_recorder_speaks_for_occupancy(tmp_path):
    """``occupancy_from = "recorder"``: this node's doors still answer anti-passback, but it
    publishes no occupancy (its view is partial), and whether a person entered its own area is
    the recorder's word, since they may have come in through another node's door."""
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        house.config = dataclasses.replace(house.config, site=dataclasses.replace(house.config.site,
                                                                                  occupancy_from="recorder"))
        presence = Presence(house.config, house.people, house.record, house.key, Topics("test"),
                            asyncio.get_running_loop(), house.queued.append)
        presence.startup()
        presence.move("alice", "room")
        await asyncio.sleep(0)
        assert [i for i in house.queued if isinstance(i, NewState)] == []
        assert [i.area for i in house.queued if isinstance(i, Move)] == ["room"]
        assert presence.passback_area("alice") == "room"
        assert presence.remote_areas == {"room"} and presence.entered("bob", "room") is None
        presence.occupancy_heard("sekisho/v1/test/area/room/occupancy",
                                 json.dumps({"count": 1, "subjects": [presence.subject_of("bob")]}).encode())
        assert presence.entered("bob", "room") is True and presence.entered("alice", "room") is False
    run(go())


# ----------------------------------------------------------------------------- doors
def test_start_drives_every_strike_and_a_grant_releases_records_and_moves(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        alice = house.enroll("alice", "04a1a1a1")
        await house.states.startup()
        assert house.strikes["entrance"].told == [False] and house.strikes["vault"].told == [False]
        house.doors.card(house.config.readers["entrance-in"], alice)
        # Released for unlock_s (0.5 s): from the strike's history, which a busy machine cannot
        # make the test miss; the relock is checked below.
        await until(lambda: house.strikes["entrance"].told[1:2] == [True], "the strike released")
        assert [(e["result"], e["rule"]) for e in house.events()] == [("granted", "level:staff")]
        assert house.presence.entered("alice", "room")
        house.doors.card(house.config.readers["entrance-in"], alice)  # in again: hard anti-passback
        assert house.events()[-1]["rule"] == "passback:room"
        await asyncio.sleep(0.6)
        assert house.strikes["entrance"].told == [False, True, False]  # unlock_s is over
        await house.states.shutdown()
        assert house.strikes["entrance"].told[-2:] == [False, None]
    run(go())


def test_a_pin_waits_then_is_judged_once_against_the_store_as_it_is_then(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        alice = house.enroll("alice", "04a1a1a1")
        vault = house.config.readers["vault-in"]
        house.doors.card(vault, house.key.card_hash(bytes.fromhex("04dead00")))  # unknown: never asked
        assert house.events()[-1]["reason"] == "unknown_card" and not house.doors.pending
        house.doors.card(vault, alice)
        assert "vault-in" in house.doors.pending and len(house.events()) == 1
        house.people.revoke_card(alice[:12], "test")
        house.doors.pin(vault, "2468")
        await until(lambda: len(house.events()) == 2, "the PIN judged")
        assert house.events()[-1]["reason"] == "revoked"
        bob = house.enroll("bob", "04b0b0b0")
        house.doors.card(vault, bob)
        house.states.set_mode("vault", Mode.LOCKDOWN, "test")
        house.doors.pin(vault, "2468")
        await until(lambda: len(house.events()) == 3, "the PIN judged")
        assert house.events()[-1]["reason"] == "lockdown"
        house.states.set_mode("vault", Mode.NORMAL, "test")
        house.doors.card(vault, bob)
        started = asyncio.get_running_loop().time()
        await until(lambda: len(house.events()) == 4, "no PIN within pin_timeout_s", timeout=30)
        assert house.events()[-1]["reason"] == "pin_timeout"
        assert asyncio.get_running_loop().time() - started >= 3.0
    run(go())


def test_fire_is_recorded_at_each_door_alarmed_once_and_the_fire_exit_stays_open(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        await house.states.startup()
        fire = house.config.inputs["fire"]
        house.states.fire(fire, True)
        house.states.fire(fire, True)  # reported again: not a second fire
        house.states.fire(fire, False)
        fires = [(e["door"], e["state"], e["released"]) for e in house.events()]
        assert fires == [("entrance", "active", False), ("vault", "active", True),
                         ("entrance", "reset", False), ("vault", "reset", True)]
        assert [(c.kind, c.action) for c in house.alarm_changes()] == [("fire", "alarm.raise"), ("fire", "alarm.clear")]
        assert house.states.mode("vault") is Mode.EMERGENCY
        await asyncio.sleep(0.05)
        assert house.strikes["vault"].told == [False, True]
    run(go())


# ----------------------------------------------------------------------------- desks
def test_a_desk_on_logind_tailgating_names_the_person_and_a_pull_locks(tmp_path, logind):
    from sekisho.daemon.desks import Desks
    from sekisho.daemon.logind import Logind
    from sekisho.policies.events import CardPresented, CardRemoved

    logind.patch_lock()
    logind.add_session("c1", user="alice")

    async def go() -> None:
        loop = asyncio.get_running_loop()
        house = House(tmp_path, loop)
        alice = house.enroll("alice", "04a1a1a1")
        client = Logind(call_timeout=10.0)
        desks = Desks(house.config, house.people, Topics("test"), loop, house.queued.append, logind=client,
                      presence=house.presence, alarms=house.alarms, rules=RulesInForce(house.config.rules))
        try:
            desks.startup()  # nobody holds the desk: its session locks
            await until(lambda: not desks.locking and logind.locked_hint("c1"), "the lock at start")
            # Alice's card in the slot, with no recorded entry into the room: tailgating, refused.
            desks.event("desk-01", CardPresented(source="desk-01", uid=bytes.fromhex("04a1a1a1")), alice)
            tailgating = [c for c in house.alarm_changes() if c.kind == "tailgating"]
            assert tailgating and tailgating[0].payload["subject"] == house.presence.subject_of("alice")
            assert desks.state("desk-01").state.value in ("vacant", "locked")
            house.presence.move("alice", "room")  # through the door
            desks.event("desk-01", CardPresented(source="desk-01", uid=bytes.fromhex("04a1a1a1")), alice)
            assert desks.state("desk-01").state.value == "in_use"
            asked = len(logind.calls("LockSession"))
            desks.event("desk-01", CardRemoved(source="desk-01"))
            await until(lambda: not desks.locking and desks.state("desk-01").state.value == "locked", "the pull's lock")
            assert logind.calls("LockSession")[asked:] == [["c1"]] and logind.locked_hint("c1")
        finally:
            await client.close()
    run(go())
