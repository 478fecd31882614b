"""The scale path (issue 15, item 8; docs/scale.md): door nodes on a building's broker, bridged
into a central broker, where two recorders on one MQTT 5 shared subscription store into one
PostgreSQL. Every event is stored exactly once, through a bridge link that drops in the middle of
a burst and one that stays down for a while, and both recorders take part.

All real: two mosquittos (tests/bridge.py), the door nodes as daemons with sim readers, a
throw-away PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge import Building
from harness import Broker, Site, wait_for
from sekisho.daemon.recorder_store import Received, open_store

SHARE = "$share/recorders/sekisho/v1/test/+/+/event"
PER_NODE = 30
"""Taps at each door in each of the two bursts."""


class SharedStorer:
    """One member of the shared subscription: stores each event it is handed, as it comes."""

    def __init__(self, port: int, client_id: str, database: str, data_dir: Path) -> None:
        self.store = open_store(database, data_dir)
        self.lock = threading.Lock()
        self.handed = 0
        self.new = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(SHARE, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), f"{client_id} did not get SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        e = json.loads(msg.payload)
        stored = self.store.store([Received(e["node"], e["seq"], e["id"], msg.topic, e["ts"], msg.payload.decode())])
        with self.lock:
            self.handed += 1
            self.new += stored.new

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.store.close()


def door_node(tmp_path: Path, broker: Broker, node: str, key_from: Site | None) -> Site:
    (tmp_path / node).mkdir()
    s = Site(tmp_path / node, broker)
    s.config.write_text(s.config.read_text().replace('node = "door-a"', f'node = "{node}"'))
    if key_from is not None:  # the site's key, copied as an installer does
        s.data_dir.mkdir(mode=0o700)
        (s.data_dir / "site.key").write_bytes((key_from.data_dir / "site.key").read_bytes())
        (s.data_dir / "site.key").chmod(0o600)
    s.start()
    return s


def taps(nodes: list[Site], cards: range, cut_at: int = -1, cut: Callable[[], int] | None = None) -> None:
    """Each node tapped from its own thread, at once, with each of ``cards``; ``cut`` called by
    the first node's thread after its tap number ``cut_at``."""
    def run(n: int) -> None:
        for i, card in enumerate(cards):
            nodes[n].tap(f"{n:02x}{card:06x}")
            if n == 0 and i == cut_at and cut is not None:
                assert cut() == 1, "the bridge was not connected"
    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_two_recorders_behind_a_bridge_store_every_event_once(tmp_path: Path, postgres):
    (tmp_path / "central").mkdir()
    central = Broker(tmp_path / "central")
    central.start()
    building = Building(tmp_path, central)
    nodes: list[Site] = []
    storers: list[SharedStorer] = []
    database = postgres.new_database()
    try:
        building.start()
        nodes.append(door_node(tmp_path, building.broker, "door-a", None))
        nodes.append(door_node(tmp_path, building.broker, "door-b", nodes[0]))
        storers = [SharedStorer(central.port, f"rec-{i}", database, tmp_path) for i in (1, 2)]
        store = open_store(database, tmp_path)

        def stored() -> int:
            return store.count()

        # A burst, and the bridge's connection cut in the middle of it: what was in flight is
        # sent again when the bridge reconnects (a second later).
        taps(nodes, range(0, PER_NODE), cut_at=PER_NODE // 2, cut=building.link.cut)
        wait_for(lambda: stored() == 2 * PER_NODE, 15, "the first burst stored")
        # The link down for a while: the building's broker holds what the doors publish.
        building.take_down()
        taps(nodes, range(PER_NODE, 2 * PER_NODE))
        building.bring_up()
        wait_for(lambda: stored() == 4 * PER_NODE, 15, "every event stored")

        assert {n: store.last_seq(n) for n in ("door-a", "door-b")} == {"door-a": 2 * PER_NODE, "door-b": 2 * PER_NODE}
        assert store.gaps() == []
        with storers[0].lock, storers[1].lock:
            shares = [(s.handed, s.new) for s in storers]
        # Each event was handed to one of the two (a redelivery after the cut aside), not to both,
        # and each stored its share.
        assert sum(new for _, new in shares) == 4 * PER_NODE, shares
        assert sum(handed for handed, _ in shares) < 8 * PER_NODE, f"both recorders got every event: {shares}"
        assert all(new > 0 for _, new in shares), f"one recorder stored nothing: {shares}"
        store.close()
    finally:
        for s in storers:
            s.close()
        for n in nodes:
            n.kill()
        building.stop()
        central.stop()
