"""The node's retained status on ``node/<node>/status`` (docs/mqtt.md): ``online`` on each
connection, ``offline`` at a clean stop and as the last will, and what another daemon's status
there says.

Two daemons with one node name (a copied config) share a client id, so the broker hands the
session to whichever connected last and sends the other's last will: without a word, each would
knock the other off the broker every second. Each daemon therefore reads its own status topic
before it says ``online``, and tells the composition root (``on_duplicate``, once) when another
instance is there or the broker says the session was taken over.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from .broker_connection import BrokerConnection
from .timestamps import utc_now

SESSION_TAKEN_OVER = 0x8E
"""MQTT 5's reason for a disconnect because another client connected with our client id."""


class NodeStatus:
    def __init__(self, connection: BrokerConnection, topic: str, *, version: str, started: str) -> None:
        self.connection = connection
        self.topic = topic
        self.version = version
        self.started = started
        self.instance = uuid.uuid4().hex[:12]
        """This process, in the status message: how two daemons with one node name tell each other apart."""
        self.on_duplicate: Callable[[str], None] = lambda detail: None
        self.others: dict[str, set[int]] = {}
        """Other instances seen on our status topic -> the connections (numbered) they were seen on."""
        self.duplicate_told = False
        self.enrolment = 0
        """The enrolment version this node decides with (the recorder: the one it sent last); 0 for none."""
        connection.client.will_set(topic, self._payload("offline"), qos=1, retain=True)
        connection.subscribe(topic, self.seen)

    def _payload(self, state: str) -> bytes:
        return json.dumps({"state": state, "version": self.version, "started": self.started,
                           "instance": self.instance, "enrolment": self.enrolment, "ts": utc_now()}).encode()

    def enrolled(self, version: int) -> None:
        """A new enrolment version: said at once when connected (and in the last will, whose
        ``offline`` then names it too)."""
        if version == self.enrolment:
            return
        self.enrolment = version
        self.connection.client.will_set(self.topic, self._payload("offline"), qos=1, retain=True)
        if self.connection.connected:
            self.say("online")

    def say(self, state: str) -> mqtt.MQTTMessageInfo:
        """Publish ``online`` or ``offline``, retained; paho's handle, to wait for it to go out."""
        return self.connection.client.publish(self.topic, self._payload(state), qos=1, retain=True)

    def seen(self, topic: str, payload: bytes) -> None:
        """Our own status topic, read before we say ``online`` on each connection. Another
        instance that started after us is a second daemon; one that started before us is either
        our own previous run (its last will, seen once) or a daemon that is still alive (seen
        again on a later connection)."""
        try:
            status = json.loads(payload) if payload else {}
            instance, started = str(status.get("instance") or ""), str(status.get("started", ""))
        except (ValueError, AttributeError, RecursionError):
            return
        if not instance or instance == self.instance:
            return
        seen = self.others.setdefault(instance, set())
        seen.add(self.connection.connections)
        if started < self.started and self.connection.connected:
            # Our previous run's last will, sent by the broker after we said online: the
            # retained status must say what is true now.
            self.say("online")
        if started >= self.started or len(seen) >= 2:
            self._tell(f"another sekisho (instance {instance}, started {started}) takes this node's "
                       f"client id {self.connection.client_id} on the broker")

    def lost(self, reason: ReasonCode) -> None:
        """The connection ended: the broker's reason says whether another client took our session."""
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            self._tell(f"the broker gave this node's session (client id {self.connection.client_id}) "
                       f"to another client")

    def _tell(self, detail: str) -> None:
        # Once: the two daemons would otherwise raise it again on every reconnect, every second.
        if not self.duplicate_told:
            self.duplicate_told = True
            self.on_duplicate(detail)
