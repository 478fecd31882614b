"""The access rules the doors, desks and approvals decide by, one holder for all of them.

They are the config's (``Config.rules``) with the site's policy from the last enrolment snapshot
this node applied (its schedules for the names the config does not define, its holidays added:
``SiteRules.with_policy``). The daemon builds the holder at start from the config and the store
(the policy survives a restart there), and the enrolment receiver replaces what it holds on the
loop after each apply, so that the next tap decides by the new rules. Readers take ``current`` at
each decision and never keep it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sekisho.policies.access import SiteRules
from sekisho.policies.schedule import Schedule


class RulesInForce:
    def __init__(self, config_rules: SiteRules) -> None:
        self.config_rules = config_rules
        self.current = config_rules

    def adopt(self, schedules: Mapping[str, Schedule], holidays: frozenset[dt.date]) -> None:
        """Decide from now on with the config's rules and this policy (the snapshot's)."""
        self.current = self.config_rules.with_policy(schedules, holidays)
