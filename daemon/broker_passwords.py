"""The broker's password file, as mosquitto 2.0 reads it (``password_file``) and
``mosquitto_passwd`` writes it: one ``user:$7$<iterations>$<salt>$<hash>`` line per user, the
hash PBKDF2-HMAC-SHA512 of the password over a 12-byte random salt, both in base64.

Computed here rather than by running ``mosquitto_passwd``, so that ``sekisho site join`` works
on the officer's laptop, where no broker is installed; tests/test_site_setup.py holds it to the
real mosquitto, which lets the node in with its password and not with another.

Failure model: a line this module did not write (another hash, a comment) is kept as it is;
only the line of the user being set is replaced, so a user added by hand survives a re-join.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

ITERATIONS = 101
"""mosquitto_passwd's own count (mosquitto 2.0): a broker checks any count the line names."""
SALT_BYTES = 12


def hash_line(user: str, password: str, *, salt: bytes | None = None) -> str:
    """The password file's line for ``user``, without the newline."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"{user}:$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_password() -> str:
    """A broker password for a node: 32 random characters, URL-safe, no quoting needed anywhere."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class PasswordFile:
    """A password file's lines, in their order."""

    lines: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PasswordFile:
        return cls(tuple(line for line in text.splitlines() if line.strip()))

    def users(self) -> tuple[str, ...]:
        return tuple(line.split(":", 1)[0] for line in self.lines if ":" in line and not line.startswith("#"))

    def with_user(self, user: str, password: str) -> PasswordFile:
        """This file with ``user``'s line replaced (or added at the end) by one for ``password``."""
        kept = tuple(line for line in self.lines if not line.startswith(f"{user}:"))
        return PasswordFile((*kept, hash_line(user, password)))

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)
