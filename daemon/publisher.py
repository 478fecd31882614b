"""Hands committed outbox rows to the broker, at QoS 1, and forgets a row only on its PUBACK.

paho-mqtt runs its network loop in its own thread; its callbacks only post to the asyncio loop,
which owns all of this object's state.

There is exactly one owner of each retry. paho keeps every QoS 1 message it was given until the
broker acknowledges it, and sends it again by itself after a reconnect. So a row is handed to
paho at most once per connection: ``held`` maps paho's message id to the outbox row. After a
reconnect the outbox is read again from its start, skipping the rows paho still holds; after a
restart paho holds nothing and every unacknowledged row goes out again, in order. A duplicate
can then only be a message that was in flight when the connection or the process died, which
QoS 1 allows and subscribers drop by ``id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .config import MqttConfig
from .errors import SekishoError, StoreDamaged, StoreError
from .store import Store
from .timestamps import utc_now

log = logging.getLogger(__name__)

SESSION_TAKEN_OVER = 0x8E
"""MQTT 5's reason for a disconnect because another client connected with our client id."""
WINDOW = 1000
"""Most rows handed to paho and not yet acknowledged; bounds memory after a long outage."""
PAHO_INFLIGHT = 100
"""Of those, how many paho may have on the wire at once; the rest wait in paho's queue."""


def make_client(cfg: MqttConfig, client_id: str = "") -> mqtt.Client:
    """A paho client for the site's broker as the config says: protocol, TLS, user name and
    password file. Every part of sekisho that talks to the broker starts from this."""
    protocol = mqtt.MQTTv5 if cfg.protocol == 5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    tls, _, _ = cfg.endpoint
    if tls:
        try:
            client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                           keyfile=cfg.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as exc:
            raise SekishoError(f"mqtt: cannot set up TLS: {exc}") from None
    if cfg.username:
        password = None
        if cfg.password_file:
            try:
                with open(cfg.password_file) as f:
                    password = f.read().rstrip("\r\n")
            except OSError as exc:
                raise SekishoError(f"mqtt.password_file: cannot read {cfg.password_file}: {exc.strerror}") from None
        client.username_pw_set(cfg.username, password)
    return client


class Publisher:
    def __init__(self, cfg: MqttConfig, store: Store, *, client_id: str, status_topic: str,
                 version: str, started: str, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.store = store
        self.loop = loop
        self.status_topic = status_topic
        self.version = version
        self.started = started
        self.connected = False
        self.held: dict[int, int] = {}       # paho mid -> outbox row n
        self.held_rows: set[int] = set()
        self.cursor = 0                      # last outbox row handed to paho on this connection
        self.resending = False
        """paho is resending what it holds on a new connection: nothing new is handed over until
        the first acknowledgement, or it could overtake those rows (see _connected)."""
        self.acked: list[int] = []
        self.subscriptions: dict[str, tuple[Callable[[str, bytes], None], bool, bool]] = {}
        self.direct: list[mqtt.MQTTMessageInfo] = []
        self.instance = uuid.uuid4().hex[:12]
        """This process, in the status message: how two daemons with one node name tell each other apart."""
        self.on_duplicate: Callable[[str], None] = lambda detail: None
        self.connections = 0
        self.others: dict[str, set[int]] = {}
        """Other instances seen on our status topic -> the connections (numbered) they were seen on."""
        self.duplicate_told = False
        self.client_id = client_id
        self.subscriptions[status_topic] = (self._status_seen, True, False)
        self.client = self._make_client(client_id)

    # ------------------------------------------------------------------------- set-up
    def _make_client(self, client_id: str) -> mqtt.Client:
        client = make_client(self.cfg, client_id)
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=self.cfg.reconnect_max_s)
        client.max_inflight_messages_set(PAHO_INFLIGHT)
        client.max_queued_messages_set(0)  # unbounded: WINDOW already bounds what we hand over
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _status(self, state: str) -> bytes:
        return json.dumps({"state": state, "version": self.version, "started": self.started,
                           "instance": self.instance, "ts": utc_now()}).encode()

    def _status_seen(self, topic: str, payload: bytes) -> None:
        """Our own status topic, read before we say ``online`` on each connection. Two daemons
        with one node name share a client id, so the broker hands the session to whichever
        connected last and sends the other's last will: each then finds the other's status
        here. Another instance that started after us is a second daemon; one that started
        before us is either our own previous run (its last will, seen once) or a daemon that
        is still alive (seen again on a later connection)."""
        try:
            status = json.loads(payload) if payload else {}
            instance, started = str(status.get("instance") or ""), str(status.get("started", ""))
        except (ValueError, AttributeError):
            return
        if not instance or instance == self.instance:
            return
        seen = self.others.setdefault(instance, set())
        seen.add(self.connections)
        if started < self.started and self.connected:
            # Our previous run's last will, sent by the broker after we said online: the
            # retained status must say what is true now.
            self.client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        if (started >= self.started or len(seen) >= 2) and not self.duplicate_told:
            self.duplicate_told = True
            self.on_duplicate(f"another sekisho (instance {instance}, started {started}) takes this node's "
                              f"client id {self.client_id} on the broker")

    def start(self) -> None:
        """Connect in the background: a broker that is down only delays publishing."""
        _, host, port = self.cfg.endpoint
        self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    # ------------------------------------------------------------------------- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self.loop.call_soon_threadsafe(self._connected, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` and passes no reason; the exception
        # being handled is the reason (refused, unreachable, certificate not trusted ...).
        reason = sys.exc_info()[1]
        self.loop.call_soon_threadsafe(log.warning, "cannot reach the broker at %s: %s; retrying",
                                       self.cfg.url, reason or "unknown reason")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        for topic_filter, (handler, retained, threaded) in self.subscriptions.items():
            if mqtt.topic_matches_sub(topic_filter, msg.topic) and (retained or not msg.retain):
                if threaded:
                    handler(msg.topic, bytes(msg.payload))
                else:
                    self.loop.call_soon_threadsafe(handler, msg.topic, bytes(msg.payload))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self.loop.call_soon_threadsafe(self._disconnected, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self.loop.call_soon_threadsafe(self._acknowledged, mid, reason)

    # ------------------------------------------------------------------------- loop
    def _connected(self, reason: ReasonCode) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        log.info("connected to %s", self.cfg.url)
        self.connected = True
        self.connections += 1
        # Subscribed before saying online: the retained status is then still whatever was there
        # when we connected (see _status_seen). The broker handles one connection's packets in order.
        for topic_filter in self.subscriptions:
            self.client.subscribe(topic_filter, qos=1)
        self.client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        self.cursor = 0
        # paho calls on_connect before it resends the rows it holds, in its own thread: rows
        # handed over now could go out ahead of them, out of seq order. Its first PUBACK on this
        # connection comes after it has resent every one of them; _acknowledged kicks then.
        self.resending = bool(self.held)
        self.kick()

    def _disconnected(self, reason: ReasonCode) -> None:
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER and not self.duplicate_told:
            self.duplicate_told = True
            self.on_duplicate(f"the broker gave this node's session (client id {self.client_id}) to another client")
        if self.connected:
            log.warning("lost the broker (%s); %d events held for resending, the rest wait in the outbox",
                        reason, len(self.held))
        self.connected = False

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None], retained: bool = True,
                  threaded: bool = False) -> None:
        """Call ``handler(topic, payload)`` on the loop for each message, retained ones too unless
        ``retained`` is False; subscribed again on every connection. Set up before ``start``.
        A ``threaded`` handler is called in paho's network thread instead, and must be safe there."""
        self.subscriptions[topic_filter] = (handler, retained, threaded)

    def kick(self) -> None:
        """Hand the next committed rows to paho, if connected and the window has room."""
        while self.connected and not self.resending and len(self.held) < WINDOW:
            rows = self.store.outbox_after(self.cursor, WINDOW - len(self.held))
            if not rows:
                return
            # Acknowledged, and leaving the outbox with the next _commit_acked: not again.
            acked = set(self.acked)
            for row in rows:
                self.cursor = row.n
                if row.n in self.held_rows or row.n in acked:
                    continue  # paho resends this one itself, or the broker has it
                info = self.client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                # Even MQTT_ERR_NO_CONN means paho queued it and will send it after reconnecting.
                self.held[info.mid] = row.n
                self.held_rows.add(row.n)

    def _acknowledged(self, mid: int, reason: ReasonCode) -> None:
        n = self.held.pop(mid, None)
        if n is None:
            return  # the status message
        self.resending = False
        self.held_rows.discard(n)
        if reason.is_failure:
            log.error("broker refused outbox row %d: %s; it stays queued and is retried on reconnect", n, reason)
        else:
            if not self.acked:
                self.loop.call_soon(self._commit_acked)
            self.acked.append(n)
        self.kick()

    def _commit_acked(self) -> None:
        acked, self.acked = self.acked, []
        try:
            self.store.outbox_sent(acked)
        except StoreDamaged:
            raise
        except StoreError as exc:
            # The rows stay in the outbox and go out again after a reconnect or a restart: a
            # duplicate, which QoS 1 allows and subscribers drop by id. Nothing is lost.
            log.warning("%s; %d acknowledged rows stay in the outbox", exc, len(acked))

    def publish_now(self, topic: str, payload: dict[str, Any], retain: bool = True) -> None:
        """Straight to paho, not through the outbox: for what must be said when the store
        cannot be written (paho sends it once the broker is reached; the stop waits for it)."""
        self.direct.append(self.client.publish(topic, json.dumps(payload, sort_keys=True).encode(), qos=1,
                                               retain=retain))

    @property
    def idle(self) -> bool:
        return not self.held and not self.acked and self.store.outbox_count() == 0

    async def stop(self, drain: bool = True) -> None:
        """Flush as far as the broker allows (with ``drain``; not from a damaged store), say
        ``offline``, disconnect."""
        deadline = self.loop.time() + self.cfg.flush_timeout_s
        while drain and self.connected and not self.idle and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        while self.direct and not all(info.is_published() for info in self.direct) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.acked and drain:
            self._commit_acked()
        if self.connected:
            info = self.client.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            end = self.loop.time() + 2
            while not info.is_published() and self.loop.time() < end:
                await asyncio.sleep(0.01)
        left = self.store.outbox_count() if drain else 0
        if left:
            log.warning("%d messages not yet acknowledged by the broker; they go out on the next start", left)
        self.connected = False  # our own goodbye is not a lost broker
        self.client.disconnect()
        try:
            # paho's thread ends once its socket is closed; a half-open connection must not
            # hold up a shutdown that systemd is timing.
            await asyncio.wait_for(asyncio.to_thread(self.client.loop_stop), 5)
        except TimeoutError:
            log.warning("the MQTT network thread did not stop within 5 s; leaving it behind")
