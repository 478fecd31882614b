"""The site as the bus tells it, for ``sekisho watch``: what console/state.js is to the page.

Pure: no broker, no terminal, no clock. ``Site.apply`` takes one message (its topic and payload
bytes) and returns it parsed, or None when there is nothing to show for it; the screen and the
line mode (watch_view.py) read the result. The rules are the page's, so the two views of one
bus never disagree:

- Retained topics (node status, door and desk state, occupancy, alarms) replace what was known.
- Events (door, desk, USB, print) go to a bounded stream, ``STREAM_MAX`` long, each ``id`` once: QoS 1
  may deliver a message twice (docs/mqtt.md), and a repeat is dropped, not shown twice.
- An alarm is open from its first retained message until an empty retained message closes it;
  its last step before that (cleared and acknowledged) closes it already, since it says so.
- Open alarms are ordered by severity (critical, warning, anything else), then by ``raised``;
  nodes offline first, then those not heard from, then the online ones, each by name.

What does not parse (not JSON, not an object, a topic outside the contract) is ignored: the
watch shows what the contract says and never falls over on what it does not. The config's
doors, desks, areas and nodes are known from the start (``Layout``), so a door that has said
nothing yet is listed as unknown rather than missing.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .topics import Topics

STREAM_MAX = 200
"""Events kept for the screen, as the page keeps them (console/state.js STREAM_MAX)."""
SEVERITY = {"critical": 0, "warning": 1}
"""Most severe first; a severity not listed here sorts after these."""

Payload = Mapping[str, Any]
"""A message's JSON object, as the contract (docs/mqtt.md) describes it."""


@dataclass(frozen=True)
class Layout:
    """What the config says before the bus says anything: names to list, the zone to show
    times in."""

    base: str
    timezone: str
    doors: tuple[str, ...] = ()
    desks: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: Config) -> Layout:
        """This node's doors, desks and areas; itself and the nodes it watches ([site] watch_nodes)."""
        return cls(base=Topics(cfg.site.id).base, timezone=cfg.site.timezone, doors=tuple(cfg.doors),
                   desks=tuple(cfg.desks), areas=tuple(cfg.areas), nodes=(cfg.site.node, *cfg.site.watch_nodes))


@dataclass(frozen=True)
class Message:
    """One message of the bus, as the watch took it. ``group`` and ``leaf`` are the topic's
    words (``door`` and ``event`` for ``door/<name>/event``; ``alarm`` and ``""`` for
    ``alarm/<id>``; ``cmd`` and ``""`` or ``result``), ``name`` the door, desk, area, node, USB
    host or alarm id. ``payload`` is None for an emptied retained topic (a closed alarm)."""

    group: str
    name: str
    leaf: str
    payload: Payload | None
    retained: bool = False
    alarm: Alarm | None = None
    """For an alarm's message, the alarm as it now stands, or as it stood when this closed it
    (None when it closes one the watch never saw open)."""

    @property
    def closes_alarm(self) -> bool:
        return self.group == "alarm" and (self.payload is None or _closed(self.payload))


@dataclass(frozen=True)
class Alarm:
    id: str
    kind: str
    source: str
    severity: str
    subject: str | None
    raised: str | None
    cleared: str | None
    acked_by: str | None
    acked_at: str | None

    @classmethod
    def of(cls, alarm_id: str, p: Payload) -> Alarm:
        return cls(id=alarm_id, kind=_text(p.get("kind")), source=_text(p.get("source")),
                   severity=_text(p.get("severity")), subject=_opt(p.get("subject")), raised=_opt(p.get("raised")),
                   cleared=_opt(p.get("cleared")), acked_by=_opt(p.get("acked_by")), acked_at=_opt(p.get("acked_at")))

    @property
    def rank(self) -> tuple[int, str]:
        return SEVERITY.get(self.severity, len(SEVERITY)), self.raised or ""


@dataclass
class Door:
    state: Payload | None = None
    last: Payload | None = None
    """The door's latest access or fire event."""


@dataclass(frozen=True)
class Event:
    """One entry of the stream: a door, desk or USB event, ``where`` its door, desk or host."""

    group: str
    where: str
    payload: Payload


@dataclass
class Site:
    """Everything the watch knows, changed only by ``apply``."""

    layout: Layout
    alarms: dict[str, Alarm] = field(default_factory=dict)
    doors: dict[str, Door] = field(default_factory=dict)
    desks: dict[str, Payload | None] = field(default_factory=dict)
    areas: dict[str, Payload | None] = field(default_factory=dict)
    nodes: dict[str, Payload | None] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=deque)
    """Oldest first, at most STREAM_MAX."""
    seen: set[str] = field(default_factory=set)
    """The ids of the events in the stream."""

    def __post_init__(self) -> None:
        for name in self.layout.doors:
            self.doors.setdefault(name, Door())
        for name in self.layout.desks:
            self.desks.setdefault(name, None)
        for name in self.layout.areas:
            self.areas.setdefault(name, None)
        for name in self.layout.nodes:
            self.nodes.setdefault(name, None)

    def apply(self, topic: str, body: bytes, retained: bool = False) -> Message | None:
        """Take one message; what it was, or None when it is not the site's, not a JSON object,
        an event already seen, or nothing the contract names."""
        prefix = self.layout.base + "/"
        if not topic.startswith(prefix):
            return None
        words = topic[len(prefix):].split("/")
        payload: Payload | None = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past any payload
                return None
            if not isinstance(parsed, dict):
                return None
            payload = parsed
        match words:
            case ["alarm", alarm_id] if alarm_id:
                if payload is None:
                    return Message("alarm", alarm_id, "", None, retained, self.alarms.pop(alarm_id, None))
                alarm = Alarm.of(alarm_id, payload)
                if _closed(payload):
                    self.alarms.pop(alarm_id, None)
                else:
                    self.alarms[alarm_id] = alarm
                return Message("alarm", alarm_id, "", payload, retained, alarm)
            case _ if payload is None:
                return None
            case ["node", name, "status"]:
                self.nodes[name] = payload
            case ["door", name, "state"]:
                self.doors.setdefault(name, Door()).state = payload
            case ["door", name, "event"]:
                if not self._stream("door", name, payload):
                    return None
                self.doors.setdefault(name, Door()).last = payload
            case ["area", name, "occupancy"]:
                self.areas[name] = payload
            case ["desk", name, "state"]:
                self.desks[name] = payload
            case ["desk" | "usb" | "print" as group, name, "event"]:
                if not self._stream(group, name, payload):
                    return None
            case ["cmd", name]:
                return Message("cmd", name, "", payload, retained)
            case ["cmd", name, "result"]:
                return Message("cmd", name, "result", payload, retained)
            case _:
                return None
        return Message(words[0], words[1], words[2], payload, retained)

    def _stream(self, group: str, where: str, payload: Payload) -> bool:
        """Add an event to the stream; False when its id is already there (a QoS 1 repeat)."""
        event_id = payload.get("id")
        if isinstance(event_id, str):
            if event_id in self.seen:
                return False
            self.seen.add(event_id)
        self.events.append(Event(group, where, payload))
        while len(self.events) > STREAM_MAX:
            gone = self.events.popleft().payload.get("id")
            if isinstance(gone, str):
                self.seen.discard(gone)
        return True

    def open_alarms(self) -> list[Alarm]:
        """Most severe first, then the earliest raised."""
        return sorted(self.alarms.values(), key=lambda a: a.rank)

    def nodes_offline_first(self) -> list[tuple[str, Payload | None]]:
        """Offline nodes first, then those not heard from (None), then the online ones; by name."""
        def rank(item: tuple[str, Payload | None]) -> tuple[int, str]:
            name, status = item
            return (1 if status is None else 0 if status.get("state") == "offline" else 2), name
        return sorted(self.nodes.items(), key=rank)


def _closed(p: Payload) -> bool:
    """The last step of an alarm: cleared and acknowledged (the empty message follows)."""
    return bool(p.get("cleared")) and bool(p.get("acked_by"))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
