"""What a policy concluded, and which rule made it so."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.StrEnum):
    GRANTED = "granted"
    DENIED = "denied"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    rule: str
    """The id of the rule that decided; every verdict names one, the default deny included."""
    reason: str
    """A word a person can read in a report: ``enrolled``, ``unknown_card``, ``revoked`` ..."""

    @property
    def granted(self) -> bool:
        return self.decision is Decision.GRANTED
