"""The site key, and the two keyed hashes made with it.

A card UID is never stored or published: the store keeps HMAC-SHA256(site key, UID), so a
stolen database does not give an attacker card numbers to clone. People appear on the bus only
as a pseudonym, a keyed hash of their id. All nodes of a site share one key (copy the file when
installing a node), so a pseudonym published by the door node means the same person at a desk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from .errors import PermissionDenied, SekishoError

KEY_BYTES = 32


class SiteKey:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def load_or_create(cls, path: Path) -> SiteKey:
        """Read the key file, creating it (mode 0600) if there is none. An existing key is
        never overwritten: every stored card hash depends on it."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls._read(path)
        except PermissionError:
            raise PermissionDenied(str(path)) from None
        except OSError as exc:
            raise SekishoError(f"{path}: cannot create site key: {exc.strerror}") from None
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> SiteKey:
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except PermissionError:
            raise PermissionDenied(str(path)) from None
        except OSError as exc:
            raise SekishoError(f"{path}: cannot read site key: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SekishoError(f"{path}: site key is readable by others (mode {stat.S_IMODE(mode):04o}); "
                               f"run: chmod 600 {path}")
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise SekishoError(f"{path}: not a site key (expected {KEY_BYTES * 2} hex digits)")
        return cls(key)

    def card_hash(self, uid: bytes) -> str:
        return hmac.new(self._key, uid, hashlib.sha256).hexdigest()

    def pseudonym(self, person_id: str) -> str:
        # A separate label keeps a pseudonym from ever equalling some card's hash.
        return hmac.new(self._key, b"person\0" + person_id.encode(), hashlib.sha256).hexdigest()[:16]

    def document(self, name: str) -> str:
        """A printed document's name as the bus carries it: the same name gives the same hash at
        the site, and the name itself stays on the print server."""
        return hmac.new(self._key, b"document\0" + name.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()[:16]
