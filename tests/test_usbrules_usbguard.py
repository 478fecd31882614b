"""USBGuard's own rule test lists (src/Tests/Rules, copied into tests/usbrules/usbguard with a
README naming the commit): sekisho's parser reads them as USBGuard's ``test-rules.sh`` requires.

Each line is read as that script reads it (``read -r`` trims the blanks around it). Every good
line parses and round-trips through ``to_text``, except the lines with an upper-case hex digit in
an ``id``: sekisho refuses those on purpose (an upper-case id never matches in USBGuard, which
compares ids as text while the kernel reports lower case), with the message that says so, and
each parses once its ids are lower-cased. Every bad line is refused. The rules file gives the
rules it holds, on their lines."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from sekisho.policies.usbrules import (
    Attribute,
    Key,
    RuleSyntaxError,
    SetOperator,
    Target,
    parse_rule,
    parse_rules,
)

LISTS = REPO / "tests" / "usbrules" / "usbguard"
ID = re.compile(r"(?:^(?:allow|block|reject|match|device)|[ \t]id(?:[ \t]+(?:all-of|one-of|none-of|equals-ordered|"
                r"equals|match-all))?)[ \t]+(\{[^}\"]*\}|[0-9a-fA-F*]{1,4}:[0-9a-fA-F*]{1,4})")
"""An id value: after ``id`` (and its operator, if any), or bare after the target."""


def lines(name: str) -> list[tuple[int, str]]:
    text = (LISTS / name).read_text(encoding="utf-8")
    return [(n, line.strip(" \t")) for n, line in enumerate(text.split("\n"), start=1) if line.strip(" \t")]


def has_upper_case_id(line: str) -> bool:
    return any(re.search(r"[A-F]", m[1]) for m in ID.finditer(line))


def lower_ids(line: str) -> str:
    return ID.sub(lambda m: m[0][:m.start(1) - m.start(0)] + m[1].lower(), line)


GOOD = lines("test-rules.good")
UPPER = [(n, line) for n, line in GOOD if has_upper_case_id(line)]
LOWER = [(n, line) for n, line in GOOD if not has_upper_case_id(line)]


def test_the_lists_are_usbguards_and_both_kinds_of_good_line_are_there():
    assert len(GOOD) == 770 and len(lines("test-rules.bad")) == 75
    assert 300 < len(UPPER) < 450 and len(LOWER) > 300
    assert lower_ids("allow 7Dbb:* id none-of { F53A:* 3F4E:64Cc } name \"id { AB:CD }\"") == \
        'allow 7dbb:* id none-of { f53a:* 3f4e:64cc } name "id { AB:CD }"'


@pytest.mark.parametrize("number, line", LOWER, ids=lambda x: str(x)[:50])
def test_a_good_line_parses_and_round_trips(number, line):
    parsed = parse_rules(line, "test-rules.good")
    if line.startswith("#"):
        assert parsed == ()
        return
    (one,) = parsed
    assert parse_rule(one.rule.to_text()) == one.rule
    assert parse_rule(one.rule.to_text()).to_text() == one.rule.to_text()


@pytest.mark.parametrize("number, line", UPPER, ids=lambda x: str(x)[:50])
def test_a_good_line_with_an_upper_case_id_is_refused_and_parses_lower_cased(number, line):
    with pytest.raises(RuleSyntaxError) as e:
        parse_rule(line, "test-rules.good", number)
    assert "has upper-case hex digits; write" in e.value.message
    at = re.match(r"[0-9a-fA-F*]{4}:[0-9a-fA-F*]{1,4}", line[e.value.column - 1:])
    assert at and re.search("[A-F]", at[0]), "the caret is under the upper-case id"
    rule = parse_rule(lower_ids(line))
    assert parse_rule(rule.to_text()) == rule


@pytest.mark.parametrize("number, line", lines("test-rules.bad"), ids=lambda x: str(x)[:50])
def test_a_bad_line_is_refused_with_its_place(number, line):
    with pytest.raises(RuleSyntaxError) as e:
        parse_rule(line, "test-rules.bad", number)
    assert (e.value.file, e.value.line) == ("test-rules.bad", number)
    assert 1 <= e.value.column <= len(line) + 1


def test_the_rules_file_gives_its_three_rules_on_their_lines():
    parsed = parse_rules((LISTS / "test-rules.file").read_text(encoding="utf-8"), "test-rules.file")
    assert [p.line for p in parsed] == [6, 10, 14]
    assert [p.rule.to_text() for p in parsed] == [
        "reject with-interface one-of { e5:*:* 2a:*:* ac:c7:* 4b:*:* f2:*:* } if equals-ordered { true false !true false }",
        "reject with-interface one-of { e6:*:* }",
        "reject with-interface one-of { e6:*:* }",
    ]
    assert parsed[1].source == "reject with-interface one-of { e6:*:* } # comment about this rule"
    assert parsed[0].rule.attributes == (Attribute(Key.WITH_INTERFACE, parsed[0].rule.attributes[0].values,
                                                   SetOperator.ONE_OF),)
    assert parsed[0].rule.target is Target.REJECT
