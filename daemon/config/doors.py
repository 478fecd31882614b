"""``[doors.<name>]``: each door's areas, authentication, timings and strike.

``read_doors`` checks each door by itself, its strike driver's keys included; ``link_doors``
then checks what a door names in other sections (areas, schedules) and builds the door as the
access policy takes it (``DoorRules``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sekisho.drivers.gpio import GpioOutput
from sekisho.drivers.options import REQUIRED, Option, between, one_of, strings
from sekisho.policies.access import Auth, AuthWindow, DoorRules, Passback
from sekisho.policies.schedule import Schedule

from .access import find_schedule
from .checker import Checker, optional_topic_name

AUTHS = tuple(a.value for a in Auth)

DOOR = {
    "area_in": Option(str, "", "The area a person enters through the door's in-reader ([areas.<name>]).",
                      optional_topic_name),
    "area_out": Option(str, "", "The area a person enters through the door's out-reader ([areas.<name>]).",
                       optional_topic_name),
    "auth": Option(str, "card", "How a person proves who they are: card, card_and_pin, or free (no card).",
                   one_of(*AUTHS)),
    "auth_out": Option(str, "", "Authentication at the out-reader, if not the same as auth (e.g. card to leave).",
                       lambda v: v and one_of(*AUTHS)(v)),
    "auth_schedules": Option(list, [], "Times with another authentication: [{ schedule = \"office-hours\", "
                             "auth = \"free\" }]; the first whose schedule is active wins, else auth."),
    "pin_timeout_s": Option(int, 10, "Seconds within which the PIN must follow the card.", between(3, 120)),
    "unlock_s": Option(float, 5.0, "Seconds the strike stays released after a grant or an exit request.",
                       between(0.5, 600)),
    "held_open_s": Option(int, 30, "Seconds the door may stand open before the held-open alarm.",
                          between(1, 3600)),
    "fire_exit": Option(bool, False, "Release this door when a fire input fires, until a person resets its mode."),
    "strike": Option(dict, {"driver": "none"}, "What releases the door: { driver = \"none\" } records only; "
                     "\"sim\"; \"command\" with unlock and lock argv arrays; \"mqtt\" with a relay topic."),
}
AUTH_WINDOW = {
    "schedule": Option(str, REQUIRED, ""),
    "auth": Option(str, REQUIRED, "", one_of(*AUTHS)),
}
STRIKES: dict[str, Mapping[str, Option]] = {
    "none": {},
    "sim": {},
    "command": {
        "unlock": Option(list, REQUIRED, "The command that releases the strike, as an argv array.", strings()),
        "lock": Option(list, REQUIRED, "The command that locks it again.", strings()),
    },
    "gpio": dict(GpioOutput.OPTIONS),
    "mqtt": {
        "topic": Option(str, REQUIRED, "The relay's command topic on the site's broker (e.g. cmnd/door-a/POWER)."),
        "unlock_payload": Option(str, "ON", "Payload that releases the strike."),
        "lock_payload": Option(str, "OFF", "Payload that locks it."),
    },
}


@dataclass(frozen=True)
class DoorConfig:
    name: str
    area_in: str
    area_out: str
    auth: str
    auth_out: str
    auth_schedules: tuple[Mapping[str, str], ...]
    pin_timeout_s: int
    unlock_s: float
    held_open_s: int
    fire_exit: bool
    strike: Mapping[str, Any]
    """``driver`` and that driver's keys, defaults filled in."""


def read_doors(c: Checker, raw: Any) -> dict[str, DoorConfig]:
    doors = {}
    for name, where, section in c.named("doors", raw, "door"):
        values = c.section(where, section, DOOR)
        values["auth_schedules"] = tuple(_auth_window(c, f"{where}.auth_schedules[{i + 1}]", item)
                                         for i, item in enumerate(values["auth_schedules"]))
        values["strike"] = _strike(c, f"{where}.strike", values["strike"])
        doors[name] = DoorConfig(name=name, **values)
    return doors


def _auth_window(c: Checker, where: str, raw: Any) -> Mapping[str, str]:
    return MappingProxyType(c.section(where, c.table(where, raw), AUTH_WINDOW))


def _strike(c: Checker, where: str, raw: dict[str, Any]) -> Mapping[str, Any]:
    strike = raw or {"driver": "none"}
    driver = strike.get("driver")
    if not isinstance(driver, str) or driver not in STRIKES:
        c.problem(f"{where}.driver", f"unknown strike driver {driver!r} (known: {', '.join(STRIKES)})")
        return MappingProxyType({"driver": "none"})
    own = c.section(where, strike, STRIKES[driver], extra_ok=frozenset({"driver"}))
    return MappingProxyType({"driver": driver, **own})


def link_doors(c: Checker, doors: Mapping[str, DoorConfig], areas: Mapping[str, Passback],
               schedules: Mapping[str, Schedule]) -> dict[str, DoorRules]:
    """The doors as the access policy takes them: those whose ``auth`` is valid."""
    rules = {}
    for name, door in doors.items():
        where = f"doors.{name}"
        for key in ("area_in", "area_out"):
            area = getattr(door, key)
            if area and area not in areas:
                c.no_such(f"{where}.{key}", "area", area, areas)
        windows = []
        for i, item in enumerate(door.auth_schedules):
            if not isinstance(item["schedule"], str):
                continue
            sched = find_schedule(c, schedules, f"{where}.auth_schedules[{i + 1}].schedule", item["schedule"])
            if sched and item["auth"] in AUTHS:
                windows.append(AuthWindow(sched, Auth(item["auth"])))
        if door.auth in AUTHS:
            auth_out = Auth(door.auth_out) if door.auth_out in AUTHS else None
            rules[name] = DoorRules(name, Auth(door.auth), tuple(windows), door.area_in or "", door.area_out or "",
                                    auth_out)
    return rules
