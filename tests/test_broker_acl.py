"""The shipped broker config and ACL against the MQTT contract (issue 11, item 10): a real
mosquitto with passwords (made by mosquitto_passwd) and systemd/mosquitto-sekisho.acl as
shipped, the daemon on the topology of examples/sekisho.toml logging in as its node, the
officer's console as a subscriber, and the example's strike relay. Every topic docs/mqtt.md
says a node publishes must reach the officer; what a node must not publish must be refused by
the broker.

The example config and the example ACL are for the same site (tokyo-hq) and node (door-a), so
both are used as they are; the config is adapted only where a test must: simulated readers and
inputs instead of hardware, the test's broker and password file, the USB rules file by its
absolute path. The daemon runs under a umockdev testbed (a flash drive present, blocked), with
dbusmock's logind for the desk.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import REPO, Broker, Site, wait_for
from sekisho.daemon.topics import Topics
from usbfake import Kernel, Spec

EXAMPLE = REPO / "examples" / "sekisho.toml"
ACL = REPO / "systemd" / "mosquitto-sekisho.acl"
BROKER_CONF = REPO / "systemd" / "mosquitto-sekisho.conf"
CONTRACT = REPO / "docs" / "mqtt.md"
SITE, NODE = "tokyo-hq", "door-a"
PASSWORDS = {"door-a": "door-a-secret", "officer": "officer-secret", "door-a-relay": "relay-secret"}
FLASH = Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C530001230417116225")
NOT_AUTHORIZED = 0x87


def swap(text: str, old: str, new: str, count: int = 1) -> str:
    """Replace ``old``, which must occur exactly ``count`` times: an example that changed under
    the test fails it, rather than being tested half adapted."""
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times in the example, not {count}"
    return text.replace(old, new)


def example_config(port: int, password_file: Path) -> str:
    text = EXAMPLE.read_text()
    text = swap(text, 'url = "mqtts://broker.example.internal:8883"', f'url = "mqtt://127.0.0.1:{port}"')
    text = swap(text, 'username = "door-a"\n', f'username = "door-a"\npassword_file = "{password_file}"\n')
    text = swap(text, 'rules = "usb/call-centre.rules"', f'rules = "{REPO / "examples" / "usb" / "call-centre.rules"}"')
    # Hardware becomes simulated: the readers and the GPIO and evdev inputs, with their options.
    text = swap(text, 'driver = "pcsc"\n', 'driver = "sim"\n', count=2)
    text = swap(text, 'driver = "nfc"\n', 'driver = "sim"\n')
    text = swap(text, 'driver = "gpio"\nkind = "exit"', 'driver = "sim"\nkind = "exit"')
    text = swap(text, 'driver = "evdev"\nkind = "leave_seat"', 'driver = "sim"\nkind = "leave_seat"')
    for option in ('name = "ACS ACR122U PICC Interface 00 00"\n', 'path = "usb:054c:06c3"\n',
                   'name = "SONY FeliCa RC-S300/P*"\n', "line = 22\n", "active_low = true\n", 'bias = "pull-up"\n',
                   'device = "/dev/input/by-id/usb-*-event-kbd"\n', 'key = "KEY_PAUSE"\n'):
        text = swap(text, option, "")
    return text


def broker_config(port: int, password_file: Path, workdir: Path) -> str:
    """systemd/mosquitto-sekisho.conf's authentication as shipped, on a plain local listener
    (its TLS listeners, MQTT and WebSockets, need certificates a test does not have)."""
    kept = [line for line in BROKER_CONF.read_text().splitlines()
            if line.strip() and not line.startswith("#") and line.split()[0] not in ("listener", "certfile", "keyfile",
                                                                                    "cafile", "protocol")]
    text = "\n".join(kept) + "\n"
    text = swap(text, "password_file /etc/mosquitto/sekisho.passwd", f"password_file {password_file}")
    text = swap(text, "acl_file /etc/mosquitto/sekisho.acl", f"acl_file {ACL}")
    assert "allow_anonymous false" in text
    # user root: run as root, mosquitto would switch to its own user and could not read the files.
    return text + f"listener {port} 127.0.0.1\nuser root\nlog_dest file {workdir / 'mosquitto.log'}\n"


def contract_topics() -> list[str]:
    """The topics of docs/mqtt.md's table, as written (`door/<door>/event`, ...)."""
    section = CONTRACT.read_text().split("## Topics", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([a-z0-9/<>_-]+)` \|", section, re.M)


class Client:
    """A real MQTT 5 client logged in with a user name and password, recording what arrives and
    the reason code of every PUBACK."""

    def __init__(self, port: int, user: str, subscribe: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, int] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, PASSWORDS[user])
        self.refused: list[Any] = []

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                self.refused.append(reason)
                self.ready.set()
            elif subscribe:
                c.subscribe(subscribe, qos=1)
            else:
                self.ready.set()
        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10) and not self.refused, f"{user} could not log in: {self.refused}"

    def _on_message(self, c: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def _on_publish(self, c: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self.lock:
            self.acks[mid] = reason.value

    def topics(self) -> set[str]:
        with self.lock:
            return {m.topic for m in self.messages}

    def publish(self, topic: str, payload: str) -> int:
        """Publish at QoS 1 and return the broker's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return wait_for(lambda: self.acks.get(info.mid, None) is not None and [self.acks[info.mid]],
                        what=f"the PUBACK for {topic}")[0]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def site_broker(tmp_path):
    """mosquitto with the shipped authentication: password file and ACL."""
    password_file = tmp_path / "sekisho.passwd"
    for n, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if n == 0 else []), "-b", str(password_file), user, password],
                       check=True, timeout=30)
    broker = Broker(tmp_path)
    broker.conf.write_text(broker_config(broker.port, password_file, tmp_path))
    broker.start()
    node_password = tmp_path / "door-a.password"
    node_password.write_text(PASSWORDS["door-a"] + "\n")
    node_password.chmod(0o600)
    yield broker, node_password
    broker.stop()


@pytest.fixture
def clients():
    made: list[Client] = []

    def make(port: int, user: str, subscribe: str | None = None) -> Client:
        made.append(Client(port, user, subscribe))
        return made[-1]
    yield make
    for c in made:
        c.close()


def test_the_example_acl_lets_the_example_node_publish_the_whole_contract(tmp_path, site_broker, clients, testbed,
                                                                          logind):
    broker, node_password = site_broker
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)  # present at start: the rules block it, which is a usb event
    site = Site(tmp_path, broker)
    site.config.write_text(example_config(broker.port, node_password))
    officer = clients(broker.port, "officer", f"sekisho/v1/{SITE}/#")
    relay = clients(broker.port, "door-a-relay", "cmnd/door-a/#")  # the example's strike is a relay
    site.start()
    try:
        site.tap("04ffffff", "entrance-in")  # an unknown card: a door event
        site.tap("04ffffff", "desk-01")  # the same at the desk: a desk event
        assert site.sim("entrance-contact", {"op": "set", "active": True}) == {"ok": True}  # forced: an alarm
        assert officer.publish(f"sekisho/v1/{SITE}/cmd/{NODE}", "{}") == 0  # answered on cmd/door-a/result
        topics = Topics(SITE)
        expected = {
            "node/<node>/status": [topics.node_status(NODE)],
            "door/<door>/event": [topics.door_event("entrance")],
            "door/<door>/state": [topics.door_state("entrance")],
            "area/<area>/occupancy": [topics.area_occupancy("operator-room"), topics.area_occupancy("lobby")],
            "alarm/<alarm-id>": [topics.alarm(f"{NODE}.entrance.forced")],
            "desk/<desk>/state": [topics.desk_state("desk-01")],
            "desk/<desk>/event": [topics.desk_event("desk-01")],
            "cmd/<node>/result": [topics.command_result(NODE)],
            "usb/<host>/event": [topics.usb_event(NODE)],
            "usb/<host>/exceptions": [topics.usb_exceptions(NODE)],
        }
        # Every topic of the contract but the one the officer publishes (cmd/<node>) is the node's.
        assert set(contract_topics()) - {"cmd/<node>"} == set(expected), "docs/mqtt.md's topics changed"

        def missing() -> list[str]:
            seen = officer.topics()
            return [t for ts in expected.values() for t in ts
                    if not any(s == t or (t.endswith("-") and s.startswith(t)) for s in seen)]
        try:
            wait_for(lambda: not missing(), timeout=15, what="every topic of the contract at the officer")
        except AssertionError:
            raise AssertionError(f"never reached the officer: {missing()}; the broker's log ends:\n"
                                 + "\n".join((tmp_path / "mosquitto.log").read_text().splitlines()[-20:])) from None
        # The strike is driven locked at start, through the broker, to the relay's own user.
        wait_for(lambda: [m for m in relay.messages if (m.topic, m.payload) == ("cmnd/door-a/POWER", b"OFF")],
                 what="the strike's lock at the relay")
        status = [m for m in officer.messages if m.topic == topics.node_status(NODE)]
        assert json.loads(status[0].payload)["state"] == "online"
        # The retained ones were kept: a console that connects now gets them at once.
        late = clients(broker.port, "officer", f"sekisho/v1/{SITE}/#")
        retained = [*expected["node/<node>/status"], *expected["door/<door>/state"],
                    *expected["area/<area>/occupancy"], *expected["desk/<desk>/state"],
                    *expected["usb/<host>/exceptions"]]
        wait_for(lambda: late.topics() >= set(retained) and any("/alarm/" in t for t in late.topics()),
                 what="the retained topics at a console connecting later")
        answer = [json.loads(m.payload) for m in officer.messages if m.topic == topics.command_result(NODE)][0]
        assert answer["ok"] is False and answer["error"].startswith("malformed")
    finally:
        if site.proc is not None:
            site.stop()


def test_a_node_may_not_publish_what_is_not_its_own(site_broker, clients):
    """Logged in as door-a: another node's status, results and USB events, commands to any node,
    another node's doors and desks, and anything of another site are refused; its own topics
    (the positive control, published last on the same connection) pass. It reads the commands
    addressed to it, not another node's."""
    broker, _ = site_broker
    base = f"sekisho/v1/{SITE}"
    officer = clients(broker.port, "officer", f"{base}/#")
    # mosquitto grants every subscription and checks each message against the ACL as it delivers.
    node = clients(broker.port, "door-a", f"{base}/#")
    forbidden = [f"{base}/node/door-b/status", f"{base}/cmd/door-b", f"{base}/cmd/door-a", f"{base}/cmd/door-b/result",
                 f"{base}/usb/door-b/event", f"{base}/usb/door-b/exceptions", f"{base}/door/back-door/state", f"{base}/door/back-door/event",
                 f"{base}/desk/desk-02/state", f"{base}/area/server-room/occupancy", f"{base}/alarm/x/y",
                 "sekisho/v1/osaka/node/door-a/status", "sekisho/v1/osaka/door/entrance/event",
                 "sekisho/v1/osaka/cmd/door-a/result", "sekisho/v1/osaka/alarm/entrance-forced-1"]
    assert {topic: node.publish(topic, '{"forged": true}') for topic in forbidden} == \
        {topic: NOT_AUTHORIZED for topic in forbidden}
    allowed = [f"{base}/alarm/acl-probe", f"{base}/usb/door-a/event", f"{base}/usb/door-a/exceptions",
               f"{base}/door/entrance/event"]
    assert [node.publish(topic, '{"probe": true}') for topic in allowed] == [0, 0, 0, 0]
    wait_for(lambda: officer.topics() >= set(allowed), what="the allowed messages at the officer")
    assert not officer.topics() & set(forbidden)
    # The door's relay takes the strike's commands and speaks for nothing of sekisho's.
    relay = clients(broker.port, "door-a-relay")
    assert relay.publish(f"{base}/door/entrance/state", '{"lock": "unlocked"}') == NOT_AUTHORIZED
    assert relay.publish("cmnd/door-a/POWER", "ON") == NOT_AUTHORIZED
    # And the officer, who sends commands, cannot answer for a node.
    assert officer.publish(f"{base}/cmd/door-a/result", "{}") == NOT_AUTHORIZED
    assert officer.publish(f"{base}/cmd/door-b", "{}") == 0 and officer.publish(f"{base}/cmd/door-a", "{}") == 0
    wait_for(lambda: f"{base}/cmd/door-a" in node.topics(), what="door-a's command at door-a")
    assert node.topics() == {f"{base}/cmd/door-a"}, "door-a read more than its commands"
