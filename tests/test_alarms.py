"""Alarms that wait for a person (issue 14, item 1), through a real broker and the daemon: a forced
door stays an open alarm after the door closes, until it is acknowledged by a signed
``alarm.ack`` or by ``sekisho alarm ack`` at the node; each acknowledgement is on the bus, in the
alarms listing and in the audit log with who did it; a signed one that is not good is refused
and changes nothing."""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import SEKISHO, wait_for
from harness import DOOR_WITH_CONTACT

CONFIG = DOOR_WITH_CONTACT + """
[commands.keys.officer]
public_key = "{officer}"
ops = ["alarm.*", "door.list"]

[commands.keys.auditor]
public_key = "{auditor}"
ops = ["door.list", "alarm.list"]
"""
FORCED = "door-a.entrance.forced"


@pytest.fixture
def alarm_site(site, subscribe, tmp_path):
    officer_key, auditor_key = tmp_path / "officer.key", tmp_path / "auditor.key"
    publics = {}
    for name, path in (("officer", officer_key), ("auditor", auditor_key)):
        out = site.cli("cmd", "keygen", str(path)).stdout
        publics[name] = out.split('public_key = "')[1].split('"')[0]
    site.config.write_text(CONFIG.format(url=site.broker.url, **publics))
    sub = subscribe()
    site.start()
    yield site, sub, officer_key, auditor_key
    if site.proc is not None:
        site.stop()


def alarm_messages(sub, alarm_id: str = FORCED) -> list:
    return sub.on(f"/alarm/{alarm_id}")


def force_the_door(site, sub) -> None:
    """Open the locked door and close it again: a forced door whose condition has cleared."""
    site.sim("entrance-contact", {"op": "set", "active": True})
    site.sim("entrance-contact", {"op": "set", "active": False})
    wait_for(lambda: [m for m in alarm_messages(sub) if m.payload and m.json["cleared"]], what="the alarm cleared")


def audit(site, action: str) -> list[dict]:
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) | {"detail": json.loads(r["detail"])}
                for r in db.execute("SELECT * FROM audit WHERE action = ? ORDER BY n", [action])]


def results(sub) -> list[dict]:
    return [m.json for m in sub.on("/cmd/door-a/result")]


def publish(site, text: str) -> None:
    subprocess.run(["mosquitto_pub", "-p", str(site.broker.port), "-q", "1", "-t", "sekisho/v1/test/cmd/door-a",
                    "-s"], input=text.encode(), check=True, timeout=10)


def test_a_forced_door_stays_an_alarm_after_it_closes_until_a_signed_ack(alarm_site, subscribe):
    site, sub, officer_key, _ = alarm_site
    force_the_door(site, sub)
    raised, cleared = [m.json for m in alarm_messages(sub)][-2:]
    assert raised["cleared"] is None and cleared["cleared"] and cleared["acked_by"] is None
    assert cleared["raised"] == raised["raised"]  # one alarm, one life
    late = subscribe(f"sekisho/v1/test/alarm/{FORCED}")  # a console that connects now still sees it
    assert wait_for(lambda: late.messages, what="the retained alarm")[0].json["cleared"] == cleared["cleared"]
    assert "forced" in site.cli("alarms", "--open").stdout

    r = site.cli("cmd", "send", "alarm.ack", f"id={FORCED}", "note=checked: a courier", "--key", str(officer_key))
    answer = json.loads(r.stdout)
    assert answer["ok"] is True and answer["result"]["closed"] is True and answer["result"]["acked_by"] == "key:officer"
    wait_for(lambda: alarm_messages(sub)[-1].payload == b"", what="the retained alarm emptied")
    said = [m.json for m in alarm_messages(sub) if m.payload][-1]  # the closing step, said before the empty one
    assert (said["acked_by"], said["ack_note"], bool(said["cleared"])) == ("key:officer", "checked: a courier", True)
    acked = audit(site, "alarm.ack")
    assert len(acked) == 1 and acked[0]["actor"] == "key:officer"
    assert acked[0]["detail"] == {"alarm": FORCED, "kind": "forced", "source": "entrance", "note": "checked: a courier",
                                  "closed": True}
    assert site.cli("alarms", "--open").stdout.strip() == "no open alarms"
    rows = list(csv.DictReader(io.StringIO(site.cli("alarms", "--csv").stdout)))
    assert [(r["id"], r["acked_by"], r["ack_note"]) for r in rows] == [(FORCED, "key:officer", "checked: a courier")]
    assert rows[0]["raised"].endswith("+09:00") and rows[0]["closed"]  # local time, the site's zone
    assert site.cli("audit", "verify").returncode == 0


def test_sekisho_alarm_ack_at_the_node_records_the_local_user(alarm_site):
    site, sub, _, _ = alarm_site
    site.sim("entrance-contact", {"op": "set", "active": True})
    wait_for(lambda: [m for m in alarm_messages(sub) if m.payload], what="the forced alarm")
    r = site.cli("alarm", "ack", FORCED, "--note", "guard on the way")
    assert "acknowledged" in r.stdout and "open until its condition clears" in r.stdout
    wait_for(lambda: alarm_messages(sub)[-1].payload and alarm_messages(sub)[-1].json["acked_by"],
             what="the acknowledgement on the bus")
    acked_by = alarm_messages(sub)[-1].json["acked_by"]
    assert acked_by.startswith("cli:")
    site.sim("entrance-contact", {"op": "set", "active": False})  # acknowledged and cleared: closed
    wait_for(lambda: alarm_messages(sub)[-1].payload == b"", what="closed when the door closed")
    assert [row["actor"] for row in audit(site, "alarm.ack")] == [acked_by]
    r = site.cli("alarm", "ack", FORCED, check=False)
    assert r.returncode == 65 and f"no open alarm {FORCED!r} in the record of door-a (open alarms: none)" in r.stderr
    assert "Traceback" not in r.stderr


def test_alarm_ack_refused_unsigned_badly_signed_other_site_replayed_or_not_permitted(alarm_site, tmp_path):
    site, sub, officer_key, auditor_key = alarm_site
    force_the_door(site, sub)
    sign = ["cmd", "sign", "alarm.ack", f"id={FORCED}"]
    good = json.loads(site.cli(*sign, "--key", str(officer_key)).stdout)

    tampered = {**good, "args": {"id": FORCED, "note": "added after signing"}}
    forged = {**good, "id": "forged-1", "sig": base64.b64encode(
        Ed25519PrivateKey.generate().sign(b"not the command")).decode()}
    osaka = tmp_path / "osaka.toml"
    osaka.write_text(site.config.read_text().replace('id = "test"', 'id = "osaka"', 1))
    other_site = subprocess.run([*SEKISHO, *sign, "--key", str(officer_key), "--config", str(osaka),
                                 "--data-dir", str(tmp_path / "o")], capture_output=True, text=True, check=True,
                                timeout=60).stdout
    not_permitted = site.cli(*sign, "--key", str(auditor_key)).stdout
    for text in (json.dumps(tampered), json.dumps(forged), other_site, not_permitted):
        publish(site, text)
    wait_for(lambda: len(results(sub)) == 4, what="four answers")
    errors = [r["error"] for r in results(sub)]
    assert all(r["ok"] is False for r in results(sub))
    assert errors[0] == errors[1] == "bad signature: sig does not verify with key 'officer'"
    assert errors[2] == "addressed to site 'osaka', not 'test'"
    assert errors[3] == "not permitted: key 'auditor' may not run 'alarm.ack'"
    assert audit(site, "alarm.ack") == [] and alarm_messages(sub)[-1].json["acked_by"] is None  # still open

    publish(site, json.dumps(good))
    wait_for(lambda: len(results(sub)) == 5, what="the good one's answer")
    assert results(sub)[4]["ok"] is True
    publish(site, json.dumps(good))  # the same command again
    wait_for(lambda: len(results(sub)) == 6, what="the replay's answer")
    assert results(sub)[5] == {**results(sub)[5], "ok": False, "error": f"replayed: id {good['id']!r} was used before"}
    assert len(audit(site, "alarm.ack")) == 1 and len(audit(site, "command.refused")) == 5


def test_an_open_alarm_outlives_a_restart_and_is_listed(alarm_site):
    site, sub, officer_key, _ = alarm_site
    site.sim("entrance-contact", {"op": "set", "active": True})
    wait_for(lambda: [m for m in alarm_messages(sub) if m.payload], what="the forced alarm")
    site.stop()  # the door still open, nobody has seen the alarm
    site.start()
    # Taken back at start with its condition cleared (the contact's state did not survive the
    # restart), still open: the officer has still not seen it.
    wait_for(lambda: [m for m in alarm_messages(sub) if m.payload and m.json["cleared"]], what="taken back")
    listed = site.cli("alarms", "--open", "--json").stdout
    assert [(a["id"], a["acked_by"]) for a in json.loads(listed)] == [(FORCED, None)]
    r = site.cli("cmd", "send", "alarm.list", "--key", str(officer_key))
    assert [a["id"] for a in json.loads(r.stdout)["result"]["alarms"]] == [FORCED]
