"""The daemon's one connection to the broker, and ``make_client``, the one way any part of
sekisho builds a paho client for the site's broker (protocol, TLS, user name, password file).

paho runs its network loop in its own thread and reconnects by itself; its callbacks here only
post to the asyncio loop, which owns all state. What a connection means to the rest of the
daemon (saying ``online``, draining the outbox, dropping a row on its PUBACK) is not decided
here: this class reports each connection, each loss and each PUBACK to the hooks publisher.py
wires up, and subscribes every filter again on each connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .config import MqttConfig
from .errors import SekishoError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]


def make_client(cfg: MqttConfig, client_id: str = "", *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client for the site's broker as the config says: protocol, TLS, user name and
    password file. Every part of sekisho that talks to the broker starts from this.
    ``manual_ack``: a QoS 1 message is acknowledged only by ``client.ack`` (the recorder's,
    once it is stored)."""
    protocol = mqtt.MQTTv5 if cfg.protocol == 5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, manual_ack=manual_ack)
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


class BrokerConnection:
    def __init__(self, cfg: MqttConfig, *, client_id: str, max_inflight: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.client_id = client_id
        self.connected = False
        self.connections = 0
        """Connections made so far: a status seen again on a later one is a daemon still alive."""
        self.state = "connecting"
        """In a word or two, for the service manager's status line: connecting, connected,
        unreachable, refused (reason), lost."""
        self.tried = asyncio.Event()
        """Set once the first attempt has an outcome (connected, refused or failed): the daemon is
        ready then, whatever the outcome, since a node works offline."""
        self.subscriptions: dict[str, tuple[Handler, bool, bool]] = {}
        self.on_connected: Callable[[], None] = lambda: None
        """Called on the loop once the connection is up and every filter is subscribed again."""
        self.on_lost: Callable[[ReasonCode], None] = lambda reason: None
        """Called on the loop when the connection ends, while ``connected`` still says whether it was up."""
        self.on_acknowledged: Callable[[int, ReasonCode], None] = lambda mid, reason: None
        """Called on the loop with each PUBACK: paho's message id and the broker's reason code."""
        self.client = make_client(cfg, client_id)
        self.client.reconnect_delay_set(min_delay=1, max_delay=cfg.reconnect_max_s)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)  # unbounded: the outbox's window already bounds what is handed over
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    def subscribe(self, topic_filter: str, handler: Handler, retained: bool = True, threaded: bool = False) -> None:
        """Call ``handler(topic, payload)`` on the loop for each message, retained ones too unless
        ``retained`` is False; subscribed again on every connection. Set up before ``start``.
        A ``threaded`` handler is called in paho's network thread instead, and must be safe there."""
        self.subscriptions[topic_filter] = (handler, retained, threaded)

    def start(self) -> None:
        """Connect in the background: a broker that is down only delays publishing."""
        _, host, port = self.cfg.endpoint
        self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    async def close(self) -> None:
        """Disconnect and end paho's thread; what is still unsent stays where it is (the outbox)."""
        self.connected = False  # our own goodbye is not a lost broker
        self.client.disconnect()
        try:
            # paho's thread ends once its socket is closed; a half-open connection must not
            # hold up a shutdown that systemd is timing.
            await asyncio.wait_for(asyncio.to_thread(self.client.loop_stop), 5)
        except TimeoutError:
            log.warning("the MQTT network thread did not stop within 5 s; leaving it behind")

    # ------------------------------------------------------------------------- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self.loop.call_soon_threadsafe(self._connected, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` and passes no reason; the exception
        # being handled is the reason (refused, unreachable, certificate not trusted ...).
        reason = sys.exc_info()[1]
        self.loop.call_soon_threadsafe(self._failed, reason)

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
        self.loop.call_soon_threadsafe(self.on_acknowledged, mid, reason)

    # ------------------------------------------------------------------------- loop
    def _failed(self, reason: BaseException | None) -> None:
        log.warning("cannot reach the broker at %s: %s; retrying", self.cfg.url, reason or "unknown reason")
        self.state = "unreachable"
        self.tried.set()

    def _connected(self, reason: ReasonCode) -> None:
        self.tried.set()
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            self.state = f"refused ({reason})"
            return
        self.state = "connected"
        log.info("connected to %s", self.cfg.url)
        self.connected = True
        self.connections += 1
        # Subscribed before anything is said on this connection: the retained status is then
        # still whatever was there when we connected (see NodeStatus.seen). The broker handles
        # one connection's packets in order.
        for topic_filter in self.subscriptions:
            self.client.subscribe(topic_filter, qos=1)
        self.on_connected()

    def _disconnected(self, reason: ReasonCode) -> None:
        self.on_lost(reason)
        if self.connected:
            self.state = "lost"
        self.connected = False
