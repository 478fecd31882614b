"""The first door decision: an enrolled, active card of an enabled person opens.

Rules are tried in order and the first that matches decides; the last is an explicit default
deny, so a verdict always names the rule behind it. The doors issue replaces this with access
levels, schedules, PINs and anti-passback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .decisions import Decision, Verdict


@dataclass(frozen=True)
class Credential:
    """What the store knows of a presented card; ``None`` stands for a card it has never seen."""

    person_id: str
    card_active: bool
    person_active: bool


Rule = tuple[str, Callable[[Credential | None], bool], Decision, str]

RULES: tuple[Rule, ...] = (
    ("door.unknown-card", lambda c: c is None, Decision.DENIED, "unknown_card"),
    ("door.revoked-card", lambda c: not c.card_active, Decision.DENIED, "revoked"),
    ("door.person-disabled", lambda c: not c.person_active, Decision.DENIED, "person_disabled"),
    ("door.enrolled-card", lambda c: True, Decision.GRANTED, "enrolled"),
)
DEFAULT = Verdict(Decision.DENIED, "door.default-deny", "no_rule")


def decide(credential: Credential | None) -> Verdict:
    for rule_id, matches, decision, reason in RULES:
        if matches(credential):
            return Verdict(decision, rule_id, reason)
    return DEFAULT
