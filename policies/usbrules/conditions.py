"""Rule conditions (``if ...``): their values, what deciding them needs from outside, and the
per-rule memory two of them read. Deciding them is the matcher's (``matcher.RuleSet.first_match``).

The reference is USBGuard 1.1: ``RuleCondition.cpp`` (``RuleConditionBase::getImplementation``
reads ``[!]identifier[(parameter)]``), one class per condition in ``src/Library/*Condition.cpp``,
and ``RulePrivate::meetsConditions`` for the set operators. Where USBGuard's code and its man page
disagree, the code is followed, so that a rules file decides here as it did there; each such
place is named below and in docs/sekisho-rules.5.md.

- A condition keeps its parameter as written (USBGuard's ``toString`` writes it back unescaped),
  so ``to_text`` gives back the text read. ``true`` and ``false`` drop a parameter, as
  ``FixedStateCondition`` does.
- ``localtime(HH:MM[-HH:MM])`` (``LocaltimeCondition``): the range's ends are included, to the
  second; a range whose begin is after its end is an error (there, ``Invalid time range``); the
  time compared is the UTC time of day: USBGuard computes it as ``to_time_t(now) % 86400``,
  whatever the machine's time zone.
- ``rule-applied[(T)]`` and ``rule-evaluated[(T)]`` (``RuleAppliedCondition``,
  ``RuleEvaluatedCondition``) **never hold** in USBGuard 1.1's daemon, whatever the rules did
  before, and so never here: each reads the counters of the rule its ``update`` is given, and the
  daemon gives it the device's own rule (``RuleSet::getFirstMatchingRule`` ->
  ``RulePrivate::appliesToWithConditions(device_rule)`` -> ``meetsConditions`` ->
  ``condition->evaluate(device_rule)``), a new one for each decision
  (``DevicePrivate::getDeviceRule``) whose counters are 0; the policy rule's counter that
  ``Daemon::dmApplyDevicePolicy`` raises is never read. ``!rule-applied`` always holds. With
  nothing remembered, nothing is lost over a restart or a reload either. (USBGuard's own
  ``toString`` writes ``rule-evaluated`` as ``rule-applied``: a slip in its constructor.) Their
  ``T`` is still checked, as USBGuard parses it (``HH:MM`` or seconds).
- Times written with seconds (``HH:MM:SS``) are refused: USBGuard parses them with glibc's
  ``strptime("%H:%M:%s")``, whose ``%s`` is seconds since the epoch and overwrites the hours and
  minutes with a time-zone dependent value, so such a rule never meant what it says.
- ``random[(p)]`` (``RandomStateCondition``): true with probability ``p`` (0.5 without one).
- ``allowed-matches(query)`` (``AllowedMatchesCondition``): some device the daemon has allowed
  now matches ``allow <query>`` (``DeviceManager::getDeviceList`` with an allow query: the
  device's target must be allow); only the query's attributes count.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .rule import Rule


class ConditionKind(enum.StrEnum):
    ALLOWED_MATCHES = "allowed-matches"
    LOCALTIME = "localtime"
    RULE_APPLIED = "rule-applied"
    RULE_EVALUATED = "rule-evaluated"
    RANDOM = "random"
    TRUE = "true"
    FALSE = "false"


KNOWN = ", ".join(str(k) for k in ConditionKind)

_TIME = re.compile(r"[ \t]*([0-9]{1,2}):([0-9]{1,2})[ \t]*")
_SECONDS = re.compile(r"[ \t]*[0-9]+[ \t]*")
_PROBABILITY = re.compile(r"[ \t]*(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[ \t]*")


def _daytime(text: str, condition: str) -> int:
    """``HH:MM`` as seconds into the day (``LocaltimeCondition::stringToDaytime``)."""
    m = _TIME.fullmatch(text)
    if m is None or int(m[1]) > 23 or int(m[2]) > 59:
        if re.fullmatch(r"[ \t]*[0-9]{1,2}:[0-9]{1,2}:[0-9]+[ \t]*", text):
            raise ValueError(f'{condition}: "{text.strip()}" has seconds, which USBGuard 1.1 misreads (strptime %s is '
                             f"seconds since the epoch); write HH:MM")
        raise ValueError(f'{condition}: "{text.strip()}" is not a time of day: write HH:MM, 00:00 to 23:59')
    return int(m[1]) * 3600 + int(m[2]) * 60


def _duration(text: str, condition: str) -> int:
    """``HH:MM`` or a number of seconds (``RuleAppliedCondition::stringToSeconds``); empty is 0."""
    if not text:
        return 0
    if _SECONDS.fullmatch(text):
        return int(text)
    return _daytime(text, condition)


@dataclass(frozen=True)
class Condition:
    """One condition: ``[!]kind[(parameter)]``. The parsed parameter is kept beside it."""

    kind: ConditionKind
    negated: bool = False
    parameter: str = ""
    """As written between the parentheses; empty for none."""
    query: Rule | None = field(default=None, compare=False, repr=False)
    """``allowed-matches``: the parameter read as ``allow <parameter>``."""
    begin: int = field(default=0, init=False, compare=False, repr=False)
    """``localtime``: the range in seconds into the day, both ends included."""
    end: int = field(default=0, init=False, compare=False, repr=False)
    probability: float = field(default=0.5, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = ConditionKind(self.kind)
        object.__setattr__(self, "kind", kind)
        name = f"{'!' if self.negated else ''}{kind}"
        if kind in (ConditionKind.TRUE, ConditionKind.FALSE):
            object.__setattr__(self, "parameter", "")  # FixedStateCondition keeps none
        elif kind is ConditionKind.LOCALTIME:
            if not self.parameter:
                raise ValueError("localtime needs a time or a range: localtime(08:00-17:30)")
            begin, dash, end = self.parameter.partition("-")
            start = _daytime(begin, "localtime")
            stop = _daytime(end, "localtime") if dash and end else start
            if start > stop:
                raise ValueError(f"localtime({self.parameter}): the range begins after it ends; USBGuard refuses it. "
                                 f"For one across midnight write two rules (22:00-23:59 and 00:00-06:00)")
            object.__setattr__(self, "begin", start)
            object.__setattr__(self, "end", stop)
        elif kind in (ConditionKind.RULE_APPLIED, ConditionKind.RULE_EVALUATED):
            _duration(self.parameter, str(kind))
        elif kind is ConditionKind.RANDOM:
            if self.parameter:
                if not _PROBABILITY.fullmatch(self.parameter) or not 0.0 <= float(self.parameter) <= 1.0:
                    raise ValueError(f'random: "{self.parameter}" is not a probability: write a number from 0 to 1, '
                                     f"random(0.25)")
                if 0.0 < float(self.parameter) < sys.float_info.min:
                    # USBGuard reads it with std::stod, which refuses a value that underflows.
                    raise ValueError(f'random: "{self.parameter}" is too small a probability for USBGuard (std::stod '
                                     f"refuses it); write 0")
                object.__setattr__(self, "probability", float(self.parameter))
        elif kind is ConditionKind.ALLOWED_MATCHES:
            if not self.parameter:
                raise ValueError('allowed-matches needs a device query: allowed-matches(with-interface 03:*:*)')
            if self.query is None:
                raise ValueError(f"{name}: its query is a rule; build it with the parser")

    def to_text(self) -> str:
        """``RuleConditionBase::toString``."""
        text = f"{'!' if self.negated else ''}{self.kind}"
        return f"{text}({self.parameter})" if self.parameter else text


@dataclass(frozen=True)
class ConditionContext:
    """What deciding conditions needs from outside the rules, taken once per decision by the
    caller (the daemon reads its clocks and inventory; a test writes them down)."""

    daytime: int
    """Seconds into the day, UTC, as ``LocaltimeCondition::update`` computes it."""
    allowed: Sequence[Any] = ()
    """The ``matcher.Device`` of every device whose target is allow now, as USBGuard's device list
    has it: allowed by a decision, or present, authorized in sysfs and not decided by the rules
    (a device kept at start, or one not yet decided when the daemon starts: ``DeviceBase`` takes
    a device's target from its ``authorized`` file)."""
    random: Callable[[], float] | None = field(default=None, compare=False)
    """A uniform draw in [0, 1); ``random(p)`` holds when it is below ``p``. None: a rule that
    reaches a ``random`` condition is a ``ValueError``, never a made-up draw."""
