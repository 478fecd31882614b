"""sekisho's rule parser against USBGuard's own: ``usbguard-rule-parser``, from Debian's build of
USBGuard 1.1 (``make usbguard-ref``), reads each rule, and the two must agree.

- Lines made of the language's own words (the fuzz words of test_fuzz_rules.py, seeded, so the
  same lines every run): USBGuard takes a line exactly when sekisho does, except where
  docs/sekisho-rules.5.md (DIFFERENCES FROM USBGUARD) says sekisho refuses a rule that cannot
  do what it says there, or takes blanks around a line that USBGuard refuses.
- Every rule sekisho can print (the rule strategy of test_usbrules_parser.py, sekisho's
  ``block-interface`` left out): USBGuard takes its text, and what USBGuard prints back
  (``Rule::toString``) reads here as the same rule, attributes in USBGuard's order."""

from __future__ import annotations

import random
import re
import subprocess
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings

from conftest import REPO
from sekisho.policies.usbrules import ConditionKind, Rule, RuleSyntaxError, parse_rule
from test_fuzz_rules import WORDS
from test_usbrules_parser import rules

PARSER = REPO / "build" / "usbguard" / "usr" / "bin" / "usbguard-rule-parser"
TARGETS = ("allow", "block", "reject", "match", "device")


@pytest.fixture(scope="module")
def usbguard_parser() -> str:
    if not PARSER.exists():
        pytest.fail(f"USBGuard's rule parser is not at {PARSER}: run `make usbguard-ref` (make test does)")
    return str(PARSER)


def usbguard_reads(parser: str, line: str) -> str | None:
    """What USBGuard prints for ``line`` (its ``toString``), or None when it refuses it."""
    run = subprocess.run([parser, line], capture_output=True, text=True, errors="surrogateescape", timeout=30,
                         check=False)
    if run.returncode != 0:
        return None
    return next(out for out in run.stdout.splitlines() if out.startswith("OUTPUT: ")).removeprefix("OUTPUT: ")


def sekisho_refusal(line: str) -> str | None:
    try:
        parse_rule(line)
    except RuleSyntaxError as e:
        return e.message
    return None


def a_documented_difference(line: str, refusal: str | None) -> bool:
    """docs/sekisho-rules.5.md, DIFFERENCES FROM USBGUARD."""
    if refusal is None:  # taken here, refused there: blanks around the line, or sekisho's own attribute
        return line != line.strip(" \t") or "block-interface" in line
    # A target run onto the word before it (allowblock, *:*block): USBGuard reads the last target.
    words = re.split(r"[ \t]+", line.partition("#")[0])
    glued = any(w not in TARGETS and w.endswith(t) for w in words for t in TARGETS)
    return glued or any(why in refusal for why in ("upper-case hex digits", "has seconds", "is not a probability",
                                                   "after the time"))


def word_lines(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    # Words USBGuard's command line cannot carry (NUL) or that are not one line are left to the fuzzer.
    words = [w for w in WORDS if w.isprintable() or w == "\t"]
    return [rng.choice(TARGETS) + "".join(rng.choice(["", " ", " ", "\t"]) + rng.choice(words)
                                          for _ in range(rng.randrange(0, 8))) for _ in range(n)]


def test_a_line_is_taken_exactly_when_usbguard_takes_it(usbguard_parser):
    lines = word_lines(17, 300)
    disagree = []
    taken = 0
    for line in lines:
        theirs = usbguard_reads(usbguard_parser, line)
        refusal = sekisho_refusal(line)
        taken += theirs is not None
        if (theirs is None) != (refusal is not None) and not a_documented_difference(line, refusal):
            disagree.append((line, theirs, refusal))
    assert disagree == []
    assert 30 < taken < 270, "the lines are neither all taken nor all refused"


def as_usbguard_prints(rule: Rule) -> Rule:
    """``rule`` as USBGuard's ``toString`` writes it: its attributes in USBGuard's order, and
    ``rule-evaluated`` written ``rule-applied`` (``RuleEvaluatedCondition``'s constructor gives
    its base the name "rule-applied": a printing slip, the condition itself stays what it was)."""
    order = ["id", "serial", "name", "hash", "parent-hash", "via-port", "with-interface", "with-connect-type"]
    conditions = rule.conditions
    if conditions is not None:
        conditions = replace(conditions, values=tuple(
            replace(c, kind=ConditionKind.RULE_APPLIED) if c.kind is ConditionKind.RULE_EVALUATED else c
            for c in conditions.values))
    return Rule(rule.target, tuple(sorted(rule.attributes, key=lambda a: order.index(a.key))), rule.block_interfaces,
                conditions, rule.label)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules(extension=False))
def test_every_rule_sekisho_prints_usbguard_reads_as_the_same_rule(usbguard_parser, rule):
    text = rule.to_text()
    theirs = usbguard_reads(usbguard_parser, text)
    assert theirs is not None, f"USBGuard refuses {text!r}"
    assert as_usbguard_prints(parse_rule(theirs)) == as_usbguard_prints(rule), (text, theirs)
