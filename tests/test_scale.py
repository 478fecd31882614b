"""The scale path (issue 15, item 8; docs/scale.md): door nodes on a building's broker, bridged
into a central broker, where two recorders on one MQTT 5 shared subscription
(``[recorder] share_group``) store into one PostgreSQL. Every event is stored exactly once,
through a bridge link that drops in the middle of a burst (what was in flight crosses twice) and
one that stays down for a while (the building's broker holds what the doors publish), and both
recorders take part: the central broker's own log says to which client it handed each event.

All real: two mosquittos (tests/bridge.py), the door nodes and the recorders as daemons, the
doors with sim readers, a throw-away PostgreSQL.
"""

from __future__ import annotations

import collections
import json
import os
import pwd
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge import Building
from harness import DEMO_CONFIG, RECORDER_CONFIG, REPO, Broker, Site, Subscriber, node_site, wait_for
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.recorder_store import open_store
from test_broker_acl import Client, SiteBroker, swap

PER_NODE = 30
"""Taps at each door in each of the two bursts."""
RECORDER = RECORDER_CONFIG + 'database = "{database}"\nshare_group = "recorders"\n'
DELIVERY = re.compile(r"Sending PUBLISH to (\S+) \(d[01], q1, r0, m\d+, 'sekisho/v1/test/door/[a-z0-9-]+/event'")
"""What the central broker logs (log_type all) as it hands a door event to a subscriber."""


def deliveries(broker: Broker) -> collections.Counter[str]:
    """How many door events the broker handed to each client, by its client id."""
    return collections.Counter(m.group(1) for m in DELIVERY.finditer(broker.log.read_text()))


def taps(nodes: list[Site], cards: range, cut_at: int = -1, cut: Callable[[], int] | None = None) -> None:
    """Each node tapped from its own thread, at once, with each of ``cards``; ``cut`` called by
    the first node's thread after its tap number ``cut_at``."""
    failed: list[Exception] = []

    def run(n: int) -> None:
        try:
            for i, card in enumerate(cards):
                nodes[n].tap(f"{n:02x}{card:06x}")
                if n == 0 and i == cut_at and cut is not None:
                    assert cut() == 1, "the bridge was not connected"
        except Exception as exc:  # raised again in the test's thread, below
            failed.append(exc)
    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]


def test_two_recorders_behind_a_bridge_store_every_event_once(tmp_path: Path, postgres):
    (tmp_path / "central").mkdir()
    central = Broker(tmp_path / "central", extra="log_type all\n")
    central.start()
    building = Building(tmp_path, central)
    SiteKey.load_or_create(tmp_path / "site.key")
    database = postgres.new_database()
    recorders = [node_site(tmp_path, central, name, RECORDER.replace("{database}", database)
                           .replace('node = "recorder"', f'node = "{name}"'), tmp_path / "site.key")
                 for name in ("rec-1", "rec-2")]
    doors: list[Site] = []
    try:
        building.start()
        doors = [node_site(tmp_path, building.broker, name, DEMO_CONFIG, tmp_path / "site.key")
                 for name in ("door-a", "door-b")]
        for s in (*recorders, *doors):
            s.start()
        store = open_store(database, tmp_path)

        # A burst, and the bridge's connection cut in the middle of it: what was in flight is
        # sent again when the bridge reconnects (a second or two later).
        assert building.link is not None
        taps(doors, range(0, PER_NODE), cut_at=PER_NODE // 2, cut=building.link.cut)
        wait_for(lambda: store.count() == 2 * PER_NODE, 15, "the first burst stored")
        # The link down for a while: the building's broker holds what the doors publish.
        building.take_down()
        taps(doors, range(PER_NODE, 2 * PER_NODE))
        building.bring_up()
        wait_for(lambda: store.count() == 4 * PER_NODE, 15, "every event stored")

        assert {n: store.last_seq(n) for n in ("door-a", "door-b")} == {"door-a": 2 * PER_NODE, "door-b": 2 * PER_NODE}
        assert store.gaps() == []
        store.close()
        # Both recorders took part: the broker handed each a share, and each event to one of them
        # (a redelivery after the cut aside), not to both; all are stored, so each stored its own.
        handed = deliveries(central)
        shares = [handed[f"sekisho-test-{r}-recorder"] for r in ("rec-1", "rec-2")]
        assert all(shares) and sum(shares) < 8 * PER_NODE, f"not shared between the recorders: {handed}"
        for s in (*doors, *recorders):
            assert s.stop() == 0
    finally:
        for s in (*recorders, *doors):
            s.kill()
        building.stop()
        central.stop()


BRIDGE_EXAMPLE = REPO / "systemd" / "mosquitto-bridge.conf"


def test_the_example_bridge_logs_in_over_tls_and_carries_the_site_both_ways(tmp_path: Path):
    """Two brokers as shipped (test_broker_acl.SiteBroker: mosquitto-sekisho.conf, TLS, users,
    the ACL), the building's with systemd/mosquitto-bridge.conf as shipped but for the central
    broker's address, its CA and the password; the central one with the bridge's user and the
    ACL lines the example's header gives. A door's event, published at the building as door-a,
    reaches the officer at the centre; the officer's command reaches door-a at the building; and
    neither broker refuses the bridge anything."""
    brokers: list[SiteBroker] = []
    clients: list[Client] = []
    try:
        for name in ("central", "building"):
            (tmp_path / name).mkdir()
            brokers.append(SiteBroker(tmp_path / name))
        central, building = brokers
        gid = pwd.getpwnam("mosquitto").pw_gid

        def restricted(path: Path, text: str) -> None:
            path.write_text(text)
            os.chown(path, 0, gid)
            path.chmod(0o640)
        subprocess.run(["mosquitto_passwd", "-b", str(central.password_file), "bridge-building-1", "bridge-secret"],
                       check=True, timeout=30)
        restricted(central.password_file, central.password_file.read_text())
        header = BRIDGE_EXAMPLE.read_text().split("\n\n", 1)[0]
        acl_lines = [line[len("#     "):] for line in header.splitlines() if line.startswith("#     ")]
        assert acl_lines[0] == "user bridge-building-1", f"the example's ACL lines are gone: {acl_lines}"
        acl = central.password_file.parent / "sekisho.acl"
        restricted(acl, acl.read_text() + "\n" + "\n".join(acl_lines) + "\n")
        conf = BRIDGE_EXAMPLE.read_text()
        conf = swap(conf, "address central.example.internal:8883", f"address 127.0.0.1:{central.port}")
        conf = swap(conf, "bridge_cafile /etc/mosquitto/certs/ca.crt", f"bridge_cafile {central.ca}")
        conf = swap(conf, "remote_password change-me", "remote_password bridge-secret")
        conf = swap(conf, "restart_timeout 5 30", "restart_timeout 1 2")
        restricted(building.password_file.parent / "conf.d" / "sekisho-bridge.conf", conf)
        for b in brokers:
            # What a broker refuses, it says only at the debug level.
            (b.password_file.parent / "conf.d" / "zz-test-log.conf").write_text("log_type all\n")
        central.start()
        building.start()
        wait_for(lambda: "New bridge connected from" in central.log.read_text(), 10, "the bridge to log in over TLS")

        officer = Client(central, "officer", "sekisho/v1/tokyo-hq/#")
        door = Client(building, "door-a", "sekisho/v1/tokyo-hq/cmd/door-a")
        clients += [officer, door]
        event = {"id": "e1", "seq": 1, "node": "door-a", "ts": "2026-12-05T09:00:00.000Z", "kind": "access"}
        assert door.publish("sekisho/v1/tokyo-hq/door/entrance/event", json.dumps(event)) < 0x80
        wait_for(lambda: officer.on("sekisho/v1/tokyo-hq/door/entrance/event"), 10, "the event at the centre")
        assert officer.publish("sekisho/v1/tokyo-hq/cmd/door-a", '{"op": "probe"}') == 0
        wait_for(lambda: door.on("sekisho/v1/tokyo-hq/cmd/door-a"), 10, "the command at the building")
        assert "Received PUBLISH from bridge-building-1" in central.log.read_text()
        for b in brokers:
            refused = [line for line in b.log.read_text().splitlines() if "Denied" in line and "bridge-building-1" in line]
            assert not refused, f"a broker refused the bridge: {refused}"
    finally:
        for c in clients:
            c.close()
        for b in brokers:
            b.close()


def test_a_stopped_recorders_share_waits_for_it_and_the_other_says_what_is_missing(tmp_path: Path, broker, subscribe,
                                                                                   postgres):
    """mosquitto (2.0.11) keeps handing a stopped recorder, whose session it keeps, its share of
    the events: they wait in that session, not at the other recorder, which raises sequence_gap
    for them; once the stopped one is back, every event is stored once and no gap is left."""
    SiteKey.load_or_create(tmp_path / "site.key")
    database = postgres.new_database()
    rec_1, rec_2 = (node_site(tmp_path, broker, name, RECORDER.replace("{database}", database)
                              .replace('node = "recorder"', f'node = "{name}"'), tmp_path / "site.key")
                    for name in ("rec-1", "rec-2"))
    door = node_site(tmp_path, broker, "door-a", DEMO_CONFIG, tmp_path / "site.key")
    alarms = subscribe("sekisho/v1/test/alarm/#")
    try:
        for s in (rec_1, rec_2, door):
            s.start()
        with open_store(database, tmp_path) as store:
            taps([door], range(2))
            wait_for(lambda: store.count() == 2, 10, "the first two events stored")
            assert rec_2.stop() == 0
            taps([door], range(2, 12))
            raised = wait_for(lambda: [m.json for m in alarms.on("/alarm/rec-1.door-a.sequence-gap") if m.payload],
                              10, "rec-1's sequence_gap alarm")[0]
            assert raised["kind"] == "sequence_gap" and raised["source"] == "door-a"
            assert store.gaps("door-a") and store.count() < 12, "rec-1 took rec-2's share while rec-2 was stopped"
            rec_2.start()
            wait_for(lambda: store.count() == 12, 10, "rec-2's share stored when it is back")
            assert store.gaps() == [] and store.last_seq("door-a") == 12
        for s in (door, rec_1, rec_2):
            assert s.stop() == 0
    finally:
        for s in (rec_1, rec_2, door):
            s.kill()


# What docs/scale.md says of Debian's mosquitto 2.0.11, and the example's choices rest on: a
# newer mosquitto may change it, and then the page must change too.

def test_an_mqtt311_bridge_keeps_what_the_centre_sends_during_an_outage_and_an_mqtt5_one_does_not(tmp_path: Path,
                                                                                                   broker, subscribe):
    """docs/scale.md, "MQTT 3.1.1 and cleansession false": one building with each, at once."""
    protocols = ("mqttv311", "mqttv50")
    buildings = {p: Building(tmp_path, broker, name=f"building-{p}", protocol=p) for p in protocols}
    listeners: dict[str, Subscriber] = {}
    try:
        for p, b in buildings.items():
            b.start()
            listeners[p] = Subscriber(b.broker.port, "sekisho/v1/test/cmd/#")
        for b in buildings.values():
            b.take_down()
        publish(broker.port, "sekisho/v1/test/cmd/door-a", "during the outage")
        for b in buildings.values():
            b.bring_up()
        # What the centre publishes after the outage crosses either way: once it has, what was
        # queued for the bridge during the outage has had its turn.
        publish(broker.port, "sekisho/v1/test/cmd/door-b", "after the outage")
        for p, sub in listeners.items():
            wait_for(lambda sub=sub: sub.on("/cmd/door-b"), 10, f"the {p} bridge carrying messages again")
        got = {p: [m.payload.decode() for m in sub.messages] for p, sub in listeners.items()}
        assert got == {"mqttv311": ["during the outage", "after the outage"], "mqttv50": ["after the outage"]}
    finally:
        for sub in listeners.values():
            sub.close()
        for b in buildings.values():
            b.stop()


def test_mosquitto_2_0_11_sends_retained_messages_to_each_member_of_a_shared_subscription(broker):
    """docs/scale.md, "Retained messages": MQTT 5 and mosquitto 2.0.13 send none; 2.0.11 sends
    them to each member."""
    publish(broker.port, "sekisho/v1/test/alarm/door-a.entrance.forced", '{"kind": "forced"}', retain=True)
    members = [Subscriber(broker.port, "$share/recorders/sekisho/v1/test/alarm/+") for _ in range(2)]
    try:
        for m in members:
            wait_for(lambda m=m: m.messages, 10, "the retained alarm at each member")
        assert [[(x.topic, x.retain) for x in m.messages] for m in members] == \
            [[("sekisho/v1/test/alarm/door-a.entrance.forced", True)]] * 2
    finally:
        for m in members:
            m.close()


def publish(port: int, topic: str, payload: str, retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_bridges_queue_holds_max_queued_messages_and_drops_the_newest(tmp_path: Path, broker, subscribe):
    """docs/scale.md, "While the link is down": mosquitto's cap on a client's queue holds for the
    bridge, and beyond it the newest are dropped without a word."""
    building = Building(tmp_path, broker)
    building.broker.conf.write_text(building.broker.conf.read_text().replace("max_queued_messages 0\n",
                                                                             "max_queued_messages 10\n"))
    central = subscribe("sekisho/v1/test/door/#")
    try:
        building.start()
        building.take_down()
        publish_many(building.broker.port, "sekisho/v1/test/door/entrance/event", range(1, 31))
        building.bring_up()
        publish(building.broker.port, "sekisho/v1/test/door/entrance/state", "after the outage")
        wait_for(lambda: central.on("/state"), 10, "the bridge carrying messages again")
        assert [int(m.payload) for m in central.on("/event")] == list(range(1, 11))
    finally:
        building.stop()


def test_a_killed_brokers_queue_is_lost_and_a_stopped_ones_is_kept(tmp_path: Path, broker, subscribe):
    """docs/scale.md, "While the link is down": the bridge's queue outlives a clean restart of
    the building's broker (persistence), and not a crash (nothing saved since the start)."""
    central = subscribe("sekisho/v1/test/door/#")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        building = Building(tmp_path, broker, name=f"building-{sig.name.lower()}")
        try:
            building.start()
            building.take_down()
            publish_many(building.broker.port, f"sekisho/v1/test/door/{sig.name.lower()}/event", range(1, 11))
            assert building.notes is not None and building.broker.proc is not None
            building.notes.close()
            building.broker.proc.send_signal(sig)
            building.broker.proc.wait(10)
            building.link.bring_up()
            building.start()
            publish(building.broker.port, f"sekisho/v1/test/door/{sig.name.lower()}/state", "after the restart")
            wait_for(lambda sig=sig: central.on(f"/{sig.name.lower()}/state"), 10, "the bridge carrying messages")
        finally:
            building.stop()
    assert [int(m.payload) for m in central.on("/sigterm/event")] == list(range(1, 11))
    assert central.on("/sigkill/event") == []


def publish_many(port: int, topic: str, numbers: range) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for info in [client.publish(topic, str(n), qos=1) for n in numbers]:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_an_mqtt5_bridge_from_a_broker_without_an_inflight_cap_is_refused(tmp_path: Path):
    """docs/scale.md, "MQTT 3.1.1 and cleansession false": with max_inflight_messages 0 an MQTT 5
    bridge asks for a receive maximum of 0, which the central broker refuses as a protocol error."""
    (tmp_path / "central").mkdir()
    central = Broker(tmp_path / "central")
    building = Building(tmp_path, central, protocol="mqttv50")
    building.broker.conf.write_text(building.broker.conf.read_text() + "max_inflight_messages 0\n")
    try:
        central.start()
        building.broker.start()
        # Refused at its CONNECT: the bridge never had a CONNACK.
        wait_for(lambda: "disconnected due to protocol error" in central.log.read_text(), 10,
                 "the central broker to refuse the bridge")
        assert "New bridge connected" not in central.log.read_text()
    finally:
        building.stop()
        central.stop()
