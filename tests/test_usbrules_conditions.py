"""Conditions (``if``) decided as USBGuard 1.1 decides them (policies/usbrules/conditions.py and
``matcher.RuleSet.first_match``), golden decisions on a composite device, a hub and a device on a
root hub; then the same conditions in the controller under umockdev and in the daemon over a
restart.

Each golden case is a rules file, a device, what the context says (the UTC time of day, the
devices allowed now, the random draw) and the decision with its line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sekisho.policies.usbrules import (
    IMPLICIT,
    Condition,
    ConditionContext,
    ConditionKind,
    Device,
    RuleSet,
    Target,
    parse_rule,
    parse_rules,
)

ROOT_HUB = Device(id="1d6b:0002", serial="0000:00:14.0", name="xHCI Host Controller", hash="R00T=",
                  parent_hash="PCI=", via_port="usb1", with_connect_type="", interfaces=("09:00:00",))
HUB = Device(id="05e3:0610", name="USB2.0 Hub", hash="HUB=", parent_hash="R00T=", via_port="1-5",
             with_connect_type="hotplug", interfaces=("09:00:01", "09:00:02"))
COMPOSITE = Device(id="1234:5678", name="USB Disk", serial="42", hash="BAD=", parent_hash="HUB=", via_port="1-5.1",
                   with_connect_type="hotplug", interfaces=("03:01:01", "08:06:50"))
"""A keyboard and a mass-storage interface in one device, behind the hub."""
KEYBOARD = Device(id="046d:c31c", name="USB Keyboard", hash="KB=", parent_hash="R00T=", via_port="1-2",
                  with_connect_type="hotplug", interfaces=("03:01:01", "03:00:00"))
"""Plugged straight into the root hub."""

HOUR = 3600


@dataclass
class Draws:
    """A random source that answers ``value`` and counts how often it was asked."""

    value: float = 0.5
    calls: int = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


@dataclass
class Case:
    rules: str
    device: Device
    expect: tuple[Target, int | None]
    daytime: int = 12 * HOUR
    allowed: tuple[Device, ...] = ()
    draw: float = 0.5


CASES = {
    # fixed states, negation, and how each operator combines { true false !true false } = T F F F
    "true": Case("allow if true", COMPOSITE, (Target.ALLOW, 1)),
    "false": Case("allow if false\nblock", COMPOSITE, (Target.BLOCK, 2)),
    "not-true": Case("allow if !true", HUB, (Target.BLOCK, None)),
    "not-false": Case("reject if !false", HUB, (Target.REJECT, 1)),
    "true-with-a-parameter": Case("allow if true(ignored)", HUB, (Target.ALLOW, 1)),
    "all-of": Case("allow if all-of { true false !true false }\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "one-of": Case("allow if one-of { true false !true false }", KEYBOARD, (Target.ALLOW, 1)),
    "one-of-none": Case("allow if one-of { false !true }\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "none-of": Case("allow if none-of { true false !true false }\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "none-of-all-false": Case("allow if none-of { false !true }", KEYBOARD, (Target.ALLOW, 1)),
    "equals-is-all": Case("allow if equals { true false !true false }\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "equals-ordered-is-all": Case("allow if equals-ordered { true !false }", KEYBOARD, (Target.ALLOW, 1)),
    "match-all-is-all": Case("allow if match-all { true false }\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "plain-set-is-all": Case("allow if { true !false true }", KEYBOARD, (Target.ALLOW, 1)),
    # attributes first: conditions only for a device the attributes match
    "attributes-first": Case("allow with-interface 08:*:* if true\nblock", KEYBOARD, (Target.BLOCK, 2)),
    "composite-by-interface": Case("block with-interface all-of { 03:*:* 08:*:* } if !false\nallow", COMPOSITE,
                                   (Target.BLOCK, 1)),
    # localtime: UTC time of day, both ends included, to the second
    "localtime-one-minute": Case("allow if localtime(1:00)", COMPOSITE, (Target.ALLOW, 1), daytime=HOUR),
    "localtime-a-second-late": Case("allow if localtime(1:00)", COMPOSITE, (Target.BLOCK, None), daytime=HOUR + 1),
    "localtime-range-end": Case("allow if localtime(08:00-17:00)", HUB, (Target.ALLOW, 1), daytime=17 * HOUR),
    "localtime-after-range": Case("allow if localtime(08:00-17:00)", HUB, (Target.BLOCK, None),
                                  daytime=17 * HOUR + 1),
    "localtime-before-range": Case("allow if localtime(08:00-17:00)", HUB, (Target.BLOCK, None),
                                   daytime=8 * HOUR - 1),
    "not-localtime": Case("block if !localtime(2:00)\nallow", KEYBOARD, (Target.ALLOW, 2), daytime=2 * HOUR),
    # random(p): true when the draw is below p; random alone is random(0.5)
    "random-below": Case("allow if random(0.4)", COMPOSITE, (Target.ALLOW, 1), draw=0.39),
    "random-at": Case("allow if random(0.4)", COMPOSITE, (Target.BLOCK, None), draw=0.4),
    "random-half": Case("allow if random", COMPOSITE, (Target.ALLOW, 1), draw=0.49),
    "random-half-not": Case("allow if random", COMPOSITE, (Target.BLOCK, None), draw=0.5),
    "random-zero": Case("allow if random(0)", COMPOSITE, (Target.BLOCK, None), draw=0.0),
    "random-one": Case("allow if random(1)", COMPOSITE, (Target.ALLOW, 1), draw=0.999),
    # rule-applied and rule-evaluated never hold in USBGuard 1.1's daemon (the device's own rule's
    # counters are read, always 0), however often the rule decided before
    "rule-applied": Case("allow if rule-applied\nblock", HUB, (Target.BLOCK, 2)),
    "first-time-only-is-every-time": Case("allow id 046d:c31c if !rule-applied\nblock", KEYBOARD, (Target.ALLOW, 1)),
    "rule-applied-within": Case("allow if rule-applied(5)\nblock", HUB, (Target.BLOCK, 2)),
    "rule-applied-ten-minutes": Case("allow if one-of { rule-applied(00:10) false }\nblock", HUB, (Target.BLOCK, 2)),
    "rule-evaluated": Case("allow if rule-evaluated\nblock", HUB, (Target.BLOCK, 2)),
    "not-rule-evaluated": Case("allow if !rule-evaluated(00:10)", HUB, (Target.ALLOW, 1)),
    # allowed-matches: some device allowed now matches "allow <query>"; the query's conditions do not count
    "no-keyboard-allowed": Case("allow with-interface 08:*:* if allowed-matches(with-interface 03:*:*)", COMPOSITE,
                                (Target.BLOCK, None)),
    "a-keyboard-allowed": Case("allow if allowed-matches(with-interface one-of { 03:*:* })", COMPOSITE,
                               (Target.ALLOW, 1), allowed=(KEYBOARD,)),
    # USBGuard's equals: one pattern, one interface; the keyboard has two
    "equals-in-the-query": Case("allow if allowed-matches(with-interface 03:*:*)", COMPOSITE, (Target.BLOCK, None),
                                allowed=(KEYBOARD,)),
    "only-the-hub-allowed": Case("allow if allowed-matches(with-interface 03:*:*)", COMPOSITE, (Target.BLOCK, None),
                                 allowed=(HUB, ROOT_HUB)),
    "by-parent-hash": Case('allow if allowed-matches(hash "R00T=" via-port "usb1")', KEYBOARD, (Target.ALLOW, 1),
                           allowed=(ROOT_HUB,)),
    "query-ignores-its-conditions": Case('allow if allowed-matches(name "USB Keyboard" if false)', HUB,
                                         (Target.ALLOW, 1), allowed=(KEYBOARD,)),
    "not-allowed-matches": Case('allow if !allowed-matches(id 046d:*)', HUB, (Target.BLOCK, None),
                                allowed=(KEYBOARD,)),
    # label never changes what matches
    "label": Case('allow label "desk 12"', ROOT_HUB, (Target.ALLOW, 1)),
    "label-none-of": Case('allow label none-of { "desk 12" } label "x"', ROOT_HUB, (Target.ALLOW, 1)),
    # match and device decide block, naming their line
    "match-target": Case("match with-interface all-of { 09:*:* }\nallow", HUB, (Target.BLOCK, 1)),
    "device-target": Case("device id 05e3:0610\nallow", HUB, (Target.BLOCK, 1)),
    "match-not-matching": Case("match with-interface 08:*:*\nallow", HUB, (Target.ALLOW, 2)),
    "match-with-a-condition": Case("match if false\nallow", KEYBOARD, (Target.ALLOW, 2)),
}


def decide(case: Case, draws: Callable[[], float] | None = None):
    rules = RuleSet.parse(case.rules + "\n", "x.rules")
    return rules.first_match(case.device, ConditionContext(case.daytime, case.allowed, draws or Draws(case.draw)))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_golden_decision(case):
    verdict = decide(case)
    assert (verdict.decision, verdict.line) == case.expect
    assert verdict.rule == (IMPLICIT if case.expect[1] is None else f"x.rules:{case.expect[1]}")


def test_a_match_rule_says_why_it_blocked():
    verdict = decide(CASES["match-target"])
    assert verdict.reason.startswith('a "match" rule decides nothing; blocked')
    assert decide(CASES["true"]).reason == ""


def test_every_condition_of_a_matching_rule_is_evaluated_and_none_of_one_that_does_not_match():
    draws = Draws(0.9)
    decide(Case("allow if one-of { true random random(0.2) }", COMPOSITE, (Target.ALLOW, 1)), draws)
    assert draws.calls == 2  # no short cut after "true" (RulePrivate::updateConditionsState)
    decide(Case("allow id 1111:2222 if random\nallow if random", COMPOSITE, (Target.BLOCK, None)), draws)
    assert draws.calls == 3  # the first rule's attributes do not apply: its random is not drawn


def test_a_rule_set_without_conditions_needs_no_context_and_one_with_them_says_so():
    plain = RuleSet.parse("allow with-interface one-of { 03:*:* }\nblock\n", "plain.rules")
    assert not plain.conditional and plain.first_match(KEYBOARD).rule == "plain.rules:1"
    conditional = RuleSet.parse("allow id 1111:2222 if true\nallow if random\n", "c.rules")
    assert conditional.conditional
    assert conditional.first_match(ROOT_HUB, ConditionContext(0, (), lambda: 0.1)).rule == "c.rules:2"
    with pytest.raises(ValueError, match=r"c.rules:2: this rule has conditions \(if random\); deciding it needs"):
        conditional.first_match(ROOT_HUB)
    with pytest.raises(ValueError, match=r"c.rules:2: random needs a random source"):
        conditional.first_match(ROOT_HUB, ConditionContext(0))


def test_the_spec_examples_of_conditions_and_labels_parse():
    from test_usbrules_parser import doc_blocks

    blocks = doc_blocks("CONDITIONS", "LABEL")
    assert len(blocks) == 2
    assert [len(parse_rules(b, "sekisho-rules.5")) for b in blocks] == [4, 1]


def test_condition_values_are_checked_when_built():
    assert Condition(ConditionKind.TRUE, True, "x").to_text() == "!true"
    assert Condition(ConditionKind.LOCALTIME, False, "08:00-17:30").end == 17 * HOUR + 30 * 60
    with pytest.raises(ValueError, match="has seconds"):
        Condition(ConditionKind.RULE_APPLIED, False, "00:10:30")
    with pytest.raises(ValueError, match="build it with the parser"):
        Condition(ConditionKind.ALLOWED_MATCHES, False, "id 1050:*")
    assert parse_rule("allow if allowed-matches(id 1050:*)").conditions.values[0].query == parse_rule("allow id 1050:*")


# ----------------------------------------------------------------------------- the controller, under umockdev
RULES = ("allow id 046d:c31c\n"
         "allow with-interface equals { 08:*:* } if allowed-matches(with-interface one-of { 03:*:* })\n"
         "allow id 072f:b100 if !rule-applied\n"
         "block\n")
"""A keyboard; storage only while a keyboard is allowed; a card reader "the first time only",
which in USBGuard 1.1 is every time (rule-applied never holds)."""


@pytest.fixture
def make_rig(testbed):
    from test_usb import Rig  # the controller wired as the daemon wires it (test_usb.py)

    rigs = []

    def make(text: str):
        rig = Rig(testbed, RuleSet.parse(text, "c.rules"))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_the_controller_decides_conditions_with_what_is_allowed_now(make_rig):
    from usbfake import Spec, read

    rig = make_rig(RULES)
    kernel = rig.kernel
    kernel.root_hub()
    rig.start()
    flash = Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C53")
    decided = lambda: (rig.last()["device"]["port"], rig.last()["action"], rig.last()["rule"])  # noqa: E731
    kernel.plug(flash)
    assert decided() == ("1-2", "blocked", "c.rules:4")  # no keyboard allowed yet
    kernel.plug(Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard"))
    assert decided() == ("1-1", "allowed", "c.rules:1")
    second = kernel.plug(Spec("1-4", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C54"))
    assert decided() == ("1-4", "allowed", "c.rules:2") and read(f"{second}/authorized") == "1"
    kernel.unplug("1-1")
    third = kernel.plug(Spec("1-5", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C55"))
    assert decided() == ("1-5", "blocked", "c.rules:4") and read(f"{third}/authorized") == "0"  # keyboard gone
    reader = Spec("1-3", 0x072F, 0xB100, ("0b:00:00",), name="ACR39U ICC Reader")
    for _ in range(2):
        path = kernel.plug(reader)
        assert decided() == ("1-3", "allowed", "c.rules:3") and read(f"{path}/authorized") == "1"
        kernel.unplug("1-3")


def test_at_start_a_device_authorized_in_sysfs_counts_as_allowed_while_it_is_decided(make_rig):
    """USBGuard's device list takes a present device's target from its ``authorized`` file, so
    at start a device that is live (a keyboard the firmware left authorized) is "allowed" while
    its own policy is decided, and one that is not (a disk) is not."""
    from usbfake import Spec, read

    rig = make_rig('allow name "USB Keyboard" if allowed-matches(name "USB Keyboard")\n'
                   'allow name "USB Disk" if allowed-matches(name "USB Disk")\n'
                   "block\n")
    kernel = rig.kernel
    kernel.root_hub()
    keyboard = kernel.plug(Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard"),
                           authorized="1")
    disk = kernel.plug(Spec("1-2", 0x1234, 0x5678, ("03:01:01", "08:06:50"), name="USB Disk"))
    rig.start()
    assert read(f"{keyboard}/authorized") == "1" and read(f"{disk}/authorized") == "0"


def test_a_match_rule_blocks_and_is_never_applied(make_rig):
    from usbfake import Spec

    rig = make_rig("match id 072f:b100 if !rule-applied\nallow\n")
    rig.kernel.root_hub()
    rig.start()
    reader = Spec("1-3", 0x072F, 0xB100, ("0b:00:00",), name="ACR39U ICC Reader")
    rig.kernel.plug(reader)
    event = rig.last()
    assert (event["action"], event["rule"]) == ("blocked", "c.rules:1")
    assert event["reason"].startswith('a "match" rule decides nothing; blocked')
    rig.kernel.unplug("1-3")
    rig.kernel.plug(reader)
    assert (rig.last()["action"], rig.last()["rule"]) == ("blocked", "c.rules:1")  # still not "applied"


# ----------------------------------------------------------------------------- the daemon
def test_the_daemon_decides_conditions_at_start_and_nothing_is_remembered(site, subscribe, testbed, tmp_path):
    """The devices present at start, decided by the running daemon in USBGuard's order: the
    storage device after the keyboard, so allowed; both card readers by a "first time only" rule,
    which in USBGuard 1.1 holds every time. A restart decides them alike: nothing to forget."""
    from conftest import wait_for
    from usbfake import Kernel, Spec, read

    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard"))
    kernel.plug(Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C53"))
    for port in ("1-3", "1-4"):
        kernel.plug(Spec(port, 0x072F, 0xB100, ("0b:00:00",), name="ACR39U ICC Reader"))
    rules = tmp_path / "conditions.rules"
    rules.write_text(RULES)
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{rules}"\n')
    sub = subscribe()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731
    for run in (1, 2):
        site.start()
        wait_for(lambda: len(usb()) >= 4 * run, what=f"the present devices decided (run {run})")
        seen = {e["device"]["port"]: (e["action"], e["rule"].rsplit(":", 1)[1]) for e in usb()[4 * (run - 1):]}
        assert seen == {"1-1": ("allowed", "1"), "1-2": ("allowed", "2"), "1-3": ("allowed", "3"),
                        "1-4": ("allowed", "3")}, f"run {run}"
        assert read(f"{kernel.devices['1-4']}/authorized") == "1"
        site.stop()
