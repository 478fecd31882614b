"""The site's policy in the enrolment snapshot (format 2): the recorder's schedules and holidays
travel with the people and cards, a node stores them with the rest of the apply, and decides by
its config's rules with them (SiteRules.with_policy): the config's schedules win, the snapshot's
fill the names the config leaves undefined, holidays are united, and a name neither defines
opens nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sqlite3
import zlib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Site, wait_for
from sekisho.daemon import config as config_mod
from sekisho.daemon import enrolment_delta as ed
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.commands import keygen, load_private_key, public_key_text
from sekisho.daemon.errors import ConfigError
from sekisho.daemon.rules_in_force import RulesInForce
from sekisho.daemon.store.audit import canonical_json
from sekisho.daemon.store.database import DB_NAME, Database
from sekisho.daemon.store.people import People
from sekisho.policies.access import Attempt, Auth, AuthWindow, DoorRules, Holder, Level, SiteRules, decide
from sekisho.policies.decisions import Decision
from sekisho.policies.schedule import Schedule, TimeRange
from test_enrolment_transport import two_nodes

TZ = ZoneInfo("Asia/Tokyo")
MON_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
WHOLE_DAY = (TimeRange(0, 1440),)
OPEN = Schedule("office-hours", (WHOLE_DAY,) * 7, ())
"""Open all day every day, closed on holidays."""
KEY = Ed25519PrivateKey.generate()
SITE = "test"
ALICE = Holder("alice", levels=frozenset({"staff"}))


def node_rules(*, config_defines: Schedule | None = None, holidays: frozenset[dt.date] = frozenset()) -> SiteRules:
    """A node's config as link_levels builds it: level staff and the lobby's free window name
    ``office-hours``, which the config defines (``config_defines``) or leaves to the snapshot."""
    office = config_defines or Schedule.never_until_known("office-hours")
    schedules = {"always": Schedule.always(), **({"office-hours": config_defines} if config_defines else {})}
    return SiteRules(doors={"entrance": DoorRules("entrance"),
                            "lobby": DoorRules("lobby", Auth.CARD, (AuthWindow(office, Auth.FREE),))},
                     levels={"staff": Level("staff", frozenset({"entrance"}), office)},
                     holidays=holidays, schedules=schedules)


def at_entrance(rules: SiteRules, when: dt.datetime = MON_10, door: str = "entrance"):
    return decide(Attempt(door, "in", when, ALICE if door == "entrance" else None), rules)


# ----------------------------------------------------------------------------- the rules merge
def test_a_level_naming_a_schedule_nobody_defined_opens_nothing_and_its_window_never_applies():
    rules = node_rules()
    assert (at_entrance(rules).decision, at_entrance(rules).rule) == (Decision.DENIED, "level.schedule")
    assert at_entrance(rules, door="lobby").rule == "card.unknown"  # the free window does not apply
    # A snapshot without it changes nothing.
    other = rules.with_policy({"nights": Schedule("nights", (WHOLE_DAY,) * 7)}, frozenset())
    assert at_entrance(other).rule == "level.schedule"


def test_the_snapshots_schedule_is_used_where_the_config_has_none():
    rules = node_rules().with_policy({"office-hours": OPEN}, frozenset())
    assert (at_entrance(rules).decision, at_entrance(rules).rule) == (Decision.GRANTED, "level:staff")
    assert at_entrance(rules, door="lobby").rule == "auth.free"


def test_a_name_both_define_keeps_the_configs():
    closed_at_ten = Schedule("office-hours", (((TimeRange.parse("08:00-09:00")),),) * 7)
    rules = node_rules(config_defines=closed_at_ten).with_policy({"office-hours": OPEN}, frozenset())
    assert at_entrance(rules).rule == "level.schedule"
    assert rules.levels["staff"].schedule is closed_at_ten


def test_holidays_are_united():
    mine, theirs = dt.date(2026, 1, 1), MON_10.date()
    rules = node_rules(holidays=frozenset({mine})).with_policy({"office-hours": OPEN}, frozenset({theirs}))
    assert rules.holidays == {mine, theirs}
    # OPEN has no holiday ranges: on the snapshot's holiday, staff is outside its schedule.
    assert at_entrance(rules).rule == "level.schedule"
    assert at_entrance(rules, MON_10 + dt.timedelta(days=1)).rule == "level:staff"


def test_the_holder_builds_from_the_configs_rules_each_time():
    """A schedule the next snapshot no longer has closes again (never the last merge merged again)."""
    held = RulesInForce(node_rules())
    held.adopt({"office-hours": OPEN}, frozenset({dt.date(2027, 1, 1)}))
    assert at_entrance(held.current).rule == "level:staff"
    held.adopt({}, frozenset())
    assert at_entrance(held.current).rule == "level.schedule"
    assert held.current.holidays == frozenset()


# ----------------------------------------------------------------------------- the config
CONFIG = """\
[site]
id = "test"
node = "n1"

[doors.entrance]

[readers.r1]
driver = "sim"
door = "entrance"
direction = "in"

[levels.staff]
doors = ["entrance"]
schedule = "office-hours"
"""


def test_an_undefined_schedule_is_a_warning_on_a_node_that_takes_enrolment(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError, match="levels.staff.schedule: no schedule 'office-hours'"):
        config_mod.load(path)
    path.write_text(CONFIG + f'\n[commands.keys.recorder]\npublic_key = "{public_key_text(KEY)}"\n'
                             f'ops = ["enrolment.*"]\n')
    cfg = config_mod.load(path)
    assert cfg.rules.levels["staff"].schedule.never
    assert "office-hours" not in cfg.rules.schedules
    assert f"{path}: levels.staff.schedule: schedule 'office-hours' comes from the enrolment snapshot; until one " \
           "with it is applied it opens nothing" in cfg.warnings
    assert not any("has no time ranges" in w for w in cfg.warnings)
    # A door's auth window must be the node's own: one never active until a snapshot brings its
    # schedule would leave the door's plainer auth in force (a card_and_pin window dropped).
    path.write_text(path.read_text().replace('[doors.entrance]\n', '[doors.entrance]\nauth_schedules = '
                                             '[{ schedule = "nights", auth = "card_and_pin" }]\n'))
    with pytest.raises(ConfigError, match=r"doors.entrance.auth_schedules\[1\].schedule: no schedule 'nights'"):
        config_mod.load(path)
    path.write_text(path.read_text().replace('auth_schedules = [{ schedule = "nights", auth = "card_and_pin" }]\n',
                                             ""))
    # The recorder takes no snapshot: it is where schedules come from, so it must define them.
    path.write_text(path.read_text().replace('node = "n1"\n', 'node = "n1"\nroles = ["door", "recorder"]\n'))
    with pytest.raises(ConfigError, match="levels.staff.schedule: no schedule 'office-hours'"):
        config_mod.load(path)


# ----------------------------------------------------------------------------- the body
def recorder_store(tmp_path: Path) -> People:
    people = People(Database(tmp_path / "rec"))
    people.add_person("p1", "Hanako Yamada", "cli:t")
    people.add_card("p1", "ab" * 32, "cli:t")
    people.grant_level("p1", "staff", "cli:t")
    return people


NIGHTS = Schedule("nights", ((TimeRange.parse("22:00-06:00"),),) * 5 + ((), ()), WHOLE_DAY)
POLICY = ((OPEN, NIGHTS), ("2027-01-01", "2026-12-31"))
"""As a config may list them: a snapshot holds them sorted."""


def verified(signed: es.Signed, current: int = 0) -> es.Verified:
    return es.verify(signed, site=SITE, keys={"recorder": KEY.public_key()}, permitted={"recorder"}, current=current)


def test_format_2_round_trip_stored_with_the_apply_and_the_clash_audited(tmp_path):
    snapshot = es.build(recorder_store(tmp_path), SITE, 1, policy=POLICY)
    signed = es.sign(snapshot, KEY, "recorder")
    assert json.loads(signed.manifest)["format"] == es.FORMAT == "sekisho-enrolment-snapshot/2"
    got = verified(signed).snapshot
    assert (got.schedules, got.holidays) == ((NIGHTS, OPEN), ("2026-12-31", "2027-01-01"))
    body = json.loads(snapshot.body())
    assert body["schedules"]["nights"] == {"mon": ["22:00-06:00"], "tue": ["22:00-06:00"], "wed": ["22:00-06:00"],
                                           "thu": ["22:00-06:00"], "fri": ["22:00-06:00"], "sat": [], "sun": [],
                                           "holiday": ["00:00-24:00"]}
    assert body["holidays"] == ["2026-12-31", "2027-01-01"]

    node = Database(tmp_path / "node")
    done = es.apply(node, verified(signed), config_schedules={"always", "nights"})
    assert (done.schedules, done.holidays, done.shadowed) == (2, 2, ("nights",))
    detail = json.loads(node.db.execute("SELECT detail FROM audit ORDER BY n DESC LIMIT 1").fetchone()[0])
    assert (detail["schedules"], detail["holidays"], detail["shadowed"]) == (2, 2, ["nights"])
    node.close()
    again = Database(tmp_path / "node")  # stored: a restart reads it back
    schedules, holidays = es.stored_policy(again, SITE)
    assert schedules == {"office-hours": OPEN, "nights": NIGHTS}
    assert holidays == {dt.date(2026, 12, 31), dt.date(2027, 1, 1)}


def test_a_format_1_snapshot_is_still_applied_and_carries_no_policy(tmp_path):
    node = Database(tmp_path / "node")
    people = recorder_store(tmp_path)
    es.apply(node, verified(es.sign(es.build(people, SITE, 1, policy=POLICY), KEY, "recorder")))
    old = es.build(people, SITE, 2)
    v1 = es.Snapshot(old.site, old.version, old.created, old.people, old.cards)
    signed = es.sign(v1, KEY, "recorder")
    assert json.loads(signed.manifest)["format"] == es.FORMAT_V1
    assert "schedules" not in json.loads(v1.body())
    done = es.apply(node, verified(signed, current=1))
    assert (done.version, done.people, done.schedules) == (2, 1, 0)
    assert es.stored_policy(node, SITE) == ({}, frozenset())


def forged(snapshot_body: dict) -> es.Signed:
    """A body of our own making, signed as the recorder signs: only the format checks can refuse it."""
    snapshot = es.Snapshot(SITE, 1, "2026-12-05T00:00:00.000Z", (), ())
    good = es.sign(snapshot, KEY, "recorder")
    body = canonical_json(snapshot_body)
    digest = hashlib.sha256(body).hexdigest()
    piece = zlib.compress(body)
    chunk = canonical_json({"site": SITE, "version": 1, "index": 0, "count": 1, "sha256": digest,
                            "chunk_sha256": hashlib.sha256(piece).hexdigest()}) + b"\n" + piece
    manifest = {**json.loads(good.manifest), "sha256": digest, "size": len(body), "format": snapshot_body["format"]}
    del manifest["sig"]
    sig = base64.b64encode(KEY.sign(canonical_json(manifest))).decode()
    return es.Signed(canonical_json({**manifest, "sig": sig}), (chunk,))


BASE = {"format": es.FORMAT, "site": SITE, "version": 1, "created": "2026-12-05T00:00:00.000Z",
        "people": {"columns": list(es.PEOPLE_COLUMNS), "rows": []},
        "cards": {"columns": list(es.CARD_COLUMNS), "rows": []}, "schedules": {}, "holidays": []}


@pytest.mark.parametrize("change, expected", [
    ({"format": "sekisho-enrolment-snapshot/3"}, "format 'sekisho-enrolment-snapshot/3'"),
    ({"schedules": {"x": {"mon": ["9-17"]}}}, "'9-17' is not a time range"),
    ({"schedules": {"x": {"funday": []}}}, "schedule 'x' is not a table of the days"),
    ({"schedules": {"x": {"mon": [540]}}}, "mon is not a list of time ranges"),
    ({"schedules": []}, "schedules is not a table"),
    ({"holidays": ["2027-01-02", "2027-01-01"]}, "holidays are not sorted ISO dates"),
    ({"holidays": ["2027-1-2"]}, "Invalid isoformat"),
    ({"holidays": None}, "holidays not a list"),
    ({"schedules": None}, "schedules is not a table"),
])
def test_a_body_not_of_its_format_is_malformed_and_applies_nothing(tmp_path, change, expected):
    with pytest.raises(es.SnapshotRefused, match="malformed") as refused:
        verified(forged({**BASE, **change}))
    assert expected in str(refused.value)


def test_a_format_2_body_without_its_tables_is_malformed():
    with pytest.raises(es.SnapshotRefused, match="malformed: the body is not an enrolment snapshot"):
        verified(forged({k: v for k, v in BASE.items() if k != "holidays"}))
    assert verified(forged(BASE)).snapshot.schedules == ()  # the same, whole, is taken


def test_deltas_do_not_carry_policy():
    people = (es.SnapshotPerson("p1", True, None, None, None, ("staff",)),)
    before = es.Snapshot(SITE, 1, "", people, (), POLICY[0], POLICY[1])
    assert ed.between(before, before) == []
    assert ed.between(before, es.Snapshot(SITE, 1, "", people, (), POLICY[0], ())) is None


# ----------------------------------------------------------------------------- through the broker
def tap(site, uid: str) -> str:
    return site.cli("sim", "tap", "entrance-in", uid).stdout


def test_a_door_opens_by_the_recorders_schedule_once_it_arrives_and_closes_on_its_holiday(tmp_path, broker):
    rec, door = two_nodes(tmp_path, broker)
    # The door's level names office-hours, which only the recorder defines; the door trusts the
    # recorder's key for enrolment, so that loads (with a warning).
    door.config.write_text(door.config.read_text().replace('[levels.staff]\ndoors = ["entrance"]\n',
                                                           '[levels.staff]\ndoors = ["entrance"]\n'
                                                           'schedule = "office-hours"\n'))
    plain = rec.config.read_text()
    office = '\n[schedules.office-hours]\n' + "".join(f'{d} = ["00:00-24:00"]\n'
                                                       for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    door_db = None
    try:
        rec.start()
        rec.enroll("p1", "04a1b2c3")
        door.start()
        assert "comes from the enrolment snapshot" in door.daemon_log()
        door_db = sqlite3.connect(door.data_dir / DB_NAME)
        wait_for(lambda: door_db.execute("SELECT count(*) FROM cards").fetchone()[0] == 1, timeout=20,
                 what="the card at the door")
        # Enrolled, but the level's schedule is not known here yet: it opens nothing.
        assert tap(door, "04a1b2c3") == "entrance-in: denied (outside_schedule, rule level.schedule)\n"

        # The recorder restarted with office-hours (open all day, every day): its policy changed,
        # so a new snapshot, whose schedule the door decides by from the next tap.
        rec.stop()
        rec.config.write_text(plain + office)
        rec.start()
        wait_for(lambda: tap(door, "04a1b2c3").startswith("entrance-in: granted"),
                 timeout=20, what="the door to grant by the snapshot's office-hours")
        applied = door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchone()[0]

        # The policy is in the door's store: after a restart it decides by it, applying nothing.
        door.stop()
        door.start()
        assert tap(door, "04a1b2c3").startswith("entrance-in: granted")

        # A holiday at the recorder (yesterday, today and tomorrow in Tokyo, so that midnight
        # cannot pass under the test): office-hours has no holiday ranges, the door closes.
        today = dt.datetime.now(TZ).date()
        days = ", ".join((today + dt.timedelta(days=n)).isoformat() for n in (-1, 0, 1))
        rec.stop()
        rec.config.write_text(plain.replace('timezone = "Asia/Tokyo"\n',
                                            f'timezone = "Asia/Tokyo"\nholidays = [{days}]\n') + office)
        rec.start()
        wait_for(lambda: tap(door, "04a1b2c3") == "entrance-in: denied (outside_schedule, rule level.schedule)\n",
                 timeout=20, what="the recorder's holiday to close the door")
        assert door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchone()[0] \
            == applied + 1
        assert door_db.execute("SELECT holidays FROM enrolment_policy").fetchone()[0] == \
            json.dumps([(today + dt.timedelta(days=n)).isoformat() for n in (-1, 0, 1)])
    finally:
        if door_db is not None:
            door_db.close()
        rec.kill()
        door.kill()


def test_cli_snapshot_carries_the_policy_and_apply_says_what_the_config_keeps(tmp_path, broker):
    (tmp_path / "rec").mkdir()
    (tmp_path / "node").mkdir()
    rec, node = Site(tmp_path / "rec", broker), Site(tmp_path / "node", broker)
    keygen(tmp_path / "recorder.key")
    public = public_key_text(load_private_key(tmp_path / "recorder.key"))
    rec.config.write_text(rec.config.read_text().replace('timezone = "Asia/Tokyo"\n',
                                                         'timezone = "Asia/Tokyo"\nholidays = [2027-01-01]\n')
                          + '\n[schedules.office-hours]\nmon = ["08:00-19:00"]\n[schedules.nights]\n'
                            'sat = ["22:00-06:00"]\n')
    node.config.write_text(node.config.read_text() + '\n[schedules.nights]\nsun = ["22:00-06:00"]\n'
                           f'\n[commands.keys.recorder]\npublic_key = "{public}"\nops = ["enrolment.snapshot"]\n')
    rec.enroll("p1", "04a1b2c3")
    rec.cli("enrolment", "snapshot", "--out", str(tmp_path / "snap"), "--key", str(tmp_path / "recorder.key"),
            "--version", "1")
    node.data_dir.mkdir(mode=0o700)
    (node.data_dir / "site.key").write_bytes((rec.data_dir / "site.key").read_bytes())
    (node.data_dir / "site.key").chmod(0o600)
    r = node.cli("enrolment", "apply", str(tmp_path / "snap"))
    assert "2 schedules, 1 holidays" in r.stdout and "this config's own nights decide" in r.stdout, r.stdout
    stored = Database(node.data_dir)
    schedules, holidays = es.stored_policy(stored, SITE)
    assert sorted(schedules) == ["nights", "office-hours"] and holidays == {dt.date(2027, 1, 1)}
    assert schedules["nights"].days[5] == (TimeRange.parse("22:00-06:00"),)  # the recorder's, as sent
