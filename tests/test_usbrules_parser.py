"""The rule parser: the sekisho subset of USBGuard's grammar, exact errors with line and column,
and rules that round-trip through ``to_text``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import REPO
from sekisho.policies.usbrules import (
    Attribute,
    Condition,
    ConditionKind,
    Conditions,
    DeviceId,
    InterfaceType,
    Key,
    Label,
    QueryTarget,
    Rule,
    RuleSyntaxError,
    SetOperator,
    Target,
    parse_rule,
    parse_rules,
)
from sekisho.policies.usbrules.rule import VALUE_TYPE

DATA = REPO / "tests" / "usbrules"


def rule_lines(path: Path) -> list[tuple[int, str]]:
    # read_bytes: read_text would turn the CRLF test line into LF
    lines = path.read_bytes().decode("utf-8").split("\n")
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("number, line", rule_lines(DATA / "rules.good"), ids=lambda x: str(x)[:60])
def test_good_rule_parses_and_round_trips(number, line):
    rule = parse_rule(line, "rules.good", number)
    assert parse_rule(rule.to_text()) == rule
    assert parse_rule(rule.to_text()).to_text() == rule.to_text()


@pytest.mark.parametrize("number, line", rule_lines(DATA / "rules.bad"), ids=lambda x: str(x)[:60])
def test_bad_rule_fails_with_line_and_column(number, line):
    with pytest.raises(RuleSyntaxError) as e:
        parse_rule(line, "rules.bad", number)
    assert (e.value.file, e.value.line) == ("rules.bad", number)
    assert 1 <= e.value.column <= len(line) + 1
    assert str(e.value).startswith(f"rules.bad:{number}:{e.value.column}: ")


def test_a_file_reports_every_broken_line_at_once():
    bad = rule_lines(DATA / "rules.bad")
    with pytest.raises(RuleSyntaxError) as e:
        parse_rules((DATA / "rules.bad").read_bytes().decode(), "rules.bad")
    assert [err.line for err in e.value.errors] == [n for n, _ in bad]


def test_error_format_is_file_line_column_message_line_caret():
    with pytest.raises(RuleSyntaxError) as e:
        parse_rules("allow\n\nallow with-interface one-of { 08:*:* 03:01:01\n", "usb.rules")
    assert str(e.value) == ('usb.rules:3:46: expected "}" to close one-of set (opened at column 29)\n'
                            'allow with-interface one-of { 08:*:* 03:01:01\n'
                            '                                             ^')


def test_parse_rules_keeps_lines_and_source_and_skips_comments():
    parsed = parse_rules("# policy\n\n  allow id 1050:*  # yubikeys\nblock\n")
    assert [(p.line, p.source) for p in parsed] == [(3, "allow id 1050:*  # yubikeys"), (4, "block")]
    assert parsed[0].rule == Rule(Target.ALLOW, (Attribute(Key.ID, (DeviceId("1050", "*"),)),))


@pytest.mark.parametrize("text, expected", [
    ("allow", "allow"),
    ("allow 1050:0407", "allow id 1050:0407"),
    ("allow id { 1050:0407 }", "allow id 1050:0407"),
    ("allow id equals { 1050:0407 }", "allow id 1050:0407"),
    ("allow id equals { 1050:0407 1050:0402 }", "allow id { 1050:0407 1050:0402 }"),
    ("allow id one-of { 1050:0407 }", "allow id one-of { 1050:0407 }"),
    ("allow with-interface equals { 08:*:* }", "allow with-interface 08:*:*"),
    ("allow with-interface one-of { 0A:*:* EF:04:01 }", "allow with-interface one-of { 0a:*:* ef:04:01 }"),
    ("allow name {\"a\"\t\"b\"}", 'allow name { "a" "b" }'),
    ("allow name \"カード\"", 'allow name "\\xe3\\x82\\xab\\xe3\\x83\\xbc\\xe3\\x83\\x89"'),
    ("allow block-interface {08:*:*} id 0b0e:*", "allow id 0b0e:* block-interface 08:*:*"),
    ("allow id 0b0e:* block-interface { 08:*:* ff:*:* }  # c", "allow id 0b0e:* block-interface { 08:*:* ff:*:* }"),
])
def test_to_text_is_usbguards_canonical_form(text, expected):
    assert parse_rule(text).to_text() == expected


def test_a_single_value_and_a_set_without_operator_are_both_equals():
    single, bare_set, explicit = (parse_rule(t) for t in (
        "allow with-interface 08:*:*", "allow with-interface { 08:*:* }", "allow with-interface equals { 08:*:* }"))
    assert single == bare_set == explicit
    assert single.attribute(Key.WITH_INTERFACE).operator is SetOperator.EQUALS


def test_a_device_id_after_the_target_is_the_id_attribute():
    assert parse_rule("allow 1050:0407") == parse_rule("allow id 1050:0407")
    with pytest.raises(RuleSyntaxError, match="id attribute already defined"):
        parse_rule("allow 1050:0407 id 1050:0407")


# USBGuard's own unit tests (src/Tests/Unit/test_RuleParser.cpp), ported: non-printable bytes and
# quotes and backslashes are written back exactly as USBGuard's Rule::toString writes them.
def test_non_printable_bytes_print_as_usbguard_prints_them():
    value = bytes([1, 2, 3, 4, 5, 6, 7, 0xAA, 0xBB, 0xFF]).decode("utf-8", "surrogateescape")
    for key in (Key.SERIAL, Key.NAME, Key.HASH, Key.VIA_PORT, Key.WITH_CONNECT_TYPE):
        rule = Rule(Target.ALLOW, (Attribute(key, (value,)),))
        assert rule.to_text() == f'allow {key} "\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\xaa\\xbb\\xff"'
        assert parse_rule(rule.to_text()) == rule
    two = Rule(Target.ALLOW, (Attribute(Key.VIA_PORT, (value, value), SetOperator.ONE_OF),))
    assert two.to_text() == ('allow via-port one-of { "\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\xaa\\xbb\\xff" '
                             '"\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\xaa\\xbb\\xff" }')


def test_double_quotes_and_backslashes_print_as_usbguard_prints_them():
    raw = '" \\ "" \\\\ \\" "\\'
    escaped = '\\" \\\\ \\"\\" \\\\\\\\ \\\\\\" \\"\\\\'
    rule = Rule(Target.ALLOW, (Attribute(Key.SERIAL, (raw,)),))
    assert rule.to_text() == f'allow serial "{escaped}"'
    assert parse_rule(rule.to_text()) == rule


def test_usbguard_regression_37_interface_in_quotes_is_refused():
    parse_rule('allow 17ef:6016 name "ThinkPad USB Laser Mouse" with-interface 03:01:02 hash "b2b49929"')
    with pytest.raises(RuleSyntaxError, match="with-interface takes an interface type"):
        parse_rule('allow 17ef:6016 name "ThinkPad USB Laser Mouse" with-interface "03:01:02" hash "b2b49929"')


def doc_blocks(*sections: str) -> list[str]:
    """The fenced blocks of the named sections of docs/sekisho-rules.5.md."""
    text = (REPO / "docs" / "sekisho-rules.5.md").read_text()
    blocks = []
    for part in text.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        if title.strip() in sections:
            blocks += body.split("```")[1::2]
    return blocks


def test_the_specs_examples_parse():
    blocks = doc_blocks("EXAMPLES", "PER-INTERFACE BLOCKING")
    assert len(blocks) == 4
    for block in blocks:
        assert parse_rules(block, "sekisho-rules.5")


def test_usbguards_manual_examples_parse():
    # The examples of usbguard-rules.conf(5) without conditions (test_usbrules_conditions has those).
    parse_rules("allow with-interface equals { 08:*:* }\n"
                'allow 1050:0011 name "Yubico Yubikey II" serial "0001234567" via-port "1-2" '
                'hash "044b5e168d40ee0245478416caf3d998"\n'
                'reject via-port "1-2"\n'
                "reject with-interface all-of { 08:*:* 03:00:* }\n"
                "reject with-interface all-of { 08:*:* e0:*:* }\n")


@pytest.mark.parametrize("line, column, message", [
    ("allow if randomM", 10, 'unknown condition "randomM" (known: allowed-matches, localtime, rule-applied, '
                             'rule-evaluated, random, true, false)'),
    ("allow id 1050:* if !rule-applied if true", 34, "conditions already defined (at column 17)"),
    ("allow if", 9, "expected a value after if: a condition (allowed-matches, localtime,"),
    ("allow if !!true", 10, "expected a condition (allowed-matches,"),
    ("allow if true()", 10, "empty parentheses after true"),
    ("allow if one-of { true random(2) }", 24, 'random: "2" is not a probability'),
    ("allow if localtime(17:00-08:00)", 10, "localtime(17:00-08:00): the range begins after it ends"),
    ("allow if localtime(24:00)", 10, 'localtime: "24:00" is not a time of day'),
    ("allow if localtime(08:00:30)", 10, 'localtime: "08:00:30" has seconds, which USBGuard 1.1 misreads'),
    ("allow if localtime", 10, "localtime needs a time or a range"),
    ("allow if rule-applied(1:00:30)", 10, 'rule-applied: "1:00:30" has seconds'),
    ("allow if allowed-matches", 10, "allowed-matches needs a device query"),
    ("allow if allowed-matches(id 1050:0407 bogus)", 39, 'in the allowed-matches query: unknown attribute "bogus"'),
    ('allow if allowed-matches(name "a\\"b")', 33, 'unknown escape "\\"" in a condition\'s argument'),
    ("allow if random(0.5", 16, "this condition's argument is not closed"),
    ('allow label', 12, "expected a value after label"),
    ("match block-interface 08:*:*", 7, "block-interface only goes with allow"),
    ("id 1050:0407", 1, "expected a target (allow, block, reject, match or device) to start the rule, not id"),
    ('allow name "a" name "b"', 16, "name attribute already defined (at column 7)"),
    ("allow with-interface 03:01:01 with-interface 03:01:02", 31, "with-interface attribute already defined"),
    ("allow id some-of { 1050:* }", 10, 'unknown set operator "some-of" (expected all-of, one-of, none-of, equals, '
                                        'equals-ordered, match-all)'),
    ("allow id 04E8:*", 10, 'device id "04E8:*" has upper-case hex digits; write "04e8:*"'),
    ("allow with-interface 08:*:50", 22, '"08:*:50" matches a protocol of any subclass'),
    ("allow id{ 1050:* }", 9, "expected a blank after id"),
    ("allow id one-of{ 1050:* }", 16, 'expected a blank between one-of and "{"'),
    ('allow name "a""b"', 15, "expected an attribute"),
    ('allow name {"a""b"}', 16, "expected a blank between two values"),
    ('allow name "a"name "b"', 15, "expected a blank before name"),
    ("allow id one-of { 1050:*", 25, 'expected "}" to close one-of set (opened at column 17)'),
    ("allow id { }", 12, "empty set: id needs at least one value"),
    ("block block-interface 08:*:*", 7, "block-interface only goes with allow"),
    ("allow block-interface one-of { 08:*:* }", 23, "block-interface takes one interface type or a plain set"),
    ("allow block-interface 08:*:* block-interface ff:*:*", 30, "block-interface already given at column 7"),
])
def test_errors_say_what_and_where(line, column, message):
    with pytest.raises(RuleSyntaxError) as e:
        parse_rule(line, "usb.rules", 12)
    assert (e.value.line, e.value.column) == (12, column)
    assert e.value.message.startswith(message), e.value.message


def test_parse_rule_wants_exactly_one_rule():
    with pytest.raises(RuleSyntaxError, match="expected a rule"):
        parse_rule("# just a comment")
    with pytest.raises(RuleSyntaxError, match="one rule is one line"):
        parse_rule("allow\nblock")


def test_rule_values_are_checked_when_built():
    with pytest.raises(ValueError, match="id attribute already defined"):
        Rule(Target.ALLOW, (Attribute(Key.ID, (DeviceId("1050", "*"),)),) * 2)
    with pytest.raises(ValueError, match="block-interface only goes with allow"):
        Rule(Target.BLOCK, (), (InterfaceType(8),))
    with pytest.raises(ValueError, match="at least one value"):
        Attribute(Key.NAME, ())
    with pytest.raises(TypeError):
        Attribute(Key.NAME, (DeviceId("1050", "*"),))
    with pytest.raises(ValueError, match="any subclass"):
        InterfaceType(8, None, 0x50)
    with pytest.raises(ValueError, match="names a product of any vendor"):
        DeviceId("*", "0407")


# --- generated rules round-trip -------------------------------------------------------------

HEX4 = st.text("0123456789abcdef", min_size=4, max_size=4)
BYTE = st.integers(0, 255)
VALUES = {
    DeviceId: st.one_of(st.just(DeviceId("*", "*")), HEX4.map(lambda v: DeviceId(v, "*")),
                        st.builds(DeviceId, HEX4, HEX4)),
    InterfaceType: st.one_of(st.builds(InterfaceType, BYTE), st.builds(InterfaceType, BYTE, BYTE),
                             st.builds(InterfaceType, BYTE, BYTE, BYTE)),
    str: st.one_of(st.text(max_size=12), st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape"))),
}


def attributes(key: Key) -> st.SearchStrategy[Attribute]:
    return st.builds(Attribute, st.just(key), st.lists(VALUES[VALUE_TYPE[key]], min_size=1, max_size=4).map(tuple),
                     st.sampled_from(SetOperator))


CLOCK = st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59))
PARAMETERS = {
    ConditionKind.TRUE: st.just(""),
    ConditionKind.FALSE: st.just(""),
    ConditionKind.LOCALTIME: st.one_of(CLOCK, st.tuples(CLOCK, CLOCK).map(sorted).map("-".join)),
    ConditionKind.RULE_APPLIED: st.one_of(st.just(""), CLOCK, st.integers(0, 10 ** 6).map(str)),
    ConditionKind.RULE_EVALUATED: st.one_of(st.just(""), CLOCK, st.integers(0, 10 ** 6).map(str)),
    ConditionKind.RANDOM: st.one_of(st.just(""), st.floats(0, 1, allow_subnormal=False).map(repr), st.sampled_from(["0", "1", ".5", "1e-1"])),
}
"""Each condition's parameter as a rule would write it; allowed-matches takes a rule of its own."""


@st.composite
def conditions(draw) -> Condition:
    kind = draw(st.sampled_from(ConditionKind))
    negated = draw(st.booleans())
    if kind is ConditionKind.ALLOWED_MATCHES:
        query = draw(rules(targets=(Target.ALLOW,), nested=False, extension=False))
        text = query.to_text().removeprefix("allow").strip()
        # An allowed-matches argument ends at the first ")" and takes no \" escape (Grammar.hpp).
        assume(text and ")" not in text and '\\"' not in text)
        return parse_rule(f"allow if {'!' if negated else ''}allowed-matches({text})").conditions.values[0]
    return Condition(kind, negated, draw(PARAMETERS[kind]))


@st.composite
def rules(draw, targets: tuple = (*Target, *QueryTarget), nested=True, extension=True) -> Rule:
    """Any rule; ``nested``: with conditions; ``extension``: with sekisho's block-interface."""
    target = draw(st.sampled_from(targets))
    keys = draw(st.lists(st.sampled_from(Key), unique=True, max_size=len(Key)))
    attrs = tuple(draw(attributes(k)) for k in keys)
    blocked = ()
    if target is Target.ALLOW and extension:
        blocked = tuple(draw(st.lists(VALUES[InterfaceType], max_size=3)))
    label = draw(st.none() | st.builds(Label, st.lists(VALUES[str], min_size=1, max_size=3).map(tuple),
                                       st.sampled_from(SetOperator)))
    when = None
    if nested:
        when = draw(st.none() | st.builds(Conditions, st.lists(conditions(), min_size=1, max_size=4).map(tuple),
                                          st.sampled_from(SetOperator)))
    return Rule(target, attrs, blocked, when, label)


@given(rules())
def test_generated_rules_round_trip(rule):
    text = rule.to_text()
    assert parse_rule(text) == rule
    assert parse_rule(text + "  # a comment") == rule
    assert parse_rule(text).to_text() == text


@given(st.lists(rules(), max_size=6))
def test_generated_files_keep_order_and_lines(generated):
    text = "\n".join(f"# rule {i}\n{r.to_text()}" for i, r in enumerate(generated))
    parsed = parse_rules(text)
    assert [p.rule for p in parsed] == generated
    assert [p.line for p in parsed] == [2 * i + 2 for i in range(len(generated))]


@given(st.text(alphabet=st.sampled_from(list('allowblockreject idnamewth-erfacs{}"\\#:*0123456789abcdef\t '))))
def test_any_line_parses_or_fails_with_a_position(line):
    try:
        rule = parse_rule(line)
    except RuleSyntaxError as e:
        assert 1 <= e.column <= len(line) + 1
    else:
        assert parse_rule(rule.to_text()) == rule
