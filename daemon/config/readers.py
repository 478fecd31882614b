"""``[readers.<name>]``: each card reader, its driver's own keys, its PIN pad, and what it serves.

A reader serves a door (in one direction) or a desk, never both. Its ``driver`` selects the
driver class (drivers/registry.py), whose ``OPTIONS`` join the reader's keys; a reader whose
driver is unknown is dropped after that one problem, since its other keys cannot be judged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sekisho.drivers import registry
from sekisho.drivers.options import REQUIRED, Option, one_of

from .checker import Checker

READER = {
    "driver": Option(str, REQUIRED, "How the reader is attached: " + ", ".join(sorted(registry.KINDS)) + "."),
    "door": Option(str, "", "The door this reader serves (a [doors.<name>] section) ..."),
    "direction": Option(str, "", "... and which way a person passes when using it: in or out.",
                        lambda v: v and one_of("in", "out")(v)),
    "desk": Option(str, "", "... or the desk whose card slot it is (a [desks.<name>] section)."),
    "pin_pad": Option(dict, {}, "The reader's own PIN pad when it is a separate device: { driver = \"evdev\", "
                      "device = \"/dev/input/by-id/...\" }; empty: none (a sim reader takes `sekisho sim pin`)."),
}


@dataclass(frozen=True)
class ReaderConfig:
    name: str
    driver: str
    door: str
    direction: str
    desk: str
    pin_pad: Mapping[str, Any]
    """``driver`` and that PIN pad driver's keys, defaults filled in; empty for none."""
    options: Mapping[str, Any]
    """The driver's own keys, defaults filled in."""


def read_readers(c: Checker, raw: Any) -> dict[str, ReaderConfig]:
    readers = {}
    for name, where, section in c.named("readers", raw, "reader"):
        driven = c.driven(where, section, READER, registry.KINDS)
        if driven is None:
            continue
        values, options = driven
        values["pin_pad"] = _pin_pad(c, f"{where}.pin_pad", values["pin_pad"])
        readers[name] = ReaderConfig(name=name, options=options, **values)
    return readers


def _pin_pad(c: Checker, where: str, raw: dict[str, Any]) -> Mapping[str, Any]:
    if not raw:
        return MappingProxyType({})
    driver = raw.get("driver")
    if not isinstance(driver, str) or driver not in registry.PIN_PADS:
        c.problem(f"{where}.driver", f"unknown PIN pad driver {driver!r} "
                  f"(known: {', '.join(sorted(registry.PIN_PADS))})")
        return MappingProxyType({})
    options = registry.load(driver, registry.PIN_PADS).OPTIONS
    return MappingProxyType({"driver": driver, **c.section(where, raw, options, extra_ok=frozenset({"driver"}))})


def link_readers(c: Checker, readers: Mapping[str, ReaderConfig], doors: Mapping[str, object],
                 desks: Mapping[str, object], printer_reader: str = "") -> None:
    """What each reader serves exists, and is one thing; ``printer_reader`` (``[print] reader``)
    serves the printer, neither door nor desk (link_print says so when it names one)."""
    for name, r in readers.items():
        where = f"readers.{name}"
        if r.door and r.desk:
            c.problem(where, "serves a door or a desk, not both")
        elif r.desk:
            if r.desk not in desks:
                c.no_such(f"{where}.desk", "desk", r.desk, desks)
            if r.direction:
                c.problem(f"{where}.direction", "a desk's reader has no direction")
        elif r.door and r.door not in doors:
            c.no_such(f"{where}.door", "door", r.door, doors, none="none are defined")
        elif r.door and not r.direction:
            c.problem(f"{where}.direction", "missing: a door's reader is either in or out")
        elif not r.door and not r.desk and r.driver and name != printer_reader:
            c.problem(where, "serves nothing: set door (and direction) or desk, or name it as [print] reader")
    _link_osdp_lines(c, readers)


def _link_osdp_lines(c: Checker, readers: Mapping[str, ReaderConfig]) -> None:
    """OSDP readers naming one line share it: one baud rate, and an address each."""
    first: dict[str, ReaderConfig] = {}
    at: dict[tuple[str, int], str] = {}
    for name, r in readers.items():
        line, address = r.options.get("line"), r.options.get("address")
        if r.driver != "osdp" or line is None or address is None:  # a key missing is a problem already
            continue
        # As the driver does (OsdpLines.line): a by-id link and the device it names are one line.
        line = os.path.realpath(line) if os.path.exists(line) else line
        other = first.setdefault(line, r)
        if other.options.get("baud") != r.options.get("baud"):
            c.problem(f"readers.{name}.baud", f"{r.options['baud']}, where reader {other.name} on the same line "
                      f"{line} says {other.options['baud']}: a line has one baud rate")
        if (holder := at.setdefault((line, address), name)) != name:
            c.problem(f"readers.{name}.address", f"{address} on {line} is reader {holder}'s already: each reader "
                      "on a line has an address of its own")

