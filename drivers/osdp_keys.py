"""Each OSDP reader's secure channel base key (SCBK), one file per reader in the data dir.

``<data dir>/osdp/<reader>.scbk`` holds 16 bytes as hex, mode 0600, like the site key: whoever
reads it can talk to the reader as its panel. It is written only by ``sekisho reader osdp-key``
(keying a reader in install mode, or rotating its key with the Keyset command), atomically
(a temporary file renamed over the old one, fsynced), and never logged or published.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

SCBK_BYTES = 16


class KeyFileError(Exception):
    """The key file exists but cannot be used; the message says why and what to do."""


def key_path(data_dir: Path, reader: str) -> Path:
    return Path(data_dir) / "osdp" / f"{reader}.scbk"


def new_scbk() -> bytes:
    return secrets.token_bytes(SCBK_BYTES)


def load_scbk(data_dir: Path, reader: str) -> bytes | None:
    """The reader's SCBK, or None when it has never been keyed."""
    path = key_path(data_dir, reader)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the reader's key: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: the reader's key is readable by others (mode {stat.S_IMODE(mode):04o}); "
                           f"run: chmod 600 {path}")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != SCBK_BYTES:
        raise KeyFileError(f"{path}: not a key of {SCBK_BYTES} bytes in hex; key the reader again with "
                           f"`sekisho reader osdp-key {reader}`")
    return key


def store_scbk(data_dir: Path, reader: str, key: bytes) -> Path:
    """Write the reader's SCBK (0600), replacing any old one only once the new one is on disk."""
    path = key_path(data_dir, reader)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
