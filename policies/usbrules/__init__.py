"""The USB device policy's rule language: USBGuard 1.1's rules.conf, plus per-interface
blocking. Pure: text in, values and decisions out; docs/sekisho-rules.5.md is the spec.

    lexer    tokens with line and column, and ``RuleSyntaxError``
    parser   tokens to ``Rule`` values, one rule per line
    rule     ``Rule``, ``Attribute``, ``Conditions``, ``Label``, ``SetOperator``, ``Target`` and ``to_text``
    conditions  ``Condition`` (``if``), the ``ConditionContext`` deciding one needs
    matcher  ``Device``, ``RuleSet.first_match`` -> ``UsbVerdict``
    hashing  USBGuard's ``hash``, ``parent-hash`` and interface list, from sysfs values; ``Descriptors``
"""

from .conditions import Condition, ConditionContext, ConditionKind
from .hashing import (
                      DescriptorError,
                      Descriptors,
                      device_hash,
                      hash_string,
                      interface_types,
                      parse_descriptors,
                      root_hub_parent_hash,
                      sysfs_text,
)
from .lexer import RuleSyntaxError, Token, TokenKind, tokenize, tokenize_line
from .matcher import IMPLICIT, Device, RuleSet, UsbVerdict, applies
from .parser import ParsedRule, parse_rule, parse_rules
from .rule import Attribute, Conditions, DeviceId, InterfaceType, Key, Label, QueryTarget, Rule, SetOperator, Target

__all__ = [
    "Attribute", "Condition", "ConditionContext", "ConditionKind", "Conditions", "DescriptorError", "Descriptors",
    "Device", "DeviceId", "IMPLICIT", "InterfaceType", "Key", "Label", "ParsedRule", "QueryTarget", "Rule",
    "RuleSet", "RuleSyntaxError", "SetOperator", "Target", "Token", "TokenKind", "UsbVerdict",
    "applies", "device_hash", "hash_string", "interface_types", "parse_descriptors", "parse_rule", "parse_rules",
    "root_hub_parent_hash", "sysfs_text", "tokenize", "tokenize_line",
]
