"""Home Assistant MQTT discovery (docs/homeassistant.md): this node as one Home Assistant device
whose entities read the node's own topics. Off unless ``[homeassistant] enabled``.

What it promises:
  - **Read-only.** No component has a ``command_topic``: Home Assistant can show a door, never
    open it; a door opens only on a signed command (docs/mqtt.md). A door's lock is therefore a
    ``binary_sensor`` of device class ``lock``, not an MQTT ``lock``, which Home Assistant
    accepts only with a command topic.
  - **Pseudonyms only.** Entities carry states, counts and the card events' result, reason and
    pseudonym; never a card. The config refuses discovery on a site that publishes names
    (``publish_names``): Home Assistant receives the whole payloads of the topics it reads.
  - **One device per node**, on ``<prefix>/device/sekisho_<site>_<node>/config`` (site and node
    names are lower-case letters, digits and '-', all allowed in a discovery topic, so the
    underscores between them cannot be confused with anything in them). One topic per node is
    one line in the broker's ACL, and the node's own retained payload is the memory of what it
    announced before.

What it does when the world changes:
  - On each connection it publishes its device, retained, and reads its own topic back. The
    broker answers with what was retained there before (the previous run's announcement). A
    component in it that this config no longer has (a door or desk taken out of the file) is
    removed as Home Assistant documents it: one update with that component reduced to its
    ``platform``, then the update without it; with nothing left, an empty retained payload
    removes the whole device. No state file: the broker holds the last word.
  - When Home Assistant says ``online`` on ``<prefix>/status`` (its birth message, after it
    restarts), the device is published again.
  - A payload that cannot be read on our own topic is logged and replaced by ours.

``device_payload`` is pure (config in, payload out): tests/test_home_assistant.py holds it to
Home Assistant's documented fields.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .config import Config
from .topics import Topics

log = logging.getLogger(__name__)

ONLINE = b"online"
"""Home Assistant's birth message on <prefix>/status (its default, which the MQTT integration keeps)."""

DESK_STATES = ("vacant", "in_use", "away", "locked", "unlocked")
"""docs/mqtt.md, desk/<desk>/state: the values of ``state``, the options of the desk's enum sensor."""
CARD_EVENTS = ("granted", "denied")
"""The event types of a door's card events: the ``result`` of an access event."""

# What Home Assistant is told to read. Each renders the JSON our topics carry (value_json) to the
# payload its platform expects: ON/OFF for a binary sensor (None: unknown), the state for a
# sensor, a JSON object with event_type for an event (nothing: no event, as for a fire record).
LOCK_TEMPLATE = ("{% if value_json.lock == 'unlocked' %}ON{% elif value_json.lock == 'locked' %}OFF"
                 "{% else %}None{% endif %}")
CONTACT_TEMPLATE = ("{% if value_json.contact == 'open' %}ON{% elif value_json.contact == 'closed' %}OFF"
                    "{% else %}None{% endif %}")
ALARM_TEMPLATE = "{{ 'ON' if value_json.alarm else 'OFF' }}"
DESK_TEMPLATE = "{{ value_json.state }}"
OCCUPANCY_TEMPLATE = "{{ value_json.count }}"
AVAILABILITY_TEMPLATE = "{{ value_json.state }}"


def card_event_template() -> str:
    """A door event (kind ``access``) as Home Assistant's event: ``event_type`` granted or
    denied, with its reason, direction, reader and the person's pseudonym. A ``fire`` record
    renders nothing, which Home Assistant ignores."""
    fields = {"event_type": "result", "reason": "reason", "direction": "direction", "reader": "reader",
              "subject": "subject"}
    body = ", ".join(f"'{k}': value_json.{v}" for k, v in fields.items())
    return "{% if value_json.kind == 'access' %}{{ {" + body + "} | tojson }}{% endif %}"


def object_id(config: Config) -> str:
    """The device's id in its discovery topic and its identifier: ``sekisho_<site>_<node>``."""
    return f"sekisho_{config.site.id}_{config.site.node}"


def device_topic(config: Config) -> str:
    return f"{config.homeassistant.prefix}/device/{object_id(config)}/config"


def status_topic(config: Config) -> str:
    """Where Home Assistant says ``online`` when it (re)starts."""
    return f"{config.homeassistant.prefix}/status"


def device_payload(config: Config, version: str) -> dict[str, Any] | None:
    """The device discovery payload for this node, or None when it has nothing to show (no
    door, desk or area of its own)."""
    components = _components(config)
    if not components:
        return None
    node, oid = config.site.node, object_id(config)
    topics = Topics(config.site.id)
    return {
        "device": {"identifiers": [oid], "name": f"sekisho {node}", "manufacturer": "sekisho",
                   "model": "sekisho node", "sw_version": version},
        "origin": {"name": "sekisho", "sw_version": version},
        "availability": [{"topic": topics.node_status(node), "value_template": AVAILABILITY_TEMPLATE,
                          "payload_available": "online", "payload_not_available": "offline"}],
        "qos": 1,
        "components": components,
    }


def _components(config: Config) -> dict[str, dict[str, Any]]:
    topics = Topics(config.site.id)
    oid = object_id(config)
    out: dict[str, dict[str, Any]] = {}

    def add(key: str, platform: str, name: str, state_topic: str, value_template: str, **more: Any) -> None:
        out[key] = {"platform": platform, "unique_id": f"{oid}_{key}", "name": name, "state_topic": state_topic,
                    "value_template": value_template, **more}

    for door in sorted(config.doors):
        state = topics.door_state(door)
        add(f"door_{door}_lock", "binary_sensor", f"{door} lock", state, LOCK_TEMPLATE, device_class="lock")
        add(f"door_{door}_contact", "binary_sensor", f"{door} contact", state, CONTACT_TEMPLATE, device_class="door")
        add(f"door_{door}_alarm", "binary_sensor", f"{door} alarm", state, ALARM_TEMPLATE, device_class="problem")
        add(f"door_{door}_card", "event", f"{door} card", topics.door_event(door),
            card_event_template(), event_types=list(CARD_EVENTS),
            icon="mdi:badge-account-horizontal")
    for desk in sorted(config.desks):
        add(f"desk_{desk}_state", "sensor", f"{desk} state", topics.desk_state(desk), DESK_TEMPLATE,
            device_class="enum", options=list(DESK_STATES), icon="mdi:desk")
    # The areas this node's doors lead into and out of: the ones whose occupancy it publishes.
    areas = {a for d in config.doors.values() for a in (d.area_in, d.area_out) if a}
    for area in sorted(areas):
        add(f"area_{area}_occupancy", "sensor", f"{area} occupancy", topics.area_occupancy(area), OCCUPANCY_TEMPLATE,
            state_class="measurement", icon="mdi:account-group")
    return out


def removals(previous: bytes, current: dict[str, Any] | None) -> list[bytes]:
    """What to publish, in order, so that Home Assistant drops the components ``previous`` (the
    payload retained on our topic) announced and ``current`` no longer has: [] when there are
    none; an empty payload (the whole device) when nothing is left; else the current payload
    with each of them reduced to its ``platform``, then the current payload (Home Assistant's
    documented way to remove one component of a device)."""
    try:
        announced = json.loads(previous)["components"]
        stale = {key: str(c["platform"]) for key, c in announced.items()
                 if isinstance(c, dict) and set(c) != {"platform"} and key not in (current or {}).get("components", {})}
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        log.warning("the Home Assistant discovery payload retained on our topic cannot be read; replacing it")
        return []
    if not stale:
        return []
    if current is None:
        return [b""]
    removal = {**current, "components": {**current["components"], **{k: {"platform": p} for k, p in stale.items()}}}
    return [encode(removal), encode(current)]


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True).encode()


Publish = Callable[[str, bytes], None]
"""Publish retained at QoS 1 on the daemon's connection (``Publisher.publish_retained``)."""


class HomeAssistantDiscovery:
    """Announces the node to Home Assistant on the daemon's broker connection."""

    def __init__(self, config: Config, version: str, publish: Publish) -> None:
        self.topic = device_topic(config)
        self.status_topic = status_topic(config)
        self.current = device_payload(config, version)
        self.publish = publish

    def connected(self) -> None:
        """On each connection: our device, as it is now (nothing when there is nothing to show)."""
        self.announce()

    def announce(self) -> None:
        if self.current is not None:
            self.publish(self.topic, encode(self.current))

    def heard_status(self, topic: str, payload: bytes) -> None:
        """Home Assistant's birth message: it has (re)started and needs the device again."""
        if payload.strip() == ONLINE:
            log.info("Home Assistant is online; announcing this node on %s", self.topic)
            self.announce()

    def heard_own(self, topic: str, payload: bytes) -> None:
        """Our own topic: the previous run's announcement (retained) or our own echo. Components
        it has that this config has not are removed from Home Assistant."""
        if not payload:
            return
        messages = removals(payload, self.current)
        if messages:
            log.info("removing from Home Assistant what this node's config no longer has")
        for message in messages:
            self.publish(self.topic, message)
