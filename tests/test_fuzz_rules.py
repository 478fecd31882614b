"""Hostile rules files (policies/usbrules lexer and parser): any text gives either rules or a
``RuleSyntaxError`` that names the file, a line of it and a column on that line, never another
exception; and every rule read prints (``to_text``) as text that reads back as the same rule.

Pure text is mostly refused at its first word, so most examples are built from the language's
own words, values and punctuation, which reaches the parser's deeper paths. The budget is the
hypothesis profile's (conftest.py)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.policies.usbrules import RuleSyntaxError, parse_rule, parse_rules
from sekisho.policies.usbrules.lexer import split_lines

WORDS = ["allow", "block", "reject", "match", "device", "id", "serial", "name", "hash", "parent-hash", "via-port",
         "with-interface", "with-connect-type", "block-interface", "if", "label", "all-of", "one-of", "none-of",
         "equals", "equals-ordered", "match-all", "1050:0407", "1050:*", "*:*", "*:0407", "1050:04O7", "ABCD:0001",
         "08:06:50", "08:*:*", "08:*:50", "ff:00", "0x08:06:50", "{", "}", "#", "# a comment", "true", "1-2", ":",
         '"USB Keyboard"', '""', '"\\x41\\xff"', '"\\"q\\\\"', '"\\n"', '"\\x4"', '"open', '"\\', '"\udcff"',
         '"\ud800"', "\r", "\ufeff", "\x00", "\t", "é", "!", "false", "random", "random(0.4)", "random(2)", "(",
         ")", "rule-applied", "rule-evaluated(00:10)", "localtime(08:00-17:00)", "localtime(17:00-08:00)",
         "localtime(1:00:30)", "allowed-matches(", "allowed-matches(name ", "allowed-matches(with-interface 03:*:*)",
         "\\)", "\\x4", "true()", "!!", '"desk 12"']
BLANK = st.sampled_from(["", " ", "  ", "\t"])
LINE = st.lists(st.tuples(BLANK, st.sampled_from(WORDS)), max_size=10).map(lambda parts: "".join(b + w for b, w in parts))
TEXT = st.one_of(st.text(max_size=200), st.lists(LINE, max_size=6).map("\n".join))


def check_error(e: RuleSyntaxError, text: str, file: str) -> None:
    lines = split_lines(text)
    for one in e.errors:
        assert one.file == file
        assert 1 <= one.line <= len(lines), one
        assert one.source == lines[one.line - 1]
        assert 1 <= one.column <= len(one.source) + 1, one
        assert one.message and "\n" not in one.message
    str(e)  # formats, caret and all


@given(TEXT)
@example("allow id 1050:0407 serial \"\\xff\" with-interface one-of { 08:06:50 03:*:* }\nblock\n#\n")
@example("allow {")
@example("allow 1050:0407 id 1050:0407")
@example('allow name "\ud800"')
@example("allow\x00")
@example("block block-interface 08:*:*")
@example("allow with-interface equals { }")
@example('allow if one-of { !rule-applied allowed-matches(name "a#b") random(0.4) } label "x" label one-of { "y" }')
@example("match if allowed-matches(if allowed-matches(id 1050:*))")
@example("\n" * 1000 + "allow \"")
def test_any_text_gives_rules_or_an_error_that_names_where(text):
    try:
        rules = parse_rules(text, "fuzz.rules")
    except RuleSyntaxError as e:
        check_error(e, text, "fuzz.rules")
        return
    lines = split_lines(text)
    for parsed in rules:
        assert parsed.source == lines[parsed.line - 1].strip(" \t")
        # The formatter's text reads back as the same rule.
        assert parse_rule(parsed.rule.to_text()) == parsed.rule


@given(LINE)
def test_one_rule_line_gives_a_rule_or_an_error(line):
    try:
        rule = parse_rule(line, "one.rules", 3)
    except RuleSyntaxError as e:
        assert e.file == "one.rules" and e.line == 3
        assert 1 <= e.column <= len(line) + 1
        return
    assert parse_rule(rule.to_text()) == rule
