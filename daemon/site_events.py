"""The recorder's events read back in the shape of a node's own records: one row per event,
with the columns of the node's ``events`` table (``kind``, ``door``, ``reader``, ``direction``,
``result``, ``reason``, ``rule``, ``person_id``) and the ``node`` it came from, so that the
listing and the report read the site the way they read one node.

The recorder stores each payload as it came (docs/recorder.md); the columns are taken from it
here, by the topic's kind (``door``, ``desk``, ``usb``, ``print``: the second segment after the
site), as each node fills its own table: a desk's event has the desk in ``reader`` and its kind
in ``result``, a USB event its action in ``result``, a print event its action in ``result``, its
refusal's reason in ``reason`` and how its fate came (``by``: card, command, cli, expiry...) in
``rule``. ``person_id`` is the person the subject
names at this node (site_names.py), or the subject itself. A payload of a kind this release
does not know is kept as ``kind`` = the topic's word with empty columns: listed, never
dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .site_names import SiteNames

if TYPE_CHECKING:  # recorder_store keeps whereabouts (whereabouts.py), which reads topics with kind_of
    from .recorder_store import Received

COLUMNS = ("node", "seq", "ts", "kind", "door", "reader", "direction", "result", "reason", "rule", "area",
           "subject", "person_id", "name", "id")


def kind_of(topic: str) -> str:
    """``sekisho/v1/<site>/<kind>/<name>/event`` -> ``<kind>``."""
    parts = topic.split("/")
    return parts[3] if len(parts) > 4 else ""


def row(event: Received, names: SiteNames) -> dict[str, Any]:
    p = json.loads(event.payload)
    kind = kind_of(event.topic)
    subject = p.get("subject")
    person = names.person(subject if isinstance(subject, str) else None)
    r: dict[str, Any] = dict.fromkeys(COLUMNS)
    r.update(node=event.node, seq=event.seq, ts=event.ts, kind=kind, subject=subject, id=event.id,
             person_id=person.id if person else None, name=person.name if person else None,
             area=p.get("area"), payload=event.payload)
    if kind == "door" and p.get("kind") == "fire":
        r.update(door=p.get("door"), reader=p.get("input"), result="fire", reason=p.get("state"), rule="input.fire")
    elif kind == "door":
        r.update(door=p.get("door"), reader=p.get("reader"), direction=p.get("direction"), result=p.get("result"),
                 reason=p.get("reason"), rule=p.get("rule"))
    elif kind == "desk":
        r.update(reader=p.get("desk"), result=p.get("kind"), reason=p.get("reason"), rule=p.get("rule"))
    elif kind == "usb":
        r.update(result=p.get("action"), reason=p.get("reason"), rule=p.get("rule"))
    elif kind == "print":
        r.update(result=p.get("action"), reason=p.get("reason"), rule=p.get("by"))
    return r


def rows(events: Iterable[Received], names: SiteNames) -> list[dict[str, Any]]:
    """Each event as a row; one whose payload is not JSON cannot be in the store (it refuses it)."""
    return [row(e, names) for e in events]
