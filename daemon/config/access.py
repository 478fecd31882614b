"""``[areas]``, ``[schedules]`` and ``[levels]``: the tables the access policy decides by.

A site may keep its levels in the store (``sekisho person grant``); these sections are for a
node that carries them in its config, and for the golden cases. A level names doors, desks and a
schedule; those references are checked after every section's own shape (``link_levels``), and
what loads but can never take effect is a warning, not a problem (``warnings``). On a node that
takes enrolment snapshots a schedule may be left to the recorder's snapshot: what names it opens
nothing until one with it is applied (``find_schedule``, ``SiteRules.with_policy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sekisho.drivers.options import Option, one_of, strings
from sekisho.policies.access import Level, Passback, SiteRules
from sekisho.policies.schedule import DAYS, HOLIDAY, Schedule, TimeRange

from .checker import Checker


def _time_range(v: str) -> str | None:
    try:
        TimeRange.parse(v)
    except ValueError as exc:
        return str(exc)
    return None


AREA = {
    "passback": Option(str, "off", "Anti-passback: off; soft (grant and flag); hard (deny) entering this area "
                       "while recorded in it, or leaving it while not.", one_of(*(p.value for p in Passback))),
}
SCHEDULE = {day: Option(list, [], f"Time ranges on {label}, e.g. [\"08:30-12:00\", \"13:00-17:30\"]; "
                        "a range that ends before it starts crosses midnight.", strings(_time_range))
            for day, label in zip(DAYS + (HOLIDAY,), ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays",
                                                      "Saturdays", "Sundays", "the site's holidays"), strict=True)}
LEVEL = {
    "doors": Option(list, [], "The doors this level opens.", strings()),
    "desks": Option(list, [], "The desks whose sessions this level may use.", strings()),
    "schedule": Option(str, "always", "When: a [schedules.<name>] section, or always. On a node that takes "
                       "enrolment snapshots, also a schedule only the recorder defines: it opens nothing until "
                       "a snapshot with it is applied."),
    "override": Option(bool, False, "Also opens its doors in lockdown (security staff, fire wardens)."),
}


def read_areas(c: Checker, raw: Any) -> dict[str, Passback]:
    """Each area's anti-passback stance."""
    areas = {}
    for name, where, section in c.named("areas", raw, "area"):
        stance = c.section(where, section, AREA)["passback"]
        areas[name] = Passback(stance) if stance in Passback.__members__.values() else Passback.OFF
    return areas


def read_schedules(c: Checker, raw: Any) -> dict[str, Schedule]:
    """The schedules by name, the built-in ``always`` among them."""
    schedules = {"always": Schedule.always()}
    for name, section in c.table("schedules", raw).items():
        where = f"schedules.{name}"
        if name == "always":
            c.problem(where, "'always' is built in and cannot be redefined")
            continue
        values = c.section(where, c.table(where, section), SCHEDULE)
        # Every value passed its check or is the default, []: each range parses.
        ranges = {day: tuple(TimeRange.parse(x) for x in v) for day, v in values.items()}
        schedules[name] = Schedule(name, tuple(ranges[d] for d in DAYS), ranges[HOLIDAY])
    return schedules


def find_schedule(c: Checker, schedules: Mapping[str, Schedule], key: str, name: str,
                  from_snapshot: bool = False) -> Schedule | None:
    """The schedule ``name``. One the config does not define is a problem, unless the node takes
    enrolment snapshots (``from_snapshot``), which may bring it: then it is never active until
    one that has it is applied (SiteRules.with_policy), and ``warnings`` says so."""
    if name in schedules:
        return schedules[name]
    if from_snapshot:
        return Schedule.never_until_known(name)
    c.no_such(key, "schedule", name, schedules)
    return None


def read_levels(c: Checker, raw: Any, releasing: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Each level's keys, converted; what they name is checked by ``link_levels``. A level in
    ``releasing`` (``[print] supervisor_levels``) gives access to releasing print jobs, and may
    name no door or desk."""
    levels = {}
    for name, where, section in c.named("levels", raw):
        values = c.section(where, section, LEVEL)
        if not values["doors"] and not values["desks"] and name not in releasing:
            c.problem(where, "names no doors, no desks, and is no [print] supervisor level; a level must give "
                      "access to something")
        levels[name] = values
    return levels


def link_levels(c: Checker, levels: Mapping[str, dict[str, Any]], schedules: Mapping[str, Schedule],
                doors: Mapping[str, object], desks: Mapping[str, object], from_snapshot: bool = False
                ) -> tuple[dict[str, Level], dict[str, frozenset[str]]]:
    """The levels as the policy takes them (those whose schedule exists), and for each desk the
    levels that may use it."""
    out = {}
    desk_levels: dict[str, set[str]] = {name: set() for name in desks}
    for name, values in levels.items():
        where = f"levels.{name}"
        for door in values["doors"]:
            if door not in doors:
                c.no_such(f"{where}.doors", "door", door, doors)
        for desk in values["desks"]:
            if desk not in desks:
                c.no_such(f"{where}.desks", "desk", desk, desks)
            else:
                desk_levels[desk].add(name)
        sched = find_schedule(c, schedules, f"{where}.schedule", values["schedule"], from_snapshot)
        if sched is not None:
            out[name] = Level(name, frozenset(values["doors"]), sched, values["override"])
    return out, {desk: frozenset(names) for desk, names in desk_levels.items()}


def warnings(path: Path, rules: SiteRules, served: frozenset[str]) -> list[str]:
    """What loads but can never take effect: ``check-config`` prints these, start-up logs them.
    ``served``: the doors that have a reader on this node."""
    out = []
    pending = "comes from the enrolment snapshot; until one with it is applied it opens nothing"
    for level in rules.levels.values():
        if level.schedule.name not in rules.schedules:
            out.append(f"{path}: levels.{level.name}.schedule: schedule {level.schedule.name!r} {pending}")
        elif level.schedule.never:
            out.append(f"{path}: levels.{level.name}: schedule {level.schedule.name!r} has no time ranges; "
                       "this level can never open a door")
        for door in sorted(level.doors - served):
            out.append(f"{path}: levels.{level.name}.doors: door {door!r} has no reader on this node")
    for rules_of in rules.doors.values():
        for i, window in enumerate(rules_of.windows):
            if window.schedule.name not in rules.schedules:
                out.append(f"{path}: doors.{rules_of.name}.auth_schedules[{i + 1}].schedule: schedule "
                           f"{window.schedule.name!r} {pending}")
            elif window.schedule.never:
                out.append(f"{path}: doors.{rules_of.name}.auth_schedules[{i + 1}]: schedule "
                           f"{window.schedule.name!r} has no time ranges; it can never apply")
            elif window.schedule.name == "always" and i + 1 < len(rules_of.windows):
                out.append(f"{path}: doors.{rules_of.name}.auth_schedules[{i + 2}]: never applies, "
                           f"auth_schedules[{i + 1}] is always active")
    return out
