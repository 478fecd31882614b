"""The USB device policy's rule language: a subset of USBGuard's rules.conf, plus per-interface
blocking. Pure: text in, values and decisions out; docs/sekisho-rules.5.md is the spec.

    lexer    tokens with line and column, and ``RuleSyntaxError``
    parser   tokens to ``Rule`` values, one rule per line
    rule     ``Rule``, ``Attribute``, ``SetOperator``, ``Target`` and ``to_text``
    matcher  ``Device``, ``RuleSet.first_match`` -> ``UsbVerdict``
    hashing  USBGuard's ``hash``, ``parent-hash`` and interface list, from sysfs values; ``Descriptors``
"""

from .hashing import (DescriptorError, Descriptors, device_hash, hash_string, interface_types, parse_descriptors,
                      root_hub_parent_hash, sysfs_text)
from .lexer import RuleSyntaxError, Token, TokenKind, tokenize, tokenize_line
from .matcher import IMPLICIT, Device, RuleSet, UsbVerdict, applies
from .parser import ParsedRule, parse_rule, parse_rules
from .rule import Attribute, DeviceId, InterfaceType, Key, Rule, SetOperator, Target

__all__ = [
    "Attribute", "DescriptorError", "Descriptors", "Device", "DeviceId", "IMPLICIT", "InterfaceType", "Key",
    "ParsedRule", "Rule", "RuleSet", "RuleSyntaxError", "SetOperator", "Target", "Token", "TokenKind", "UsbVerdict",
    "applies", "device_hash", "hash_string", "interface_types", "parse_descriptors", "parse_rule", "parse_rules",
    "root_hub_parent_hash", "sysfs_text", "tokenize", "tokenize_line",
]
