"""The audit report's printing part (issue 19): jobs per operator and per supervisor, counted
from the print events of the period (docs/mqtt.md, ``print/<node>/event``).

A job is counted by what happened to it in the period, each fate once per job: a job held on
the 31st and released on the 1st counts as held in one month and released in the next. An
event repeated for the same job (a driver that reconnected says ``held`` again) counts once.
Operators are the people the events' ``subject`` names; a CUPS user that maps to no person has
no subject, and those jobs are counted together under no person. Supervisors are the events'
``actor``: ``supervisor:<pseudonym>`` for a card at the printer (named through the subjects),
``key:<key>`` for a signed command, ``cli:<user>`` at the node.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATOR_FATES = ("held", "released", "cancelled", "expired", "left")
"""What the operator's row counts; ``left``: withdrawn at CUPS by the owner or an admin."""
SUPERVISOR_FATES = ("released", "cancelled")


@dataclass(frozen=True)
class PrintOperator:
    person_id: str
    """Empty: a CUPS user that maps to no person."""
    name: str
    held: int
    released: int
    cancelled: int
    expired: int
    withdrawn: int
    printed: int
    """Jobs that came out of the real printer."""
    pages: int
    """Pages of those jobs, as the printer reported them; a job without a count adds none."""


@dataclass(frozen=True)
class PrintSupervisor:
    actor: str
    person_id: str
    """The supervisor's person, for a card; empty for a key or the command line."""
    name: str
    released: int
    cancelled: int


def tally(events: Iterable[Mapping[str, Any]], subjects: Mapping[str, str], people: Mapping[str, str]
          ) -> tuple[tuple[PrintOperator, ...], tuple[PrintSupervisor, ...]]:
    """The period's print events (rows with ``kind`` ``print`` and the event as ``payload``;
    others are skipped) counted per operator and per supervisor. ``subjects``: subject -> person
    id; ``people``: person id -> name."""
    seen: set[tuple[str, str, str]] = set()
    operators: dict[str, dict[str, int]] = {}
    supervisors: dict[str, dict[str, int]] = {}
    for e in events:
        if e["kind"] != "print":
            continue
        p = json.loads(e["payload"])
        action = p.get("action")
        # As text: the recorder keeps a payload as a node sent it, and a job id that is a list
        # or an object must not stop the report.
        key = (str(p.get("node") or e.get("node") or ""), json.dumps(p.get("job"), sort_keys=True), str(action))
        if key in seen:
            continue
        seen.add(key)
        subject = p.get("subject")
        pid = str(e.get("person_id") or (subjects.get(subject, subject) if isinstance(subject, str) else "") or "")
        if action in OPERATOR_FATES or action == "printed":
            counts = operators.setdefault(pid, dict.fromkeys((*OPERATOR_FATES, "printed", "pages"), 0))
            if action == "printed":
                counts["printed"] += 1
                pages = p.get("pages")
                counts["pages"] += pages if isinstance(pages, int) and not isinstance(pages, bool) and pages > 0 else 0
            else:
                counts[action] += 1
        actor = p.get("actor")
        if action in SUPERVISOR_FATES and isinstance(actor, str) and actor:
            done = supervisors.setdefault(actor, dict.fromkeys(SUPERVISOR_FATES, 0))
            done[action] += 1
    ops = [PrintOperator(pid, people.get(pid, ""), c["held"], c["released"], c["cancelled"], c["expired"], c["left"],
                         c["printed"], c["pages"]) for pid, c in operators.items()]
    sups = []
    for actor, c in supervisors.items():
        how, _, who = actor.partition(":")
        spid = subjects.get(who, who) if how == "supervisor" else ""
        sups.append(PrintSupervisor(actor, spid, people.get(spid, ""), c["released"], c["cancelled"]))
    return (tuple(sorted(ops, key=lambda o: (o.person_id == "", o.name, o.person_id))),
            tuple(sorted(sups, key=lambda s: s.actor)))
