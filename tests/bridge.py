"""A building's broker bridged to a central one, as a site of several buildings runs them
(docs/scale.md): two real mosquittos, the building's bridge carrying the site's tree to the
central broker and the central broker's commands back (``topic sekisho/v1/# both 1``,
``cleansession false``), through a relay (harness.Proxy) that can take the link down and bring
it back while both brokers stay up.

The bridge speaks MQTT 3.1.1, mosquitto's default: with ``cleansession false`` the central
broker keeps the bridge's session, and queues for it what the building subscribed to (commands)
while the link is down. mosquitto 2.0.11 sends no session expiry in an MQTT 5 bridge's CONNECT,
so an ``mqttv50`` bridge's session on the central broker ends with each connection; and an
``mqttv50`` bridge from a broker with ``max_inflight_messages 0`` (as harness.Broker's) asks for
a receive maximum of 0, which the central broker refuses as a protocol error (docs/scale.md;
test_scale holds the first).

``restart_timeout 1 2``: the bridge tries again within one to two seconds after a drop, where
mosquitto's default backs off from 5 to 30 s, so a test's cut heals within its time. (A constant
``restart_timeout 1`` still waits about 5 s on 2.0.11: the default backoff stays in force.)
"""

from __future__ import annotations

from pathlib import Path

from harness import Broker, Proxy, Subscriber, wait_for

BRIDGE = """\
connection {name}
address 127.0.0.1:{port}
remote_clientid {name}
topic sekisho/v1/# both 1
cleansession false
bridge_protocol_version {protocol}
restart_timeout 1 2
"""


class Building:
    """A building's broker whose bridge goes to ``central`` through ``link``. The bridge's state
    comes from mosquitto's own notifications on the building broker
    (``$SYS/broker/connection/<name>/state``: 1 connected, 0 not)."""

    def __init__(self, workdir: Path, central: Broker, name: str = "building-1", relay: bool = True,
                 protocol: str = "mqttv311") -> None:
        """``relay=False``: the bridge goes straight to the central broker, with no relay to cut
        (bench/bridge_ingest.py, where a Python relay would be what is measured). ``protocol``:
        ``mqttv50`` to show what docs/scale.md says of it (the broker then keeps mosquitto's
        default max_inflight_messages, which it must for an MQTT 5 bridge)."""
        self.name = name
        self.link = Proxy(central.port) if relay else None
        home = workdir / name
        home.mkdir()
        bridge = BRIDGE.format(name=name, port=self.link.port if self.link else central.port, protocol=protocol)
        self.broker = Broker(home, extra=bridge)
        if protocol == "mqttv50":
            self.broker.conf.write_text(self.broker.conf.read_text().replace("max_inflight_messages 0\n", ""))
        self.notes: Subscriber | None = None

    @property
    def url(self) -> str:
        return self.broker.url

    def start(self) -> None:
        self.broker.start()
        self.notes = Subscriber(self.broker.port, f"$SYS/broker/connection/{self.name}/state")
        wait_for(self.connected, 10, f"bridge {self.name} to connect")

    def connected(self) -> bool:
        assert self.notes is not None, "the building's broker is not started"
        with self.notes.lock:
            return bool(self.notes.messages) and self.notes.messages[-1].payload == b"1"

    def take_down(self) -> None:
        """The link between the buildings goes down and stays down; the bridge knows it."""
        assert self.link is not None, "this building has no relay to take down"
        self.link.take_down()
        wait_for(lambda: not self.connected(), 10, f"bridge {self.name} to notice the cut")

    def bring_up(self) -> None:
        assert self.link is not None, "this building has no relay to bring up"
        self.link.bring_up()
        wait_for(self.connected, 10, f"bridge {self.name} to reconnect")

    def stop(self) -> None:
        if self.notes is not None:
            self.notes.close()
            self.notes = None
        self.broker.stop()
        if self.link is not None:
            self.link.close()
