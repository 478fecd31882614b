"""A node's bundle: the one file ``sekisho site join`` writes for a node and ``sekisho site
install`` reads on it (docs/site.md, "The bundle").

It is one JSON object: ``format`` ("sekisho-bundle"), ``version`` (1), the ``site``, the
``node`` and its ``roles``, when it was ``made``, the node's ``config`` (TOML text, its paths
under ``etc``), its ``broker_password``, the ``site_key`` (hex, as site.key holds it), the
site's ``ca`` certificate (PEM, or null), the recorder's ``recorder_key`` (PEM, only in a
recorder's bundle, else null), and ``sha256``, the SHA-256 of all the rest as canonical JSON
(sorted keys, no spaces, UTF-8).

Failure model: ``read`` checks everything before anything is used, and a file that is not a
whole bundle of this version is one ``BundleError`` line saying what it is instead (not JSON,
another file, another version, damaged, a field missing or wrong); the installer's copy is never
half-used. The bundle holds secrets (the site key, a broker password, perhaps the recorder's
signing key): it is written mode 0600 and its reader is told to delete it once installed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .config.checker import topic_name
from .config.site import ROLES
from .errors import DataError

FORMAT = "sekisho-bundle"
VERSION = 1
SUFFIX = ".sekisho-bundle"
MAX_BYTES = 1 << 20
"""Far above any bundle (a config stub, a password, two keys, a CA): a bigger file is another one."""


class BundleError(DataError):
    """The file is not a whole bundle this sekisho can install; nothing was written."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(f"{path}: {what}; nothing was installed")


@dataclass(frozen=True)
class Bundle:
    site: str
    node: str
    roles: tuple[str, ...]
    made: str
    etc: str
    """The folder the config's paths name (its password file, the CA)."""
    config: str
    broker_password: str
    site_key: str
    """64 hex digits, as ``site.key`` holds them."""
    ca: str | None = None
    recorder_key: str | None = None


def _body(bundle: Bundle) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, **asdict(bundle), "roles": list(bundle.roles)}


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def dumps(bundle: Bundle) -> bytes:
    body = _body(bundle)
    return (json.dumps({**body, "sha256": _digest(body)}, indent=1, ensure_ascii=False) + "\n").encode()


FIELDS: dict[str, type | tuple[type, ...]] = {
    "site": str, "node": str, "roles": list, "made": str, "etc": str, "config": str, "broker_password": str,
    "site_key": str, "ca": (str, type(None)), "recorder_key": (str, type(None))}


def read(path: Path) -> Bundle:
    """The bundle in ``path``, checked whole; ``BundleError`` naming the first thing wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BundleError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise BundleError(path, f"larger than {MAX_BYTES:,} bytes: not a sekisho bundle")
    return loads(path, data)


def loads(path: Path | str, data: bytes) -> Bundle:
    try:
        raw = json.loads(data.decode())
    except UnicodeDecodeError:
        raise BundleError(path, "not a sekisho bundle (not text)") from None
    except json.JSONDecodeError as exc:
        raise BundleError(path, f"not a sekisho bundle, or cut short (not JSON: {exc.msg} at byte {exc.pos})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(path, f"not a sekisho bundle (no \"format\": \"{FORMAT}\")")
    if raw.get("version") != VERSION:
        raise BundleError(path, f"a bundle of version {raw.get('version')!r}; this sekisho installs version "
                          f"{VERSION} (join the node again with this sekisho, or install with the one that made it)")
    body = {k: v for k, v in raw.items() if k != "sha256"}
    if raw.get("sha256") != _digest(body):
        raise BundleError(path, "damaged: its content does not match its sha256 (copied in part, or edited)")
    wrong = [k for k, t in FIELDS.items() if not isinstance(raw.get(k, ...), t)]
    unknown = sorted(set(body) - set(FIELDS) - {"format", "version"})
    if wrong or unknown:
        raise BundleError(path, f"field {(wrong or unknown)[0]!r} " + ("missing or of the wrong type" if wrong
                                                                         else "unknown"))
    bundle = Bundle(**{**{k: raw[k] for k in FIELDS}, "roles": tuple(raw["roles"])})
    _check(path, bundle)
    return bundle


def _check(path: Path | str, b: Bundle) -> None:
    """What a bundle that ``sekisho site join`` made always is; anything else was not made so."""
    if topic_name(b.site) or topic_name(b.node):
        raise BundleError(path, "its site or node is not a valid name")
    if not b.roles or any(r not in ROLES for r in b.roles):
        raise BundleError(path, f"roles {list(b.roles)!r} are not sekisho roles ({', '.join(ROLES)})")
    try:
        if len(bytes.fromhex(b.site_key)) != 32:
            raise ValueError
    except ValueError:
        raise BundleError(path, "its site key is not 64 hex digits") from None
    try:
        tomllib.loads(b.config)
    except tomllib.TOMLDecodeError as exc:
        raise BundleError(path, f"its config is not TOML ({exc})") from None
    if ("recorder" in b.roles) != (b.recorder_key is not None):
        raise BundleError(path, "a recorder's bundle holds the recorder's key, and only a recorder's")
    if b.recorder_key is not None:
        try:
            key = serialization.load_pem_private_key(b.recorder_key.encode(), password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise BundleError(path, "its recorder key is not an Ed25519 private key")
    if b.ca is not None:
        try:
            x509.load_pem_x509_certificate(b.ca.encode())
        except ValueError:
            raise BundleError(path, "its CA is not a PEM certificate") from None
    if not b.etc.startswith("/") or not b.broker_password:
        raise BundleError(path, "its etc folder or broker password is empty")
