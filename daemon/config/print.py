"""``[print]``: print release, the CUPS queues it holds and releases jobs between, who may release.

Read by itself first (``read_print``), then held against the other sections (``link_print``):
the reader at the printer must exist and serve neither a door nor a desk, the area and the
supervisor levels must exist. The two queues must differ: a holding queue that is the printer
itself would print everything at once, which is what this section exists to prevent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sekisho.drivers.options import REQUIRED, Option, between, strings

from .checker import Checker

QUEUE = re.compile(r"^[^\s/\\#\"']{1,127}$")
"""What CUPS takes as a queue name (lpadmin(8)): printable, no space, slash, backslash, quote or #."""


def _queue(v: str) -> str | None:
    return None if QUEUE.match(v) else (f"{v!r} is not a CUPS queue name (up to 127 printable characters, no spaces, "
                                        "'/', '\\', '#' or quotes)")


def _users(v: dict) -> str | None:
    wrong = [(k, p) for k, p in v.items() if not isinstance(p, str) or not p]
    return f"{wrong[0][0]!r} must map to a person id (text), not {wrong[0][1]!r}" if wrong else None


PRINT = {
    "server": Option(str, "", "This machine's cupsd, which holds the jobs: empty for its default socket, or a "
                     "socket's path (localhost[:port] also works). Not another machine's: sekisho proves who it "
                     "is to cupsd by its own process (PeerCred), which only a local cupsd can see."),
    "hold_queue": Option(str, REQUIRED, "The holding queue operators print to: accepting, stopped "
                         "(cupsdisable), with the sekisho op policy (docs/printing.md). Its jobs wait there until "
                         "a supervisor releases them.", _queue),
    "printer": Option(str, REQUIRED, "The real printer's queue a released job moves to: not shared, no user but "
                      "sekisho may print to it, with the sekisho op policy.", _queue),
    "reader": Option(str, "", "The [readers.<name>] at the printer (one with neither door nor desk): a "
                     "supervisor's card there releases the oldest waiting job. Empty: none (signed commands "
                     "and sekisho print release only)."),
    "area": Option(str, "", "The area a supervisor must be recorded inside to release at the reader; empty: "
                   "no such check."),
    "supervisor_levels": Option(list, [], "Levels whose holders (valid now) may release a job with their card at "
                                "the printer's reader.", strings()),
    "expire_minutes": Option(float, 60.0, "How long a job may wait in the holding queue before it is cancelled.",
                             between(0.01, 10080)),
    "document_names": Option(bool, False, "Publish each document's name; false: only a keyed hash of it (a "
                             "file name can be personal data)."),
    "users": Option(dict, {}, "CUPS user name -> person id, for users whose login is not their person id; a user "
                    "not listed is looked up as a person id.", _users),
    "unavailable_after_s": Option(float, 30.0, "How long cupsd may be unreachable before it is the "
                                  "print_unavailable alarm: a restart of cupsd raises nothing.", between(0, 3600)),
}


@dataclass(frozen=True)
class PrintConfig:
    server: str
    hold_queue: str
    printer: str
    reader: str = ""
    area: str = ""
    supervisor_levels: frozenset[str] = frozenset()
    expire_minutes: float = 60.0
    document_names: bool = False
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unavailable_after_s: float = 30.0

    @property
    def driver_options(self) -> Mapping[str, Any]:
        """What the CUPS driver (drivers/cups.py) takes."""
        return MappingProxyType({"server": self.server, "hold_queue": self.hold_queue, "printer": self.printer})


def read_print(c: Checker, raw: Any) -> PrintConfig:
    values = c.section("print", c.table("print", raw), PRINT)
    if values["hold_queue"] and values["hold_queue"] == values["printer"]:
        c.problem("print.hold_queue", f"{values['hold_queue']!r} is also the printer: the holding queue must be "
                  "another queue, or every job prints at once")
    return PrintConfig(**{**values, "supervisor_levels": frozenset(values["supervisor_levels"]),
                          "users": MappingProxyType(dict(values["users"]))})


def link_print(c: Checker, cfg: PrintConfig, readers: Mapping[str, Any], areas: Mapping[str, object],
               levels: Mapping[str, object]) -> None:
    """The reader, area and levels ``[print]`` names exist; the reader serves only the printer."""
    if cfg.reader:
        reader = readers.get(cfg.reader)
        if reader is None:
            c.no_such("print.reader", "reader", cfg.reader, readers)
        elif reader.door or reader.desk:
            c.problem("print.reader", f"reader {cfg.reader!r} serves {'door' if reader.door else 'desk'} "
                      f"{reader.door or reader.desk!r}; the printer's reader serves nothing else")
        if not cfg.supervisor_levels:
            c.problem("print.reader", "a card there releases only for supervisor_levels, and none are named")
    if cfg.area and cfg.area not in areas:
        c.no_such("print.area", "area", cfg.area, areas)
    for level in sorted(cfg.supervisor_levels - set(levels)):
        c.no_such("print.supervisor_levels", "level", level, levels)
