"""Deciding a device: the first rule that matches it wins, and when none does, the implicit target.

A ``Device`` is described in the rules' own vocabulary (USBGuard's ``Device::getDeviceRule``):
its id, serial, name, hash, parent-hash, via-port, with-connect-type and the list of its
interface types. Each attribute of a rule is checked against the device's values for it, the
way USBGuard's ``Rule::Attribute::appliesTo`` does; every attribute must apply.

The device's value for each attribute is one value, except ``with-interface``, which is every
interface descriptor in the device's descriptors, in order, alternate settings and other
configurations included (USBGuard lists them so; ``hashing.interface_types`` reads them the same
way). With the rule's values R and the device's values D, and "r covers d" meaning equal
strings, an id pattern that covers the id, or an interface pattern that covers the type:

  ``all-of``          every r covers some d
  ``one-of``          some r covers some d
  ``none-of``         no r covers any d
  ``equals``          len(R) == len(D) and every r covers some d
  ``equals-ordered``  len(R) == len(D) and each r covers the d at its position
  ``match-all``       every d is "covered" by some r, the other way round (``setSolveMatchAll``)

``equals`` is USBGuard's, quirk and all: it counts and looks one way only, so with patterns
``with-interface equals { 03:*:* 03:*:* }`` also matches a device whose interfaces are
03:01:01 and ff:00:00. Distinct exact values do not have that gap.

``match-all`` asks USBGuard's ``Predicates::isSupersetOf`` instead, which USBGuard 1.1 has for
two kinds of value only: an interface pattern covers the type (``with-interface match-all
{ 09:00:* }``: every interface a hub's); a device's id covers the rule's, so an id pattern
(``1050:*``) never matches and only the exact id does; and for strings (serial, name, hashes,
port, connect type) the generic template answers yes, so ``name match-all { "x" }`` matches
every device. Quirks and all, so that a USBGuard rules file decides here as it does there.

``RuleSet.first_match`` returns a ``UsbVerdict`` that always names its rule: the rules file and
line of the rule that matched, or ``IMPLICIT`` when none did (USBGuard's ``ImplicitID``).

A rule with ``if`` conditions matches when its attributes apply and then its conditions are met,
in that order (``RulePrivate::appliesToWithConditions``): the conditions of a rule whose
attributes do not apply are not evaluated, and those of one whose attributes do are all
evaluated, none skipped (``updateConditionsState``), then combined by the operator
(``meetsConditions``). What they need from outside comes in a ``ConditionContext``; a rule
set without conditions needs none. A ``match`` or
``device`` rule that matches first decides ``block``, with its rule named (see ``QueryTarget``).
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .conditions import Condition, ConditionContext, ConditionKind
from .parser import ParsedRule, parse_rules
from .rule import (
                   VALUE_TYPE,
                   Attribute,
                   DeviceId,
                   InterfaceType,
                   Key,
                   QueryTarget,
                   Rule,
                   SetOperator,
                   Target,
                   canonical_text,
)

IMPLICIT = "IMPLICIT"


@dataclass(frozen=True)
class Device:
    """A USB device as the rules see it. Strings are kept as the rules keep them
    (``rule.canonical_text``); ``id`` and the interfaces are normalised to lower case."""

    id: str
    """``vvvv:pppp``, the ``idVendor`` and ``idProduct`` sysfs attributes."""
    serial: str = ""
    name: str = ""
    """The ``product`` sysfs attribute."""
    hash: str = ""
    parent_hash: str = ""
    via_port: str = ""
    """The sysfs name: ``1-2``, ``1-2.4``, ``usb1`` for a root hub."""
    with_connect_type: str = ""
    """``port/connect_type``: ``hotplug``, ``hardwired``, ``not used``, ``unknown``, or empty."""
    interfaces: tuple[str, ...] = ()
    """Every interface descriptor's ``cc:ss:pp``, in descriptor order."""
    _id: DeviceId = field(init=False, repr=False, compare=False)
    _interfaces: tuple[InterfaceType, ...] = field(init=False, repr=False, compare=False)
    _single: Mapping[Key, object] = field(init=False, repr=False, compare=False)
    """The value of every attribute but ``with-interface``, which is the only one with many."""
    _interface_keys: frozenset[tuple[int, ...]] = field(init=False, repr=False, compare=False)
    """Each interface filed under ``(cc,)``, ``(cc, ss)`` and ``(cc, ss, pp)``: a pattern covers
    some interface exactly when its ``key`` is in here, one set lookup instead of a scan."""

    def __post_init__(self) -> None:
        device_id = DeviceId.parse(self.id.lower())
        if "*" in (device_id.vendor, device_id.product):
            raise ValueError(f'a device has one id, not a pattern: "{self.id}"')
        types = tuple(InterfaceType.parse(i) for i in self.interfaces)
        if not all(t.exact for t in types):
            raise ValueError(f"a device's interfaces are exact types, not patterns: {list(self.interfaces)}")
        object.__setattr__(self, "id", str(device_id))
        object.__setattr__(self, "interfaces", tuple(str(t) for t in types))
        for name in ("serial", "name", "hash", "parent_hash", "via_port", "with_connect_type"):
            object.__setattr__(self, name, canonical_text(getattr(self, name)))
        object.__setattr__(self, "_id", device_id)
        object.__setattr__(self, "_interfaces", types)
        object.__setattr__(self, "_interface_keys", frozenset(t.key[:n] for t in types for n in (1, 2, 3)))
        object.__setattr__(self, "_single", MappingProxyType(
            {k: _DEVICE_VALUES[k](self)[0] for k in Key if k is not Key.WITH_INTERFACE}))

    def values(self, key: Key) -> Sequence[object]:
        """The device's values for one attribute, in the form the rule's values are compared with."""
        return _DEVICE_VALUES[key](self)

    def as_rule(self, target: Target = Target.ALLOW) -> Rule:
        """The device in rule syntax, the way USBGuard prints a device (``usbguard list-devices``):
        a rule that matches this device. Empty hashes and an empty interface list are left out."""
        attributes = [Attribute(Key.ID, (self._id,)), Attribute(Key.SERIAL, (self.serial,)),
                      Attribute(Key.NAME, (self.name,))]
        attributes += [Attribute(k, (v,)) for k, v in ((Key.HASH, self.hash), (Key.PARENT_HASH, self.parent_hash)) if v]
        attributes.append(Attribute(Key.VIA_PORT, (self.via_port,)))
        if self._interfaces:
            attributes.append(Attribute(Key.WITH_INTERFACE, self._interfaces))
        attributes.append(Attribute(Key.WITH_CONNECT_TYPE, (self.with_connect_type,)))
        return Rule(target, tuple(attributes))


_DEVICE_VALUES: Mapping[Key, Callable[[Device], Sequence[object]]] = MappingProxyType({
    Key.ID: lambda d: (d._id,),
    Key.SERIAL: lambda d: (d.serial,),
    Key.NAME: lambda d: (d.name,),
    Key.HASH: lambda d: (d.hash,),
    Key.PARENT_HASH: lambda d: (d.parent_hash,),
    Key.VIA_PORT: lambda d: (d.via_port,),
    Key.WITH_INTERFACE: lambda d: d._interfaces,
    Key.WITH_CONNECT_TYPE: lambda d: (d.with_connect_type,),
})

_COVERS: Mapping[type, Callable[[object, object], bool]] = MappingProxyType({
    DeviceId: DeviceId.matches,  # type: ignore[dict-item]
    InterfaceType: InterfaceType.matches,  # type: ignore[dict-item]
    str: operator.eq,
})
"""USBGuard's ``Predicates::isSubsetOf`` for each kind of value: does a rule's value cover a device's."""

_SUPERSET: Mapping[type, Callable[[object, object], bool]] = MappingProxyType({
    DeviceId: lambda r, d: d.matches(r),  # type: ignore[attr-defined]
    InterfaceType: InterfaceType.matches,  # type: ignore[dict-item]
    str: lambda r, d: True,
})
"""USBGuard's ``Predicates::isSupersetOf(rule value, device value)``, which only ``match-all``
asks: ``USBDeviceID``'s is ``target.isSubsetOf(source)``, ``USBInterfaceType``'s
``source.appliesTo(target)``, and the generic one, for strings, returns true (unimplemented)."""


def attribute_applies_as_usbguard(attribute: Attribute, device: Device) -> bool:
    """USBGuard's ``Rule::Attribute::appliesTo``, line for line, with the rule as source and the
    device as target: the reference that ``attribute_applies`` is tested against."""
    covers = _COVERS[VALUE_TYPE[attribute.key]]
    rule_values = attribute.values
    device_values = device.values(attribute.key)
    op = attribute.operator
    if op is SetOperator.MATCH_ALL:
        superset = _SUPERSET[VALUE_TYPE[attribute.key]]
        return all(any(superset(r, d) for r in rule_values) for d in device_values)
    if op is SetOperator.ONE_OF or op is SetOperator.NONE_OF:
        some = any(covers(r, d) for r in rule_values for d in device_values)
        return some if op is SetOperator.ONE_OF else not some
    if op is not SetOperator.ALL_OF and len(rule_values) != len(device_values):
        return False
    if op is SetOperator.EQUALS_ORDERED:
        return all(covers(r, d) for r, d in zip(rule_values, device_values, strict=True))
    return all(any(covers(r, d) for d in device_values) for r in rule_values)


def attribute_applies(attribute: Attribute, device: Device) -> bool:
    """The same answer as ``attribute_applies_as_usbguard``, sooner. Every attribute but
    ``with-interface`` has one device value, which reduces the set algebra to one comparison per
    rule value; for interfaces, "r covers some d" is one lookup in the device's interface keys."""
    op = attribute.operator
    key = attribute.key
    values = attribute.values
    if op is SetOperator.MATCH_ALL:
        return attribute_applies_as_usbguard(attribute, device)
    if key is Key.WITH_INTERFACE:
        if op is SetOperator.EQUALS_ORDERED:
            return attribute_applies_as_usbguard(attribute, device)
        keys = device._interface_keys
        if op is SetOperator.ONE_OF:
            return any(p.key in keys for p in values)  # type: ignore[union-attr]
        if op is SetOperator.NONE_OF:
            return not any(p.key in keys for p in values)  # type: ignore[union-attr]
        if op is SetOperator.EQUALS and len(values) != len(device._interfaces):
            return False
        return all(p.key in keys for p in values)  # type: ignore[union-attr]
    covers = _COVERS[VALUE_TYPE[key]]
    value = device._single[key]
    if op is SetOperator.ONE_OF:
        return any(covers(r, value) for r in values)
    if op is SetOperator.NONE_OF:
        return not any(covers(r, value) for r in values)
    if op is SetOperator.ALL_OF:
        return all(covers(r, value) for r in values)
    return len(values) == 1 and covers(values[0], value)


def applies(rule: Rule, device: Device) -> bool:
    """The rule's attributes apply to the device; its conditions and label are not looked at
    (``RulePrivate::appliesTo``)."""
    return all(attribute_applies(a, device) for a in rule.attributes)


def condition_holds(condition: Condition, rule: str, context: ConditionContext) -> bool:
    """``RuleConditionBase::evaluate``: the condition's ``update``, negated by ``!``. ``rule`` is
    the rule's name in verdicts (file:line), for the error of a missing random source."""
    kind = condition.kind
    if kind is ConditionKind.TRUE:
        holds = True
    elif kind in (ConditionKind.FALSE, ConditionKind.RULE_APPLIED, ConditionKind.RULE_EVALUATED):
        holds = False  # rule-applied, rule-evaluated: see the conditions module's docstring
    elif kind is ConditionKind.LOCALTIME:
        holds = condition.begin <= context.daytime <= condition.end
    elif kind is ConditionKind.RANDOM:
        if context.random is None:
            raise ValueError(f"{rule}: {condition.to_text()} needs a random source in the ConditionContext")
        holds = context.random() < condition.probability
    else:
        query = condition.query
        holds = query is not None and any(applies(query, d) for d in context.allowed)
    return holds is not condition.negated


def conditions_met(rule: Rule, name: str, context: ConditionContext) -> bool:
    """``RulePrivate::meetsConditions`` with its update: every condition evaluated, then
    ``one-of`` wants one true, ``none-of`` none, and every other operator all of them."""
    if rule.conditions is None:
        return True
    results = [condition_holds(c, name, context) for c in rule.conditions.values]
    op = rule.conditions.operator
    if op is SetOperator.ONE_OF:
        return any(results)
    if op is SetOperator.NONE_OF:
        return not any(results)
    return all(results)


def only_ids(rule: Rule) -> frozenset[DeviceId] | None:
    """The only device ids ``rule`` can match, when its ``id`` attribute names them exactly (no
    ``*``); None when it may match a device of any id. A device has one id, so ``one-of`` names
    its values; ``equals`` and ``equals-ordered`` need exactly one value, ``all-of`` one id
    repeated (else nothing matches: an empty set); ``none-of`` and ``match-all`` are left alone."""
    attribute = rule.attribute(Key.ID)
    if attribute is None or attribute.operator in (SetOperator.NONE_OF, SetOperator.MATCH_ALL):
        return None
    ids = frozenset(v for v in attribute.values if isinstance(v, DeviceId))
    if any("*" in (i.vendor, i.product) for i in ids):
        return None
    if attribute.operator is SetOperator.ONE_OF:
        return ids
    if attribute.operator is SetOperator.ALL_OF:
        return ids if len(ids) == 1 else frozenset()
    return ids if len(attribute.values) == 1 else frozenset()


@dataclass(frozen=True)
class UsbVerdict:
    """What to do with a device, and the rule that said so."""

    decision: Target
    rule: str
    """``<rules file>:<line>`` of the matching rule, or ``IMPLICIT``."""
    line: int | None
    """The matching rule's line in the rules file; ``None`` for the implicit target."""
    text: str
    """The matching rule as written in the file; empty for the implicit target."""
    blocked_interfaces: tuple[str, ...] = ()
    """``allow`` with ``block-interface``: the device's interface types to leave unauthorized,
    each once, in the device's order. The device and its other interfaces are authorized."""
    reason: str = ""
    """Why the decision is not the rule's own target: a ``match`` or ``device`` rule."""

    @property
    def implicit(self) -> bool:
        return self.rule == IMPLICIT


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[ParsedRule, ...]
    implicit_target: Target = Target.BLOCK
    """USBGuard's ``ImplicitPolicyTarget``: what a device that no rule matches gets."""
    file: str = "<rules>"
    """The rules file's (or folder's) name, for messages about the whole set; each verdict cites
    its own rule's file (``ParsedRule.file``)."""
    conditional: bool = field(init=False, compare=False)
    """Some rule has ``if`` conditions: deciding needs a ``ConditionContext``."""
    _any_id: tuple[ParsedRule, ...] = field(init=False, compare=False, repr=False)
    """The rules that may match a device of any id, in file order."""
    _by_id: Mapping[DeviceId, tuple[ParsedRule, ...]] = field(init=False, compare=False, repr=False)
    """For each id some rule names exactly: the rules that may match a device of that id, in file
    order. A generated policy is mostly such rules, and a device need not be tried against the
    others' other attributes: trying a rule that cannot match has no effect, since its
    conditions are only evaluated once its attributes apply."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "implicit_target", Target(self.implicit_target))
        object.__setattr__(self, "conditional", any(p.rule.conditions is not None for p in self.rules))
        any_id: list[tuple[int, ParsedRule]] = []
        named: dict[DeviceId, list[tuple[int, ParsedRule]]] = {}
        for at, parsed in enumerate(self.rules):
            ids = only_ids(parsed.rule)
            if ids is None:
                any_id.append((at, parsed))
            for device_id in ids or ():
                named.setdefault(device_id, []).append((at, parsed))
        object.__setattr__(self, "_any_id", tuple(p for _, p in any_id))
        object.__setattr__(self, "_by_id", MappingProxyType({
            device_id: tuple(p for _, p in heapq.merge(any_id, rules, key=operator.itemgetter(0)))
            for device_id, rules in named.items()}))

    @classmethod
    def parse(cls, text: str, file: str = "<rules>", implicit_target: Target = Target.BLOCK) -> RuleSet:
        """Parse a rules file; ``RuleSyntaxError`` if any line is broken (see ``parse_rules``)."""
        return cls(parse_rules(text, file), implicit_target, file)

    def first_match(self, device: Device, context: ConditionContext | None = None) -> UsbVerdict:
        """The first rule that matches ``device`` (USBGuard's ``RuleSet::getFirstMatchingRule``).
        ``context`` is needed once a rule with conditions is reached (a ``ValueError`` without it)."""
        for parsed in self._by_id.get(device._id, self._any_id):
            rule = parsed.rule
            for attribute in rule.attributes:
                if not attribute_applies(attribute, device):
                    break
            else:
                name = f"{parsed.file}:{parsed.line}"
                if rule.conditions is not None:
                    if context is None:
                        raise ValueError(f"{name}: this rule has conditions ({rule.conditions.to_text()}); "
                                         f"deciding it needs a ConditionContext")
                    if not conditions_met(rule, name, context):
                        continue
                if isinstance(rule.target, QueryTarget):
                    return UsbVerdict(Target.BLOCK, name, parsed.line, parsed.source, reason=(
                        f'a "{rule.target}" rule decides nothing; blocked (USBGuard leaves the device as it was)'))
                blocked: tuple[str, ...] = ()
                if rule.block_interfaces:
                    blocked = tuple(dict.fromkeys(
                        str(t) for t in device._interfaces if any(p.matches(t) for p in rule.block_interfaces)))
                return UsbVerdict(rule.target, name, parsed.line, parsed.source, blocked)
        return UsbVerdict(self.implicit_target, IMPLICIT, None, "")
