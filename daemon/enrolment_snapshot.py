"""The signed enrolment snapshot: who may come in, made once at the recorder and carried to every
node as a versioned, Ed25519-signed set of chunks, which a node checks and applies whole.

What travels (docs/enrolment.md has the format): each person's id, active flag, validity dates,
PIN hash and access levels; each card's keyed hash, holder id, active flag, validity dates and
revocation time. What never travels: names (they never leave the recorder; a node's people rows
carry an empty name), card UIDs (only the store's keyed hashes exist), and anything node-local:
events, the audit log, the outbox, alarms, door modes, where people are, commands run. Since
format 2 the site's policy travels too: the recorder config's schedules ([schedules.<name>], as
text ranges) and holidays ([site] holidays); a node decides with them where its own config does
not define a schedule of that name (SiteRules.with_policy). A node reads formats 1 and 2.

The form, in four layers:
  - the body: the canonical JSON (``store.audit.canonical_json``, the form signed commands use)
    of ``{"format", "site", "version", "created", "people": {"columns", "rows"}, "cards": ...,
    "schedules": {name: {day: [range, ...]}}, "holidays": [date, ...]}`` (the last two since
    format 2), rows sorted by id and hash, so that one enrolment gives one body;
  - zlib-compressed, then cut into chunks of at most ``CHUNK_BYTES`` (an MQTT-friendly size),
    each a canonical JSON header line ``{"site", "version", "index", "count", "sha256",
    "chunk_sha256"}`` (``sha256`` the whole body's, ``chunk_sha256`` this chunk's data's), a
    newline, then the data;
  - the manifest: ``{"format", "site", "version", "created", "sha256", "size", "compression",
    "chunks", "key"}`` plus ``sig``, the base64 Ed25519 signature of the canonical JSON of the
    manifest without ``sig``. The body's sha256 is signed, so the chunks need no signature of
    their own.

Failure model: a node takes a snapshot only when every check passes, in this order, each refusal
a ``SnapshotRefused`` whose ``reason`` names it: ``malformed`` (not a manifest or a chunk of this
form), ``unknown key`` (not in [commands.keys]), ``bad signature``, ``not permitted`` (the key's
ops do not name ``enrolment.snapshot``), ``other site``, ``older version`` (not above the node's
current one, equal included: a replayed retained copy is refused, not re-applied), ``chunk
mismatch`` (a chunk of another snapshot), ``chunk duplicated``, ``chunk missing``, ``hash
mismatch`` (a chunk's or the whole body's sha256). ``apply`` then replaces people, levels, PIN
hashes and cards in one transaction, with the version and one audit row: a failure anywhere in
it (a card whose holder is not in the snapshot, a full disk) leaves the old set whole. The
snapshot's bytes are kept in the data dir (temp file, fsync, rename) before the commit, so that
a node can show and re-check what it decides with; the decisions themselves read the store, which
survives a restart on its own.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import json
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sekisho.policies.schedule import Schedule

from .config import SNAPSHOT_OP, CommandsConfig, Config
from .errors import DataError, StoreError
from .store.audit import append, canonical_json
from .store.database import Database
from .store.people import People
from .timestamps import utc_now
from .whole_files import write_whole

if TYPE_CHECKING:  # cryptography is imported where a key is used (CommandsConfig.verifiers says why)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT_V1 = "sekisho-enrolment-snapshot/1"
"""People and cards only: still read, from a recorder not yet updated."""
FORMAT = "sekisho-enrolment-snapshot/2"
"""People, cards and the site's policy (schedules, holidays): what the recorder makes."""
FORMATS = (FORMAT_V1, FORMAT)
OP = SNAPSHOT_OP
"""What a key's ``ops`` in [commands.keys] must name (or match) for a node to take its snapshots."""
CHUNK_BYTES = 128 * 1024
"""A chunk's data at most: well under a broker's usual message limit, and small enough that a
lost one costs little to send again."""
MAX_BODY = 512 * 1024 * 1024
"""A manifest saying the body is larger than this is refused before anything is decompressed."""
PEOPLE_COLUMNS = ("id", "active", "valid_from", "valid_until", "pin_hash", "levels")
CARD_COLUMNS = ("hash", "person", "active", "valid_from", "valid_until", "revoked")
MANIFEST_FIELDS = {"format": str, "site": str, "version": int, "created": str, "sha256": str, "size": int,
                   "compression": str, "chunks": int, "key": str, "sig": str}
CHUNK_FIELDS = {"site": str, "version": int, "index": int, "count": int, "sha256": str, "chunk_sha256": str}
KEPT = "enrolment.snapshot"
"""The file in the data dir that holds the snapshot the node applied last."""


class SnapshotRefused(DataError):
    """A snapshot a node will not take; ``reason`` is one of the module's list."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"enrolment snapshot refused: {reason}: {detail}")
        self.reason = reason


# ----------------------------------------------------------------------------- the values
@dataclass(frozen=True, slots=True)
class SnapshotPerson:
    id: str
    active: bool
    valid_from: str | None
    valid_until: str | None
    pin_hash: str | None
    levels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SnapshotCard:
    hash: str
    person: str
    active: bool
    valid_from: str | None
    valid_until: str | None
    revoked: str | None


@dataclass(frozen=True)
class Snapshot:
    site: str
    version: int
    created: str
    people: tuple[SnapshotPerson, ...]
    cards: tuple[SnapshotCard, ...]
    schedules: tuple[Schedule, ...] | None = None
    """By name; None for a format 1 snapshot, which carries no policy."""
    holidays: tuple[str, ...] = ()
    """ISO dates, sorted."""

    @property
    def format(self) -> str:
        return FORMAT_V1 if self.schedules is None else FORMAT

    def body(self) -> bytes:
        """The canonical JSON the manifest's sha256 is of."""
        policy = {} if self.schedules is None else {"schedules": {s.name: s.table() for s in self.schedules},
                                                    "holidays": list(self.holidays)}
        return canonical_json({
            **policy, "format": self.format, "site": self.site, "version": self.version, "created": self.created,
            "people": {"columns": list(PEOPLE_COLUMNS),
                       "rows": [[p.id, p.active, p.valid_from, p.valid_until, p.pin_hash, list(p.levels)]
                                for p in self.people]},
            "cards": {"columns": list(CARD_COLUMNS),
                      "rows": [[c.hash, c.person, c.active, c.valid_from, c.valid_until, c.revoked]
                               for c in self.cards]}})


@dataclass(frozen=True)
class Signed:
    """A snapshot as it travels: the manifest and the chunks, each the bytes of one message."""
    manifest: bytes
    chunks: tuple[bytes, ...]


@dataclass(frozen=True)
class Verified:
    """A snapshot that passed every check, with the bytes it came as (kept on disk by ``apply``)."""
    snapshot: Snapshot
    key: str
    sha256: str
    signed: Signed


@dataclass(frozen=True)
class Applied:
    version: int
    previous: int
    people: int
    cards: int
    levels: int
    pins: int
    removed: int
    """People the node had that the snapshot no longer lists."""
    schedules: int = 0
    holidays: int = 0
    shadowed: tuple[str, ...] = ()
    """The snapshot's schedules this node's config defines too: the config's decide."""


# ----------------------------------------------------------------------------- the recorder's side
Policy = tuple[tuple[Schedule, ...], tuple[str, ...]]
"""The site's schedules by name and its holidays as ISO dates, sorted: what format 2 adds."""


def site_policy(config: Config) -> Policy:
    """The site's policy as the recorder's config holds it: its schedules (not the built-in
    ``always``, which every node has) and its holidays, sorted."""
    schedules = tuple(s for name, s in sorted(config.rules.schedules.items()) if name != "always")
    return schedules, tuple(sorted({d.isoformat() for d in config.site.holidays}))


def build(people: People, site: str, version: int, created: str | None = None, *,
          policy: Policy = ((), ())) -> Snapshot:
    """Everyone enrolled in this store, without names, read in one transaction, with the site's
    ``policy`` (``site_policy``)."""
    if version < 1:
        raise DataError(f"snapshot version {version}: must be 1 or more")
    db = people.database.db
    db.execute("BEGIN")  # one read transaction: no write lands between the queries
    try:
        levels: dict[str, list[str]] = {}
        for person_id, level in db.execute("SELECT person_id, level FROM person_levels ORDER BY person_id, level"):
            levels.setdefault(person_id, []).append(level)
        persons = tuple(SnapshotPerson(r[0], bool(r[1]), r[2], r[3], r[4], tuple(levels.get(r[0], ())))
                        for r in db.execute("SELECT id, active, valid_from, valid_until, pin_hash FROM people "
                                            "ORDER BY id"))
        cards = tuple(SnapshotCard(r[0], r[1], bool(r[2]), r[3], r[4], r[5])
                      for r in db.execute("SELECT hash, person_id, active, valid_from, valid_until, revoked "
                                          "FROM cards ORDER BY hash"))
    finally:
        db.execute("ROLLBACK")
    return Snapshot(site, version, created or utc_now(), persons, cards,
                    tuple(sorted(policy[0], key=lambda x: x.name)), tuple(sorted(set(policy[1]))))


def sign(snapshot: Snapshot, key: Ed25519PrivateKey, key_name: str, chunk_bytes: int = CHUNK_BYTES) -> Signed:
    """Compress, cut and sign: the manifest and the chunks, ready to publish or write out."""
    if chunk_bytes < 1:
        raise DataError(f"chunk size {chunk_bytes}: must be 1 byte or more")
    body = snapshot.body()
    digest = hashlib.sha256(body).hexdigest()
    packed = zlib.compress(body, 6)
    pieces = [packed[i:i + chunk_bytes] for i in range(0, len(packed), chunk_bytes)] or [b""]
    chunks = tuple(canonical_json({"site": snapshot.site, "version": snapshot.version, "index": i,
                                   "count": len(pieces), "sha256": digest,
                                   "chunk_sha256": hashlib.sha256(piece).hexdigest()}) + b"\n" + piece
                   for i, piece in enumerate(pieces))
    manifest = {"format": snapshot.format, "site": snapshot.site, "version": snapshot.version,
                "created": snapshot.created, "sha256": digest, "size": len(body), "compression": "zlib",
                "chunks": len(pieces), "key": key_name}
    sig = base64.b64encode(key.sign(canonical_json(manifest))).decode()
    return Signed(canonical_json({**manifest, "sig": sig}), chunks)


# ----------------------------------------------------------------------------- the node's side
def _fields(raw: bytes, fields: Mapping[str, type], what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
        # What is signed is the canonical JSON, UTF-8: a lone surrogate escape (\ud800) has no
        # such bytes (it once escaped the checks as a UnicodeEncodeError).
        canonical_json(obj)
    except (ValueError, UnicodeDecodeError):
        raise SnapshotRefused("malformed", f"the {what} is not JSON of Unicode text") from None
    except RecursionError:
        raise SnapshotRefused("malformed", f"the {what} is nested too deeply") from None
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise SnapshotRefused("malformed", f"the {what} does not have exactly the fields {', '.join(sorted(fields))}")
    for name, kind in fields.items():
        if not isinstance(obj[name], kind) or isinstance(obj[name], bool):
            raise SnapshotRefused("malformed", f"the {what}'s {name} is not a {kind.__name__}")
    return obj


def verify(signed: Signed, *, site: str, keys: Mapping[str, Ed25519PublicKey], permitted: Iterable[str],
           current: int) -> Verified:
    """Every check of the module's list, in its order; raises ``SnapshotRefused``. ``keys`` are
    the node's trusted public keys by name, ``permitted`` the names of those whose ops allow
    ``enrolment.snapshot``, ``current`` the version the node decides with now (0 for none)."""
    manifest = check_manifest(signed.manifest, site=site, keys=keys, permitted=permitted, current=current)
    try:
        # Straight from the chunks: the compressed whole is never held at once.
        body = _decompress(_reassemble(signed.chunks, manifest), manifest["size"])
    except zlib.error as exc:
        raise SnapshotRefused("hash mismatch", f"the chunks do not decompress ({exc})") from None
    if len(body) != manifest["size"] or hashlib.sha256(body).hexdigest() != manifest["sha256"]:
        raise SnapshotRefused("hash mismatch", "the reassembled body is not the one the manifest signs")
    snapshot = _parse_body(body)
    if (snapshot.site, snapshot.version, snapshot.created, snapshot.format) != (
            manifest["site"], manifest["version"], manifest["created"], manifest["format"]):
        raise SnapshotRefused("malformed", "the body's site, version, time or format is not the manifest's")
    return Verified(snapshot, manifest["key"], manifest["sha256"], signed)


def check_manifest(raw: bytes, *, site: str, keys: Mapping[str, Ed25519PublicKey], permitted: Iterable[str],
                   current: int) -> dict[str, Any]:
    """The checks of the manifest alone (``verify``'s first ones, up to the version), cheap
    enough to run as a manifest arrives, before its chunks are waited for; the manifest."""
    manifest = _fields(raw, MANIFEST_FIELDS, "manifest")
    if manifest["format"] not in FORMATS or manifest["compression"] != "zlib":
        raise SnapshotRefused("malformed", f"format {manifest['format']!r} with {manifest['compression']!r}; "
                                           f"this node reads {' or '.join(map(repr, FORMATS))} with zlib")
    public = keys.get(manifest["key"])
    if public is None:
        raise SnapshotRefused("unknown key", f"{manifest['key']!r} is not in [commands.keys] of this node")
    from cryptography.exceptions import InvalidSignature
    try:
        public.verify(base64.b64decode(manifest["sig"], validate=True),
                      canonical_json({k: v for k, v in manifest.items() if k != "sig"}))
    except (binascii.Error, ValueError, InvalidSignature):
        raise SnapshotRefused("bad signature", f"the manifest does not verify with key {manifest['key']!r}") from None
    if manifest["key"] not in set(permitted):
        raise SnapshotRefused("not permitted", f"key {manifest['key']!r} may not sign {OP} (its ops do not name it)")
    if manifest["site"] != site:
        raise SnapshotRefused("other site", f"for site {manifest['site']!r}, not {site!r}")
    if manifest["version"] <= current:
        raise SnapshotRefused("older version", f"version {manifest['version']} is not above this node's "
                                               f"{current}")
    if not 0 <= manifest["size"] <= MAX_BODY or manifest["chunks"] < 1:
        raise SnapshotRefused("malformed", f"size {manifest['size']} with {manifest['chunks']} chunks")
    return manifest


def _decompress(pieces: list[memoryview], size: int) -> bytearray:
    d = zlib.decompressobj()
    out = bytearray()
    for piece in pieces:
        out += d.decompress(piece, size + 1 - len(out))
        if len(out) > size:
            break
    out += d.flush()
    return out  # not copied into bytes: at 100,000 people that copy is 20 MB more at the node's peak


def _reassemble(chunks: Sequence[bytes], manifest: Mapping[str, Any]) -> list[memoryview]:
    got: dict[int, memoryview] = {}
    for raw in chunks:
        cut = raw.find(b"\n")
        if cut < 0:
            raise SnapshotRefused("malformed", "a chunk has no header line")
        head, data = raw[:cut], memoryview(raw)[cut + 1:]
        h = _fields(head, CHUNK_FIELDS, "chunk header")
        if (h["site"], h["version"], h["sha256"], h["count"]) != (manifest["site"], manifest["version"],
                                                                  manifest["sha256"], manifest["chunks"]):
            raise SnapshotRefused("chunk mismatch", f"chunk {h['index']} is of {h['site']!r} version {h['version']} "
                                                    f"({h['count']} chunks, body {h['sha256'][:12]}), not of this "
                                                    f"manifest")
        if not 0 <= h["index"] < h["count"]:
            raise SnapshotRefused("malformed", f"chunk index {h['index']} of {h['count']}")
        if h["index"] in got:
            raise SnapshotRefused("chunk duplicated", f"chunk {h['index']} came twice")
        if hashlib.sha256(data).hexdigest() != h["chunk_sha256"]:
            raise SnapshotRefused("hash mismatch", f"chunk {h['index']}'s data is not what its header says")
        got[h["index"]] = data
    missing = [i for i in range(manifest["chunks"]) if i not in got]
    if missing:
        raise SnapshotRefused("chunk missing", f"{len(missing)} of {manifest['chunks']} chunks missing, the first "
                                               f"is {missing[0]}")
    return [got[i] for i in range(manifest["chunks"])]


def _parse_body(body: bytes | bytearray) -> Snapshot:
    try:
        obj = json.loads(body)
        if obj["format"] not in FORMATS or obj["people"]["columns"] != list(PEOPLE_COLUMNS) \
                or obj["cards"]["columns"] != list(CARD_COLUMNS):
            raise ValueError("not this format")
        schedules, holidays = _parse_policy(obj) if obj["format"] == FORMAT else (None, ())
        people = tuple(SnapshotPerson(str(r[0]), bool(r[1]), r[2], r[3], r[4], tuple(map(str, r[5])))
                       for r in obj["people"]["rows"])
        cards = tuple(SnapshotCard(str(r[0]), str(r[1]), bool(r[2]), r[3], r[4], r[5]) for r in obj["cards"]["rows"])
        if len({p.id for p in people}) != len(people) or len({c.hash for c in cards}) != len(cards):
            raise ValueError("a person or a card appears twice")
        return Snapshot(str(obj["site"]), int(obj["version"]), str(obj["created"]), people, cards, schedules,
                        holidays)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        # Signed and hashed, so the recorder made it so: still refused, never half-read.
        raise SnapshotRefused("malformed", f"the body is not an enrolment snapshot ({exc})") from None


def _parse_policy(obj: Mapping[str, Any]) -> Policy:
    """Format 2's schedules and holidays, strictly: ValueError for anything but what ``body``
    writes (a day not known, a range that does not parse, a date not in ISO form, unsorted)."""
    schedules, holidays = obj["schedules"], obj["holidays"]
    if not isinstance(schedules, dict) or not isinstance(holidays, list):
        raise ValueError("schedules is not a table or holidays not a list")
    parsed = tuple(Schedule.from_table(name, table) for name, table in sorted(schedules.items()))
    if not all(isinstance(d, str) and dt.date.fromisoformat(d).isoformat() == d for d in holidays) \
            or holidays != sorted(set(holidays)):
        raise ValueError("holidays are not sorted ISO dates, each once")
    return parsed, tuple(holidays)


def trusted(cfg: CommandsConfig, op: str = OP) -> tuple[dict[str, Ed25519PublicKey], set[str]]:
    """The node's keys from [commands.keys], and the names of those whose ops name ``op``
    (``enrolment.snapshot``, or ``enrolment.delta`` for deltas)."""
    keys = cfg.verifiers()
    return keys, {name for name, k in cfg.keys.items() if any(fnmatch.fnmatchcase(op, p) for p in k.ops)}


def current_version(database: Database, site: str) -> int:
    row = database.db.execute("SELECT version FROM enrolment_version WHERE site = ?", [site]).fetchone()
    return int(row[0]) if row else 0


def stored_policy(database: Database, site: str) -> tuple[dict[str, Schedule], frozenset[dt.date]]:
    """The schedules and holidays of the snapshot this node applied last (none before the
    first, or after a format 1 one)."""
    row = database.db.execute("SELECT schedules, holidays FROM enrolment_policy WHERE site = ?", [site]).fetchone()
    if row is None:
        return {}, frozenset()
    try:
        schedules = {name: Schedule.from_table(name, table) for name, table in json.loads(row[0]).items()}
        return schedules, frozenset(dt.date.fromisoformat(d) for d in json.loads(row[1]))
    except (ValueError, TypeError, AttributeError) as exc:  # written by apply, checked: only damage does this
        raise StoreError(f"{database.path}: the enrolment policy stored is not readable ({exc})") from None


def apply(database: Database, verified: Verified, config_schedules: Iterable[str] = ()) -> Applied:
    """Replace this node's people, levels, PIN hashes, cards and the site's policy (schedules,
    holidays) with the snapshot's, in one transaction with its version and one audit row, and
    keep its bytes in the data dir. ``config_schedules``: the schedules this node's config
    defines, which win over the snapshot's of the same name (said in the audit row). Node-local
    rows stay as they are, apart from where a person no longer enrolled was (a ``locations`` row
    cannot outlive its person)."""
    s = verified.snapshot
    ids = json.dumps([p.id for p in s.people])
    try:
        with database.transaction() as db:
            previous = current_version(database, s.site)
            if s.version <= previous:  # another apply got in between the check and this lock
                raise SnapshotRefused("older version", f"version {s.version} is not above this node's {previous}")
            conn = db.conn
            conn.execute("DELETE FROM person_levels")
            conn.execute("DELETE FROM cards")
            conn.execute("DELETE FROM locations WHERE person_id NOT IN (SELECT value FROM json_each(?))", [ids])
            removed = conn.execute("DELETE FROM people WHERE id NOT IN (SELECT value FROM json_each(?))",
                                   [ids]).rowcount
            conn.executemany(
                "INSERT INTO people (id, name, active, created, valid_from, valid_until, pin_hash) "
                "VALUES (?, '', ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = '', active = excluded.active, "
                "valid_from = excluded.valid_from, valid_until = excluded.valid_until, pin_hash = excluded.pin_hash",
                ((p.id, int(p.active), s.created, p.valid_from, p.valid_until, p.pin_hash) for p in s.people))
            conn.executemany("INSERT INTO person_levels (person_id, level) VALUES (?, ?)",
                             ((p.id, level) for p in s.people for level in p.levels))
            conn.executemany(
                "INSERT INTO cards (hash, person_id, active, created, revoked, valid_from, valid_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((c.hash, c.person, int(c.active), s.created, c.revoked, c.valid_from, c.valid_until)
                 for c in s.cards))
            now = utc_now()
            conn.execute("INSERT INTO enrolment_version (site, version, key, sha256, created, applied) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(site) DO UPDATE SET version = excluded.version, "
                         "key = excluded.key, sha256 = excluded.sha256, created = excluded.created, "
                         "applied = excluded.applied",
                         [s.site, s.version, verified.key, verified.sha256, s.created, now])
            schedules = s.schedules or ()
            conn.execute("INSERT INTO enrolment_policy (site, schedules, holidays) VALUES (?, ?, ?) "
                         "ON CONFLICT(site) DO UPDATE SET schedules = excluded.schedules, "
                         "holidays = excluded.holidays",
                         [s.site, json.dumps({x.name: x.table() for x in schedules}), json.dumps(list(s.holidays))])
            applied = Applied(version=s.version, previous=previous, people=len(s.people), cards=len(s.cards),
                              levels=sum(len(p.levels) for p in s.people),
                              pins=sum(1 for p in s.people if p.pin_hash), removed=removed,
                              schedules=len(schedules), holidays=len(s.holidays),
                              shadowed=tuple(sorted({x.name for x in schedules} & set(config_schedules))))
            append(db, f"snapshot:{verified.key}", "enrolment.snapshot",
                   {"site": s.site, "version": s.version, "previous": previous, "sha256": verified.sha256[:16],
                    "people": applied.people, "cards": applied.cards, "levels": applied.levels,
                    "pins": applied.pins, "removed": applied.removed, "schedules": applied.schedules,
                    "holidays": applied.holidays, "shadowed": list(applied.shadowed)}, now)
            keep(database.path.parent / KEPT, verified.signed)
    except sqlite3.IntegrityError as exc:
        raise SnapshotRefused("inconsistent", f"the snapshot does not fit the store ({exc}); nothing of it was "
                                              f"applied") from None
    except OSError as exc:  # the kept copy could not be written: the transaction was rolled back
        raise StoreError(f"{database.path.parent / KEPT}: cannot keep the snapshot ({exc.strerror or exc}); "
                         f"nothing of it was applied") from None
    return applied


# ----------------------------------------------------------------------------- on disk
def pack(signed: Signed) -> bytes:
    """One file: the manifest, then each chunk, each preceded by its length (4 bytes, big-endian)."""
    return b"".join(struct.pack(">I", len(part)) + part for part in (signed.manifest, *signed.chunks))


def unpack(data: bytes) -> Signed:
    parts, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise SnapshotRefused("malformed", "the file ends inside a length")
        (n,) = struct.unpack_from(">I", data, at)
        if at + 4 + n > len(data):
            raise SnapshotRefused("malformed", "the file ends inside a part")
        parts.append(data[at + 4:at + 4 + n])
        at += 4 + n
    if not parts:
        raise SnapshotRefused("malformed", "the file is empty")
    return Signed(parts[0], tuple(parts[1:]))


def keep(path: Path, signed: Signed) -> None:
    """Write ``path`` whole or not at all (whole_files.py), mode 0600."""
    write_whole(path, pack(signed), 0o600)


def manifest_field(signed: Signed, name: str) -> Any:
    """One field of a manifest this node wrote or took (the version of a kept copy), or None."""
    try:
        return json.loads(signed.manifest).get(name)
    except (ValueError, AttributeError):
        return None


def kept(data_dir: Path) -> Signed | None:
    """The snapshot this node applied last, as it came, or None."""
    try:
        return unpack((Path(data_dir) / KEPT).read_bytes())
    except FileNotFoundError:
        return None


def write_dir(out: Path, signed: Signed) -> list[Path]:
    """The manifest and the chunks as files, ``manifest.json`` and ``chunk-NNNN.bin``, for a node
    without a broker (``sekisho enrolment apply DIR``)."""
    # PIN and card hashes are secrets of a kind: the directory 0700 and the files 0600.
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise DataError(f"{out} is not empty; a snapshot is written to a new or empty directory")
    files = [out / "manifest.json", *(out / f"chunk-{i:04d}.bin" for i in range(len(signed.chunks)))]
    for path, data in zip(files, (signed.manifest, *signed.chunks), strict=True):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return files


def read_dir(src: Path) -> Signed:
    """What ``write_dir`` wrote: ``manifest.json`` and every ``chunk-*.bin``, whatever their number."""
    try:
        manifest = (src / "manifest.json").read_bytes()
        chunks = tuple(p.read_bytes() for p in sorted(src.glob("chunk-*.bin")))
    except FileNotFoundError:
        raise DataError(f"{src}: no manifest.json (is this a directory `sekisho enrolment snapshot` wrote?)") from None
    except OSError as exc:
        raise DataError(f"{src}: cannot read the snapshot: {exc.strerror or exc}") from None
    return Signed(manifest, chunks)
