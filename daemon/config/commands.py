"""``[commands]`` and ``[commands.keys.<name>]``: which officers' keys may send signed commands
to this node, which ops each may run, and how much clock skew a command may carry."""

from __future__ import annotations

import base64
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sekisho.drivers.options import REQUIRED, Option, between, strings

from .checker import Checker

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _ed25519_public(v: str) -> str | None:
    try:
        raw = base64.b64decode(v, validate=True)
    except ValueError:
        return "is not base64"
    return None if len(raw) == 32 else f"is {len(raw)} bytes; an Ed25519 public key is 32"


def _op_pattern(v: str) -> str | None:
    return None if re.fullmatch(r"[a-z*][a-z.*]*", v) else f"{v!r} is not an op or a pattern like door.*"


COMMANDS = {
    "max_skew_s": Option(float, 30.0, "How far a signed command's ts may be from this node's clock, either way; "
                         "older or newer commands are refused.", between(1, 300)),
}
COMMAND_KEY = {
    "public_key": Option(str, REQUIRED, "The key's Ed25519 public key: its 32 raw bytes in base64, as "
                         "sekisho cmd keygen or sekisho cmd public-key prints it.", _ed25519_public),
    "ops": Option(list, REQUIRED, "The ops this key may run, as patterns: [\"usb.allow\"], [\"door.*\"], [\"*\"].",
                  lambda v: strings(_op_pattern)(v) or (None if v else "must name at least one op")),
}


@dataclass(frozen=True)
class CommandKeyConfig:
    name: str
    public_key: bytes
    """Raw, 32 bytes."""
    ops: tuple[str, ...]


@dataclass(frozen=True)
class CommandsConfig:
    max_skew_s: float = 30.0
    keys: Mapping[str, CommandKeyConfig] = field(default_factory=dict)

    def trusts(self, op: str) -> bool:
        """Does some key's ``ops`` name ``op`` (or a pattern matching it)?"""
        return any(fnmatch.fnmatchcase(op, p) for k in self.keys.values() for p in k.ops)

    def verifiers(self) -> dict[str, Ed25519PublicKey]:
        """Each key, ready to verify a signature. cryptography is imported here, and only on a
        node that lists keys: it is some 8 MB resident and a part of every start."""
        if not self.keys:
            return {}
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        return {name: Ed25519PublicKey.from_public_bytes(k.public_key) for name, k in self.keys.items()}


def read_commands(c: Checker, raw: Any) -> CommandsConfig:
    table = c.table("commands", raw)
    values = c.section("commands", table, COMMANDS, extra_ok=frozenset({"keys"}))
    keys = {}
    for name, where, spec in c.named("commands.keys", table.get("keys", {}), "key"):
        v = c.section(where, spec, COMMAND_KEY)
        # A key that failed a check is None here, and the load fails anyway.
        if v["public_key"] is not None and v["ops"] is not None:
            keys[name] = CommandKeyConfig(name, base64.b64decode(v["public_key"]), tuple(v["ops"]))
    return CommandsConfig(max_skew_s=values["max_skew_s"], keys=MappingProxyType(keys))
