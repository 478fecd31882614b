"""Enrolment over MQTT (daemon/enrolment_publisher.py, daemon/enrolment_receiver.py): a recorder
node and a door node, each a daemon in its own temp dir, on one real mosquitto; people enrolled
with the command line at the recorder, decided at the door."""

from __future__ import annotations

import json
import sqlite3
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Site, wait_for
from sekisho.daemon import enrolment_delta as ed
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.commands import keygen, load_private_key, public_key_text
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.store.database import DB_NAME, Database
from sekisho.daemon.store.people import People
from sekisho.daemon.topics import Topics

T = Topics("test")
SECRET_NAME = "Hanako Yamada"
REFUSED = T.alarm("door-b.door-b.enrolment-refused")


def patched(snapshot: es.Snapshot, changes: list[dict[str, Any]]) -> es.Snapshot:
    """``snapshot`` with delta ops applied as a node applies them, in memory: what a node holds
    after some of a change's deltas."""
    people = {p.id: p for p in snapshot.people}
    cards = {c.hash: c for c in snapshot.cards}
    for c in changes:
        op = c["op"]
        if op in ("person.enable", "person.disable") and c["person"] in people:
            people[c["person"]] = replace(people[c["person"]], active=op == "person.enable")
        elif op in ("level.grant", "level.revoke") and c["person"] in people:
            levels = set(people[c["person"]].levels) | {c["level"]} if op == "level.grant" \
                else set(people[c["person"]].levels) - {c["level"]}
            people[c["person"]] = replace(people[c["person"]], levels=tuple(sorted(levels)))
        elif op == "card.revoke" and c["card"] in cards:
            cards[c["card"]] = replace(cards[c["card"]], active=False, revoked=c["revoked"])
        elif op == "card.add":
            cards[c["card"]] = es.SnapshotCard(c["card"], c["person"], True, c["valid_from"], c["valid_until"], None)
        elif op == "person.put":
            people[c["person"]] = es.SnapshotPerson(c["person"], c["active"], c["valid_from"], c["valid_until"],
                                                    c["pin_hash"], tuple(sorted(c["levels"])))
        elif op == "person.remove":
            people.pop(c["person"], None)
            cards = {h: card for h, card in cards.items() if card.person != c["person"]}
        elif op == "card.put":
            cards[c["card"]] = es.SnapshotCard(c["card"], c["person"], c["active"], c["valid_from"],
                                               c["valid_until"], c["revoked"])
        elif op == "card.remove":
            cards.pop(c["card"], None)
    return replace(snapshot, people=tuple(people[k] for k in sorted(people)),
                   cards=tuple(cards[k] for k in sorted(cards)))


def two_nodes(tmp_path: Path, broker) -> tuple[Site, Site]:
    """The recorder (door-a, roles door and recorder, the signing key) and a door (door-b, which
    trusts that key), the site key copied to the door as an installer does."""
    (tmp_path / "rec").mkdir()
    (tmp_path / "door").mkdir()
    rec, door = Site(tmp_path / "rec", broker), Site(tmp_path / "door", broker)
    keygen(tmp_path / "rec" / "recorder.key")
    public = public_key_text(load_private_key(tmp_path / "rec" / "recorder.key"))
    text = rec.config.read_text()
    rec.config.write_text(text.replace('timezone = "Asia/Tokyo"\n', 'timezone = "Asia/Tokyo"\nroles = ["door", "recorder"]\n')
                          + '\n[recorder]\nsigning_key = "recorder.key"\n')
    door.config.write_text(text.replace('node = "door-a"', 'node = "door-b"')
                           + f'\n[commands.keys.recorder]\npublic_key = "{public}"\nops = ["enrolment.*"]\n')
    Database(rec.data_dir).close()
    SiteKey.load_or_create(rec.data_dir / "site.key")
    door.data_dir.mkdir(mode=0o700)
    (door.data_dir / "site.key").write_bytes((rec.data_dir / "site.key").read_bytes())
    (door.data_dir / "site.key").chmod(0o600)
    return rec, door


def tap(site: Site, uid: str) -> str:
    return site.cli("sim", "tap", "entrance-in", uid).stdout


def retained_cards(sub) -> int:
    """The cards in the latest snapshot the subscriber heard, put together from its chunks."""
    manifests = sub.on("/enrolment/snapshot/manifest")
    if not manifests:
        return -1
    manifest = json.loads(manifests[-1].payload)
    chunks: dict[int, bytes] = {}
    for m in sub.on(""):
        if "/enrolment/snapshot/chunk/" in m.topic and m.payload:
            head, data = m.payload.split(b"\n", 1)
            if json.loads(head)["version"] == manifest["version"]:
                chunks[int(m.topic.rsplit("/", 1)[1])] = data
    if len(chunks) != manifest["chunks"]:
        return -1
    body = json.loads(zlib.decompress(b"".join(chunks[i] for i in range(len(chunks)))))
    assert SECRET_NAME not in json.dumps(body)
    return len(body["cards"]["rows"])


def status_enrolment(sub, node: str) -> int | None:
    got = [m.json for m in sub.on(T.node_status(node)) if m.payload]
    return got[-1].get("enrolment") if got else None


def test_enrolled_at_the_recorder_granted_at_a_door_that_came_later_revoked_within_seconds(tmp_path, broker,
                                                                                         subscribe):
    rec, door = two_nodes(tmp_path, broker)
    sub = subscribe("sekisho/#")
    try:
        rec.start()
        rec.enroll("p1", "04a1b2c3", name=SECRET_NAME)
        rec.enroll("p2", "04d0d0d0")
        # The retained snapshot holds both before the door exists.
        wait_for(lambda: retained_cards(sub) == 2, timeout=20, what="the recorder's snapshot of both cards")
        door.start()
        wait_for(lambda: tap(door, "04a1b2c3").startswith("entrance-in: granted"), timeout=20,
                 what="the door, started after the enrolment, to grant the card from the retained snapshot")
        version = wait_for(lambda: status_enrolment(sub, "door-b"), what="door-b's status with its version")
        assert f"enrolment snapshot {version}" in door.cli("enrolment", "status").stdout
        assert rec.cli("enrolment", "status").stdout == \
            f"site test: recorder, enrolment version {status_enrolment(sub, 'door-a')} sent last\n"
        # Names never leave the recorder: the door's store has none.
        names = sqlite3.connect(door.data_dir / DB_NAME).execute("SELECT DISTINCT name FROM people").fetchall()
        assert names == [("",)]

        rec.cli("card", "revoke", "--uid", "04a1b2c3")
        wait_for(lambda: tap(door, "04a1b2c3") == "entrance-in: denied (revoked, rule card.revoked)\n", timeout=20,
                 what="the revoked card refused at the door")
        # By a delta, at once (the enrolment before may have gone partly by deltas too).
        revoke = json.loads(sub.on("/enrolment/delta")[-1].payload)
        assert [c["op"] for c in revoke["changes"]] == ["card.revoke"]
        wait_for(lambda: revoke["version"] in [m.json.get("enrolment") for m in sub.on(T.node_status("door-b"))
                                                  if m.payload], what="door-b's status saying the delta's version")
        assert tap(door, "04d0d0d0").startswith("entrance-in: granted")
        # The retained snapshot catches up with the delta at the delta's own version: the door,
        # which has it, applies nothing.
        door_db = sqlite3.connect(door.data_dir / DB_NAME)
        applied = door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchall()
        wait_for(lambda: [m for m in sub.on("/enrolment/snapshot/manifest")
                          if m.payload and json.loads(m.payload)["version"] == revoke["version"]],
                 what="the snapshot at the delta's version")
        assert tap(door, "04d0d0d0").startswith("entrance-in: granted")
        assert door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchall() == applied

        # A burst of 100 changes (50 people with a card each, as fast as the store takes them):
        # deltas, and one catching-up snapshot, or two if the burst straddles one, not one per change.
        manifests = len(sub.on("/enrolment/snapshot/manifest"))
        people, site_key = People(Database(rec.data_dir)), SiteKey.load_or_create(rec.data_dir / "site.key")
        for i in range(50):
            people.add_person(f"b{i}", f"Burst {i}", "cli:test")
            people.add_card(f"b{i}", site_key.card_hash(bytes.fromhex(f"05{i:06x}")), "cli:test")
        wait_for(lambda: door_db.execute("SELECT count(*) FROM cards WHERE person_id GLOB 'b*'").fetchone()[0] == 50,
                 timeout=20, what="the burst's cards at the door")
        # New people go by deltas too: the door applied no snapshot for them. The retained
        # snapshot catches up once the burst has paused, at the last delta's version.
        assert door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchall() == applied
        wait_for(lambda: len(sub.on("/enrolment/snapshot/manifest")) > manifests, timeout=20,
                 what="the retained snapshot caught up with the burst")
        assert len(sub.on("/enrolment/snapshot/manifest")) - manifests <= 2
        assert door_db.execute("SELECT count(*) FROM audit WHERE action = 'enrolment.snapshot'").fetchall() == applied

        # The recorder restarted: its counter survives, no new snapshot for an unchanged
        # enrolment (the kept one is said again, and the door takes it as no news), and the next
        # change takes the next version.
        sent = wait_for(lambda: status_enrolment(sub, "door-b") == status_enrolment(sub, "door-a")
                        and status_enrolment(sub, "door-a"), what="the door at the recorder's version")
        rec.stop()
        rec.start()
        wait_for(lambda: [m for m in sub.on(T.node_status("door-a")) if m.payload and m.json["state"] == "online"
                          and m.json["started"] != sub.on(T.node_status("door-a"))[0].json["started"]],
                 what="the restarted recorder online")
        assert rec.cli("enrolment", "status").stdout == f"site test: recorder, enrolment version {sent} sent last\n"
        rec.cli("card", "revoke", "--uid", "05000000")
        wait_for(lambda: tap(door, "05000000") == "entrance-in: denied (revoked, rule card.revoked)\n", timeout=20,
                 what="a card revoked after the recorder's restart refused")
        assert json.loads(sub.on("/enrolment/delta")[-1].payload)["version"] == sent + 1
        assert not sub.on(REFUSED)

        # The broker down: the door decides from its own copy.
        broker.stop()
        assert tap(door, "04d0d0d0").startswith("entrance-in: granted")
        assert tap(door, "04a1b2c3") == "entrance-in: denied (revoked, rule card.revoked)\n"
        assert tap(door, "05000000") == "entrance-in: denied (revoked, rule card.revoked)\n"
    finally:
        door.kill()
        rec.kill()


def test_a_tampered_snapshot_and_an_older_one_are_refused_reported_and_change_nothing(tmp_path, broker, subscribe):
    rec, door = two_nodes(tmp_path, broker)
    sub = subscribe("sekisho/#")
    try:
        rec.start()
        door.start()
        rec.enroll("p1", "04a1b2c3")
        wait_for(lambda: tap(door, "04a1b2c3").startswith("entrance-in: granted"), timeout=20,
                 what="the card granted at the door")
        rec.stop()  # nothing more from the recorder: what the door hears now is the test's
        version = es.current_version(Database(door.data_dir), "test")
        before = sqlite3.connect(door.data_dir / DB_NAME).execute("SELECT * FROM cards").fetchall()
        key = load_private_key(tmp_path / "rec" / "recorder.key")
        snapshot = es.build(People(Database(rec.data_dir)), "test", version + 1)

        def send(signed: es.Signed) -> None:
            for i, chunk in enumerate(signed.chunks):
                sub.client.publish(T.enrolment_chunk(i), chunk, qos=1)
            sub.client.publish(T.enrolment_manifest(), signed.manifest, qos=1)

        def reasons() -> list[str]:
            return [m.json["reason"] for m in sub.on(REFUSED) if m.payload]

        good = es.sign(snapshot, key, "recorder")
        # A manifest altered after signing: its version raised.
        manifest = json.loads(good.manifest)
        send(es.Signed(json.dumps({**manifest, "version": version + 7}).encode(), good.chunks))
        wait_for(lambda: reasons() == ["bad signature"], what="the altered manifest refused")
        # A chunk altered, the manifest as signed.
        head, data = good.chunks[0].split(b"\n", 1)
        send(es.Signed(good.manifest, (head + b"\n" + data[:-1] + bytes([data[-1] ^ 1]), *good.chunks[1:])))
        wait_for(lambda: reasons() == ["bad signature", "hash mismatch"], what="the altered chunk refused")
        # The good one is taken; then a properly signed snapshot older than it is refused (one
        # between the door's last snapshot and its version now is a late retained one: no news).
        send(good)
        wait_for(lambda: es.current_version(Database(door.data_dir), "test") == version + 1,
                 what="the good snapshot applied")
        version += 1
        before = sqlite3.connect(door.data_dir / DB_NAME).execute("SELECT * FROM cards").fetchall()
        send(es.sign(es.build(People(Database(rec.data_dir)), "test", 1), key, "recorder"))
        wait_for(lambda: reasons() == ["bad signature", "hash mismatch", "older version"],
                 what="the older snapshot refused")
        alarm = [m.json for m in sub.on(REFUSED) if m.payload][-1]
        assert (alarm["kind"], alarm["source"], alarm["severity"], alarm["what"], alarm["version"]) == \
            ("enrolment_refused", "door-b", "warning", "snapshot", 1)
        # Not JSON on the manifest's topic; a delta signed by nobody the door trusts; a delta that
        # skips a version.
        sub.client.publish(T.enrolment_manifest(), b"\x00garbage", qos=1)
        sub.client.publish(T.enrolment_delta(), ed.sign("test", version + 1, [], Ed25519PrivateKey.generate(),
                                                         "recorder"), qos=1)
        sub.client.publish(T.enrolment_delta(), ed.sign("test", version + 2, [], key, "recorder"), qos=1)
        refusals = ["bad signature", "hash mismatch", "older version", "malformed", "bad signature", "version gap"]
        wait_for(lambda: reasons() == refusals, what="the garbage and the two deltas refused")
        assert [m.json["what"] for m in sub.on(REFUSED) if m.payload][-3:] == ["snapshot", "delta", "delta"]
        # Nothing changed: the version, the cards, the decision; every refusal audited.
        assert es.current_version(Database(door.data_dir), "test") == version
        assert sqlite3.connect(door.data_dir / DB_NAME).execute("SELECT * FROM cards").fetchall() == before
        assert tap(door, "04a1b2c3").startswith("entrance-in: granted")
        audit = sqlite3.connect(door.data_dir / DB_NAME).execute(
            "SELECT detail FROM audit WHERE action = 'enrolment.refused' ORDER BY n").fetchall()
        assert [json.loads(d)["reason"] for (d,) in audit] == refusals
        # The same snapshot again (a retained one after a reconnect) is no news, and no refusal either.
        # Garbage sent after it, refused, shows the door has dealt with it by then.
        send(good)
        sub.client.publish(T.enrolment_manifest(), b"\x00more garbage", qos=1)
        wait_for(lambda: len(reasons()) > len(refusals), what="the garbage after the good snapshot refused")
        assert reasons() == [*refusals, "malformed"]
        assert zlib.decompress(b"".join(c.split(b"\n", 1)[1] for c in good.chunks))  # it is a real body
        assert tap(door, "04a1b2c3").startswith("entrance-in: granted")
        assert es.current_version(Database(door.data_dir), "test") == version
    finally:
        door.kill()
        rec.kill()


# ----------------------------------------------------------------------------- the recorder's comparison
def test_the_changes_between_two_enrolments_take_a_node_from_one_to_the_other(tmp_path):
    """enrolment_delta.between: what the ops express becomes a delta, which applied to a node
    holding the old enrolment gives exactly the new one; anything else is None (a snapshot)."""
    P, C = es.SnapshotPerson, es.SnapshotCard
    old = es.Snapshot("test", 1, "2026-12-05T00:00:00.000Z",
                      (P("p1", True, None, None, None, ("staff",)), P("p2", True, None, "2027-03-31", None, ())),
                      (C("a" * 64, "p1", True, None, None, None), C("b" * 64, "p2", True, None, None, None),
                       C("d" * 64, "p2", False, None, None, "2026-12-01T00:00:00.000Z")), (), ())
    new = es.Snapshot("test", 1, "2026-12-05T00:00:00.000Z",
                      (P("p1", False, None, None, None, ("server-room",)), P("p2", True, None, "2027-03-31", None, ())),
                      (C("a" * 64, "p1", False, None, None, "2026-12-05T01:00:00.000Z"),
                       C("b" * 64, "p2", True, None, None, None), C("c" * 64, "p2", True, "2026-12-06", None, None),
                       C("d" * 64, "p2", True, None, None, None)), (), ())
    changes = ed.between(old, new)
    # What takes access away first, then what gives it.
    assert changes == [
        {"op": "card.revoke", "card": "a" * 64, "revoked": "2026-12-05T01:00:00.000Z"},
        {"op": "card.remove", "card": "d" * 64},  # enabled again: gone first, back last
        {"op": "person.disable", "person": "p1"}, {"op": "level.revoke", "person": "p1", "level": "staff"},
        {"op": "level.grant", "person": "p1", "level": "server-room"},
        {"op": "card.add", "card": "c" * 64, "person": "p2", "valid_from": "2026-12-06", "valid_until": None},
        {"op": "card.add", "card": "d" * 64, "person": "p2", "valid_from": None, "valid_until": None}]
    # Applied at a node that holds the old enrolment, the delta gives the new one, exactly.
    key = Ed25519PrivateKey.generate()
    node = Database(tmp_path / "node")
    es.apply(node, es.verify(es.sign(old, key, "recorder"), site="test", keys={"recorder": key.public_key()},
                             permitted={"recorder"}, current=0))
    ed.apply(node, ed.verify(ed.sign("test", 2, changes, key, "recorder"), site="test",
                             keys={"recorder": key.public_key()}, permitted={"recorder"}, current=1))
    assert es.build(People(node), "test", 1, new.created).body() == new.body()
    # The recorder's own replay of the same changes (a snapshot read while deltas went out).
    assert patched(old, changes).body() == new.body() and patched(new, changes).body() == new.body()
    assert ed.between(new, new) == []
    # Any other change is a delta too, with the ops that say a whole person or card: applied at
    # a node that holds ``new``, each gives exactly the other enrolment.
    version = 3  # the node is at 2, the delta above
    for other in (replace(new, people=new.people[:1], cards=(new.cards[0],)),  # p2 removed, with their cards
                  replace(new, people=(*new.people, P("p3", True, None, None, None, ("staff",))),
                          cards=(*new.cards, C("e" * 64, "p3", True, None, "2027-01-31", None))),  # added
                  replace(new, people=(replace(new.people[0], pin_hash="scrypt$x"), new.people[1])),  # a PIN
                  replace(new, people=(new.people[0], replace(new.people[1], valid_until=None))),  # dates
                  replace(new, cards=new.cards[1:]),  # a card removed
                  replace(new, cards=(replace(new.cards[0], person="p2"), *new.cards[1:])),  # given to another
                  replace(new, cards=(*new.cards[:3], replace(new.cards[3], active=False)))):  # off, not revoked
        changes = ed.between(new, other)
        assert changes, other
        assert patched(new, changes).body() == other.body()
        back = ed.between(other, new)
        for step in (changes, back):
            ed.apply(node, ed.verify(ed.sign("test", version, step, key, "recorder"), site="test",
                                     keys={"recorder": key.public_key()}, permitted={"recorder"},
                                     current=version - 1))
            version += 1
            want = other if step is changes else new
            assert es.build(People(node), "test", 1, new.created).body() == want.body()
    # More changes than a delta holds: several deltas, in order, each applied on what the ones
    # before it left (people before their cards), ending where one would.
    many = replace(new, people=(*new.people, *(P(f"q{i:04d}", True, None, None, None, ()) for i in range(2500))),
                   cards=tuple(sorted((*new.cards, *(C(f"{i:064x}", f"q{i:04d}", True, None, None, None)
                                                     for i in range(2500))), key=lambda c: c.hash)))
    cut = ed.pieces(ed.between(new, many) or [])
    assert [len(p) for p in cut] == [ed.DELTA_MAX, ed.DELTA_MAX, 1000]
    for piece in cut:
        ed.apply(node, ed.verify(ed.sign("test", version, piece, key, "recorder"), site="test",
                                 keys={"recorder": key.public_key()}, permitted={"recorder"}, current=version - 1))
        version += 1
    assert es.build(People(node), "test", 1, new.created).body() == many.body()


def test_a_revocation_is_read_from_the_rows_the_audit_names_and_agrees_with_the_whole_read(tmp_path):
    """enrolment_publisher._targeted: with card.revoke, person.* and level.* rows only, the
    recorder reads those rows, not 100,000 people, and ends where a whole read ends."""
    from sekisho.daemon.enrolment_publisher import _targeted
    database = Database(tmp_path)
    people, site_key = People(database), SiteKey.load_or_create(tmp_path / "site.key")
    for i in range(5):
        people.add_person(f"p{i}", f"Person {i}", "cli:t")
        people.add_card(f"p{i}", site_key.card_hash(bytes([4, i])), "cli:t")
    sent = es.build(people, "test", 1, "2026-12-05T00:00:00.000Z")
    last = database.db.execute("SELECT max(n) FROM audit").fetchall()[0][0]
    people.revoke_card(site_key.card_hash(bytes([4, 3]))[:12], "cli:t")
    people.set_person_active("p1", False, "cli:t")
    people.grant_level("p2", "staff", "cli:t")
    rows = database.db.execute("SELECT action, detail FROM audit WHERE n > ? ORDER BY n", [last]).fetchall()
    got = _targeted(database, sent, rows)
    assert got is not None
    after, changes = got
    assert [c["op"] for c in changes] == ["card.revoke", "person.disable", "level.grant"]
    assert after.body() == es.build(people, "test", 1, sent.created).body()
    assert ed.between(sent, after) == changes
    # A row that names something no op carries (a new person): the whole enrolment is read.
    people.add_person("p9", "New", "cli:t")
    rows = database.db.execute("SELECT action, detail FROM audit WHERE n > ? ORDER BY n", [last]).fetchall()
    assert _targeted(database, sent, rows) is None


def test_no_cut_of_a_change_into_deltas_gives_a_card_more_than_before_or_after():
    """A change of more than DELTA_MAX ops goes as several deltas, and a node may sit between two
    of them: at every cut, each card opens at most what it opened before or opens after (its
    holder's levels, when the card and its holder are active)."""
    P, C = es.SnapshotPerson, es.SnapshotCard

    def opens(s: es.Snapshot) -> dict[str, frozenset[str]]:
        people = {p.id: p for p in s.people}
        return {c.hash: frozenset(people[c.person].levels) if c.active and c.revoked is None
                and (c.valid_until or "9999") >= "2026-12-05" and c.person in people and people[c.person].active
                else frozenset() for c in s.cards}

    x, y, z, w = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    old = es.Snapshot("test", 1, "", (P("a", True, None, None, None, ("lobby",)), P("b", True, None, None, None, ()),
                                      P("c", True, None, "2027-01-01", None, ("lobby",))),
                      (C(x, "a", True, None, None, None), C(y, "a", True, None, None, None),
                       C(z, "c", True, None, None, None), C(w, "a", True, None, None, None)))
    new = es.Snapshot("test", 1, "", (P("a", True, None, None, None, ("lobby", "vault")),
                                      P("b", True, None, None, None, ()),
                                      P("c", True, None, "2026-01-01", "scrypt$x", ("lobby", "vault"))),
                      (C(x, "b", True, None, None, None),  # moved away from the one gaining the vault
                       C(y, "a", True, "2026-01-01", "2026-02-01", None),  # new dates, holder gains the vault
                       C(z, "c", False, None, None, "2026-12-05T00:00:00.000Z"),  # revoked
                       C(w, "a", True, None, "2026-01-01", None)))  # expired, still active, holder gains the vault
    changes = ed.between(old, new)
    assert changes is not None
    before, after = opens(old), opens(new)
    for cut in range(len(changes) + 1):
        state = opens(patched(old, changes[:cut]))
        for card, levels in state.items():
            assert levels <= before.get(card, frozenset()) | after.get(card, frozenset()), (cut, card, changes)
    assert patched(old, changes).body() == new.body()
