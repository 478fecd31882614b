"""One site as issue 15 describes it, every part a daemon of its own on one real mosquitto: a
recorder (roles = ["recorder"] only), two door nodes whose doors lead into one room, and a desk
node in that room. People are enrolled once, with the command line at the recorder; the doors
and the desk decide from what the recorder signed out to them; every node's records come back
to the recorder, which answers for the whole site with names; a revocation at the recorder is
refused at the doors."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

from conftest import wait_for
from harness import DEMO_CONFIG, DESK_CONFIG, RECORDER_CONFIG, Site, node_site
from sekisho.daemon.commands import keygen, public_key_text
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.recorder_store import open_store
from sekisho.daemon.store.database import DB_NAME
from sekisho.daemon.topics import Topics

T = Topics("test")
EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
NAME = "Hanako Yamada"
UID, OTHER = "04a1b2c3", "04d0d0d0"
# Both door nodes lead into the operator room, so the recorder is the one that knows who is in
# it (occupancy_from = "recorder" on every node of the site).
SITE_WIDE = 'timezone = "Asia/Tokyo"\noccupancy_from = "recorder"\n'


def trusting(config: str, public: str) -> str:
    return config.replace('timezone = "Asia/Tokyo"\n', SITE_WIDE) + \
        f'\n[commands.keys.recorder]\npublic_key = "{public}"\nops = ["enrolment.*", "outbox.replay"]\n'


def tap(site: Site, reader: str, uid: str) -> str:
    return site.cli("sim", "tap", reader, uid).stdout


def test_enrolled_once_at_the_recorder_decided_everywhere_recorded_once_revoked_at_every_door(
        tmp_path: Path, broker, subscribe, logind):
    logind.add_session("c1")
    logind.patch_lock()
    SiteKey.load_or_create(tmp_path / "site.key")
    public = public_key_text(keygen(tmp_path / "recorder.key"))
    recorder = node_site(tmp_path, broker, "recorder",
                         RECORDER_CONFIG.replace('timezone = "Asia/Tokyo"\n', SITE_WIDE)
                         + f'signing_key = "{tmp_path / "recorder.key"}"\n'
                         # The site's level, granted here; what it opens is each door and desk
                         # node's own [levels.staff].
                         + 'levels = ["staff"]\n', tmp_path / "site.key")
    door_a = node_site(tmp_path, broker, "door-a", trusting(DEMO_CONFIG, public), tmp_path / "site.key")
    door_b = node_site(tmp_path, broker, "door-b",
                       trusting(DEMO_CONFIG, public).replace("entrance", "back"), tmp_path / "site.key")
    desk = node_site(tmp_path, broker, "desk-c", trusting(DESK_CONFIG, public), tmp_path / "site.key")
    sub = subscribe("sekisho/#")
    nodes = (recorder, door_a, door_b, desk)
    try:
        for s in nodes:
            s.start()
        recorder.enroll("u1042", UID, name=NAME)
        recorder.enroll("u1043", OTHER)

        # In at door-a, once the signed enrolment has reached it; at the desk once the recorder
        # says the holder is in the room (an entry door-a recorded, the recorder published).
        wait_for(lambda: tap(door_a, "entrance-in", UID).startswith("entrance-in: granted"), timeout=30,
                 what="door-a to grant the card enrolled at the recorder")
        subject = SiteKey.load_or_create(tmp_path / "site.key").pseudonym("u1042")
        wait_for(lambda: any(m.payload and subject in m.json["subjects"]
                             for m in sub.on(T.area_occupancy("operator-room"))),
                 what="the recorder's occupancy of the operator room to hold the holder")
        desk.tap(UID, reader="desk-01")
        wait_for(lambda: "in_use" in [m.json["state"] for m in sub.on(T.desk_state("desk-01")) if m.payload],
                 what="the desk in use with the holder's card")
        # Out at door-b: the other node's door.
        wait_for(lambda: tap(door_b, "back-out", UID).startswith("back-out: granted"), timeout=30,
                 what="door-b to grant the card on its way out")

        # Every node's records at the recorder, once, as published.
        events = {(m.json["node"], m.json["seq"]): m.payload.decode() for m in sub.on("/event")}
        assert {node for node, _ in events} == {"door-a", "door-b", "desk-c"}
        with open_store(None, recorder.data_dir) as store:
            wait_for(lambda: {(e.node, e.seq): e.payload for e in store.events(*EVER)} == events,
                     what="the recorder's store to hold every node's events")
            assert store.gaps() == []
        # The recorder answers for the site, with the name only it holds; the other nodes never
        # had it.
        named = [line for line in recorder.cli("events").stdout.splitlines() if NAME in line]
        assert any("door-a" in line for line in named) and any("door-b" in line for line in named), named
        for s in (door_a, door_b, desk):
            names = sqlite3.connect(s.data_dir / DB_NAME).execute("SELECT DISTINCT name FROM people").fetchall()
            assert names == [("",)], (s.data_dir, names)
        assert NAME not in json.dumps([m.payload.decode(errors="replace") for m in sub.on("")])

        # Revoked at the recorder: refused at both doors; the other card still opens them.
        recorder.cli("card", "revoke", "--uid", UID)
        revoked = time.monotonic()
        for door, reader in ((door_a, "entrance-in"), (door_b, "back-in")):
            wait_for(lambda: tap(door, reader, UID) == f"{reader}: denied (revoked, rule card.revoked)\n",
                     timeout=20, what=f"the revoked card refused at {reader}")
        print(f"revoked at the recorder -> refused at both doors: {time.monotonic() - revoked:.2f} s "
              "(bench/enrolment_transport.py measures it)")
        assert tap(door_b, "back-in", OTHER).startswith("back-in: granted")
        assert not [m for m in sub.on("/alarm/") if m.payload and m.json["kind"] in ("enrolment_refused",
                                                                                     "sequence_gap")]
        for s in nodes:
            assert s.stop() == 0, s.daemon_log()[-2000:]
    finally:
        for s in nodes:
            s.kill()


def test_a_recorder_without_doors_grants_the_levels_its_config_names_and_no_other(tmp_path: Path, broker):
    recorder = node_site(tmp_path, broker, "recorder", RECORDER_CONFIG + 'levels = ["staff", "night"]\n')
    recorder.cli("person", "add", "--id", "u1", "--name", NAME)
    assert recorder.cli("person", "grant", "u1", "night").stdout == "u1 now holds night\n"
    refused = recorder.cli("person", "grant", "u1", "nigth", check=False)
    assert refused.returncode == 65 and "no level 'nigth'" in refused.stderr and "(levels: night, staff)" in \
        refused.stderr, refused.stderr
