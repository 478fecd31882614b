"""Weekly schedules with a holiday calendar, in the site's local time.

A schedule is a set of time ranges per weekday plus one list for holidays, which replaces the
weekday's ranges on a holiday. A range whose end is not after its start crosses midnight:
``22:00-06:00`` on Monday covers Monday 22:00 to Tuesday 06:00, and it is Monday's range that
decides Tuesday 05:59 (so a night shift is one range, and a holiday on Tuesday does not cut it
short). ``00:00-24:00`` is the whole day.

Times are wall-clock times in the site's time zone: on a day the clocks go forward, a range
that starts inside the skipped hour starts at the first instant after it; on the day they go
back, the repeated hour belongs to a range twice. That is what a person reading the schedule
on a wall calendar expects.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY = "holiday"
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class TimeRange:
    start: int
    """Minutes after midnight."""
    end: int
    """Minutes after midnight, 1..1440; not after ``start`` means the range crosses midnight."""

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        m = _RANGE.match(text)
        if not m or (m.group(3) == "24" and m.group(4) != "00"):
            raise ValueError(f"{text!r} is not a time range like 08:30-17:00 (24:00 may end a range)")
        start, end = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
        if start == end:
            raise ValueError(f"{text!r} is empty; use 00:00-24:00 for the whole day")
        return cls(start, end)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True)
class Schedule:
    name: str
    days: tuple[tuple[TimeRange, ...], ...]
    """Seven entries, Monday first."""
    holiday: tuple[TimeRange, ...] = ()

    @classmethod
    def always(cls, name: str = "always") -> Schedule:
        whole = (TimeRange(0, 1440),)
        return cls(name, (whole,) * 7, whole)

    def ranges_for(self, day: dt.date, holidays: frozenset[dt.date]) -> tuple[TimeRange, ...]:
        return self.holiday if day in holidays else self.days[day.weekday()]

    def active(self, local: dt.datetime, holidays: frozenset[dt.date] = frozenset()) -> bool:
        """Is ``local`` (a time in the site's zone) inside the schedule?"""
        minute = local.hour * 60 + local.minute
        today = local.date()
        for r in self.ranges_for(today, holidays):
            if r.crosses_midnight:
                if minute >= r.start:
                    return True
            elif r.start <= minute < r.end:
                return True
        yesterday = today - dt.timedelta(days=1)
        return any(r.crosses_midnight and minute < r.end for r in self.ranges_for(yesterday, holidays))

    @classmethod
    def never_until_known(cls, name: str) -> Schedule:
        """A schedule named but not defined here (it is to come from the enrolment snapshot): no
        ranges, so that what names it opens nothing until the real one is known (fail-secure)."""
        return cls(name, ((),) * 7, ())

    def table(self) -> dict[str, list[str]]:
        """The ranges by day (``mon`` ... ``sun``, ``holiday``) as text, as the config writes them:
        how a schedule travels (the enrolment snapshot)."""
        return {day: [str(r) for r in ranges] for day, ranges in zip(DAYS + (HOLIDAY,), (*self.days, self.holiday),
                                                                       strict=True)}

    @classmethod
    def from_table(cls, name: str, table: object) -> Schedule:
        """What ``table`` wrote; ValueError naming what is wrong for anything else (a day not
        known, a range that does not parse, anything not a list of strings)."""
        if not isinstance(table, dict) or set(table) - set(DAYS + (HOLIDAY,)):
            raise ValueError(f"schedule {name!r} is not a table of the days {', '.join(DAYS + (HOLIDAY,))}")
        ranges = {}
        for day in DAYS + (HOLIDAY,):
            texts = table.get(day, [])
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"schedule {name!r}: {day} is not a list of time ranges")
            ranges[day] = tuple(TimeRange.parse(t) for t in texts)
        return cls(name, tuple(ranges[d] for d in DAYS), ranges[HOLIDAY])

    @property
    def never(self) -> bool:
        """True when no day has any range: such a schedule can never match."""
        return not any(self.days) and not self.holiday
