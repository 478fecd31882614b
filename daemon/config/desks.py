"""``[desks.<name>]``: each desk's seat, area and what happens around its lock.

A desk's levels are not its own keys: ``[levels.<name>] desks`` names them, so ``link_desks``
builds the ``DeskConfig`` once the levels are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sekisho.drivers.options import Option, between, one_of, strings
from sekisho.policies.access import Passback

from .checker import Checker, optional_topic_name

MAX_MAP = 100
"""The largest row or column of the desk map: a room, not a spreadsheet."""


def position_problem(v: list) -> str | None:
    """What is wrong with a desk's ``position``: empty, or two integers from 1 to ``MAX_MAP``."""
    if not v:
        return None
    if len(v) != 2 or any(not isinstance(x, int) or isinstance(x, bool) for x in v):
        return f"must be [row, column], two integers, not {v!r}"
    if not all(1 <= x <= MAX_MAP for x in v):
        return f"row and column must be between 1 and {MAX_MAP}, not {v!r}"
    return None


_PORT = re.compile(r"[1-9][0-9]*-[1-9][0-9]*(\.[1-9][0-9]*)*")


def port_problem(v: str) -> str | None:
    """What is wrong with a USB port name: it must be the kernel's, ``<bus>-<port>[.<port>...]``."""
    if _PORT.fullmatch(v):
        return None
    return (f"{v!r} is not a USB port: write the kernel's name for it, <bus>-<port> with .<port> for each "
            f"hub (1-2, 3-1.4), as `sekisho usb list` shows it")


DESK = {
    "seat": Option(str, "seat0", "The logind seat whose user sessions (graphical and text) this desk locks."),
    "area": Option(str, "", "The area the desk stands in ([areas.<name>]); a card whose holder has no recorded "
                   "entry into it is tailgating. Empty: no tailgating check.", optional_topic_name),
    "unlock_on_card": Option(bool, False, "Unlock the session when the holder's card comes back; otherwise the "
                             "holder types their password at the locker as usual."),
    "tailgating": Option(str, "refuse", "A card with no recorded entry into the area: refuse (the desk stays "
                         "locked) or flag (allowed). Both raise the tailgating alarm.", one_of("refuse", "flag")),
    "unknown_occupancy": Option(str, "allow", "When nobody knows who is in the area (no door node has published "
                                "it): allow (and flag) or refuse.", one_of("allow", "refuse")),
    "away_timeout_s": Option(float, 600.0, "After leave-seat, how long the card may stay in the slot before the "
                             "desk treats it as removed.", between(10, 86400)),
    "lock_confirm_s": Option(float, 2.0, "How long logind may take to confirm the lock (LockedHint).",
                             between(0.1, 60)),
    "lock_retries": Option(int, 1, "LockSession calls after the first, when the lock is not confirmed.",
                           between(0, 10)),
    "lock_fallback": Option(str, "none", "When the lock is never confirmed: none, or terminate (end the session: "
                            "unsaved work is lost, the screen is safe).", one_of("none", "terminate")),
    "lock_fallback_command": Option(list, [], "Instead of lock_fallback, a command to run (argv array; {session}, "
                                    "{seat} and {user} are replaced).", strings()),
    "lock_confirm_command": Option(list, [], "A command that must also exit 0 before a graphical session's lock "
                                   "counts as confirmed (argv array, no shell; {session}, {seat} and {user} are "
                                   "replaced); LockedHint alone can be set by the session's own user. Its failure "
                                   "is a failed lock. Empty: LockedHint alone.", strings()),
    "unlocked_without_card": Option(str, "relock", "A user session that becomes unlocked or active while no "
                                    "holder's card is in the slot: relock (lock it again) or alarm_only. Both raise "
                                    "the unlocked_without_card alarm.", one_of("relock", "alarm_only")),
    "position": Option(list, [], "Where the desk stands on the officer console's desk map: [row, column], "
                       "1-based integers (row 1 is the top, column 1 the left). Two desks may not share a place. "
                       "Empty: placed after the desks that have one.", position_problem),
    "tty_lock": Option(str, "terminate", "A text-console session on the seat, whose lock no screen locker "
                       "confirms: terminate (end it) or alarm_only (leave it, lock_failed alarm).",
                       one_of("terminate", "alarm_only")),
    "usb_ports": Option(list, [], "The USB ports at this desk, as the kernel names them (1-2, 3-1.4; a device "
                        "behind a hub on one of them counts too): a supervisor's approval here offers the device "
                        "blocked last on these ports. Empty: on any port of the node, which is right only for a "
                        "node with one desk.", strings(port_problem)),
}


@dataclass(frozen=True)
class DeskConfig:
    name: str
    seat: str
    area: str
    unlock_on_card: bool
    tailgating: str
    unknown_occupancy: str
    away_timeout_s: float
    lock_confirm_s: float
    lock_retries: int
    lock_fallback: str
    lock_fallback_command: tuple[str, ...]
    lock_confirm_command: tuple[str, ...]
    unlocked_without_card: str
    tty_lock: str
    levels: frozenset[str]
    """The levels that may use this desk (from [levels.<name>] desks)."""
    position: tuple[int, int] | None = None
    """[row, column] on the console's desk map (1-based), or None."""
    usb_ports: tuple[str, ...] = ()
    """The USB ports at the desk; empty: every port of the node."""


def read_desks(c: Checker, raw: Any) -> dict[str, dict[str, Any]]:
    """Each desk's own keys, converted."""
    desks = {}
    for name, where, section in c.named("desks", raw, "desk"):
        desks[name] = c.section(where, section, DESK)
    return desks


def link_desks(c: Checker, desks: Mapping[str, dict[str, Any]], areas: Mapping[str, Passback],
               levels: Mapping[str, frozenset[str]]) -> dict[str, DeskConfig]:
    """``levels``: for each desk, the levels that may use it."""
    out = {}
    placed: dict[tuple[int, int], str] = {}
    for name, values in desks.items():
        if values["area"] and values["area"] not in areas:
            c.no_such(f"desks.{name}.area", "area", values["area"], areas)
        position = (values["position"][0], values["position"][1]) if values["position"] else None
        if position is not None and position in placed:
            c.problem(f"desks.{name}.position", f"desk {placed[position]!r} already stands at {list(position)}; "
                      "two desks cannot share a place on the desk map")
        elif position is not None:
            placed[position] = name
        out[name] = DeskConfig(name=name, levels=levels[name],
                               **{**values, "lock_fallback_command": tuple(values["lock_fallback_command"]),
                                  "lock_confirm_command": tuple(values["lock_confirm_command"]),
                                  "position": position, "usb_ports": tuple(values["usb_ports"])})
    return out
