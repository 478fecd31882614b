"""The example USB policies' golden cases, replayed: each device's decision and deciding line.

Every examples/usb/*.rules file needs a .cases.toml beside it, and the call-centre policy is
also checked over every interface class code, so that no class slips through a gap between its
block lines."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from conftest import REPO
from sekisho.policies.usbrules import IMPLICIT, Device, Key, Rule, RuleSet, Target

EXAMPLES = REPO / "examples" / "usb"
CASE_KEYS = {"what", "device", "expect", "line", "blocked-interfaces"}
DEVICE_KEYS = {"id", "serial", "name", "hash", "parent-hash", "via-port", "with-connect-type", "with-interface"}


def load(cases_path: Path) -> tuple[RuleSet, list[dict]]:
    data = tomllib.loads(cases_path.read_text())
    rules_path = cases_path.with_name(data["rules"])
    rules = RuleSet.parse(rules_path.read_text(), rules_path.name, Target(data.get("implicit_target", "block")))
    return rules, data["case"]


def device(fields: dict) -> Device:
    assert set(fields) <= DEVICE_KEYS, f"unknown device keys: {set(fields) - DEVICE_KEYS}"
    args = {k.replace("-", "_"): v for k, v in fields.items() if k != "with-interface"}
    return Device(**args, interfaces=tuple(fields.get("with-interface", ())))


def is_class_sweep(rule: Rule) -> bool:
    """One of the lines of section 4 that block whole ranges of class codes; the sweep below
    covers them rather than one golden case each."""
    interfaces = rule.attribute(Key.WITH_INTERFACE)
    return interfaces is not None and len(interfaces.values) >= 8


def golden_cases():
    for path in sorted(EXAMPLES.glob("*.cases.toml")):
        rules, cases = load(path)
        for i, case in enumerate(cases, start=1):
            yield pytest.param(rules, case, id=f"{path.name}:{i}:{case.get('what', '')}")


def test_every_example_policy_has_golden_cases():
    policies = {p.name.removesuffix(".rules") for p in EXAMPLES.glob("*.rules")}
    cases = {p.name.removesuffix(".cases.toml") for p in EXAMPLES.glob("*.cases.toml")}
    assert policies and policies == cases


@pytest.mark.parametrize("rules, case", list(golden_cases()))
def test_golden_case(rules: RuleSet, case: dict):
    assert set(case) <= CASE_KEYS, f"unknown keys: {set(case) - CASE_KEYS}"
    verdict = rules.first_match(device(case.get("device", {})))
    expected_rule = IMPLICIT if case["line"] == IMPLICIT else f"{rules.file}:{case['line']}"
    assert (verdict.decision.value, verdict.rule) == (case["expect"], expected_rule), verdict.text
    if "blocked-interfaces" in case:
        assert list(verdict.blocked_interfaces) == case["blocked-interfaces"]
    else:
        assert verdict.blocked_interfaces == ()


def test_every_named_rule_of_the_call_centre_policy_has_a_case():
    rules, cases = load(EXAMPLES / "call-centre.cases.toml")
    decided = {case["line"] for case in cases}
    named = {p.line for p in rules.rules if not is_class_sweep(p.rule)}
    assert named <= decided, f"rules with no golden case: {sorted(named - decided)}"


ACCEPTED = {0x01, 0x03, 0x09, 0x0B}


@pytest.mark.parametrize("klass", range(256), ids=lambda c: f"{c:02x}")
def test_call_centre_blocks_every_class_it_does_not_accept(klass):
    rules, _ = load(EXAMPLES / "call-centre.cases.toml")
    alone = rules.first_match(Device(id="1209:0001", interfaces=(f"{klass:02x}:00:00",)))
    with_keyboard = rules.first_match(Device(id="1209:0001", interfaces=("03:01:01", f"{klass:02x}:01:01")))
    if klass in ACCEPTED:
        assert with_keyboard.decision is (Target.BLOCK if klass == 0x01 else Target.ALLOW)
    else:
        assert (alone.decision, with_keyboard.decision) == (Target.BLOCK, Target.BLOCK)
        assert with_keyboard.line != rules.rules[-1].line, "blocked only by the final catch-all"
