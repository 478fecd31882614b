"""Timed USB exceptions: what a supervisor allowed, for how long, and which devices it covers.

An exception names one device by ``vid:pid:serial`` or by its port, and is bound to the
descriptors' hash (USBGuard's, over name, ids, serial and descriptors) of the device present when
it was granted: a device that matches the text but not the hash (a clone that copies the serial,
another device put into the port) is not covered. Text without a hash would let in any device that
claims the serial. This module checks a grant (``Exceptions.check``, ``Exceptions.bind``) and keeps
the exceptions in force; it writes nothing and schedules nothing: ``usb.UsbController`` authorizes
the devices and owns the expiry timers. A grant that cannot mean one present device is a
``SekishoError`` that says what to give instead. Kept in memory only: a restart forgets them.
"For N minutes" is a duration, timed on the monotonic clock: setting the wall clock neither
ends an exception early nor stretches it (docs/time.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from sekisho.policies.events import UsbDeviceAdded

from .errors import SekishoError
from .timestamps import rfc3339
from .usb_devices import Tracked, shown

_PORT = re.compile(r"^(usb[0-9]+|[0-9]+-[0-9]+(\.[0-9]+)*)$")
_ID_SERIAL = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4}):(.*)$", re.DOTALL)


class ExceptionInterfaces(StrEnum):
    """What an exception does to the interfaces a ``block-interface`` rule blocks."""

    RULES = "rules"
    """They stay blocked (the default): the supervisor allowed the device, not what the room's
    policy keeps off every device of its kind."""
    ALL = "all"
    """They are authorized too."""


@dataclass(frozen=True)
class Match:
    """What a timed exception allows: one device, named by id and serial or by its port, and
    known by its descriptors' hash."""

    text: str
    vendor: str | None = None
    product: str | None = None
    serial: str | None = None
    port: str | None = None
    hash: str | None = None
    """The descriptors' hash (USBGuard's) of the device approved: with it, only a device of these
    descriptors matches. Every exception has one (``Exceptions.bind`` records it)."""

    @classmethod
    def parse(cls, text: str) -> Match:
        text = str(text)
        if m := _ID_SERIAL.match(text):
            return cls(text, vendor=m[1].lower(), product=m[2].lower(), serial=m[3])
        if _PORT.match(text):
            return cls(text, port=text)
        raise SekishoError(f"cannot allow {text!r}: give vid:pid:serial (046d:c31c:ABC123; 046d:c31c: for a device "
                           "without a serial) or a port (1-2, 1-2.4; see: sekisho usb list)")

    @classmethod
    def of(cls, event: UsbDeviceAdded, hash: str) -> Match:
        """One present device: by its serial, or, without one, its port; either way bound to
        ``hash``, its descriptors', so that a clone that copies the serial, or another device put
        into that port, is not let in while the exception lasts."""
        if event.serial:
            # The serial as `sekisho usb list` shows it (``shown``): what a supervisor can type,
            # and what the record can store.
            serial = shown(event.serial)
            return cls(f"{event.vendor_id}:{event.product_id}:{serial}", vendor=event.vendor_id.lower(),
                       product=event.product_id.lower(), serial=serial, hash=hash)
        return cls(event.port, port=event.port, hash=hash)

    def matches(self, tracked: Tracked) -> bool:
        event = tracked.event
        if self.port is not None:
            named = event.port == self.port
        else:
            named = (event.vendor_id.lower(), event.product_id.lower(), shown(event.serial)) == \
                (self.vendor, self.product, self.serial)
        if not named or self.hash is None:
            return named
        return tracked.hash == self.hash  # descriptors that cannot be read cannot be the approved ones

    def payload(self) -> dict[str, Any]:
        """The event's ``device`` object when no one device stands for the exception."""
        return {"vid": self.vendor, "pid": self.product, "class": None, "interfaces": [], "name": None,
                "serial": self.serial, "port": self.port}


@dataclass
class UsbException:
    id: str
    match: Match
    minutes: float
    actor: str
    until: str
    """UTC, RFC 3339: when the wall clock will say it ends. It ends ``minutes`` after the grant
    on the monotonic clock (the controller's timer), so a step of the wall clock moves this by
    the step (``Exceptions.shift``), never the end itself."""
    interfaces: ExceptionInterfaces = ExceptionInterfaces.RULES
    timer: asyncio.TimerHandle | None = None
    devices: set[str] = field(default_factory=set)
    """sys paths of the devices authorized under it (and only because of it)."""

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "match": self.match.text, "hash": self.match.hash, "interfaces": self.interfaces,
                "minutes": self.minutes, "until": self.until, "actor": self.actor}


class Exceptions:
    """The exceptions in force, by id."""

    def __init__(self, max_minutes: float) -> None:
        self.max_minutes = max_minutes
        self._by_id: dict[str, UsbException] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[UsbException]:
        return iter(list(self._by_id.values()))

    def check(self, match: str | Match, minutes: Any, interfaces: str) -> tuple[Match, float, ExceptionInterfaces]:
        """A grant's arguments, checked; ``SekishoError`` says what is wrong with them."""
        m = match if isinstance(match, Match) else Match.parse(match)
        try:
            scope = ExceptionInterfaces(interfaces)
        except ValueError:
            raise SekishoError(f"interfaces must be {' or '.join(ExceptionInterfaces)}, not {interfaces!r}") from None
        try:
            minutes = float(minutes)
        except (TypeError, ValueError):
            raise SekishoError(f"minutes must be a number, not {minutes!r}") from None
        if not 0 < minutes <= self.max_minutes:
            raise SekishoError(f"minutes must be more than 0 and at most {self.max_minutes:g} "
                               "([usb] exception_max_minutes)")
        return m, minutes, scope

    @staticmethod
    def bind(m: Match, present: Iterable[Tracked]) -> Match:
        """``m`` bound to the descriptors of the one device present that it names."""
        named = [t for t in present if m.matches(t)]
        hashes = sorted({t.hash for t in named if t.hash is not None})
        if not named:
            raise SekishoError(f"cannot allow {m.text}: no such device is present. Plug it in first: an exception "
                               "is bound to the descriptors of the device present when it is granted, so that no "
                               "other device can use it (see: sekisho usb list)")
        if not hashes:
            raise SekishoError(f"cannot allow {m.text}: its descriptors cannot be read ({named[0].problem}), so "
                               "nothing would tell it from another device")
        if len(hashes) > 1:
            ports = ", ".join(sorted(t.event.port for t in named))
            raise SekishoError(f"cannot allow {m.text}: it names {len(named)} devices of different descriptors "
                               f"(ports {ports}); name one by its port")
        return replace(m, hash=hashes[0])

    def add(self, m: Match, minutes: float, actor: str, interfaces: ExceptionInterfaces) -> UsbException:
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
        exc = UsbException(uuid.uuid4().hex[:12], m, minutes, actor,
                           rfc3339(until), interfaces)
        self._by_id[exc.id] = exc
        return exc

    def shift(self, seconds: float) -> None:
        """The wall clock was set ``seconds`` forward (back, when negative): every end comes that
        much later (earlier) by it."""
        for exc in self._by_id.values():
            exc.until = rfc3339(dt.datetime.fromisoformat(exc.until) + dt.timedelta(seconds=seconds))

    def pop(self, exc_id: str) -> UsbException | None:
        exc = self._by_id.pop(exc_id, None)
        if exc is not None and exc.timer is not None:
            exc.timer.cancel()
        return exc

    def for_device(self, tracked: Tracked) -> UsbException | None:
        """The exception that grants the device most: with two in force, the device has what
        either gives it."""
        found = [e for e in self._by_id.values() if e.match.matches(tracked)]
        return max(found, key=lambda e: e.interfaces is ExceptionInterfaces.ALL, default=None)

    def forget(self, sys_path: str) -> None:
        """The device at ``sys_path`` went away: no exception covers it any more."""
        for exc in self._by_id.values():
            exc.devices.discard(sys_path)

    def describe(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self._by_id.values()]


__all__ = ["ExceptionInterfaces", "Exceptions", "Match", "UsbException"]
