"""Deciding a device: USBGuard's attribute semantics, first match, the implicit target, and the
interfaces an allow rule leaves blocked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekisho.policies.usbrules import (
    IMPLICIT,
    Attribute,
    Device,
    DeviceId,
    InterfaceType,
    Key,
    ParsedRule,
    Rule,
    RuleSet,
    SetOperator,
    Target,
    UsbVerdict,
    applies,
    device_hash,
    interface_types,
    parse_rule,
)
from sekisho.policies.usbrules.matcher import attribute_applies, attribute_applies_as_usbguard

KEYBOARD = Device(id="046d:c31c", name="USB Keyboard", serial="", via_port="1-2", with_connect_type="hotplug",
                  interfaces=("03:01:01", "03:00:00"))
STICK = Device(id="0781:5567", name="Cruzer Blade", serial="4C5300", via_port="1-3", interfaces=("08:06:50",))


def matches(rule: str, device: Device) -> bool:
    return applies(parse_rule(rule), device)


# USBGuard's own unit test "Match id attribute" (src/Tests/Unit/test_RuleAttribute_id.cpp), ported.
ROOT_HUB = Device(id="1d6b:0002", serial="dummy_hcd.0", name="Dummy host controller",
                  hash="FSgk48/lKiTJWdqOqkHLuMQr155m+ux+ozIb17HHcKs=",
                  parent_hash="zUhq0ExS41FTVEO5sce8eOOyMrPsfwQEeVz0kH6IAhc=", via_port="usb1", interfaces=("09:00:00",))


@pytest.mark.parametrize("rule, expected", [
    ("allow id 1d6b:0002", True), ("allow id 1d6b:0003", False), ("allow id 1d6a:0002", False),
    ("allow id 1d6b:*", True), ("allow id 1d6a:*", False), ("allow id *:*", True),
])
def test_usbguard_match_id_attribute(rule, expected):
    assert matches(rule, ROOT_HUB) is expected


def test_usbguard_regression_113_equals_with_a_wildcard():
    assert matches("allow with-interface equals { 08:*:* }", STICK)


def test_usbguard_regression_247_equals_ordered():
    device = Device(id="1234:5678", interfaces=("03:00:00", "03:01:01"))
    assert matches("allow with-interface equals-ordered { 03:00:00 03:01:01 }", device)
    assert not matches("allow with-interface equals-ordered { 03:01:01 03:00:00 }", device)


@pytest.mark.parametrize("rule, expected", [
    ("allow with-interface 03:01:01", False),                        # equals: one interface only
    ("allow with-interface { 03:01:01 03:00:00 }", True),
    ("allow with-interface { 03:00:00 03:01:01 }", True),            # equals ignores order
    ("allow with-interface equals-ordered { 03:00:00 03:01:01 }", False),
    ("allow with-interface all-of { 03:01:01 }", True),
    ("allow with-interface all-of { 03:01:01 08:*:* }", False),
    ("allow with-interface one-of { 08:*:* 03:01:* }", True),
    ("allow with-interface one-of { 08:*:* 0b:*:* }", False),
    ("allow with-interface none-of { 08:*:* 0b:*:* }", True),
    ("allow with-interface none-of { 08:*:* 03:00:00 }", False),
    ("allow with-interface { 03:*:* 03:*:* }", True),
])
def test_set_operators_on_interfaces(rule, expected):
    assert matches(rule, KEYBOARD) is expected


@pytest.mark.parametrize("rule, device, expected", [
    # ComplianceAsCode's "allow hubs": every interface of the device is a hub's.
    ("allow with-interface match-all { 09:00:* }", ROOT_HUB, True),
    ("allow with-interface match-all { 09:00:* }", Device(id="1234:5678", interfaces=("09:00:00", "08:06:50")), False),
    ("allow with-interface match-all { 03:*:* }", KEYBOARD, True),
    ("allow with-interface match-all { 03:01:01 }", KEYBOARD, False),  # 03:00:00 is covered by none
    ("allow with-interface match-all { 08:*:* }", Device(id="1234:5678"), True),  # no interface: vacuously
    # USBDeviceID's isSupersetOf is the device's id covering the rule's: an id pattern never matches.
    ("allow id match-all { 1d6b:0002 }", ROOT_HUB, True),
    ("allow id match-all { 1d6b:* }", ROOT_HUB, False),
    ("allow id match-all { *:* }", ROOT_HUB, False),
    # Strings have only USBGuard's unimplemented generic isSupersetOf, which answers yes.
    ('allow name match-all { "not its name" }', ROOT_HUB, True),
    ('allow serial match-all { "x" "y" }', STICK, True),
])
def test_match_all_is_usbguards_quirks_and_all(rule, device, expected):
    """USBGuard 1.1's setSolveMatchAll: every device value needs a rule value that isSupersetOf it."""
    assert matches(rule, device) is expected


def test_equals_with_patterns_counts_and_looks_one_way_as_in_usbguard():
    # Documented in sekisho-rules(5): both patterns cover 03:01:01; the ff interface is never looked at.
    sneaky = Device(id="1234:5678", interfaces=("03:01:01", "ff:00:00"))
    assert matches("allow with-interface equals { 03:*:* 03:*:* }", sneaky)
    assert not matches("allow with-interface equals { 03:01:01 03:00:00 }", sneaky)


def test_interfaces_include_duplicates_so_equals_counts_them():
    headset = Device(id="0d8c:0014", interfaces=("01:01:00", "01:02:00", "01:02:00", "03:00:00"))
    assert not matches("allow with-interface equals { 01:01:00 01:02:00 03:00:00 }", headset)
    assert matches("allow with-interface equals { 01:01:00 01:02:00 01:02:00 03:00:00 }", headset)


@pytest.mark.parametrize("rule, expected", [
    ('allow name "USB Keyboard"', True), ('allow name "usb keyboard"', False),
    ('allow name one-of { "Mouse" "USB Keyboard" }', True), ('allow name none-of { "Mouse" "USB Keyboard" }', False),
    ('allow name all-of { "USB Keyboard" "Mouse" }', False), ('allow name equals { "USB Keyboard" "Mouse" }', False),
    ('allow serial ""', True), ('allow serial "x"', False),
    ('allow via-port "1-2"', True), ('allow via-port one-of { "1-3" "1-4" }', False),
    ('allow with-connect-type "hotplug"', True), ('allow with-connect-type "hardwired"', False),
    ("allow id one-of { 1050:* 046d:* }", True), ("allow id none-of { 046d:* }", False),
    ("allow 046d:c31c", True), ('allow id 046d:c31c name "USB Keyboard" with-interface all-of { 03:01:01 }', True),
    ('allow id 046d:c31c name "Other"', False), ("allow", True),
])
def test_single_valued_attributes(rule, expected):
    assert matches(rule, KEYBOARD) is expected


def test_strings_compare_as_bytes():
    device = Device(id="1234:5678", name="カードリーダー")
    assert matches('allow name "\\xe3\\x82\\xab\\xe3\\x83\\xbc\\xe3\\x83\\x89\\xe3\\x83\\xaa\\xe3\\x83\\xbc'
                   '\\xe3\\x83\\x80\\xe3\\x83\\xbc"', device)
    odd = Device(id="1234:5678", serial=b"\xff\x01".decode("utf-8", "surrogateescape"))
    assert matches('allow serial "\\xff\\x01"', odd)


def test_a_device_without_interfaces():
    bare = Device(id="1234:5678")
    assert matches("allow with-interface none-of { 08:*:* }", bare)
    assert not matches("allow with-interface one-of { 08:*:* }", bare)
    assert not matches("allow with-interface all-of { 08:*:* }", bare)


def test_hash_and_parent_hash_match_usbguards_values():
    # The trackball behind the dock in USBGuard's umockdev recording (see test_usbrules_hashing.py).
    descriptors = bytes.fromhex("12010002000000087D04482000060102000109022200010100A0320904000001030102000921110100"
                                "012252000705810308000A")
    trackball = Device(id="047d:2048", name="Kensington Eagle Trackball", via_port="1-4.2",
                       interfaces=interface_types(descriptors),
                       hash=device_hash(name="Kensington Eagle Trackball", vendor_id="047d", product_id="2048",
                                        serial="", descriptors=descriptors),
                       parent_hash="2y2qS3rcuMr1Ye5knWsbD8CGzPtrs+eiRR/haro7+Ng=")
    rules = RuleSet.parse('allow hash "D3deklX12Ir3kJPfUZ5AQNwHeZn1bwtPkQkw6e+8B38=" '
                          'parent-hash "2y2qS3rcuMr1Ye5knWsbD8CGzPtrs+eiRR/haro7+Ng="\n', "t.rules")
    assert rules.first_match(trackball).rule == "t.rules:1"


def test_first_match_wins_and_names_the_line_and_text():
    rules = RuleSet.parse("# header\nblock with-interface one-of { 08:*:* }  # storage\n"
                          "allow with-interface one-of { 03:01:01 }\nreject\n", "usb.rules")
    assert rules.first_match(STICK) == UsbVerdict(Target.BLOCK, "usb.rules:2", 2,
                                                  "block with-interface one-of { 08:*:* }  # storage")
    assert rules.first_match(KEYBOARD) == UsbVerdict(Target.ALLOW, "usb.rules:3", 3,
                                                     "allow with-interface one-of { 03:01:01 }")
    other = Device(id="1234:5678", interfaces=("0e:01:00",))
    assert rules.first_match(other).decision is Target.REJECT


@pytest.mark.parametrize("implicit", list(Target))
def test_no_match_gives_the_implicit_target(implicit):
    verdict = RuleSet.parse('allow name "nothing like it"\n', "usb.rules", implicit).first_match(STICK)
    assert verdict == UsbVerdict(implicit, IMPLICIT, None, "")
    assert verdict.implicit


def test_the_default_implicit_target_is_block():
    assert RuleSet.parse("").first_match(STICK).decision is Target.BLOCK


def test_block_interface_lists_the_device_interfaces_to_leave_off():
    headset = Device(id="0b0e:24c8", interfaces=("01:01:00", "01:02:00", "01:02:00", "03:00:00", "08:06:50",
                                                 "ff:00:00", "ff:01:00"))
    rules = RuleSet.parse("allow id 0b0e:* block-interface { 08:*:* ff:*:* }\n", "usb.rules")
    verdict = rules.first_match(headset)
    assert (verdict.decision, verdict.line) == (Target.ALLOW, 1)
    assert verdict.blocked_interfaces == ("08:06:50", "ff:00:00", "ff:01:00")


def test_block_interface_does_not_take_part_in_matching():
    rules = RuleSet.parse("allow id 0b0e:* block-interface 08:*:*\n")
    verdict = rules.first_match(Device(id="0b0e:0001", interfaces=("01:01:00",)))
    assert (verdict.decision, verdict.blocked_interfaces) == (Target.ALLOW, ())


def test_device_values_are_checked_and_normalised():
    assert Device(id="046D:C31C", interfaces=("03:01:01", "0A:00:00")).id == "046d:c31c"
    assert Device(id="1234:5678", interfaces=("0A:00:00",)).interfaces == ("0a:00:00",)
    with pytest.raises(ValueError, match="one id, not a pattern"):
        Device(id="1234:*")
    with pytest.raises(ValueError, match="exact types"):
        Device(id="1234:5678", interfaces=("08:*:*",))
    with pytest.raises(ValueError):
        Device(id="12345678")


def test_a_device_printed_as_a_rule_is_the_rule_usbguard_prints():
    rule = ROOT_HUB.as_rule()
    assert rule.to_text() == ('allow id 1d6b:0002 serial "dummy_hcd.0" name "Dummy host controller" '
                              'hash "FSgk48/lKiTJWdqOqkHLuMQr155m+ux+ozIb17HHcKs=" '
                              'parent-hash "zUhq0ExS41FTVEO5sce8eOOyMrPsfwQEeVz0kH6IAhc=" via-port "usb1" '
                              'with-interface 09:00:00 with-connect-type ""')
    assert parse_rule(rule.to_text()) == rule


HEX4 = st.text("0123456789abcdef", min_size=4, max_size=4)
IFACE = st.tuples(*[st.integers(0, 255)] * 3).map(lambda t: "{:02x}:{:02x}:{:02x}".format(*t))
devices = st.builds(Device, id=st.builds(lambda v, p: f"{v}:{p}", HEX4, HEX4), serial=st.text(max_size=8),
                    name=st.text(max_size=8), hash=st.text(max_size=8), parent_hash=st.text(max_size=8),
                    via_port=st.text(max_size=8), with_connect_type=st.sampled_from(["", "hotplug", "hardwired"]),
                    interfaces=st.lists(IFACE, max_size=5).map(tuple))


@given(devices)
def test_every_device_matches_its_own_rule(device):
    rule = device.as_rule(Target.BLOCK)
    assert applies(rule, device)
    assert applies(parse_rule(rule.to_text()), device)


# A small world, so that generated rules and devices often cover each other.
SMALL_IFACE = st.builds(lambda c, s, p: f"{c:02x}:{s:02x}:{p:02x}", st.sampled_from([1, 3, 8]), st.integers(0, 1),
                        st.integers(0, 1))
SMALL_PATTERN = st.one_of(st.builds(InterfaceType, st.sampled_from([1, 3, 8])),
                          st.builds(InterfaceType, st.sampled_from([1, 3, 8]), st.integers(0, 1)),
                          st.builds(InterfaceType, st.sampled_from([1, 3, 8]), st.integers(0, 1), st.integers(0, 1)))
SMALL_ID = st.sampled_from(["1050", "046d"])
SMALL_TEXT = st.sampled_from(["", "a", "b"])
SMALL_VALUES = {
    Key.ID: st.one_of(st.just(DeviceId("*", "*")), SMALL_ID.map(lambda v: DeviceId(v, "*")),
                      st.builds(DeviceId, SMALL_ID, st.sampled_from(["0001", "0002"]))),
    Key.WITH_INTERFACE: SMALL_PATTERN,
}
small_devices = st.builds(Device, id=st.builds(lambda v, p: f"{v}:{p}", SMALL_ID, st.sampled_from(["0001", "0002"])),
                          serial=SMALL_TEXT, name=SMALL_TEXT, hash=SMALL_TEXT, parent_hash=SMALL_TEXT,
                          via_port=SMALL_TEXT, with_connect_type=SMALL_TEXT,
                          interfaces=st.lists(SMALL_IFACE, max_size=4).map(tuple))
small_attributes = st.sampled_from(list(Key)).flatmap(lambda k: st.builds(
    Attribute, st.just(k), st.lists(SMALL_VALUES.get(k, SMALL_TEXT), min_size=1, max_size=4).map(tuple),
    st.sampled_from(SetOperator)))


@given(small_attributes, small_devices)
def test_fast_matching_answers_as_usbguards_algorithm(attribute, device):
    assert attribute_applies(attribute, device) is attribute_applies_as_usbguard(attribute, device)


ID_VALUES = [DeviceId.parse(i) for i in ("1050:0001", "1050:0002", "046d:0001", "046d:0002", "1050:*", "*:*")]
small_ids = st.builds(Attribute, st.just(Key.ID), st.lists(st.sampled_from(ID_VALUES), min_size=1, max_size=2).map(tuple),
                      st.sampled_from(SetOperator))
small_rules = st.tuples(small_ids, st.lists(small_attributes, max_size=1)).map(
    lambda parts: Rule(Target.ALLOW, tuple({a.key: a for a in [*parts[1], *filter(None, [parts[0]])]}.values())))
"""Rules that mostly name ids, with every operator: what ``RuleSet`` files them under."""


@given(st.lists(small_rules, max_size=8), st.lists(small_devices, min_size=1, max_size=4))
def test_the_rules_tried_by_id_decide_as_trying_every_rule_in_order(rules, devices):
    """``RuleSet`` tries a device only against the rules that can match its id (those naming
    other ids exactly are skipped): the first match is the one trying every rule finds."""
    rule_set = RuleSet(tuple(ParsedRule(line, rule, rule.to_text(), "r") for line, rule in enumerate(rules, 1)))
    for device in devices:
        first = next((line for line, rule in enumerate(rules, 1) if applies(rule, device)), None)
        assert rule_set.first_match(device).line == first
