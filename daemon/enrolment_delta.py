"""Signed enrolment deltas: the changes between two snapshots (a person disabled or enabled, a card
revoked or added, a level granted or revoked, and any other change to a person or a card), so
that a revocation reaches a node without sending the whole enrolment again.

A delta is one message, the canonical JSON of

    {"format": "sekisho-enrolment-delta/1", "site": ..., "version": ..., "created": ...,
     "changes": [{"op": "card.revoke", "card": "<hash>", "revoked": "<rfc3339>"}, ...],
     "key": ..., "sig": ...}

with ``sig`` the Ed25519 signature of the canonical JSON of the rest, by a key whose ops in
[commands.keys] name ``enrolment.delta`` (``enrolment_snapshot.trusted(cfg, OP)`` lists them).
Its version shares the snapshots' sequence and must be exactly the node's current version + 1.

Failure model: the same refusals as a snapshot (enrolment_snapshot.py), checked in the same
order, plus ``no snapshot`` (a node that never took a snapshot has nothing a delta could apply
to) and ``version gap`` (a delta above current + 1: the node missed one, and waits for the next
delta in sequence or the next snapshot, never applying a change on a guess). ``apply`` writes
all the changes, the version and one audit row in one transaction; a change that does not fit
the store (a card or person it does not have, a card enrolled to someone else) is
``inconsistent`` and rolls back the whole delta. A delta is not kept on disk: the store holds
its result and the audit row its version; the kept copy stays the last snapshot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .enrolment_snapshot import Snapshot, SnapshotRefused, _fields, current_version
from .store.audit import append, canonical_json
from .store.database import Database
from .timestamps import utc_now

FORMAT = "sekisho-enrolment-delta/1"
OP = "enrolment.delta"
FIELDS = {"format": str, "site": str, "version": int, "created": str, "changes": list, "key": str, "sig": str}
CHANGES: dict[str, dict[str, tuple[type, ...]]] = {
    "person.disable": {"person": (str,)},
    "person.enable": {"person": (str,)},
    "card.revoke": {"card": (str,), "revoked": (str,)},
    "card.add": {"card": (str,), "person": (str,), "valid_from": (str, type(None)), "valid_until": (str, type(None))},
    "level.grant": {"person": (str,), "level": (str,)},
    "level.revoke": {"person": (str,), "level": (str,)},
    "person.put": {"person": (str,), "active": (bool,), "valid_from": (str, type(None)),
                   "valid_until": (str, type(None)), "pin_hash": (str, type(None)), "levels": (list,)},
    "person.remove": {"person": (str,)},
    "card.put": {"card": (str,), "person": (str,), "active": (bool,), "valid_from": (str, type(None)),
                 "valid_until": (str, type(None)), "revoked": (str, type(None))},
    "card.remove": {"card": (str,)},
}
"""Each change's op and its fields besides ``op``, with the types each may have. The small ops
say the common changes in few bytes; ``person.put``, ``card.put`` and the removes say any other
(a new person, new dates or PIN, a card moved or gone), so that every change is a delta and no
revocation ever waits behind a snapshot of a new version."""
DELTA_MAX = 2000
"""Most changes in one delta: a bigger change (a roster of thousands) goes as several deltas with
consecutive versions, each of a size a node applies in a moment."""
RESTRICTIVE = ("card.revoke", "card.remove", "person.disable", "level.revoke", "person.remove")
"""The ops that only take access away, in an order the store takes them."""


@dataclass(frozen=True)
class VerifiedDelta:
    site: str
    version: int
    created: str
    changes: tuple[Mapping[str, Any], ...]
    key: str
    sha256: str
    """Of the signed bytes: what the node records as the version's hash."""


def sign(site: str, version: int, changes: Iterable[Mapping[str, Any]], key: Ed25519PrivateKey, key_name: str,
         created: str | None = None) -> bytes:
    message = {"format": FORMAT, "site": site, "version": version, "created": created or utc_now(),
               "changes": [dict(c) for c in changes], "key": key_name}
    return canonical_json({**message, "sig": base64.b64encode(key.sign(canonical_json(message))).decode()})


def verify(payload: bytes, *, site: str, keys: Mapping[str, Ed25519PublicKey], permitted: Iterable[str],
           current: int) -> VerifiedDelta:
    m = _fields(payload, FIELDS, "delta")
    if m["format"] != FORMAT:
        raise SnapshotRefused("malformed", f"format {m['format']!r}; this node reads {FORMAT!r}")
    public = keys.get(m["key"])
    if public is None:
        raise SnapshotRefused("unknown key", f"{m['key']!r} is not in [commands.keys] of this node")
    signed = canonical_json({k: v for k, v in m.items() if k != "sig"})
    try:
        public.verify(base64.b64decode(m["sig"], validate=True), signed)
    except (binascii.Error, ValueError, InvalidSignature):
        raise SnapshotRefused("bad signature", f"the delta does not verify with key {m['key']!r}") from None
    if m["key"] not in set(permitted):
        raise SnapshotRefused("not permitted", f"key {m['key']!r} may not sign {OP} (its ops do not name it)")
    if m["site"] != site:
        raise SnapshotRefused("other site", f"for site {m['site']!r}, not {site!r}")
    if current < 1:
        raise SnapshotRefused("no snapshot", "this node has taken no snapshot yet; a delta has nothing to apply to")
    if m["version"] <= current:
        raise SnapshotRefused("older version", f"version {m['version']} is not above this node's {current}")
    if m["version"] != current + 1:
        raise SnapshotRefused("version gap", f"version {m['version']} after this node's {current}: "
                                             f"{m['version'] - current - 1} missed; waiting for the next snapshot")
    for i, change in enumerate(m["changes"]):
        fields = CHANGES.get(str(change.get("op"))) if isinstance(change, dict) else None
        if fields is None or set(change) != {"op", *fields} or not all(
                isinstance(change[f], kinds) for f, kinds in fields.items()):
            raise SnapshotRefused("malformed", f"change {i} is not one of {', '.join(CHANGES)} with its fields")
    return VerifiedDelta(m["site"], m["version"], m["created"], tuple(m["changes"]), m["key"],
                         hashlib.sha256(signed).hexdigest())


class _Unfit(Exception):
    pass


def _write(db: Any, c: Mapping[str, Any]) -> None:
    op = c["op"]
    if op in ("person.disable", "person.enable"):
        if db.execute("UPDATE people SET active = ? WHERE id = ?", [int(op == "person.enable"), c["person"]]) \
                .rowcount != 1:
            raise _Unfit(f"no person {c['person']!r}")
    elif op == "card.revoke":
        if db.execute("UPDATE cards SET active = 0, revoked = ? WHERE hash = ?", [c["revoked"], c["card"]]) \
                .rowcount != 1:
            raise _Unfit(f"no card {c['card'][:12]}")
    elif op == "card.add":
        owner = db.execute("SELECT person_id FROM cards WHERE hash = ?", [c["card"]]).fetchone()
        if owner and owner[0] != c["person"]:
            raise _Unfit(f"card {c['card'][:12]} is enrolled to {owner[0]!r}")
        db.execute("INSERT INTO cards (hash, person_id, active, created, revoked, valid_from, valid_until) "
                   "VALUES (?, ?, 1, ?, NULL, ?, ?) ON CONFLICT(hash) DO UPDATE SET active = 1, revoked = NULL, "
                   "valid_from = excluded.valid_from, valid_until = excluded.valid_until",
                   [c["card"], c["person"], utc_now(), c["valid_from"], c["valid_until"]])
    elif op == "level.grant":
        db.execute("INSERT OR IGNORE INTO person_levels (person_id, level) VALUES (?, ?)", [c["person"], c["level"]])
    elif op == "level.revoke":
        db.execute("DELETE FROM person_levels WHERE person_id = ? AND level = ?", [c["person"], c["level"]])
    elif op == "person.put":
        if not all(isinstance(level, str) for level in c["levels"]):
            raise _Unfit("levels are not all names")
        db.execute("INSERT INTO people (id, name, active, created, valid_from, valid_until, pin_hash) "
                   "VALUES (?, '', ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET active = excluded.active, "
                   "valid_from = excluded.valid_from, valid_until = excluded.valid_until, "
                   "pin_hash = excluded.pin_hash",
                   [c["person"], int(c["active"]), utc_now(), c["valid_from"], c["valid_until"], c["pin_hash"]])
        db.execute("DELETE FROM person_levels WHERE person_id = ?", [c["person"]])
        db.executemany("INSERT INTO person_levels (person_id, level) VALUES (?, ?)",
                       [(c["person"], level) for level in c["levels"]])
    elif op == "person.remove":
        # As a snapshot that no longer lists them: their cards, levels and whereabouts go too.
        for table, column in (("cards", "person_id"), ("person_levels", "person_id"), ("locations", "person_id")):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", [c["person"]])
        if db.execute("DELETE FROM people WHERE id = ?", [c["person"]]).rowcount != 1:
            raise _Unfit(f"no person {c['person']!r}")
    elif op == "card.put":
        if db.execute("SELECT 1 FROM people WHERE id = ?", [c["person"]]).fetchone() is None:
            raise _Unfit(f"no person {c['person']!r} for card {c['card'][:12]}")
        db.execute("INSERT INTO cards (hash, person_id, active, created, revoked, valid_from, valid_until) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET person_id = excluded.person_id, "
                   "active = excluded.active, revoked = excluded.revoked, valid_from = excluded.valid_from, "
                   "valid_until = excluded.valid_until",
                   [c["card"], c["person"], int(c["active"]), utc_now(), c["revoked"], c["valid_from"],
                    c["valid_until"]])
    else:  # card.remove
        if db.execute("DELETE FROM cards WHERE hash = ?", [c["card"]]).rowcount != 1:
            raise _Unfit(f"no card {c['card'][:12]}")


def apply(database: Database, delta: VerifiedDelta) -> int:
    """Write the delta's changes, its version and one audit row in one transaction; the number of
    changes written."""
    try:
        with database.transaction() as db:
            previous = current_version(database, delta.site)
            if delta.version != previous + 1:
                raise SnapshotRefused("older version" if delta.version <= previous else "version gap",
                                      f"version {delta.version} after this node's {previous}")
            for i, change in enumerate(delta.changes):
                try:
                    _write(db.conn, change)
                except _Unfit as exc:
                    raise SnapshotRefused("inconsistent", f"change {i} ({change['op']}): {exc}; nothing of the "
                                                          f"delta was applied") from None
            now = utc_now()
            db.conn.execute("UPDATE enrolment_version SET version = ?, key = ?, sha256 = ?, created = ?, applied = ? "
                            "WHERE site = ?", [delta.version, delta.key, delta.sha256, delta.created, now, delta.site])
            counts: dict[str, int] = {}
            for change in delta.changes:
                counts[change["op"]] = counts.get(change["op"], 0) + 1
            append(db, f"snapshot:{delta.key}", "enrolment.delta",
                   {"site": delta.site, "version": delta.version, "previous": previous, "changes": counts}, now)
    except sqlite3.IntegrityError as exc:
        raise SnapshotRefused("inconsistent", f"the delta does not fit the store ({exc}); nothing of it was "
                                              f"applied") from None
    return len(delta.changes)


def between(old: Snapshot, new: Snapshot) -> list[dict[str, Any]] | None:
    """The changes that take a node from ``old`` to exactly ``new``, in an order the store takes
    them (a person before their cards, a card gone before its person): [] when the two enrol the
    same, None when the schedules or holidays differ (deltas do not carry policy: a snapshot
    carries it)."""
    if (old.schedules, old.holidays) != (new.schedules, new.holidays):
        return None
    people: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    was, now = {p.id: p for p in old.people}, {p.id: p for p in new.people}
    for pid in sorted(now):
        a, b = was.get(pid), now[pid]
        if a is None or (a.valid_from, a.valid_until, a.pin_hash) != (b.valid_from, b.valid_until, b.pin_hash):
            people.append({"op": "person.put", "person": pid, "active": b.active, "valid_from": b.valid_from,
                           "valid_until": b.valid_until, "pin_hash": b.pin_hash, "levels": list(b.levels)})
            continue
        if a.active != b.active:
            people.append({"op": "person.enable" if b.active else "person.disable", "person": pid})
        granted, revoked = sorted(set(b.levels) - set(a.levels)), sorted(set(a.levels) - set(b.levels))
        people += [{"op": "level.grant", "person": pid, "level": lvl} for lvl in granted]
        people += [{"op": "level.revoke", "person": pid, "level": lvl} for lvl in revoked]
    cards_was, cards_now = {c.hash: c for c in old.cards}, {c.hash: c for c in new.cards}
    gone += [{"op": "card.remove", "card": h} for h in sorted(cards_was.keys() - cards_now.keys())
             if cards_was[h].person in now]  # a person removed takes their cards along
    gone += [{"op": "person.remove", "person": pid} for pid in sorted(was.keys() - now.keys())]
    for h in sorted(cards_now):
        c, before = cards_now[h], cards_was.get(h)
        if before == c:
            continue
        revoke = before is not None and before.person == c.person and not c.active and c.revoked is not None \
            and (before.valid_from, before.valid_until) == (c.valid_from, c.valid_until)
        if before is not None and not revoke:
            # Gone first, back at the end: a card that moves, or whose dates change, opens
            # nothing between two pieces, rather than its old self with its holder's new levels.
            gone.append({"op": "card.remove", "card": h})
        if revoke:
            cards.append({"op": "card.revoke", "card": h, "revoked": c.revoked})
        elif (before is None or before.person == c.person) and c.active and c.revoked is None:
            # What card.add leaves: a new card, or one enabled again.
            cards.append({"op": "card.add", "card": h, "person": c.person, "valid_from": c.valid_from,
                          "valid_until": c.valid_until})
        else:
            cards.append({"op": "card.put", "card": h, "person": c.person, "active": c.active,
                          "valid_from": c.valid_from, "valid_until": c.valid_until, "revoked": c.revoked})
    # What takes access away goes first, and a card that changes otherwise is removed first and
    # put back last: cut into several deltas (``pieces``), a change never leaves a card, between
    # two of them, opening more than it did before the change or does after it.
    changes = gone + people + cards
    first = [c for op in RESTRICTIVE for c in changes if c["op"] == op]
    return first + [c for c in changes if c["op"] not in RESTRICTIVE]


def pieces(changes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``changes`` cut into deltas of at most ``DELTA_MAX``, in order: each applies on the store
    the ones before it left (a person before their cards, a card gone before its person)."""
    return [changes[i:i + DELTA_MAX] for i in range(0, len(changes), DELTA_MAX)]
