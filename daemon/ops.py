"""The operations the running daemon answers, declared once: the control socket, the signed-command
runner and the command line's help all read this table.

Each op (``Op``) names its handler, the part of the node it acts on, its arguments (``Arg``: type,
required or not, allowed values, bounds, a help line), whether a signed command may run it
(``remote``) and a one-line summary. ``Table`` binds the declarations to one node's ``Parts``: an
op whose part the node does not have (``desk.list`` without desks, ``usb.*`` without ``[usb]``)
is not in its table, and is answered as an unknown op.

Failure model: ``Table.run`` never raises for a caller's mistake. It answers ``{"ok": true, ...}``
with what the handler returned, or ``{"ok": false, "error": "..."}`` for an unknown op, a request
that does not fit the declaration (checked here, before the handler runs, so handlers never
check request shapes), or a ``SekishoError`` from the handler (a door that does not exist, a
device that is not present). Anything else a handler raises is a bug in sekisho: logged with
its traceback and answered ``internal error``, so neither a signed command nor a request on
the control socket goes unanswered, and the next one runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sekisho.policies.access import Mode

from .errors import SekishoError

if TYPE_CHECKING:  # the command line reads the declarations without loading the controllers
    from .alarms import Alarms
    from .desks import Desks
    from .door_states import DoorStates
    from .outbox_replay import OutboxReplay
    from .presence import Presence
    from .printing import PrintRelease
    from .tap_enrolment import TapEnrolment
    from .usb import UsbController

log = logging.getLogger(__name__)

Answer = dict[str, Any]
MAX_SEQ = 2 ** 53
"""The largest seq an op takes: the largest integer a signed command carries (commands.py)."""


@dataclass(frozen=True)
class Parts:
    """What the ops act on, built once by the composition root; None where the node has none."""

    door_states: DoorStates | None = None
    alarms: Alarms | None = None
    desks: Desks | None = None
    presence: Presence | None = None
    usb: UsbController | None = None
    enrolment: TapEnrolment | None = None
    replay: OutboxReplay | None = None
    printing: PrintRelease | None = None


@dataclass(frozen=True)
class Arg:
    """One argument of an op. Absent and JSON null are the same: ``default`` for an optional one."""

    name: str
    kind: type[str] | type[float] | type[int]
    help: str
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    max_len: int | None = None
    """For text: the most characters it may have."""

    def value(self, op: str, request: Mapping[str, Any]) -> Any:
        given = request.get(self.name)
        if given is None:
            if self.required:
                raise SekishoError(f"bad request: {op} needs {self.name!r}")
            return self.default
        if isinstance(given, bool) or not isinstance(given, (str, int, float)):
            kind = "text" if self.kind is str else "a whole number" if self.kind is int else "a number"
            raise SekishoError(f"{self.name} must be {kind}, not {given!r}")
        if self.kind is str:
            # `sekisho cmd send` reads door=1 as the JSON number 1: a name may look like one.
            value: Any = str(given)
        elif self.kind is int:
            value = _whole(given)
            if value is None:
                raise SekishoError(f"{self.name} must be a whole number, not {given!r}")
        else:
            try:
                value = float(given)
            except (ValueError, OverflowError):
                # Text that is no number, or a JSON integer past float's range (a 400-digit one
                # once answered "internal error"): refused below, with inf and nan.
                value = math.nan
            if not math.isfinite(value):
                raise SekishoError(f"{self.name} must be a number, not {given!r}")
        if self.max_len is not None and len(value) > self.max_len:
            raise SekishoError(f"{self.name} is longer than {self.max_len} characters")
        if self.choices and value not in self.choices:
            raise SekishoError(f"unknown {self.name} {value!r} ({self.name}s: {', '.join(self.choices)})")
        if self.bounds and not self.bounds[0] <= value <= self.bounds[1]:
            low, high = (f"{b:,}" if self.kind is int else f"{b:g}" for b in self.bounds)
            raise SekishoError(f"{self.name} must be between {low} and {high}")
        return value

    def usage(self) -> str:
        return self.name if self.required else f"[{self.name}]"


def _whole(given: str | int | float) -> int | None:
    """A whole number as JSON or text may carry it (7, 7.0, "7"); None for anything else."""
    if isinstance(given, int):
        return given
    if isinstance(given, float):
        return int(given) if given.is_integer() else None
    return int(given) if re.fullmatch(r"-?[0-9]{1,16}", given) else None


Handler = Callable[[Parts, Answer, str], Awaitable[Answer]]
"""(the node's parts, the checked arguments by name, the actor) -> what the op answers."""


@dataclass(frozen=True)
class Op:
    """One operation, declared once: what the control socket, signed commands and help know of it."""

    name: str
    summary: str
    handler: Handler
    needs: str
    """The field of ``Parts`` the op acts on: without it, the node has no such op."""
    args: tuple[Arg, ...] = ()
    remote: bool = True
    """May a signed command run it (commands.py)? Otherwise only the control socket can."""

    def check(self, request: Mapping[str, Any]) -> Answer:
        """The declared arguments of ``request``, each checked and converted; other keys are
        ignored (the control socket's request also carries ``op``)."""
        return {arg.name: arg.value(self.name, request) for arg in self.args}

    def usage(self) -> str:
        """``door.unlock door [seconds]``: the op as ``sekisho cmd send`` takes it."""
        return " ".join([self.name, *(a.usage() for a in self.args)])


class Table:
    """The ops one node runs, bound to its parts."""

    def __init__(self, parts: Parts, ops: Iterable[Op]) -> None:
        self.parts = parts
        self.ops = {op.name: op for op in ops if getattr(parts, op.needs) is not None}

    def remote(self) -> Table:
        """The ops a signed command may run."""
        return Table(self.parts, (op for op in self.ops.values() if op.remote))

    def __contains__(self, name: object) -> bool:
        return name in self.ops

    async def run(self, name: Any, request: Mapping[str, Any], actor: str) -> Answer:
        """Run one op as the control socket and signed commands both do (see the module's failure model)."""
        op = self.ops.get(name) if isinstance(name, str) else None
        if op is None:
            return {"ok": False, "error": f"unknown op {name!r} (known: {', '.join(self.ops)})"}
        try:
            return {"ok": True, **await op.handler(self.parts, op.check(request), actor)}
        except SekishoError as exc:
            return {"ok": False, "error": str(exc)}
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed inside sekisho", op.name)
            return {"ok": False, "error": "internal error (see the node's log)"}


def help_text(ops: Iterable[Op], *, remote: bool = True) -> str:
    """Each op (those a signed command may run, by default): its usage, summary and arguments."""
    lines = []
    for op in ops:
        if op.remote or not remote:
            width = max((len(a.name) for a in op.args), default=0)
            lines += [f"  {op.usage()}", f"    {op.summary}", *(f"      {a.name:<{width}}  {a.help}" for a in op.args)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the handlers
# Thin: what a request may hold is the declaration's; what the state allows is the part's.
async def door_list(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.door_states is not None  # the table holds the op only with its part
    return {"doors": parts.door_states.describe()}


async def door_unlock(parts: Parts, args: Answer, actor: str) -> Answer:
    doors = parts.door_states
    assert doors is not None
    doors.check_door(args["door"])  # before its unlock_s is looked up
    doors.unlock(args["door"], args["seconds"] or doors.specs[args["door"]].unlock_s, actor)
    return {}


async def door_mode(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.door_states is not None
    parts.door_states.set_mode(args["door"], Mode(args["mode"]), actor)
    return {}


async def alarm_list(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.alarms is not None
    return {"alarms": [{"id": a.id, **a.message()} for a in parts.alarms.listing()]}


async def alarm_ack(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.alarms is not None
    alarm = parts.alarms.ack(args["id"], actor, args["note"], args["raised"])
    return {"id": alarm.id, "acked_by": alarm.acked_by, "acked_at": alarm.acked_at,
            "closed": alarm.id not in parts.alarms.open}


async def desk_list(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.desks is not None and parts.presence is not None
    # What the bus has told this node of the areas its desks are in: None until the door
    # node's retained occupancy has arrived (the desks then judge by their stance).
    return {"desks": parts.desks.describe(), "occupancy": parts.presence.remote_counts()}


async def usb_allow(parts: Parts, args: Answer, actor: str) -> Answer:
    """The device must be present. Answers the exception's id, its end, the descriptors' hash
    it is bound to, and the ports authorized now."""
    assert parts.usb is not None
    return parts.usb.allow_exception(args["match"], args["minutes"], actor, args["interfaces"])


async def usb_status(parts: Parts, args: Answer, actor: str) -> Answer:
    """The controller's view: states, held devices, exceptions."""
    assert parts.usb is not None
    return parts.usb.status()


async def outbox_replay(parts: Parts, args: Answer, actor: str) -> Answer:
    """Queue the node's events from_seq to to_seq again, as first published; what it no longer
    holds is listed in the answer, not refused."""
    assert parts.replay is not None
    return parts.replay.replay(args["from_seq"], args["to_seq"], actor)


async def print_list(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.printing is not None
    return {"jobs": parts.printing.listing(), "printer": parts.printing.cfg.printer,
            "warnings": list(parts.printing.warnings)}


async def print_release(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.printing is not None
    return await parts.printing.release(args["job"], actor)


async def print_choose(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.printing is not None
    return parts.printing.choose(args["job"], actor)


async def print_cancel(parts: Parts, args: Answer, actor: str) -> Answer:
    assert parts.printing is not None
    return await parts.printing.cancel(args["job"], actor)


async def enroll(parts: Parts, args: Answer, actor: str) -> Answer:
    """Wait for one card at a reader and enroll it; the tap opens nothing."""
    assert parts.enrolment is not None
    return {"card": await parts.enrolment.enroll(args["person"], args["reader"], args["timeout"], actor)}


def declared() -> tuple[Op, ...]:
    """Every op sekisho knows, in the order help lists them."""
    door = Arg("door", str, "the door's name")
    job = Arg("job", int, "the CUPS job id (print.list shows them)", bounds=(1, 2 ** 31 - 1))
    return (
        Op("door.list", "each door's lock, mode, contact and alarm", door_list, "door_states"),
        Op("door.unlock", "release a door for a while (audited)", door_unlock, "door_states",
           (door, Arg("seconds", float, "how long (default: the door's unlock_s)", required=False,
                      bounds=(0.5, 3600)))),
        Op("door.mode", "set a door's mode (audited; kept over a restart)", door_mode, "door_states",
           (door, Arg("mode", str, " | ".join(m.value for m in Mode), choices=tuple(m.value for m in Mode)))),
        Op("alarm.list", "the open alarms, oldest first", alarm_list, "alarms"),
        Op("alarm.ack", "acknowledge an open alarm (audited with who and the note); it closes once its "
                        "condition has cleared", alarm_ack, "alarms",
           (Arg("id", str, "the alarm's id (alarm.list shows them)"),
            Arg("note", str, "what was done about it, for the record", required=False, max_len=500),
            Arg("raised", str, "when the occurrence seen was raised (its raised field): refused if it was raised "
                               "again since", required=False, max_len=40))),
        Op("desk.list", "each desk's state, holder, for how long, and its seat's user sessions", desk_list, "desks"),
        Op("usb.allow", "allow one device for a limited time (recorded, never kept over a restart)", usb_allow,
           "usb",
           (Arg("match", str, "vid:pid:serial or a port"),
            Arg("minutes", float, "how long, at most [usb] exception_max_minutes"),
            Arg("interfaces", str, "rules (default): interfaces a block-interface rule blocks stay blocked; "
                                   "all: those too", required=False, default="rules"))),
        Op("usb.list", "the USB devices, their states, and the exceptions in force", usb_status, "usb"),
        Op("outbox.replay", "publish this node's events from_seq to to_seq again as first published (at most "
                            "100,000 seqs); answers what was queued and which seqs are no longer held", outbox_replay,
           "replay",
           (Arg("from_seq", int, "the first seq to publish again", bounds=(1, MAX_SEQ)),
            Arg("to_seq", int, "the last seq to publish again", bounds=(1, MAX_SEQ)))),
        Op("print.list", "the print jobs waiting for release, oldest first", print_list, "printing"),
        Op("print.release", "move a waiting print job to the printer (an event and an audit row)", print_release,
           "printing", (job,)),
        Op("print.choose", "the waiting print job the next supervisor's card at the printer releases, instead of "
           "the oldest", print_choose, "printing", (job,)),
        Op("print.cancel", "cancel a waiting print job (an event and an audit row)", print_cancel, "printing",
           (job,)),
        # For a person standing at the reader: through the control socket only, never remote.
        Op("enroll", "enroll the next card tapped at a reader to a person", enroll, "enrolment",
           (Arg("person", str, "the person's id"), Arg("reader", str, "the reader's name in the config"),
            Arg("timeout", float, "seconds to wait for the card", bounds=(1, 600))), remote=False),
    )
