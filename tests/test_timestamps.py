"""The one timestamp form: RFC 3339 UTC with milliseconds and a Z, from any aware datetime."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest

from sekisho.daemon.timestamps import rfc3339, utc_now


def test_any_zone_is_written_as_utc_with_milliseconds_and_z():
    tokyo = dt.datetime(2026, 11, 23, 16, 12, 3, 114_999, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert rfc3339(tokyo) == "2026-11-23T07:12:03.114Z"
    assert rfc3339(dt.datetime(2026, 11, 23, 7, 12, 3, tzinfo=dt.timezone.utc)) == "2026-11-23T07:12:03.000Z"


def test_a_naive_datetime_is_refused_not_guessed():
    with pytest.raises(ValueError, match="naive"):
        rfc3339(dt.datetime(2026, 11, 23, 7, 12, 3))


def test_now_has_the_form_stored_text_compares_by():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())
    assert dt.datetime.fromisoformat(utc_now()).tzinfo == dt.timezone.utc
