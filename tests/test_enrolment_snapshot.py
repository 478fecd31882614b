"""The signed enrolment snapshot (daemon/enrolment_snapshot.py): made from the recorder's store,
applied whole on a node's, refused whole when anything about it is wrong, and decided with by a
daemon on that node."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Site
from sekisho.daemon import enrolment_delta as ed
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.commands import keygen, load_private_key, public_key_text
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.store.audit import canonical_json
from sekisho.daemon.store.database import DB_NAME, Database
from sekisho.daemon.store.people import People

SITE = "test"
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
SECRET_NAME = "Hanako Yamada"


def trust(key: Ed25519PrivateKey = KEY, name: str = "recorder"):
    return {name: key.public_key()}, {name}


def recorder(tmp_path: Path) -> People:
    """Store A, the recorder's: two people with cards, one card revoked, a level, a PIN."""
    people = People(Database(tmp_path / "a"))
    site_key = SiteKey.load_or_create(tmp_path / "a" / "site.key")
    people.add_person("p1", SECRET_NAME, "cli:t", valid_until="2099-12-31")
    people.add_person("p2", "Taro Suzuki", "cli:t")
    people.add_card("p1", site_key.card_hash(bytes.fromhex("04a1b2c3")), "cli:t")
    people.add_card("p2", site_key.card_hash(bytes.fromhex("04d0d0d0")), "cli:t")
    people.revoke_card(site_key.card_hash(bytes.fromhex("04d0d0d0"))[:16], "cli:t")
    people.grant_level("p1", "staff", "cli:t")
    people.grant_level("p2", "staff", "cli:t")
    people.set_pin_hash("p1", "scrypt$abc", "cli:t")
    return people


def node(tmp_path: Path) -> Database:
    """Store B, a node's, with its own person, card, events and audit rows."""
    database = Database(tmp_path / "b")
    people = People(database)
    people.add_person("old", "Old Local", "cli:t")
    people.add_card("old", "ab" * 32, "cli:t")
    with database.transaction() as db:
        db.execute("INSERT INTO events (id, seq, ts, node, kind, person_id, result) "
                   "VALUES ('e1', 1, '2026-12-05T00:00:00.000Z', 'door-a', 'access', 'old', 'granted')")
        db.execute("INSERT INTO locations VALUES ('old', 'operator-room', '2026-12-05T00:00:00.000Z')")
    return database


def enrolment_dump(database: Database) -> list[str]:
    tables = ("people", "cards", "person_levels", "locations", "enrolment_version")
    return [line for line in database.db.conn.iterdump() if any(f'"{t}"' in line for t in tables)]


def local_dump(database: Database) -> list[str]:
    return [line for line in database.db.conn.iterdump() if '"events"' in line or '"audit"' in line]


def signed(tmp_path: Path, version: int = 1, site: str = SITE, key: Ed25519PrivateKey = KEY,
           chunk_bytes: int = es.CHUNK_BYTES) -> es.Signed:
    return es.sign(es.build(recorder(tmp_path), site, version), key, "recorder", chunk_bytes)


def check(s: es.Signed, current: int = 0, keys=None) -> es.Verified:
    k, permitted = keys or trust()
    return es.verify(s, site=SITE, keys=k, permitted=permitted, current=current)


def test_round_trip_replaces_enrolment_and_keeps_node_local_rows(tmp_path):
    s = signed(tmp_path, version=3)
    b = node(tmp_path)
    local = local_dump(b)
    done = es.apply(b, check(s))
    assert (done.version, done.previous, done.people, done.cards, done.levels, done.pins, done.removed) == \
        (3, 0, 2, 2, 2, 1, 1)
    got = People(b)
    assert [(p["id"], p["name"], p["levels"], p["cards"], p["pin"]) for p in got.people()] == \
        [("p1", "", "staff", 1, 1), ("p2", "", "staff", 0, 0)]
    assert got.pin_hash("p1") == "scrypt$abc"
    assert got.person("p1")["valid_until"] == "2099-12-31"
    # Events stay; the audit log only grows, by one row for the whole snapshot.
    after = local_dump(b)
    assert [line for line in after if '"events"' in line] == [line for line in local if '"events"' in line]
    new_audit = [line for line in after if line not in local]
    assert len(new_audit) == 1 and "snapshot:recorder" in new_audit[0] and "enrolment.snapshot" in new_audit[0]
    detail = json.loads(b.db.execute("SELECT detail FROM audit ORDER BY n DESC LIMIT 1").fetchone()[0])
    assert detail == {"site": SITE, "version": 3, "previous": 0, "sha256": json.loads(s.manifest)["sha256"][:16],
                      "people": 2, "cards": 2, "levels": 2, "pins": 1, "removed": 1, "schedules": 0, "holidays": 0,
                      "shadowed": []}
    assert b.db.execute("SELECT count(*) FROM locations").fetchone()[0] == 0  # "old" is no longer enrolled
    assert es.current_version(b, SITE) == 3


def test_no_names_in_any_byte_that_travels(tmp_path):
    s = signed(tmp_path)
    body = zlib.decompress(b"".join(c.partition(b"\n")[2] for c in s.chunks))
    for blob in (s.manifest, body, *s.chunks):
        assert b"Hanako" not in blob and b"Yamada" not in blob and b"Suzuki" not in blob
    assert b"p1" in body and b"04a1b2c3" not in body  # ids travel, UIDs never


def test_chunks_reassemble_in_any_order(tmp_path):
    s = signed(tmp_path, chunk_bytes=64)
    assert len(s.chunks) > 3
    shuffled = es.Signed(s.manifest, tuple(reversed(s.chunks)))
    assert check(shuffled).snapshot == check(s).snapshot


def tamper_manifest(s: es.Signed, **changes) -> es.Signed:
    m = json.loads(s.manifest)
    m.update(changes)
    return es.Signed(json.dumps(m).encode(), s.chunks)


def resign(s: es.Signed, signer: Ed25519PrivateKey = KEY, **changes) -> es.Signed:
    """The manifest changed and signed again: a genuine signature over other values."""
    m = {k: v for k, v in json.loads(s.manifest).items() if k != "sig"} | changes
    sig = base64.b64encode(signer.sign(canonical_json(m))).decode()
    return es.Signed(canonical_json({**m, "sig": sig}), s.chunks)


def flip_last_byte(chunk: bytes) -> bytes:
    return chunk[:-1] + bytes([chunk[-1] ^ 1])


REFUSALS = {
    "tampered manifest": (lambda s: tamper_manifest(s, version=99), "bad signature"),
    "tampered body": (lambda s: es.Signed(s.manifest, (*s.chunks[:-1], flip_last_byte(s.chunks[-1]))),
                      "hash mismatch"),
    "tampered body, header fixed up": (
        lambda s: es.Signed(s.manifest, tuple(_fixed_up(c) for c in s.chunks)), "hash mismatch"),
    "other site": (lambda s: resign(s, site="osaka"), "other site"),
    "older version": (lambda s: resign(s, version=4), "older version"),
    "equal version": (lambda s: resign(s, version=5), "older version"),
    "unknown key": (lambda s: resign(s, OTHER, key="intruder"), "unknown key"),
    "known name, other key": (lambda s: resign(s, OTHER), "bad signature"),
    "missing chunk": (lambda s: es.Signed(s.manifest, s.chunks[:-1]), "chunk missing"),
    "duplicated chunk": (lambda s: es.Signed(s.manifest, (*s.chunks, s.chunks[0])), "chunk duplicated"),
    "chunk of another snapshot": (lambda s: resign(s, version=7, sha256="0" * 64), "chunk mismatch"),
    "not JSON": (lambda s: es.Signed(b"\x00garbage", s.chunks), "malformed"),
}


def _fixed_up(chunk: bytes) -> bytes:
    """A chunk whose data was altered and whose own header hash was made to match: only the
    signed whole-body hash can catch it."""
    head, _, data = chunk.partition(b"\n")
    data = flip_last_byte(data)
    h = json.loads(head) | {"chunk_sha256": hashlib.sha256(data).hexdigest()}
    return json.dumps(h).encode() + b"\n" + data


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_bad_snapshot_is_refused_with_its_reason_and_changes_nothing(tmp_path, case):
    b = node(tmp_path / "n")
    es.apply(b, check(signed(tmp_path / "first", version=5)))
    before, local = enrolment_dump(b), local_dump(b)
    good = signed(tmp_path / "second", version=6, chunk_bytes=64)
    assert len(good.chunks) > 2
    make, reason = REFUSALS[case]
    with pytest.raises(es.SnapshotRefused) as refused:
        es.apply(b, check(make(good), current=es.current_version(b, SITE)))
    assert refused.value.reason == reason, str(refused.value)
    assert enrolment_dump(b) == before and local_dump(b) == local


def test_a_key_not_permitted_to_sign_snapshots_is_refused(tmp_path):
    with pytest.raises(es.SnapshotRefused) as refused:
        es.verify(signed(tmp_path), site=SITE, keys={"recorder": KEY.public_key()}, permitted=set(), current=0)
    assert refused.value.reason == "not permitted"


def test_a_failure_inside_apply_leaves_the_old_set_whole(tmp_path):
    b = node(tmp_path)
    before, local = enrolment_dump(b), local_dump(b)
    good = check(signed(tmp_path))
    # Signed and hashed as the recorder made it, but one card's holder is not in it: the foreign
    # key fails after the people and the other cards were already written in the transaction.
    s = good.snapshot
    broken = es.Snapshot(s.site, s.version, s.created, s.people,
                         (*s.cards, es.SnapshotCard("cd" * 32, "nobody", True, None, None, None)))
    with pytest.raises(es.SnapshotRefused) as refused:
        es.apply(b, es.Verified(broken, good.key, good.sha256, good.signed))
    assert refused.value.reason == "inconsistent"
    assert enrolment_dump(b) == before and local_dump(b) == local
    assert not (tmp_path / "b" / es.KEPT).exists()


def test_the_snapshot_survives_a_restart(tmp_path):
    s = signed(tmp_path, version=2)
    b = node(tmp_path)
    es.apply(b, check(s))
    b.close()
    again = Database(tmp_path / "b", check=True)
    assert es.current_version(again, SITE) == 2
    kept = es.kept(tmp_path / "b")
    assert kept == s
    # What was kept checks again, and is now not newer than what the node has.
    with pytest.raises(es.SnapshotRefused, match="older version"):
        check(kept, current=es.current_version(again, SITE))
    holder = People(again).card_holder(SiteKey.load_or_create(tmp_path / "a" / "site.key").card_hash(
        bytes.fromhex("04a1b2c3")))
    assert holder is not None and holder.person_id == "p1" and holder.has_pin


def test_disk_copy_is_written_whole(tmp_path):
    s = signed(tmp_path)
    path = tmp_path / "kept"
    es.keep(path, s)
    assert es.unpack(path.read_bytes()) == s
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kept")] == []
    with pytest.raises(es.SnapshotRefused, match="malformed"):
        es.unpack(path.read_bytes()[:-1])


# ----------------------------------------------------------------------------- the CLI and the daemon
def test_cli_snapshot_then_apply_and_a_daemon_decides_with_it(tmp_path, broker, site):
    # The recorder: the harness's site, with people and a revoked card.
    site.enroll("p1", "04a1b2c3", name=SECRET_NAME)
    site.enroll("p2", "04d0d0d0")
    site.cli("card", "revoke", site.cli("card", "list", "--person", "p2").stdout.splitlines()[1].split()[0])
    keygen(tmp_path / "recorder.key")
    public = public_key_text(load_private_key(tmp_path / "recorder.key"))
    keys = f'\n[commands.keys.recorder]\npublic_key = "{public}"\nops = ["enrolment.snapshot"]\n'
    out = tmp_path / "snap"
    r = site.cli("enrolment", "snapshot", "--out", str(out), "--key", str(tmp_path / "recorder.key"),
                 "--version", "1")
    assert "2 people, 2 cards" in r.stdout
    assert all(SECRET_NAME.encode() not in p.read_bytes() for p in out.iterdir())
    assert out.stat().st_mode & 0o777 == 0o700 and {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    r = site.cli("enrolment", "snapshot", "--out", str(out), "--key", str(tmp_path / "recorder.key"),
                 "--version", "1", check=False)
    assert r.returncode == 65 and "is not empty" in r.stderr

    # A node: its own config and data dir, the site's key copied as an installer does.
    (tmp_path / "node").mkdir()
    n = Site(tmp_path / "node", broker)
    n.config.write_text(n.config.read_text() + keys)
    n.data_dir.mkdir(mode=0o700)
    (n.data_dir / "site.key").write_bytes((site.data_dir / "site.key").read_bytes())
    (n.data_dir / "site.key").chmod(0o600)
    r = n.cli("enrolment", "apply", str(out))
    assert "enrolment snapshot 1 of site test applied" in r.stdout and "2 people, 2 cards" in r.stdout
    assert "enrolment snapshot 1, signed by recorder" in n.cli("enrolment", "status").stdout
    again = n.cli("enrolment", "apply", str(out), check=False)
    assert again.returncode == 65 and "older version" in again.stderr
    try:
        n.start()
        assert n.cli("sim", "tap", "entrance-in", "04a1b2c3").stdout.startswith("entrance-in: granted")
        assert n.cli("sim", "tap", "entrance-in", "04d0d0d0").stdout.startswith("entrance-in: denied")
        assert n.cli("sim", "tap", "entrance-out", "04a1b2c3").stdout.startswith("entrance-out: granted")
        # Revoked at the recorder, snapshot 2 applied while the daemon runs: the next tap is denied.
        site.cli("card", "revoke", "--uid", "04a1b2c3")
        site.cli("enrolment", "snapshot", "--out", str(tmp_path / "snap2"), "--key", str(tmp_path / "recorder.key"),
                 "--version", "2")
        n.cli("enrolment", "apply", str(tmp_path / "snap2"))
        assert n.cli("sim", "tap", "entrance-in", "04a1b2c3").stdout == \
            "entrance-in: denied (revoked, rule card.revoked)\n"
    finally:
        n.kill()
    audit = sqlite3.connect(n.data_dir / DB_NAME).execute(
        "SELECT actor, action FROM audit WHERE action = 'enrolment.snapshot'").fetchall()
    assert audit == [("snapshot:recorder", "enrolment.snapshot")] * 2


def test_cli_refuses_a_snapshot_from_a_key_the_node_does_not_list(tmp_path, site):
    site.enroll("p1", "04a1b2c3")
    keygen(tmp_path / "stranger.key")
    out = tmp_path / "snap"
    site.cli("enrolment", "snapshot", "--out", str(out), "--key", str(tmp_path / "stranger.key"), "--version", "1")
    r = site.cli("enrolment", "apply", str(out), check=False)
    assert r.returncode == 65
    assert r.stderr == "sekisho: enrolment snapshot refused: unknown key: 'stranger' is not in [commands.keys] " \
                       "of this node\n"


def test_a_person_listed_twice_is_refused_as_malformed(tmp_path):
    good = check(signed(tmp_path))
    s = good.snapshot
    twice = es.Snapshot(s.site, s.version, s.created, (*s.people, s.people[0]), s.cards)
    bad = es.sign(twice, KEY, "recorder")
    with pytest.raises(es.SnapshotRefused) as refused:
        check(bad)
    assert refused.value.reason == "malformed" and "appears twice" in str(refused.value)


def test_a_kept_copy_that_cannot_be_written_applies_nothing(tmp_path):
    b = node(tmp_path)
    before = enrolment_dump(b)
    (tmp_path / "b" / es.KEPT).mkdir()  # a directory where the file goes: the rename fails
    with pytest.raises(es.StoreError, match="cannot keep the snapshot"):
        es.apply(b, check(signed(tmp_path)))
    assert enrolment_dump(b) == before and es.current_version(b, SITE) == 0


# ----------------------------------------------------------------------------- deltas
def delta_node(tmp_path: Path) -> tuple[Database, SiteKey]:
    """A node at snapshot 1 of the recorder's enrolment."""
    s = signed(tmp_path, version=1)
    b = node(tmp_path)
    es.apply(b, check(s))
    return b, SiteKey.load_or_create(tmp_path / "a" / "site.key")


def check_delta(payload: bytes, database: Database, keys=None) -> ed.VerifiedDelta:
    k, _ = keys or trust()
    return ed.verify(payload, site=SITE, keys=k, permitted={"recorder"}, current=es.current_version(database, SITE))


def test_a_delta_revokes_a_card_and_disables_a_person_in_one_step(tmp_path):
    b, site_key = delta_node(tmp_path)
    card = site_key.card_hash(bytes.fromhex("04a1b2c3"))
    new = site_key.card_hash(bytes.fromhex("04eeee"))
    payload = ed.sign(SITE, 2, [{"op": "card.revoke", "card": card, "revoked": "2026-12-05T01:00:00.000Z"},
                                {"op": "person.disable", "person": "p2"},
                                {"op": "card.add", "card": new, "person": "p2", "valid_from": None,
                                 "valid_until": "2027-03-31"},
                                {"op": "level.revoke", "person": "p2", "level": "staff"},
                                {"op": "level.grant", "person": "p1", "level": "night"}], KEY, "recorder")
    assert b"Hanako" not in payload
    local = local_dump(b)
    assert ed.apply(b, check_delta(payload, b)) == 5
    people = People(b)
    assert not people.card_holder(card).card_active
    holder = people.card_holder(new)
    assert holder.person_id == "p2" and not holder.person_active and holder.levels == frozenset()
    assert people.card_holder(site_key.card_hash(bytes.fromhex("04d0d0d0"))).levels == frozenset()
    assert "night" in people.card_holder(card).levels
    assert es.current_version(b, SITE) == 2
    added = [line for line in local_dump(b) if line not in local]
    assert len(added) == 1 and "enrolment.delta" in added[0] and "snapshot:recorder" in added[0]
    # The same delta again, and one that skips a version, are refused; nothing changes.
    before = enrolment_dump(b)
    for version, reason in ((2, "older version"), (4, "version gap")):
        again = ed.sign(SITE, version, [{"op": "person.enable", "person": "p2"}], KEY, "recorder")
        with pytest.raises(es.SnapshotRefused) as refused:
            ed.apply(b, check_delta(again, b))
        assert refused.value.reason == reason
    assert enrolment_dump(b) == before


DELTA_REFUSALS = {
    "other site": (lambda: ed.sign("osaka", 2, [], KEY, "recorder"), "other site"),
    "unknown key": (lambda: ed.sign(SITE, 2, [], OTHER, "intruder"), "unknown key"),
    "bad signature": (lambda: ed.sign(SITE, 2, [], OTHER, "recorder"), "bad signature"),
    "tampered": (lambda: ed.sign(SITE, 2, [{"op": "person.enable", "person": "p2"}], KEY, "recorder")
                 .replace(b"enable", b"disable"), "bad signature"),
    "unknown change": (lambda: ed.sign(SITE, 2, [{"op": "person.delete", "person": "p2"}], KEY, "recorder"),
                       "malformed"),
    "change of an unknown card": (lambda: ed.sign(SITE, 2, [
        {"op": "person.disable", "person": "p1"},
        {"op": "card.revoke", "card": "ee" * 32, "revoked": "2026-12-05T01:00:00.000Z"}], KEY, "recorder"),
        "inconsistent"),
    "grant to an unknown person": (lambda: ed.sign(SITE, 2, [
        {"op": "person.disable", "person": "p1"}, {"op": "level.grant", "person": "nobody", "level": "staff"}],
        KEY, "recorder"), "inconsistent"),
}


@pytest.mark.parametrize("case", sorted(DELTA_REFUSALS))
def test_each_bad_delta_is_refused_and_changes_nothing(tmp_path, case):
    b, _ = delta_node(tmp_path)
    before, local = enrolment_dump(b), local_dump(b)
    make, reason = DELTA_REFUSALS[case]
    with pytest.raises(es.SnapshotRefused) as refused:
        ed.apply(b, check_delta(make(), b))
    assert refused.value.reason == reason, str(refused.value)
    assert enrolment_dump(b) == before and local_dump(b) == local


def test_a_delta_needs_a_snapshot_first(tmp_path):
    b = node(tmp_path)
    with pytest.raises(es.SnapshotRefused) as refused:
        check_delta(ed.sign(SITE, 1, [], KEY, "recorder"), b)
    assert refused.value.reason == "no snapshot"
