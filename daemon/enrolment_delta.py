"""Signed enrolment deltas: the small changes between two snapshots (a person disabled or enabled,
a card revoked or added, a level granted or revoked), so that a revocation reaches a node without
sending the whole enrolment again.

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
}
"""Each change's op and its fields besides ``op``, with the types each may have."""


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
    else:  # level.revoke
        db.execute("DELETE FROM person_levels WHERE person_id = ? AND level = ?", [c["person"], c["level"]])


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
    """The changes that take a node from ``old`` to exactly ``new``: [] when the two enrol the
    same, None when some difference has no op (a person added or removed, new validity dates or
    PIN, a card removed or given to someone else, the schedules or holidays): only a snapshot
    carries that."""
    if (old.schedules, old.holidays) != (new.schedules, new.holidays):
        return None  # deltas do not carry policy: a policy change is a snapshot
    changes: list[dict[str, Any]] = []
    was, now = {p.id: p for p in old.people}, {p.id: p for p in new.people}
    if was.keys() != now.keys():
        return None
    for pid in sorted(now):
        a, b = was[pid], now[pid]
        if (a.valid_from, a.valid_until, a.pin_hash) != (b.valid_from, b.valid_until, b.pin_hash):
            return None
        if a.active != b.active:
            changes.append({"op": "person.enable" if b.active else "person.disable", "person": pid})
        granted, revoked = sorted(set(b.levels) - set(a.levels)), sorted(set(a.levels) - set(b.levels))
        changes += [{"op": "level.grant", "person": pid, "level": lvl} for lvl in granted]
        changes += [{"op": "level.revoke", "person": pid, "level": lvl} for lvl in revoked]
    cards_was, cards_now = {c.hash: c for c in old.cards}, {c.hash: c for c in new.cards}
    if cards_was.keys() - cards_now.keys():
        return None
    for h in sorted(cards_now):
        c, before = cards_now[h], cards_was.get(h)
        if before == c:
            continue
        if before is not None and before.person != c.person:
            return None
        if c.active and c.revoked is None:  # what card.add leaves: a new card, or one enabled again
            changes.append({"op": "card.add", "card": h, "person": c.person, "valid_from": c.valid_from,
                            "valid_until": c.valid_until})
        elif before is not None and not c.active and c.revoked is not None \
                and (before.valid_from, before.valid_until) == (c.valid_from, c.valid_until):
            changes.append({"op": "card.revoke", "card": h, "revoked": c.revoked})
        else:
            return None
    return changes
