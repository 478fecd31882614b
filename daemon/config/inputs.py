"""``[inputs.<name>]``: binary inputs (door contact, exit button, fire alarm, leave-seat button),
and the rule that one GPIO line serves one thing, strikes included.

As with readers, ``driver`` selects the driver class whose ``OPTIONS`` join the input's keys,
and an input whose driver is unknown is dropped after that one problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sekisho.drivers import registry
from sekisho.drivers.gpio import chip_path
from sekisho.drivers.options import REQUIRED, Option, one_of

from .checker import Checker
from .doors import DoorConfig

INPUT = {
    "driver": Option(str, REQUIRED, "How the input is attached: " + ", ".join(sorted(registry.INPUTS)) + "."),
    "kind": Option(str, REQUIRED, "contact (active = door open), exit (request-to-exit button), fire (fire alarm) "
                   "or leave_seat (a desk's leave-seat button).", one_of("contact", "exit", "fire", "leave_seat")),
    "door": Option(str, "", "The door a contact or exit button belongs to; a fire input serves every fire exit."),
    "desk": Option(str, "", "The desk a leave_seat button belongs to."),
}


@dataclass(frozen=True)
class InputConfig:
    name: str
    driver: str
    kind: str
    door: str
    desk: str
    options: Mapping[str, Any]


def read_inputs(c: Checker, raw: Any) -> dict[str, InputConfig]:
    inputs = {}
    for name, where, section in c.named("inputs", raw, "input"):
        driven = c.driven(where, section, INPUT, registry.INPUTS)
        if driven is not None:
            values, options = driven
            inputs[name] = InputConfig(name=name, options=options, **values)
    return inputs


def link_inputs(c: Checker, inputs: Mapping[str, InputConfig], doors: Mapping[str, DoorConfig],
                desks: Mapping[str, object], readers: Mapping[str, object]) -> None:
    """What each input serves exists; inputs and readers do not share a name; no GPIO line is
    claimed twice."""
    for name, i in inputs.items():
        where = f"inputs.{name}"
        if i.kind in ("contact", "exit") and i.door not in doors:
            c.problem(f"{where}.door", f"a {i.kind} input needs a door (doors: {', '.join(sorted(doors))})")
        elif i.kind == "leave_seat" and i.desk not in desks:
            c.problem(f"{where}.desk", f"a leave_seat input needs a desk (desks: {', '.join(sorted(desks))})")
        elif i.kind == "fire" and i.door:
            c.problem(f"{where}.door", "a fire input serves every door with fire_exit = true; it names no door")
        if name in readers:
            c.problem(where, f"{name!r} is also a reader's name; sim sockets and events need unique names")
    _gpio_lines(c, doors, inputs)


def _gpio_lines(c: Checker, doors: Mapping[str, DoorConfig], inputs: Mapping[str, InputConfig]) -> None:
    """One GPIO line serves one thing: the kernel would refuse the second request at start."""
    users: dict[tuple[str, int], str] = {}
    wanted = [(f"doors.{name}.strike", d.strike) for name, d in doors.items() if d.strike.get("driver") == "gpio"]
    wanted += [(f"inputs.{name}", i.options) for name, i in inputs.items() if i.driver == "gpio"]
    for where, options in wanted:
        if not isinstance(options.get("line"), int):
            continue
        key = (chip_path(str(options.get("chip") or "gpiochip0")), options["line"])
        if key in users:
            c.problem(f"{where}.line", f"{key[0]} line {key[1]} is already {users[key]}'s")
        users.setdefault(key, where)
