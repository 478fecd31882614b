"""The one timestamp form sekisho writes: RFC 3339 in UTC with milliseconds and a ``Z``
(``2026-11-23T07:12:03.114Z``), on the bus and in the store.

Stored timestamps are compared as text (``WHERE ts >= ?``), which orders them correctly only
because every one has this exact form; so nothing writes a timestamp except through here.
A naive datetime is refused with ValueError rather than guessed at: it is a bug in the caller,
and reading it as local time or as UTC would each be wrong somewhere."""
from __future__ import annotations

import datetime as dt


def rfc3339(t: dt.datetime) -> str:
    """An aware datetime, in any zone, as the UTC text the store and the bus use."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r} has no zone to convert from")
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    """Now, as ``rfc3339`` writes it."""
    return rfc3339(dt.datetime.now(dt.timezone.utc))


def local(ts: str, zone: dt.tzinfo) -> str:
    """A stored timestamp as a person reads it in the site's zone, to the second, with its offset
    (``2026-11-23T16:12:03+09:00``): for listings, never for storing."""
    return dt.datetime.fromisoformat(ts).astimezone(zone).isoformat(timespec="seconds")
