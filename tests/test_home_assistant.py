"""Home Assistant MQTT discovery (issue 14, item 5; docs/homeassistant.md).

The payload is checked against the fields Home Assistant documents for device-based discovery
(integrations/mqtt, "Device discovery payload"; the schemas of its MQTT integration): a
``device`` with identifiers, an ``origin`` with a name, ``components`` each with a
``platform`` and a ``unique_id``, ``availability`` on the node's status, full key names. Its
templates are rendered with jinja2, as Home Assistant renders them, against what the daemon
really publishes on the topics they name. Then a real mosquitto and the daemon: the device is
retained on start when enabled and absent when not, published again on Home Assistant's birth
message, and what a new config drops is removed as Home Assistant documents it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2.sandbox
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness import Subscriber, wait_for
from sekisho.daemon import config as config_module
from sekisho.daemon import home_assistant as ha
from sekisho.daemon.errors import ConfigError
from sekisho.daemon.topics import Topics

OBJECT_ID = "sekisho_test_door-a"
DISCOVERY = f"homeassistant/device/{OBJECT_ID}/config"
STATUS = "sekisho/v1/test/node/door-a/status"
NAME = "Hanako Yamada"

# Home Assistant's discovery topic, as its MQTT integration matches it (discovery.py).
HA_TOPIC = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
# The abbreviations Home Assistant also accepts (a sample of its table); we write keys in full.
ABBREVIATIONS = {"p", "cmps", "dev", "o", "uniq_id", "stat_t", "val_tpl", "avty", "avty_t", "ids", "mf", "mdl", "sw",
                 "url", "dev_cla", "evt_typ", "pl_avail", "pl_not_avail", "t", "ic", "stat_cla", "ops"}
PLATFORM_STATES = {"binary_sensor": {"ON", "OFF", "None"}}

DOOR = """
[doors.{door}]
area_in = "{area_in}"
area_out = "{area_out}"

[readers.{door}-in]
driver = "sim"
door = "{door}"
direction = "in"
"""
DESK = """
[desks.desk-01]

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""


def config_text(url: str, *, enabled: bool = True, doors: tuple[str, ...] = ("entrance", "back"), desk: bool = True,
                publish_names: bool = False) -> str:
    """A node with the doors named (entrance: room from the lobby; back: the yard from the
    room), the desk if asked, and Home Assistant's discovery on or off."""
    areas = {"entrance": ("room", "lobby"), "back": ("yard", "room")}
    text = f"""[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"
publish_names = {json.dumps(publish_names)}

[mqtt]
url = "{url}"
reconnect_max_s = 1
flush_timeout_s = 5

[areas.room]

[areas.lobby]

[areas.yard]
"""
    if doors or desk:
        text += f"""
[levels.staff]
doors = {json.dumps(list(doors))}
desks = {json.dumps(["desk-01"] if desk else [])}
"""
    for door in doors:
        text += DOOR.format(door=door, area_in=areas[door][0], area_out=areas[door][1])
    if desk:
        text += DESK
    if enabled:
        text += '\n[homeassistant]\nenabled = true\n'
    return text


def load(tmp_path, **kw: Any) -> config_module.Config:
    path = tmp_path / "ha.toml"
    path.write_text(config_text("mqtt://127.0.0.1:1883", **kw))
    return config_module.load(path)


ENV = jinja2.sandbox.ImmutableSandboxedEnvironment()


def payload_of(cfg: config_module.Config) -> dict[str, Any]:
    payload = ha.device_payload(cfg, "0.1.0")
    assert payload is not None
    return payload


def render(template: str, payload: bytes) -> str:
    """A value template as Home Assistant renders it for an incoming message: ``value`` is the
    payload, ``value_json`` the payload parsed (models.py, MqttValueTemplate)."""
    return ENV.from_string(template).render(value=payload.decode(), value_json=json.loads(payload))


def keys(obj: Any) -> set[str]:
    """Every key at any depth."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in keys(v)}
    return set()


# ----------------------------------------------------------------------------- the payload
def test_the_payload_has_the_fields_home_assistant_documents(tmp_path):
    cfg = load(tmp_path)
    assert ha.device_topic(cfg) == DISCOVERY
    prefix, rest = DISCOVERY.split("/", 1)
    match = HA_TOPIC.fullmatch(rest)
    assert prefix == "homeassistant" and match and match["component"] == "device" and match["node_id"] is None
    assert match["object_id"] == OBJECT_ID

    payload = ha.device_payload(cfg, "0.1.0")
    assert payload is not None
    # Shared options at the root: device and origin (both required), availability, qos.
    assert set(payload) == {"device", "origin", "availability", "qos", "components"}
    assert payload["device"] == {"identifiers": [OBJECT_ID], "name": "sekisho door-a", "manufacturer": "sekisho",
                                 "model": "sekisho node", "sw_version": "0.1.0"}
    assert payload["origin"] == {"name": "sekisho", "sw_version": "0.1.0"}  # name is required
    assert payload["availability"] == [{"topic": STATUS, "value_template": "{{ value_json.state }}",
                                        "payload_available": "online", "payload_not_available": "offline"}]
    assert payload["qos"] == 1
    assert not keys(payload) & ABBREVIATIONS, "keys are written in full"

    topics = Topics("test")
    expected = {
        "door_entrance_lock": ("binary_sensor", "lock", topics.door_state("entrance")),
        "door_entrance_contact": ("binary_sensor", "door", topics.door_state("entrance")),
        "door_entrance_alarm": ("binary_sensor", "problem", topics.door_state("entrance")),
        "door_entrance_card": ("event", None, topics.door_event("entrance")),
        "door_back_lock": ("binary_sensor", "lock", topics.door_state("back")),
        "door_back_contact": ("binary_sensor", "door", topics.door_state("back")),
        "door_back_alarm": ("binary_sensor", "problem", topics.door_state("back")),
        "door_back_card": ("event", None, topics.door_event("back")),
        "desk_desk-01_state": ("sensor", "enum", topics.desk_state("desk-01")),
        "area_room_occupancy": ("sensor", None, topics.area_occupancy("room")),
        "area_lobby_occupancy": ("sensor", None, topics.area_occupancy("lobby")),
        "area_yard_occupancy": ("sensor", None, topics.area_occupancy("yard")),
    }
    components = payload["components"]
    assert {k: (c["platform"], c.get("device_class"), c["state_topic"]) for k, c in components.items()} == expected
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids) and all(u.startswith(f"{OBJECT_ID}_") for u in unique_ids)
    for key, c in components.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", key) and re.fullmatch(r"[a-zA-Z0-9_-]+", c["unique_id"])
        assert c["name"] and c["value_template"]
    events = [c for c in components.values() if c["platform"] == "event"]
    assert all(c["event_types"] == ["granted", "denied"] for c in events)
    desk = components["desk_desk-01_state"]
    # An enum sensor lists its states and has neither a state class nor a unit.
    assert desk["options"] == ["vacant", "in_use", "away", "locked", "unlocked"]
    assert "state_class" not in desk and "unit_of_measurement" not in desk
    assert components["area_room_occupancy"]["state_class"] == "measurement"


def test_the_config_key_is_off_by_default_and_checked(tmp_path):
    assert load(tmp_path, enabled=False).homeassistant == config_module.HomeAssistantConfig(False, "homeassistant")
    path = tmp_path / "bad.toml"
    path.write_text(config_text("mqtt://127.0.0.1:1883", enabled=False)
                    + '\n[homeassistant]\nenabled = "yes"\nprefix = "ha/#"\ncommand_topic = "x"\n')
    with pytest.raises(ConfigError) as exc:
        config_module.load(path)
    assert [line.split(": ", 1)[1] for line in exc.value.problems] == [
        "homeassistant.command_topic: unknown key (known: enabled, prefix)",
        "homeassistant.enabled: must be true or false, not a string 'yes'",
        "homeassistant.prefix: 'ha/#' is not a topic prefix: levels of letters, digits, '_' and '-', separated by "
        "'/' (no wildcards, no leading or trailing '/')",
    ]


def test_no_component_can_command_anything(tmp_path):
    """A door is never opened by an unsigned message: no command topic, at any depth, and the
    lock is a binary sensor (Home Assistant's MQTT lock requires a command_topic)."""
    payload = ha.device_payload(load(tmp_path), "0.1.0")
    assert payload is not None
    assert not [k for k in keys(payload) if "command" in k or k.endswith("_t") and k.startswith("cmd")]
    assert {c["platform"] for c in payload["components"].values()} == {"binary_sensor", "event", "sensor"}
    assert "sekisho/v1/test/cmd" not in json.dumps(payload)


def test_a_node_with_nothing_to_show_has_no_device(tmp_path):
    assert ha.device_payload(load(tmp_path, doors=(), desk=False), "0.1.0") is None


def test_the_templates_render_what_the_topics_carry(tmp_path):
    c = payload_of(load(tmp_path))["components"]

    def state(**fields: Any) -> bytes:
        return json.dumps({"lock": "locked", "mode": "normal", "contact": "closed", "alarm": None,
                           "ts": "2026-12-04T00:00:00.000Z", **fields}).encode()
    lock, contact, alarm = (c[f"door_entrance_{k}"]["value_template"] for k in ("lock", "contact", "alarm"))
    # device class lock: on means unlocked; door: on means open; problem: on means a problem.
    assert [render(lock, state(lock=v)) for v in ("locked", "unlocked")] == ["OFF", "ON"]
    assert [render(contact, state(contact=v)) for v in ("closed", "open", "unknown")] == ["OFF", "ON", "None"]
    assert [render(alarm, state(alarm=v)) for v in (None, "forced", "held_open")] == ["OFF", "ON", "ON"]
    desk = c["desk_desk-01_state"]["value_template"]
    assert render(desk, b'{"state": "in_use", "subject": "3f2c9a0b5e7d1c44", "since": "x", "ts": "x"}') == "in_use"
    occupancy = c["area_room_occupancy"]["value_template"]
    assert render(occupancy, b'{"count": 2, "subjects": ["3f2c9a0b5e7d1c44", "a90e11d2c3b4f5a6"], "ts": "x"}') == "2"

    card = c["door_entrance_card"]["value_template"]
    access = {"id": "5d0c", "seq": 42, "node": "door-a", "ts": "x", "kind": "access", "door": "entrance",
              "reader": "entrance-in", "direction": "in", "result": "granted", "reason": "card_and_pin",
              "rule": "level:operators", "subject": "3f2c9a0b5e7d1c44"}
    assert json.loads(render(card, json.dumps(access).encode())) == {
        "event_type": "granted", "reason": "card_and_pin", "direction": "in", "reader": "entrance-in",
        "subject": "3f2c9a0b5e7d1c44"}
    denied = {**access, "result": "denied", "reason": "unknown_card", "subject": None}
    assert json.loads(render(card, json.dumps(denied).encode()))["event_type"] == "denied"
    fire = {"id": "9a1e", "seq": 43, "node": "door-a", "ts": "x", "kind": "fire", "door": "entrance",
            "input": "fire", "state": "active", "released": True}
    assert render(card, json.dumps(fire).encode()) == ""  # an empty rendering: Home Assistant ignores it

    availability = payload_of(load(tmp_path))["availability"][0]["value_template"]
    assert [render(availability, json.dumps({"state": s, "ts": "x"}).encode()) for s in ("online", "offline")] == \
        ["online", "offline"]


def test_a_site_that_publishes_names_cannot_turn_discovery_on(tmp_path):
    """With publish_names the bus carries names, and Home Assistant's user receives the whole
    payloads of the topics its entities read: no template could keep the names out."""
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, publish_names=True)
    assert [line.split(": ", 1)[1] for line in exc.value.problems] == [
        "homeassistant.enabled: not with [site] publish_names = true: the topics Home Assistant reads would carry "
        "names (subject, and the occupancy's subjects) into its history"]
    assert load(tmp_path, publish_names=True, enabled=False).site.publish_names


def test_removals_follow_home_assistants_documented_steps(tmp_path):
    before = ha.device_payload(load(tmp_path), "0.1.0")
    after = ha.device_payload(load(tmp_path, doors=("entrance",), desk=False), "0.1.0")
    assert before is not None and after is not None
    dropped = set(before["components"]) - set(after["components"])
    assert dropped == {"door_back_lock", "door_back_contact", "door_back_alarm", "door_back_card",
                       "desk_desk-01_state", "area_yard_occupancy"}
    first, second = ha.removals(ha.encode(before), after)
    removal = json.loads(first)
    # Each dropped component reduced to its platform, the rest as they are; then without them.
    assert {k: c for k, c in removal["components"].items() if k in dropped} == \
        {k: {"platform": before["components"][k]["platform"]} for k in dropped}
    assert {k: c for k, c in removal["components"].items() if k not in dropped} == after["components"]
    assert json.loads(second) == after
    # Nothing dropped (our own echo, the removal's echo): nothing to do.
    assert ha.removals(ha.encode(after), after) == [] and ha.removals(first, after) == []
    # Nothing left: the empty payload removes the whole device.
    assert ha.removals(ha.encode(before), None) == [b""]
    assert ha.removals(b"not json", after) == []


# ----------------------------------------------------------------------------- the daemon
class HomeAssistant:
    """What Home Assistant does on the bus: it subscribes to the discovery prefix and says
    ``online`` on its status topic when it starts (not retained, as by default)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def birth(self) -> None:
        self.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def home_assistant(broker):
    h = HomeAssistant(broker.port)
    yield h
    h.close()


def discovery(sub: Subscriber) -> list[Any]:
    return [m.json for m in sub.on(DISCOVERY)]


def test_discovery_is_retained_on_start_and_its_topics_carry_what_its_templates_read(site, subscribe, broker,
                                                                                       home_assistant, logind):
    site.config.write_text(config_text(broker.url))
    site.enroll("hanako", "04a1b2c3", name=NAME)
    bus = subscribe("#")
    site.start()
    wait_for(lambda: discovery(bus), what="the discovery payload")
    late = subscribe("homeassistant/#")
    wait_for(lambda: late.on(DISCOVERY), what="the retained discovery payload")
    kept = late.on(DISCOVERY)[0]
    assert kept.retain and kept.qos == 1
    payload = kept.json
    assert set(payload["components"]) >= {"door_entrance_lock", "door_back_card", "desk_desk-01_state"}

    # A card at each door: one granted (a person with a name), one denied (an unknown card).
    site.tap("04a1b2c3", "entrance-in")
    site.tap("04ffffff", "back-in")
    wait_for(lambda: len(bus.events()) >= 2, what="the two door events")
    # The door events came after the discovery on the node's one connection: a node that
    # published it at all published it before them.
    topics = [m.topic for m in bus.messages]
    assert topics.index(DISCOVERY) < min(i for i, t in enumerate(topics) if t.endswith("/event"))

    def last(topic: str) -> bytes:
        return wait_for(lambda: [m.payload for m in bus.on(topic) if m.payload][-1:], what=topic)[0]

    availability = payload["availability"][0]
    assert render(availability["value_template"], last(availability["topic"])) == availability["payload_available"]
    for key, c in payload["components"].items():
        value = render(c["value_template"], last(c["state_topic"]))
        match c["platform"]:
            case "binary_sensor":
                assert value in {"ON", "OFF", "None"}, (key, value)
            case "sensor" if c.get("device_class") == "enum":
                assert value in c["options"], (key, value)
            case "sensor":
                assert value.isdigit(), (key, value)
            case "event":
                event = json.loads(value)
                assert event["event_type"] in c["event_types"], (key, event)
    rendered = {key: json.loads(render(c["value_template"], last(c["state_topic"])))
                for key, c in payload["components"].items() if c["platform"] == "event"}
    granted, denied = rendered["door_entrance_card"], rendered["door_back_card"]
    assert granted["event_type"] == "granted" and re.fullmatch(r"[0-9a-f]{16}", granted["subject"])
    assert denied == {"event_type": "denied", "reason": "unknown_card", "direction": "in", "reader": "back-in",
                      "subject": None}
    assert render(payload["components"]["door_entrance_lock"]["value_template"],
                  last(Topics("test").door_state("entrance"))) in {"ON", "OFF"}
    assert NAME not in json.dumps([m.payload.decode() for m in bus.messages if m.topic.startswith("homeassistant/")])

    # Home Assistant restarts: its birth message gets the device again.
    n = len(discovery(bus))
    home_assistant.birth()
    wait_for(lambda: len(discovery(bus)) > n, what="the discovery payload again after Home Assistant's birth")
    assert discovery(bus)[-1] == payload
    site.stop()


def test_nothing_is_published_for_home_assistant_when_disabled(site, subscribe, broker, home_assistant):
    site.config.write_text(config_text(broker.url, enabled=False, desk=False))
    bus = subscribe("#")
    site.start()
    home_assistant.birth()
    # A door event goes out after anything the node would have said on connecting: by the time
    # it arrives, a discovery payload would have too.
    site.tap("04ffffff", "entrance-in")
    wait_for(lambda: bus.events(), what="the door event")
    assert [m.topic for m in bus.messages if m.topic.startswith("homeassistant/")] == ["homeassistant/status"]
    site.stop()


def test_what_the_config_drops_is_removed_from_home_assistant(site, subscribe, broker, logind):
    """A door and the desk leave the config: after the restart Home Assistant is told to remove
    their components (each reduced to its platform), then gets the device without them; once the
    node has nothing left to show, an empty retained payload removes the device."""
    site.config.write_text(config_text(broker.url))
    bus = subscribe("homeassistant/#")
    site.start()
    wait_for(lambda: discovery(bus), what="the first discovery payload")
    before = discovery(bus)[-1]
    site.stop()

    site.config.write_text(config_text(broker.url, doors=("entrance",), desk=False))
    n = len(bus.messages)
    site.start()
    dropped = {"door_back_lock", "door_back_contact", "door_back_alarm", "door_back_card", "desk_desk-01_state",
               "area_yard_occupancy"}

    def removal() -> list[dict[str, Any]]:
        return [p for p in discovery(bus)[n:] if p and dropped <= set(p["components"])]
    wait_for(removal, what="the update that removes the dropped components")
    assert {k: removal()[0]["components"][k] for k in dropped} == \
        {k: {"platform": before["components"][k]["platform"]} for k in dropped}
    after = wait_for(lambda: [p for p in discovery(bus)[n:] if p and not dropped & set(p["components"])],
                     what="the update without them")[0]
    assert set(after["components"]) == set(before["components"]) - dropped
    late = subscribe("homeassistant/#")
    wait_for(lambda: late.on(DISCOVERY), what="the retained discovery payload")
    assert late.on(DISCOVERY)[-1].json == after
    site.stop()

    # Nothing left to show: the device goes, by an empty retained payload.
    site.config.write_text(config_text(broker.url, doors=(), desk=False))
    n = len(bus.messages)
    site.start()
    wait_for(lambda: [m for m in bus.messages[n:] if m.topic == DISCOVERY and m.payload == b""],
             what="the empty payload that removes the device")
    site.stop()
    # A new client subscribes to the discovery topic, then to the node's status: the broker
    # answers the two in order, so once the retained status is in, a retained discovery
    # payload would have been too.
    gone = subscribe(DISCOVERY)
    gone.client.subscribe(STATUS, qos=1)
    wait_for(lambda: gone.on(STATUS), what="the retained status at a new subscriber")
    assert not gone.on(DISCOVERY)
