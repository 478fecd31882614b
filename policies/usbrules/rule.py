"""The values of the USB rule language: a ``Rule`` is a target, the ``Attribute``s a device must
match, and, as sekisho's one extension, the interfaces to leave blocked on a device it allows.

The vocabulary is USBGuard's (usbguard-rules.conf(5)), and so are the meanings:

- An attribute holds one or more values and a ``SetOperator``. A single value and a set written
  without an operator both mean ``equals``, so ``with-interface 08:*:*`` and
  ``with-interface { 08:*:* }`` are the same attribute, and ``to_text`` writes the short form.
- A string value stands for bytes, as in USBGuard, which compares names and serials byte for
  byte. Text is kept as ``str``; bytes that are not UTF-8 are kept as surrogate escapes
  (``errors="surrogateescape"``), and every string is stored in that one canonical form, so
  two values are equal exactly when their bytes are.
- ``to_text`` writes what USBGuard's ``Rule::toString`` writes for the same rule: strings
  quoted with ``\\"``, ``\\\\`` and ``\\xHH`` for every byte outside printable ASCII, interface
  types in lower case. ``parse_rule(rule.to_text()) == rule`` holds for every valid rule.

- ``if`` conditions (``Conditions`` of ``conditions.Condition``) and ``label`` are kept with the
  rule; ``to_text`` writes them after the attributes, ``if`` first, as USBGuard's
  ``RulePrivate::toString`` writes ``label`` last. A label never changes what a rule matches
  (``RulePrivate::appliesTo`` does not look at it).
- The ``match`` and ``device`` targets parse (``QueryTarget``); they decide nothing.

Values are checked when they are built, so a ``Rule`` that exists is one the parser could have
produced; the parser adds positions to the same messages.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from .conditions import Condition


class Target(enum.StrEnum):
    """What a matching rule decides. Only decisions: a comment or an empty line is not a rule."""

    ALLOW = "allow"
    BLOCK = "block"
    REJECT = "reject"


class QueryTarget(enum.StrEnum):
    """USBGuard's other two targets, which its grammar accepts and which name devices rather than
    decide them. As a policy rule that matches first, USBGuard's ``sysfsApplyTarget`` throws on
    one and the device keeps the state it had; sekisho blocks it (fail-secure), naming the rule."""

    MATCH = "match"
    DEVICE = "device"


_QUERY_TARGETS = frozenset(QueryTarget)


class SetOperator(enum.StrEnum):
    ALL_OF = "all-of"
    ONE_OF = "one-of"
    NONE_OF = "none-of"
    EQUALS = "equals"
    EQUALS_ORDERED = "equals-ordered"
    MATCH_ALL = "match-all"


class Key(enum.StrEnum):
    """The attribute names, in the order USBGuard writes a device's own rule."""

    ID = "id"
    SERIAL = "serial"
    NAME = "name"
    HASH = "hash"
    PARENT_HASH = "parent-hash"
    VIA_PORT = "via-port"
    WITH_INTERFACE = "with-interface"
    WITH_CONNECT_TYPE = "with-connect-type"


CONDITIONS = "if"
LABEL = "label"
BLOCK_INTERFACE = "block-interface"
"""sekisho's extension: ``allow ... block-interface { 08:*:* }`` authorizes the device but not
the interfaces of those types."""

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")


@dataclass(frozen=True)
class DeviceId:
    """``vendor:product`` as four hex digits each, or ``*`` for any (``1050:*``, ``*:*``)."""

    vendor: str
    product: str

    def __post_init__(self) -> None:
        for part in (self.vendor, self.product):
            if part != "*" and not _HEX4.fullmatch(part):
                raise ValueError(f'"{self}" is not a USB device id: write vid:pid as four hex digits each, '
                                 f'or * for any (1050:0407, 1050:*, *:*)')
            if part != part.lower():
                # USBGuard compares ids as text and the kernel reports lower case, so an upper-case
                # id would never match anything: refuse it rather than let a block rule be a no-op.
                raise ValueError(f'device id "{self}" has upper-case hex digits; write "{str(self).lower()}": '
                                 f'ids are compared as text and devices report lower case')
        if self.vendor == "*" and self.product != "*":
            raise ValueError(f'device id "{self}" names a product of any vendor; use *:* or a vendor (1050:*)')

    @classmethod
    def parse(cls, text: str) -> DeviceId:
        vendor, sep, product = text.partition(":")
        if not sep:
            raise ValueError(f'"{text}" is not a USB device id: write vid:pid (1050:0407, 1050:*, *:*)')
        return cls(vendor, product)

    def matches(self, device: DeviceId) -> bool:
        """USBGuard's ``USBDeviceID::isSubsetOf``: a wildcard covers the rest of the id."""
        if self.vendor == "*":
            return True
        if self.vendor != device.vendor:
            return False
        return self.product == "*" or self.product == device.product

    def __str__(self) -> str:
        return f"{self.vendor}:{self.product}"


@dataclass(frozen=True)
class InterfaceType:
    """``cc:ss:pp``: an interface's class, subclass and protocol. In a rule the subclass and the
    protocol may be ``*`` (``None`` here), the protocol alone or both (``08:06:*``, ``08:*:*``)."""

    class_: int
    subclass: int | None = None
    protocol: int | None = None
    key: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """The parts that are not ``*``: what a pattern compares, and one of the keys a device's
    exact type is filed under (see ``matcher.Device``)."""

    def __post_init__(self) -> None:
        for part in (self.class_, self.subclass, self.protocol):
            if part is not None and not (isinstance(part, int) and 0 <= part <= 0xFF):
                raise ValueError(f"interface class, subclass and protocol are bytes (0-255), not {part!r}")
        if self.subclass is None and self.protocol is not None:
            raise ValueError(f'"{self}" matches a protocol of any subclass, which USBGuard does not allow; '
                             f'write {self.class_:02x}:*:* or name the subclass')
        parts = (self.class_, self.subclass, self.protocol)
        object.__setattr__(self, "key", tuple(p for p in parts if p is not None))

    @classmethod
    def parse(cls, text: str) -> InterfaceType:
        parts = text.split(":")
        if len(parts) != 3 or not _HEX2.fullmatch(parts[0]) or not all(
                p == "*" or _HEX2.fullmatch(p) for p in parts[1:]):
            raise ValueError(f'"{text}" is not an interface type: write cc:ss:pp in hex, with * for any '
                             f'subclass or protocol (08:06:50, 08:06:*, 08:*:*)')
        sub, proto = (None if p == "*" else int(p, 16) for p in parts[1:])
        return cls(int(parts[0], 16), sub, proto)

    @property
    def exact(self) -> bool:
        return self.subclass is not None and self.protocol is not None

    def matches(self, device: InterfaceType) -> bool:
        """USBGuard's ``USBInterfaceType::appliesTo``: a ``*`` matches any value."""
        return (self.class_ == device.class_
                and (self.subclass is None or self.subclass == device.subclass)
                and (self.protocol is None or self.protocol == device.protocol))

    def __str__(self) -> str:
        sub = "*" if self.subclass is None else f"{self.subclass:02x}"
        proto = "*" if self.protocol is None else f"{self.protocol:02x}"
        return f"{self.class_:02x}:{sub}:{proto}"


Value = DeviceId | InterfaceType | str

VALUE_TYPE: Mapping[Key, type] = MappingProxyType({
    Key.ID: DeviceId,
    Key.SERIAL: str,
    Key.NAME: str,
    Key.HASH: str,
    Key.PARENT_HASH: str,
    Key.VIA_PORT: str,
    Key.WITH_INTERFACE: InterfaceType,
    Key.WITH_CONNECT_TYPE: str,
})
"""Which kind of value each attribute takes; the parser and the matcher both read this table."""


def canonical_text(value: str) -> str:
    """The one ``str`` that stands for ``value``'s bytes (see the module docstring)."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise ValueError(f"{value!r} holds a character that is not text nor an escaped byte") from e


def quote(value: str) -> str:
    """A string as USBGuard's ``quoteEscapeString`` writes it."""
    out = ['"']
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


def value_text(value: Value) -> str:
    return quote(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Attribute:
    key: Key
    values: tuple[Value, ...]
    operator: SetOperator = SetOperator.EQUALS

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", Key(self.key))
        object.__setattr__(self, "operator", SetOperator(self.operator))
        if isinstance(self.values, (str, DeviceId, InterfaceType)):
            raise TypeError("Attribute.values is a tuple of values, not one value")
        values = tuple(self.values)
        if not values:
            raise ValueError(f"{self.key} needs at least one value")
        kind = VALUE_TYPE[self.key]
        if not all(isinstance(v, kind) for v in values):
            raise TypeError(f"{self.key} takes {kind.__name__} values, not {values!r}")
        if kind is str:
            values = tuple(canonical_text(cast(str, v)) for v in values)
        object.__setattr__(self, "values", values)

    def to_text(self) -> str:
        return set_text(str(self.key), self.operator, [value_text(v) for v in self.values])


def set_text(name: str, operator: SetOperator, values: list[str]) -> str:
    """USBGuard's ``Attribute::toRuleString``: one value with ``equals`` is written bare,
    anything else as a set, and the operator only when it is not ``equals``."""
    if operator is SetOperator.EQUALS and len(values) == 1:
        return f"{name} {values[0]}"
    op = "" if operator is SetOperator.EQUALS else f"{operator} "
    return f"{name} {op}{{ {' '.join(values)} }}"


MAX_CONDITIONS = 64
"""USBGuard keeps the conditions' results as the bits of one ``uint64_t``
(``RulePrivate::updateConditionsState``) and throws past 64."""


@dataclass(frozen=True)
class Conditions:
    """A rule's ``if``: one condition, or a set with an operator as an attribute has. How each
    operator combines the conditions' results is ``RulePrivate::meetsConditions``'s: ``one-of``
    some holds, ``none-of`` none holds, every other operator all hold."""

    values: tuple[Condition, ...]
    operator: SetOperator = SetOperator.EQUALS

    def __post_init__(self) -> None:
        object.__setattr__(self, "operator", SetOperator(self.operator))
        if isinstance(self.values, Condition):
            raise TypeError("Conditions.values is a tuple of conditions, not one condition")
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError("if needs at least one condition")
        if len(self.values) > MAX_CONDITIONS:
            raise ValueError(f"at most {MAX_CONDITIONS} conditions in one rule, as in USBGuard")
        if not all(isinstance(c, Condition) for c in self.values):
            raise TypeError(f"Conditions.values holds Condition values, not {self.values!r}")

    def to_text(self) -> str:
        return set_text(CONDITIONS, self.operator, [c.to_text() for c in self.values])


@dataclass(frozen=True)
class Label:
    """``label``: a string attribute with set operators, kept and written, never matched."""

    values: tuple[str, ...]
    operator: SetOperator = SetOperator.EQUALS

    def __post_init__(self) -> None:
        object.__setattr__(self, "operator", SetOperator(self.operator))
        if isinstance(self.values, str):
            raise TypeError("Label.values is a tuple of strings, not one string")
        values = tuple(self.values)
        if not values:
            raise ValueError("label needs at least one value")
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"label takes str values, not {values!r}")
        object.__setattr__(self, "values", tuple(canonical_text(v) for v in values))

    def to_text(self) -> str:
        return set_text(LABEL, self.operator, [quote(v) for v in self.values])


@dataclass(frozen=True)
class Rule:
    target: Target | QueryTarget
    attributes: tuple[Attribute, ...] = ()
    """In the order written; each key at most once."""
    block_interfaces: tuple[InterfaceType, ...] = ()
    """sekisho's extension, ``allow`` rules only: interface types to leave unauthorized."""
    conditions: Conditions | None = None
    label: Label | None = None

    def __post_init__(self) -> None:
        target = self.target
        object.__setattr__(self, "target", QueryTarget(target) if target in _QUERY_TARGETS else Target(target))
        if self.conditions is not None and not isinstance(self.conditions, Conditions):
            raise TypeError(f"Rule.conditions is a Conditions, not {self.conditions!r}")
        if self.label is not None and not isinstance(self.label, Label):
            raise TypeError(f"Rule.label is a Label, not {self.label!r}")
        object.__setattr__(self, "attributes", tuple(self.attributes))
        object.__setattr__(self, "block_interfaces", tuple(self.block_interfaces))
        seen: set[Key] = set()
        for attr in self.attributes:
            if not isinstance(attr, Attribute):
                raise TypeError(f"Rule.attributes holds Attribute values, not {attr!r}")
            if attr.key in seen:
                raise ValueError(f"{attr.key} attribute already defined")
            seen.add(attr.key)
        if not all(isinstance(i, InterfaceType) for i in self.block_interfaces):
            raise TypeError("Rule.block_interfaces holds InterfaceType values")
        if self.block_interfaces and self.target is not Target.ALLOW:
            raise ValueError(f"{BLOCK_INTERFACE} only goes with allow: a {self.target} rule authorizes no interface")

    def attribute(self, key: Key) -> Attribute | None:
        return next((a for a in self.attributes if a.key is key), None)

    def to_text(self) -> str:
        parts = [str(self.target), *(a.to_text() for a in self.attributes)]
        if self.conditions is not None:
            parts.append(self.conditions.to_text())
        if self.label is not None:
            parts.append(self.label.to_text())
        if len(self.block_interfaces) == 1:
            parts.append(f"{BLOCK_INTERFACE} {self.block_interfaces[0]}")
        elif self.block_interfaces:
            parts.append(f"{BLOCK_INTERFACE} {{ {' '.join(str(i) for i in self.block_interfaces)} }}")
        return " ".join(parts)
