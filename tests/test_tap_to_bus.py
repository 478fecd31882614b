"""A tap goes from the sim reader through the store to a real subscriber."""

from __future__ import annotations

import sqlite3

from conftest import wait_for

UID = "04a1b2c3d4e5f6"


def test_tap_is_one_event_one_audit_row_one_message(site, subscribe):
    site.enroll("u1042", UID, name="Hanako Yamada")
    sub = subscribe()
    site.start()
    audit_before = sqlite3.connect(site.data_dir / "sekisho.db").execute("SELECT count(*) FROM audit").fetchone()[0]

    site.tap(UID)
    msgs = wait_for(lambda: sub.on("/door/entrance/event"), what="the door event")

    assert len(msgs) == 1
    m = msgs[0]
    assert m.topic == "sekisho/v1/test/door/entrance/event"
    assert m.qos == 1 and m.retain is False
    p = m.json
    assert set(p) == {"id", "seq", "node", "ts", "kind", "door", "reader", "direction", "result", "reason", "rule",
                      "subject", "area"}
    assert p["kind"] == "access" and p["area"] == "operator-room"  # where the pass leads, for the recorder
    assert p["result"] == "granted" and p["reason"] == "card" and p["rule"] == "level:staff"
    assert p["door"] == "entrance" and p["reader"] == "entrance-in" and p["direction"] == "in"
    assert p["node"] == "door-a" and p["seq"] == 1
    assert len(p["subject"]) == 16 and int(p["subject"], 16) >= 0
    assert p["ts"].endswith("Z") and len(p["ts"]) == len("2026-11-23T07:00:00.000Z")

    db = sqlite3.connect(site.data_dir / "sekisho.db")
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == audit_before + 1
    assert db.execute("SELECT area FROM locations WHERE person_id = 'u1042'").fetchone() == ("operator-room",)
    assert site.stop() == 0

    # The UID and the name appear nowhere: not on the bus, not in any file of the data dir.
    uid_forms = [UID.encode(), UID.upper().encode(), bytes.fromhex(UID)]
    for raw in [m.payload for m in sub.messages]:
        for form in uid_forms + [b"Hanako"]:
            assert form not in raw
    for f in site.data_dir.rglob("*"):
        if f.is_file():
            content = f.read_bytes()
            for form in uid_forms:
                assert form not in content, f"UID found in {f}"


def test_unknown_revoked_and_disabled_are_denied_with_reason(site, subscribe):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "add", "--id", "p2", "--name", "B")
    site.cli("card", "add", "--person", "p1", "--uid", "04000001")
    site.cli("card", "add", "--person", "p2", "--uid", "04000002")
    site.cli("card", "revoke", "--uid", "04000001")
    site.cli("person", "disable", "p2")
    sub = subscribe()
    site.start()
    for uid in ("04000001", "04000002", "04ffffff"):
        site.tap(uid)
    msgs = wait_for(lambda: len(sub.on("/event")) == 3 and sub.on("/event"), what="three events")
    got = [(m.json["result"], m.json["reason"], m.json["rule"]) for m in msgs]
    assert got == [("denied", "revoked", "card.revoked"),
                   ("denied", "person_disabled", "card.person-disabled"),
                   ("denied", "unknown_card", "card.unknown")]
    assert msgs[2].json["subject"] is None
    assert [m.json["area"] for m in msgs] == [None, None, None]  # a denial leads nowhere
    assert [m.json["seq"] for m in msgs] == [1, 2, 3]
    site.stop()


def test_publish_names_puts_the_name_in_subject(site, subscribe):
    site.config.write_text(site.config.read_text().replace('timezone = "Asia/Tokyo"',
                                                           'timezone = "Asia/Tokyo"\npublish_names = true'))
    site.enroll("u7", UID, name="Taro Suzuki")
    sub = subscribe()
    site.start()
    site.tap(UID, reader="entrance-out")
    event = wait_for(sub.events, what="the event")[0]
    assert event["subject"] == "Taro Suzuki" and event["direction"] == "out"
    assert event["area"] == "lobby"  # the entrance's area_out
    site.stop()
