"""Weekly schedules: ranges, midnight, holidays, and time zones with and without DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sekisho.policies.schedule import Schedule, TimeRange

TOKYO, BERLIN = ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/Berlin")


def weekdays(*ranges: str, holiday: tuple[str, ...] = ()) -> Schedule:
    r = tuple(TimeRange.parse(x) for x in ranges)
    return Schedule("s", (r,) * 5 + ((), ()), tuple(TimeRange.parse(x) for x in holiday))


def at(text: str, tz=TOKYO) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize("text", ["8:00-17:00", "08:00-17:60", "25:00-26:00", "08:00-24:30", "08:00", "08:00-08:00"])
def test_bad_ranges(text):
    with pytest.raises(ValueError):
        TimeRange.parse(text)


def test_office_hours_edges():
    s = weekdays("08:30-17:00")
    assert not s.active(at("2026-11-23T08:29"))   # Monday
    assert s.active(at("2026-11-23T08:30"))
    assert s.active(at("2026-11-23T16:59"))
    assert not s.active(at("2026-11-23T17:00"))   # end is exclusive
    assert not s.active(at("2026-11-28T10:00"))   # Saturday


def test_range_crossing_midnight_belongs_to_its_start_day():
    s = Schedule("night", ((TimeRange.parse("22:00-06:00"),),) + ((),) * 6)  # Mondays only
    assert s.active(at("2026-11-23T22:00"))   # Monday night
    assert s.active(at("2026-11-24T05:59"))   # Tuesday morning, still Monday's shift
    assert not s.active(at("2026-11-24T06:00"))
    assert not s.active(at("2026-11-24T22:30"))  # Tuesday night: no shift
    assert not s.active(at("2026-11-23T05:00"))  # Monday early: Sunday had no shift


def test_holiday_replaces_the_weekday():
    holidays = frozenset({dt.date(2026, 11, 23)})  # Labour Thanksgiving Day, a Monday
    s = weekdays("08:00-18:00", holiday=("10:00-12:00",))
    assert not s.active(at("2026-11-23T09:00"), holidays)
    assert s.active(at("2026-11-23T11:00"), holidays)
    assert s.active(at("2026-11-24T09:00"), holidays)


def test_whole_day_and_always():
    assert Schedule.always().active(at("2026-11-29T23:59"))
    assert weekdays("00:00-24:00").active(at("2026-11-23T23:59"))
    assert Schedule("never", ((),) * 7).never


def test_dst_spring_forward_and_fall_back():
    s = Schedule("early", ((TimeRange.parse("02:00-03:30"),),) * 7)
    # Berlin 2026-03-29: 02:00 -> 03:00. 03:15 local exists and is inside the range.
    assert s.active(dt.datetime(2026, 3, 29, 1, 15, tzinfo=dt.timezone.utc).astimezone(BERLIN))   # 03:15 CEST
    assert not s.active(dt.datetime(2026, 3, 29, 1, 45, tzinfo=dt.timezone.utc).astimezone(BERLIN))  # 03:45
    # 2026-10-25: 03:00 -> 02:00. Both 02:30s (CEST and CET) are inside.
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.timezone.utc).astimezone(BERLIN)
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.timezone.utc).astimezone(BERLIN)
    assert (first.hour, second.hour) == (2, 2) and first.utcoffset() != second.utcoffset()
    assert s.active(first) and s.active(second)


def test_tokyo_has_no_dst():
    s = weekdays("09:00-10:00")
    for month, day in ((1, 5), (7, 6)):  # Mondays in winter and in summer
        utc = dt.datetime(2026, month, day, 0, 30, tzinfo=dt.timezone.utc)  # 09:30 JST all year
        assert s.active(utc.astimezone(TOKYO))
