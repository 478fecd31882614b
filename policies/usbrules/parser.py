"""Tokens to ``Rule`` values: USBGuard 1.1's rule grammar (``RuleParser/Grammar.hpp`` and
``Actions.hpp``), and sekisho's ``block-interface``.

Each line is one rule, a comment or blank (USBGuard's ``FileRuleSet::load``). Where USBGuard's
grammar (``RuleParser/Grammar.hpp``) wants blanks, so does this parser: after the target, after
an attribute name, after a set operator, between values and between attributes; after ``{`` and
before ``}`` they may be left out. A device id may follow the target without ``id``
(``allow 1050:0407``), as in USBGuard's own examples; it is the ``id`` attribute, so giving
``id`` as well is a duplicate.

``if`` takes one condition or a set of them (``conditions.Condition``; ``allowed-matches``'s
argument is read as the rule ``allow <argument>``, and its errors point into it). ``label`` is a
string attribute; given twice, its values add up, as in USBGuard, whose ``label_actions`` checks
for a second ``label`` on the wrong keyword and so never refuses one. The ``match`` and
``device`` targets parse (``QueryTarget``).

The one deliberate difference: an ``id`` with an upper-case hex digit is an error here (see
``rule.DeviceId``), where USBGuard takes it and it never matches.

``parse_rules`` reads a whole file and reports every broken line in one ``RuleSyntaxError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from .conditions import KNOWN, Condition, ConditionKind
from .lexer import RuleSyntaxError, Token, TokenKind, split_lines, tokenize_line
from .rule import (
                   BLOCK_INTERFACE,
                   CONDITIONS,
                   LABEL,
                   VALUE_TYPE,
                   Attribute,
                   Conditions,
                   DeviceId,
                   InterfaceType,
                   Key,
                   Label,
                   QueryTarget,
                   Rule,
                   SetOperator,
                   Target,
                   Value,
)

ATTRIBUTE_NAMES = ", ".join([*(str(k) for k in Key), CONDITIONS, LABEL, BLOCK_INTERFACE])
TARGET_NAMES = "allow, block, reject, match or device"

_OPERATORS = frozenset(str(o) for o in SetOperator)
_TARGETS = frozenset(str(t) for t in Target)
_QUERY_TARGETS = frozenset(str(t) for t in QueryTarget)
_KEYS = frozenset(str(k) for k in Key)
_CONDITION = re.compile(r"(!?)([a-zA-Z-][a-zA-Z0-9-]*)(?:\((.*)\))?", re.DOTALL)
"""USBGuard's ``condition``: ``opt<negation>, condition_identifier, opt<condition_argument>``."""
_QUERY_PREFIX = "allow "
"""``AllowedMatchesCondition`` reads its argument as ``parseRuleFromString("allow " + argument)``."""

_EXAMPLE: Mapping[type, str] = MappingProxyType({
    DeviceId: "a device id like 1050:0407, 1050:* or *:*",
    InterfaceType: "an interface type like 08:06:50, 08:06:* or 08:*:*",
    str: 'a quoted string like "USB Keyboard"',
    Condition: f"a condition ({KNOWN}), with ! before it to negate: true, !rule-applied, localtime(08:00-17:00)",
})


@dataclass(frozen=True)
class ParsedRule:
    """A rule and where it came from, so that a decision can name its line."""

    line: int
    rule: Rule
    source: str
    """The line as written, without the blanks around it."""
    file: str = "<rules>"
    """The rules file it was read from, as verdicts cite it: one rule set may be read from
    several files (a rules folder)."""


def parse_rules(text: str, file: str = "<rules>") -> tuple[ParsedRule, ...]:
    """Every rule in a rules file, in order. Raises ``RuleSyntaxError`` naming the first broken
    line, with every other broken line in its ``also``."""
    rules: list[ParsedRule] = []
    errors: list[RuleSyntaxError] = []
    for number, source in enumerate(split_lines(text), start=1):
        try:
            rule = _parse_line(source, number, file)
        except RuleSyntaxError as e:
            errors.append(e)
            continue
        if rule is not None:
            rules.append(ParsedRule(number, rule, source.strip(" \t"), file))
    if errors:
        raise errors[0].with_also(tuple(errors[1:]))
    return tuple(rules)


def parse_rule(text: str, file: str = "<rule>", line: int = 1) -> Rule:
    """Exactly one rule, on one line (a comment after it is allowed)."""
    if "\n" in text:
        first = text.index("\n")
        raise RuleSyntaxError("one rule is one line", file=file, line=line, column=first + 1,
                              source=text[:first])
    rule = _parse_line(text, line, file)
    if rule is None:
        raise RuleSyntaxError(f"expected a rule: {TARGET_NAMES}, then its attributes", file=file, line=line,
                              column=1, source=text)
    return rule


def _parse_line(source: str, line: int, file: str) -> Rule | None:
    return _Line(tokenize_line(source, line, file), source, line, file).rule()


class _Line:
    """One line's tokens, read left to right; ``rule`` is the only entry point."""

    def __init__(self, tokens: tuple[Token, ...], source: str, line: int, file: str) -> None:
        self._tokens = tokens
        self._at = 0
        self._source = source
        self._line = line
        self._file = file

    def _next(self) -> Token:
        token = self._tokens[self._at]
        if token.kind is not TokenKind.END:
            self._at += 1
        return token

    def _peek(self) -> Token:
        return self._tokens[self._at]

    def _error(self, token: Token, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(message, file=self._file, line=self._line, column=token.column, source=self._source)

    def rule(self) -> Rule | None:
        first = self._next()
        if first.kind is TokenKind.END:
            return None
        target = self._target(first)
        attributes: list[Attribute] = []
        where: dict[Key, Token] = {}
        blocked: tuple[InterfaceType, ...] = ()
        blocked_at: Token | None = None
        conditions: Conditions | None = None
        conditions_at: Token | None = None
        label: Label | None = None

        bare = self._peek()
        if bare.kind is TokenKind.WORD and ":" in bare.value:
            self._need_blank(bare, f"expected a blank between {target} and the device id")
            self._next()
            attributes.append(Attribute(Key.ID, (cast(DeviceId, self._value(bare, str(Key.ID), DeviceId)),)))
            where[Key.ID] = bare

        while (token := self._next()).kind is not TokenKind.END:
            if token.kind is not TokenKind.WORD:
                raise self._error(token, f"expected an attribute ({ATTRIBUTE_NAMES}), not {token.text}")
            self._need_blank(token, f"expected a blank before {token.value}")
            if token.value == CONDITIONS:
                if conditions_at is not None:
                    raise self._error(token, f"conditions already defined (at column {conditions_at.column}): "
                                             f"put them in one set, if all-of {{ ... }}")
                operator, values = self._values(CONDITIONS, Condition, operators=True)
                conditions = Conditions(tuple(v for v in values if isinstance(v, Condition)),
                                        operator or SetOperator.EQUALS)
                conditions_at = token
                continue
            if token.value == LABEL:
                operator, values = self._values(LABEL, str, operators=True)
                texts = tuple(v for v in values if isinstance(v, str))
                # A second label adds its values and keeps the operator unless it gives one (Actions.hpp).
                label = Label(texts, operator or SetOperator.EQUALS) if label is None else \
                    Label(label.values + texts, operator or label.operator)
                continue
            if token.value == BLOCK_INTERFACE:
                if blocked_at is not None:
                    raise self._error(token, f"{BLOCK_INTERFACE} already given at column {blocked_at.column}")
                _, values = self._values(BLOCK_INTERFACE, InterfaceType, operators=False)
                blocked = tuple(v for v in values if isinstance(v, InterfaceType))
                blocked_at = token
                if target is not Target.ALLOW:
                    raise self._error(token, f"{BLOCK_INTERFACE} only goes with allow: "
                                             f"a {target} rule authorizes no interface to block")
                continue
            if token.value not in _KEYS:
                raise self._error(token, f'unknown attribute "{token.value}" (expected {ATTRIBUTE_NAMES})')
            key = Key(token.value)
            if key in where:
                raise self._error(token, f"{key} attribute already defined (at column {where[key].column})")
            operator, values = self._values(str(key), VALUE_TYPE[key], operators=True)
            attributes.append(Attribute(key, cast(tuple[Value, ...], values), operator or SetOperator.EQUALS))
            where[key] = token
        return Rule(target, tuple(attributes), blocked, conditions, label)

    def _target(self, token: Token) -> Target | QueryTarget:
        if token.kind is TokenKind.WORD:
            if token.value in _TARGETS:
                return Target(token.value)
            if token.value in _QUERY_TARGETS:
                return QueryTarget(token.value)
        raise self._error(token, f"expected a target ({TARGET_NAMES}) to start the rule, not {token.text}")

    def _need_blank(self, token: Token, message: str) -> None:
        if not token.spaced:
            raise self._error(token, message)

    def _values(self, name: str, kind: type, *,
                operators: bool) -> tuple[SetOperator | None, tuple[Value | Condition, ...]]:
        """After an attribute's name: one value, or a set with or without an operator (None when
        none is written)."""
        token = self._next()
        if token.kind is TokenKind.END:
            raise self._error(token, f"expected a value after {name}: {_EXAMPLE[kind]}, or a set {{ ... }}")
        self._need_blank(token, f"expected a blank after {name}")
        if token.kind is TokenKind.OPEN:
            return None, self._set(token, name, kind, "the set")
        if token.kind is TokenKind.WORD and token.value in _OPERATORS:
            if not operators:
                raise self._error(token, f"{name} takes one interface type or a plain set {{ ... }}, "
                                         f"without a set operator")
            operator = SetOperator(token.value)
            opening = self._next()
            if opening.kind is not TokenKind.OPEN:
                raise self._error(opening, f'expected "{{" to open the {operator} set')
            self._need_blank(opening, f'expected a blank between {operator} and "{{"')
            return operator, self._set(opening, name, kind, f"{operator} set")
        if token.kind is TokenKind.WORD and ":" not in token.value and self._peek().kind is TokenKind.OPEN:
            raise self._error(token, f'unknown set operator "{token.value}" '
                                     f'(expected {", ".join(str(o) for o in SetOperator)})')
        return None, (self._value(token, name, kind),)

    def _set(self, opening: Token, name: str, kind: type, what: str) -> tuple[Value | Condition, ...]:
        values: list[Value | Condition] = []
        while True:
            token = self._next()
            if token.kind is TokenKind.CLOSE:
                if not values:
                    raise self._error(token, f"empty set: {name} needs at least one value")
                return tuple(values)
            if token.kind is TokenKind.END:
                raise self._error(token, f'expected "}}" to close {what} (opened at column {opening.column})')
            if values:
                self._need_blank(token, "expected a blank between two values")
            values.append(self._value(token, name, kind))

    def _value(self, token: Token, name: str, kind: type) -> Value | Condition:
        if kind is Condition:
            return self._condition(token)
        if kind is str:
            if token.kind is not TokenKind.STRING:
                raise self._error(token, f"{name} takes {_EXAMPLE[str]}, not {token.text}")
            return token.value
        if token.kind is not TokenKind.WORD:
            raise self._error(token, f"{name} takes {_EXAMPLE[kind]}, not {token.text}")
        try:
            return kind.parse(token.value)  # type: ignore[attr-defined]
        except ValueError as e:
            raise self._error(token, str(e)) from None

    def _condition(self, token: Token) -> Condition:
        """``[!]name[(argument)]``, as ``RuleConditionBase::getImplementation`` reads it."""
        m = _CONDITION.fullmatch(token.value) if token.kind is TokenKind.WORD else None
        if m is None:
            raise self._error(token, f"expected {_EXAMPLE[Condition]}, not {token.text}")
        negated, name, argument = m[1] == "!", m[2], m[3]
        if name not in set(ConditionKind):
            raise self._error(token, f'unknown condition "{name}" (known: {KNOWN})')
        if argument == "":
            raise self._error(token, f"empty parentheses after {name}: write {name} alone, or its argument "
                                     f"inside them")
        query = None
        if name == ConditionKind.ALLOWED_MATCHES and argument:
            opened = token.column + len(m[1]) + len(name)  # the column of "("
            try:
                query = parse_rule(_QUERY_PREFIX + argument, self._file, self._line)
            except RuleSyntaxError as e:
                column = max(opened + 1, opened + e.column - len(_QUERY_PREFIX))
                raise RuleSyntaxError(f"in the allowed-matches query: {e.message}", file=self._file, line=self._line,
                                      column=column, source=self._source) from None
            if query.block_interfaces:
                # sekisho's own attribute, for what an allow rule leaves off; a query only
                # matches devices (and USBGuard, whose query this is, does not know it).
                raise RuleSyntaxError(f"in the allowed-matches query: {BLOCK_INTERFACE} blocks nothing in a query, "
                                      f"which only matches devices; use with-interface",
                                      file=self._file, line=self._line,
                                      column=opened + 1 + argument.index(BLOCK_INTERFACE), source=self._source)
        try:
            return Condition(ConditionKind(name), negated, argument or "", query)
        except ValueError as e:
            raise self._error(token, str(e)) from None
