"""Signed commands on cmd/<node>: the checks, one refusal each, and the whole path through a real
broker and the daemon, including a command signed by OpenSSL and sent by mosquitto_pub."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import SEKISHO, wait_for
from sekisho.daemon import config
from sekisho.daemon.commands import CommandRunner, Refused, load_private_key, parse, public_key_text, sign, signed_bytes
from sekisho.daemon.errors import ConfigError
from sekisho.daemon.ops import Parts, Table

NOW = dt.datetime(2026, 11, 23, 7, 0, 0, tzinfo=dt.timezone.utc)
TS = "2026-11-23T07:00:00.000Z"
OFFICER = Ed25519PrivateKey.generate()
VIEWER = Ed25519PrivateKey.generate()


def runner(max_skew_s: float = 30.0) -> CommandRunner:
    keys = {"officer": config.CommandKeyConfig("officer", base64.b64decode(public_key_text(OFFICER)),
                                               ("door.*", "usb.allow")),
            "viewer": config.CommandKeyConfig("viewer", base64.b64decode(public_key_text(VIEWER)), ("door.list",))}
    return CommandRunner(config.CommandsConfig(max_skew_s, keys), site="test", node="door-a", ops=Table(Parts(), ()), record=None,
                         queue=None, result_topic="r", loop=None, clock=lambda: NOW)


def refusal(payload: bytes | dict, r: CommandRunner | None = None) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(Refused) as exc:
        (r or runner()).check(parse(raw))
    return str(exc.value)


def good(ts: str = TS) -> dict:
    return sign("door.unlock", {"door": "entrance"}, site="test", node="door-a", key_name="officer", key=OFFICER,
                ts=ts)


# ----------------------------------------------------------------------------- the checks
def test_a_good_command_passes():
    runner().check(parse(json.dumps(good()).encode()))


def test_signed_bytes_are_the_canonical_json_without_sig():
    message = {"sig": "x", "op": "usb.allow", "args": {"minutes": 10, "match": "1-2"}, "id": "c1", "ts": TS,
               "site": "test", "node": "door-a", "key": "officer", "note": "é"}
    assert signed_bytes(message) == ('{"args":{"match":"1-2","minutes":10},"id":"c1","key":"officer","node":"door-a",'
                                     '"note":"é","op":"usb.allow","site":"test","ts":"2026-11-23T07:00:00.000Z"}'
                                     ).encode()
    # sign() puts the site in the signed bytes; a signer that left it out signed other bytes.
    signed = good()
    assert signed["site"] == "test" and b'"site":"test"' in signed_bytes(signed)
    OFFICER.public_key().verify(base64.b64decode(signed["sig"]), signed_bytes(signed))


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "malformed: not UTF-8"),
    (b"{not json", "malformed: not JSON"),
    (b"[1, 2]", "malformed: not a JSON object"),
    (b'{"id": "a", "id": "b"}', "appears twice"),
    (json.dumps({**good(), "args": {"minutes": 1.5}}).encode(), "not an integer"),
    (json.dumps({**good(), "args": {"n": 2 ** 60}}).encode(), "larger than 2**53"),
    (json.dumps({k: v for k, v in good().items() if k != "sig"}).encode(), "unsigned"),
    (json.dumps({k: v for k, v in good().items() if k != "node"}).encode(), "malformed: missing node"),
    (json.dumps({k: v for k, v in good().items() if k not in ("site", "sig")}).encode(), "malformed: missing sig, site"),
    (json.dumps({**good(), "site": "Tokyo HQ"}).encode(), "site must be lower-case"),
    (json.dumps({**good(), "extra": 1}).encode(), "malformed: unknown fields (1)"),
    (json.dumps({**good(), "args": ["entrance"]}).encode(), "args must be a JSON object"),
    (json.dumps({**good(), "id": ""}).encode(), "id must be 1 to 128"),
    (b"{" + b" " * 70000 + b"}", "at most 65536"),
    (json.dumps({**good(), "key": "\ud800"}).encode(), "not valid Unicode"),
    (json.dumps({**good(), "args": {"a": "\udfff"}}).encode(), "not valid Unicode"),
    (json.dumps({**good(), "op": "Door Unlock"}).encode(), "op must be lower-case"),
    (json.dumps({**good(), "key": "k" * 65}).encode(), "key must be lower-case"),
    (json.dumps({**good(), "args": {"a": [[[[[[[[[1]]]]]]]]]}}).encode(), "nested more than 8"),
    (b'{"args":' + b"[" * 100000 + b"]" * 100000 + b"}", "at most 65536"),
    (b'{"args":' + b"[" * 30000 + b"]" * 30000 + b"}", "malformed: nested"),
])
def test_malformed_commands_are_refused_by_name(payload, reason):
    assert reason in refusal(payload)


def test_unknown_key_bad_signature_wrong_node_stale_and_not_permitted():
    assert "unknown key 'nobody'" in refusal(sign("door.list", {}, site="test", node="door-a", key_name="nobody",
                                                  key=OFFICER, ts=TS))
    tampered = {**good(), "args": {"door": "back"}}
    assert "bad signature" in refusal(tampered)
    assert "bad signature" in refusal({**good(), "sig": "not base64!"})
    other_key = sign("door.unlock", {"door": "entrance"}, site="test", node="door-a", key_name="officer", key=VIEWER,
                     ts=TS)
    assert "bad signature" in refusal(other_key)
    assert "addressed to node 'door-b'" in refusal(sign("door.list", {}, site="test", node="door-b",
                                                        key_name="officer", key=OFFICER, ts=TS))
    assert "addressed to site 'osaka', not 'test'" in refusal(sign("door.list", {}, site="osaka", node="door-a",
                                                                   key_name="officer", key=OFFICER, ts=TS))
    # The site is signed: changing it on the wire breaks the signature, it does not re-address.
    assert "bad signature" in refusal({**sign("door.list", {}, site="osaka", node="door-a", key_name="officer",
                                              key=OFFICER, ts=TS), "site": "test"})
    assert "31 s behind" in refusal(good(ts="2026-11-23T06:59:29.000Z"))
    assert "31 s ahead" in refusal(good(ts="2026-11-23T07:00:31+00:00"))
    assert "no UTC offset" in refusal(good(ts="2026-11-23T07:00:00"))
    assert "not an RFC 3339 time" in refusal(good(ts="yesterday"))
    runner().check(parse(json.dumps(good(ts="2026-11-23T16:00:29+09:00")).encode()))  # 29 s, another zone
    assert "may not run 'door.unlock'" in refusal(sign("door.unlock", {"door": "entrance"}, site="test",
                                                       node="door-a", key_name="viewer", key=VIEWER, ts=TS))
    assert "may not run 'enroll'" in refusal(sign("enroll", {}, site="test", node="door-a", key_name="officer",
                                                  key=OFFICER, ts=TS))


# Named by the problem: the key in a case is made at import, and parallel workers must collect the
# same test ids.
BAD_COMMAND_CONFIGS = [
    ('[commands.keys.a]\npublic_key = "not base64"\nops = ["*"]', "commands.keys.a.public_key: is not base64"),
    ('[commands.keys.a]\npublic_key = "AAAA"\nops = ["*"]', "is 3 bytes; an Ed25519 public key is 32"),
    (f'[commands.keys.a]\npublic_key = "{public_key_text(OFFICER)}"\nops = []', "must name at least one op"),
    (f'[commands.keys.a]\npublic_key = "{public_key_text(OFFICER)}"\nops = ["Door unlock"]', "is not an op"),
    (f'[commands.keys.a]\npublic_key = "{public_key_text(OFFICER)}"', "commands.keys.a.ops: missing (required)"),
    (f'[commands.keys.A]\npublic_key = "{public_key_text(OFFICER)}"\nops = ["*"]', "commands.keys.A: key name"),
    ('[commands]\nmax_skew = 30', "commands.max_skew: unknown key"),
]


@pytest.mark.parametrize("section, problem", BAD_COMMAND_CONFIGS, ids=[p for _, p in BAD_COMMAND_CONFIGS])
def test_bad_command_config_names_the_key(tmp_path, section, problem):
    path = tmp_path / "s.toml"
    path.write_text('[site]\nid = "t"\nnode = "n"\n' + section + "\n")
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    assert any(problem in p for p in exc.value.problems), exc.value.problems


# ----------------------------------------------------------------------------- through the daemon
KEYS = """
[commands]
max_skew_s = 300

[commands.keys.officer]
public_key = "{officer}"
ops = ["door.*"]

[commands.keys.auditor]
public_key = "{auditor}"
ops = ["door.list"]
"""


@pytest.fixture
def signed_site(site, subscribe, tmp_path):
    officer_key, auditor_key = tmp_path / "officer.key", tmp_path / "auditor.pem"
    out = site.cli("cmd", "keygen", str(officer_key)).stdout
    assert "[commands.keys.officer]" in out and officer_key.stat().st_mode & 0o777 == 0o600
    officer_public = out.split('public_key = "')[1].split('"')[0]
    # A key made by OpenSSL, which the tests also sign with.
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(auditor_key)], check=True)
    auditor_public = site.cli("cmd", "public-key", str(auditor_key)).stdout.strip()
    with site.config.open("a") as f:
        f.write(KEYS.format(officer=officer_public, auditor=auditor_public))
    sub = subscribe()
    site.start()
    # The daemon subscribes before it says online, on one connection the broker reads in order:
    # a command published after this is not published before the daemon listens.
    wait_for(lambda: [m for m in sub.on("/node/door-a/status") if m.payload and m.json["state"] == "online"],
             what="door-a online, its command subscription in place")
    yield site, sub, officer_key, auditor_key
    site.stop()


def audit_rows(site, action: str) -> list[dict]:
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) | {"detail": json.loads(r["detail"])}
                for r in db.execute("SELECT * FROM audit WHERE action = ? ORDER BY n", [action])]


def results(sub) -> list[dict]:
    return [m.json for m in sub.on("/cmd/door-a/result")]


def publish(site, payload: str | bytes) -> None:
    data = payload if isinstance(payload, bytes) else payload.encode()
    subprocess.run(["mosquitto_pub", "-p", str(site.broker.port), "-q", "1", "-t", "sekisho/v1/test/cmd/door-a",
                    "-s" if data else "-n"], input=data, check=True, timeout=10)


def test_cmd_send_unlocks_the_door_answers_and_audits(signed_site):
    site, sub, officer_key, _ = signed_site
    r = site.cli("cmd", "send", "door.unlock", "door=entrance", "seconds=2", "--key", str(officer_key))
    answer = json.loads(r.stdout)
    assert answer["ok"] is True and answer["error"] is None and answer["op"] == "door.unlock"
    assert wait_for(lambda: [s for s in (m.json for m in sub.on("/door/entrance/state")) if s["lock"] == "unlocked"],
                    what="the door unlocked")
    assert [m["id"] for m in results(sub)] == [answer["id"]]
    done = audit_rows(site, "command.done")
    assert len(done) == 1 and done[0]["actor"] == "key:officer"
    assert done[0]["detail"] == {"id": answer["id"], "op": "door.unlock", "key": "officer", "error": None,
                                 "args": {"door": "entrance", "seconds": 2}}
    assert site.cli("audit", "verify").returncode == 0


def test_an_op_that_fails_is_answered_and_exits_1(signed_site):
    site, sub, officer_key, _ = signed_site
    r = site.cli("cmd", "send", "door.unlock", "door=vault", "--key", str(officer_key), check=False)
    assert r.returncode == 1 and "no door 'vault'" in r.stderr
    assert json.loads(r.stdout)["ok"] is False
    assert audit_rows(site, "command.failed")[0]["detail"]["error"].startswith("no door 'vault'")
    r = site.cli("cmd", "send", "door.unlock", "--key", str(officer_key), check=False)
    assert r.returncode == 1 and "door.unlock needs 'door'" in r.stderr


def test_a_replayed_command_is_refused_also_after_a_restart(signed_site):
    site, sub, officer_key, _ = signed_site
    text = site.cli("cmd", "sign", "door.mode", "door=entrance", "mode=lockdown", "--key", str(officer_key)).stdout
    command_id = json.loads(text)["id"]
    publish(site, text)
    wait_for(lambda: len(results(sub)) == 1, what="the answer")
    publish(site, text)
    wait_for(lambda: len(results(sub)) == 2, what="the second answer")
    site.stop()
    site.start()
    publish(site, text)
    wait_for(lambda: len(results(sub)) == 3, what="the answer after the restart")
    first, *replays = results(sub)
    assert first["ok"] is True and first["id"] == command_id
    assert [(r["ok"], r["id"]) for r in replays] == [(False, command_id)] * 2
    assert all(r["error"] == f"replayed: id {command_id!r} was used before" for r in replays)
    modes = [m.json["mode"] for m in sub.on("/door/entrance/state")]
    assert modes[-1] == "lockdown"
    assert len(audit_rows(site, "command.done")) == 1 and len(audit_rows(site, "command.refused")) == 2


def test_openssl_signed_command_from_mosquitto_pub_runs(signed_site, tmp_path):
    """Interoperability: the canonical bytes written out by hand, signed by OpenSSL's Ed25519,
    published by mosquitto's own client: no sekisho code on the sending side."""
    site, sub, _, auditor_key = signed_site
    ts = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    canonical = (f'{{"args":{{}},"id":"openssl-1","key":"auditor","node":"door-a","op":"door.list","site":"test",'
                 f'"ts":"{ts}"}}')
    (tmp_path / "msg").write_text(canonical)
    subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(auditor_key), "-in", str(tmp_path / "msg"),
                    "-out", str(tmp_path / "sig")], check=True)
    sig = base64.b64encode((tmp_path / "sig").read_bytes()).decode()
    # Any field order and spacing on the wire: the signature covers the canonical form.
    publish(site, f'{{ "sig": "{sig}", "op": "door.list", "ts": "{ts}", "node": "door-a", "key": "auditor",'
                  f' "id": "openssl-1", "args": {{ }}, "site": "test" }}')
    answer = wait_for(lambda: results(sub), what="the answer")[0]
    assert answer["ok"] is True, answer
    assert [d["door"] for d in answer["result"]["doors"]] == ["entrance"]


def test_a_command_signed_for_another_site_is_refused(signed_site, tmp_path):
    """Issue 11, item 8: two sites that reuse the node name door-a and trust the same officer key.
    A door.unlock signed (by the command line, from the other site's config) for site osaka and
    captured there is refused here; the same op signed for this site runs."""
    site, sub, officer_key, _ = signed_site
    osaka = tmp_path / "osaka.toml"
    osaka.write_text(site.config.read_text().replace('id = "test"', 'id = "osaka"', 1))
    captured = subprocess.run([*SEKISHO, "cmd", "sign", "door.unlock", "door=entrance", "seconds=2",
                               "--key", str(officer_key), "--config", str(osaka), "--data-dir", str(tmp_path / "o")],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    publish(site, captured)
    refused = wait_for(lambda: results(sub), what="the answer")[0]
    assert refused["ok"] is False and refused["error"] == "addressed to site 'osaka', not 'test'", refused
    assert json.loads(captured)["site"] == "osaka" and json.loads(captured)["node"] == "door-a"
    assert audit_rows(site, "command.refused")[0]["detail"]["error"] == refused["error"]
    ours = json.loads(site.cli("cmd", "sign", "door.unlock", "door=entrance", "seconds=2",
                               "--key", str(officer_key)).stdout)
    assert ours["site"] == "test"
    publish(site, json.dumps(ours))
    wait_for(lambda: len(results(sub)) == 2, what="the second answer")
    assert results(sub)[1]["ok"] is True
    locks = [m.json["lock"] for m in sub.on("/door/entrance/state")]
    # Unlocked once, by the second command only: the captured one changed nothing.
    assert locks.count("unlocked") == 1 and len(audit_rows(site, "command.done")) == 1


def test_a_command_from_an_older_signer_without_site_is_refused_with_a_clear_answer(signed_site):
    """What a console of the first release signs: every field but site, correctly signed. It would
    run at every site that trusts the key, so it is refused, and the answer says what to do."""
    site, sub, _, auditor_key = signed_site
    key = load_private_key(auditor_key)
    message = {"id": "old-1", "ts": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
               "node": "door-a", "op": "door.list", "args": {}, "key": "auditor"}
    message["sig"] = base64.b64encode(key.sign(signed_bytes(message))).decode()
    publish(site, json.dumps(message))
    answer = wait_for(lambda: results(sub), what="the answer")[0]
    assert answer["ok"] is False and answer["id"] == "old-1" and "result" not in answer
    assert answer["error"] == ("malformed: missing site: the command was signed without its site (an older signer); "
                               "sign it again with a signer that signs site (sekisho cmd sign, docs/mqtt.md)")
    assert len(audit_rows(site, "command.refused")) == 1 and not audit_rows(site, "command.done")


def test_refused_commands_change_nothing_and_are_each_answered_and_audited(signed_site):
    site, sub, officer_key, auditor_key = signed_site
    auditor_says = json.loads(site.cli("cmd", "sign", "door.mode", "door=entrance", "mode=free",
                                       "--key", str(auditor_key), "--key-name", "auditor").stdout)
    forged = json.loads(site.cli("cmd", "sign", "door.mode", "door=entrance", "mode=free",
                                 "--key", str(officer_key)).stdout) | {"args": {"door": "entrance", "mode": "lockdown"}}
    unsigned = {k: v for k, v in forged.items() if k != "sig"}
    surrogate = json.dumps(forged | {"key": "\ud800"})  # a lone surrogate: not storable as UTF-8
    for payload in (b"", b"garbage", json.dumps(unsigned), json.dumps(forged), json.dumps(auditor_says), surrogate):
        publish(site, payload)
    got = wait_for(lambda: len(results(sub)) == 6 and results(sub), what="six answers")
    assert [r["ok"] for r in got] == [False] * 6
    assert [r["error"].split(":")[0] for r in got] == ["malformed", "malformed", "unsigned", "bad signature",
                                                        "not permitted", "malformed"]
    refused = audit_rows(site, "command.refused")
    assert len(refused) == 6 and {r["actor"] for r in refused} == {"bus"}
    # The record goes on: a tap after all that is recorded and published.
    site.tap("04ffffff")
    wait_for(lambda: sub.events(), what="the next door event")
    assert all("args" not in r["detail"] for r in refused)  # a refused command's content is not trusted
    assert {m.json["mode"] for m in sub.on("/door/entrance/state")} == {"normal"}


def test_cmd_send_without_a_daemon_exits_69(site, tmp_path):
    site.cli("cmd", "keygen", str(tmp_path / "k.key"))
    r = site.cli("cmd", "send", "door.list", "--key", str(tmp_path / "k.key"), "--timeout", "2", check=False)
    assert r.returncode == 69 and "no answer from node 'door-a' within 2 s" in r.stderr


def test_cmd_cli_mistakes_are_one_line(site, tmp_path):
    key = tmp_path / "k.key"
    site.cli("cmd", "keygen", str(key))
    again = site.cli("cmd", "keygen", str(key), check=False)
    assert again.returncode == 1 and "never overwritten" in again.stderr
    (tmp_path / "rsa.pem").write_bytes(subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt",
                                                       "rsa_keygen_bits:1024"], capture_output=True,
                                                      check=True).stdout)
    for args, text in ((("cmd", "public-key", str(tmp_path / "rsa.pem")), "not an Ed25519 key"),
                       (("cmd", "public-key", str(tmp_path / "none")), "cannot read the key"),
                       (("cmd", "sign", "door.list", "oops", "--key", str(key)), "NAME=VALUE"),
                       (("cmd", "sign", "usb.allow", "minutes=1.5", "--key", str(key)), "whole numbers")):
        r = site.cli(*args, check=False)
        assert r.returncode == 1 and text in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_a_retained_command_is_not_run_again_on_each_connection(signed_site):
    site, sub, officer_key, _ = signed_site
    text = site.cli("cmd", "sign", "door.list", "--key", str(officer_key)).stdout
    subprocess.run(["mosquitto_pub", "-p", str(site.broker.port), "-q", "1", "-r", "-t", "sekisho/v1/test/cmd/door-a",
                    "-m", text], check=True, timeout=10)
    wait_for(lambda: len(results(sub)) == 1, what="the live answer")  # delivered live: answered once
    site.stop()
    site.start()
    site.tap("04ffffff")
    wait_for(lambda: sub.events(), what="a door event after the restart")  # the daemon is connected again
    assert len(results(sub)) == 1 and len(audit_rows(site, "command.refused")) == 0


# ----------------------------------------------------------------------------- a flood
def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_a_flood_of_junk_commands_costs_little_and_delays_nothing(signed_site):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    site, sub, officer_key, _ = signed_site
    site.enroll("alice", "04a1a1a1")
    forged = {**good(), "sig": base64.b64encode(b"\0" * 64).decode()}
    junk = [b"{not json", json.dumps({"a\nFAKE LOG LINE": 1}).encode(), b"[]", json.dumps(forged).encode(),
            json.dumps({**good(), "ts": "x\nFAKE TS LINE"}).encode()]
    before_rss, before_rows = rss_mb(site.proc.pid), len(audit_rows(site, "command.refused"))
    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    flooder.max_inflight_messages_set(1000)
    flooder.connect("127.0.0.1", site.broker.port)
    flooder.loop_start()
    try:
        infos = []
        for n in range(20_000):
            infos.append(flooder.publish("sekisho/v1/test/cmd/door-a", junk[n % len(junk)], qos=1))
            if n % 2000 == 0:
                site.tap("04a1a1a1", reader="entrance-in" if n % 4000 == 0 else "entrance-out")
        wait_for(lambda: all(i.is_published() for i in infos), timeout=60, what="the flood delivered to the broker")
    finally:
        flooder.loop_stop()
        flooder.disconnect()
    # Every tap made during the flood is on the bus, and the daemon still runs signed commands.
    wait_for(lambda: len(sub.events()) == 10, timeout=30, what="the ten taps made during the flood")
    answer = json.loads(site.cli("cmd", "send", "door.unlock", "door=entrance", "--key", str(officer_key)).stdout)
    assert answer["ok"] is True
    refused_rows = audit_rows(site, "command.refused")[before_rows:]
    reasons = {r["detail"]["error"].split(":")[0] for r in refused_rows}
    assert len(refused_rows) <= 5 * len(reasons) and reasons <= {"malformed", "bad signature"}, refused_rows
    assert rss_mb(site.proc.pid) - before_rss < 25
    log = site.daemon_log()
    assert "FAKE LOG LINE" not in log and "FAKE TS LINE" not in log
    assert all(len(r["error"] or "") <= 200 for r in results(sub))


def test_refusals_past_the_burst_are_audited_once_as_a_count(tmp_path):
    import asyncio

    from sekisho.daemon.commands import Refusals
    from sekisho.daemon.store.database import Database
    from sekisho.daemon.store.record import Record
    database = Database(tmp_path / "data")

    async def flood() -> None:
        refusals = Refusals(Record(database, "door-a"), asyncio.get_running_loop())
        refusals.WINDOW_S = 0.05
        admitted = [refusals.admit("malformed: not JSON") for _ in range(12)]
        refusals.count("flood", 300)
        assert admitted == [True] * Refusals.BURST + [False] * (12 - Refusals.BURST)
        await asyncio.sleep(0.2)
        assert refusals.admit("malformed: not JSON")  # a new minute, a new burst

    asyncio.run(flood())
    rows = [json.loads(r[0]) for r in database.db.execute("SELECT detail FROM audit WHERE action = 'command.refused'")]
    assert sorted((r["reason"], r["count"]) for r in rows) == [("flood", 300), ("malformed", 12 - Refusals.BURST)]
