"""PINs are stored as salted scrypt hashes (hashlib.scrypt): a stolen store does not give the
PINs away, and a guess costs real work. Verification is CPU-bound (tens of ms by design), so the
daemon runs it off the loop."""

from __future__ import annotations

import hashlib
import hmac
import secrets

N, R, P = 2 ** 14, 8, 1
PREFIX = "scrypt"


def valid_pin(pin: str) -> str | None:
    """What is wrong with a PIN as a person would type it, or None."""
    if not pin.isdigit() or not pin.isascii():
        return "a PIN is digits only"
    if not 4 <= len(pin) <= 12:
        return "a PIN has 4 to 12 digits"
    return None


def hash_pin(pin: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"{PREFIX}${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != PREFIX:
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except ValueError:
        return False  # a garbled stored hash opens nothing
    return hmac.compare_digest(got.hex(), digest)
