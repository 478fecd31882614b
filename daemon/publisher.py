"""Publishes what the daemon commits: the one object the composition root talks to about the
broker, wiring together the connection (broker_connection.py), the node's status on it
(node_status.py) and the outbox drain (outbox_drain.py), and stopping them in order.

Nothing committed is lost: a row leaves the outbox only on its PUBACK, and paho resends what it
holds after a reconnect (outbox_drain.py says who owns which retry). Only ``publish_now`` goes
around the outbox, for what must be said when the store itself cannot be written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from .broker_connection import BrokerConnection, Handler
from .config import MqttConfig
from .errors import StoreDamaged, StoreError
from .node_status import NodeStatus
from .outbox_drain import OutboxDrain
from .store.outbox import Outbox

log = logging.getLogger(__name__)

WINDOW = 1000
"""Most rows handed to paho and not yet acknowledged; bounds memory after a long outage."""
PAHO_INFLIGHT = 100
"""Of those, how many paho may have on the wire at once; the rest wait in paho's queue."""
FIRST_ATTEMPT_MAX_S = 10.0
"""Longest ``first_attempt`` waits; paho's own connect timeout (5 s) normally ends it sooner."""


class Publisher:
    def __init__(self, cfg: MqttConfig, outbox: Outbox, *, client_id: str, status_topic: str,
                 version: str, started: str, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.loop = loop
        self.connection = BrokerConnection(cfg, client_id=client_id, max_inflight=PAHO_INFLIGHT, loop=loop)
        # The status first: its will is set and its topic subscribed before anything else.
        self.status = NodeStatus(self.connection, status_topic, version=version, started=started)
        self.outbox_drain = OutboxDrain(outbox, self.connection, loop, window=WINDOW)
        self.direct: list[mqtt.MQTTMessageInfo] = []
        self.connected_hooks: list[Callable[[], None]] = []
        """Called on the loop after ``online`` on each connection (Home Assistant discovery)."""
        self.connection.on_connected = self._connected
        self.connection.on_lost = self._lost
        self.connection.on_acknowledged = self.outbox_drain.acknowledged

    @property
    def client(self) -> mqtt.Client:
        """The paho client, for a networked strike relay that publishes on the same connection."""
        return self.connection.client

    @property
    def on_duplicate(self) -> Callable[[str], None]:
        """Told once, with a line that says why, when another daemon runs with this node's name."""
        return self.status.on_duplicate

    @on_duplicate.setter
    def on_duplicate(self, report: Callable[[str], None]) -> None:
        self.status.on_duplicate = report

    def subscribe(self, topic_filter: str, handler: Handler, retained: bool = True, threaded: bool = False) -> None:
        """As ``BrokerConnection.subscribe``: set up before ``start``."""
        self.connection.subscribe(topic_filter, handler, retained, threaded)

    def start(self) -> None:
        """Connect in the background: a broker that is down only delays publishing."""
        self.connection.start()

    def kick(self) -> None:
        """Hand the next committed rows to paho, if connected and the window has room."""
        self.outbox_drain.kick()

    def when_connected(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on the loop on each connection, once ``online`` is said."""
        self.connected_hooks.append(hook)

    def _connected(self) -> None:
        self.status.say("online")
        for hook in self.connected_hooks:
            hook()
        self.outbox_drain.restart()

    def _lost(self, reason: ReasonCode) -> None:
        self.status.lost(reason)
        if self.connection.connected:
            log.warning("lost the broker (%s); %d events held for resending, the rest wait in the outbox",
                        reason, len(self.outbox_drain.held))

    def publish_now(self, topic: str, payload: dict[str, Any], retain: bool = True) -> None:
        """Straight to paho, not through the outbox: for what must be said when the store
        cannot be written (paho sends it once the broker is reached; the stop waits for it)."""
        self.direct.append(self.client.publish(topic, json.dumps(payload, sort_keys=True).encode(), qos=1,
                                               retain=retain))

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Straight to paho, retained at QoS 1: for what is not a record (Home Assistant's
        discovery, made from the config and said again on each connection). An empty payload
        removes what the broker retains there. The stop waits for it, as for ``publish_now``."""
        self.publish_bytes(topic, payload, True)

    def publish_bytes(self, topic: str, payload: bytes, retain: bool) -> bool:
        """As ``publish_retained``, retained or not (the recorder's enrolment snapshots and
        deltas), and only while connected: False when nothing was handed over, and the caller
        says it again on the next connection (``when_connected``) if it must be said."""
        if not self.connection.connected:
            return False
        self.direct = [info for info in self.direct if not info.is_published()]
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:  # else paho lost the connection just now; is_published would raise
            self.direct.append(info)
        return True

    async def first_attempt(self, stopping: asyncio.Event) -> None:
        """Until the first connection attempt has an outcome (or ``stopping``): the service
        manager's READY then says the node serves and knows whether it is online; it works
        offline all the same."""
        stop = asyncio.ensure_future(stopping.wait())
        tried = asyncio.ensure_future(self.connection.tried.wait())
        done, pending = await asyncio.wait({stop, tried}, timeout=FIRST_ATTEMPT_MAX_S,
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not done:
            log.warning("no outcome from the broker at %s within %.0f s; ready without it", self.cfg.url,
                        FIRST_ATTEMPT_MAX_S)

    def status_line(self) -> str:
        """The line `systemctl status` shows: the broker, and what waits for it in the outbox."""
        try:
            depth = str(self.outbox.count())
        except (StoreError, sqlite3.Error):
            depth = "unreadable"
        return f"broker {self.connection.state}, outbox {depth}"

    async def stop(self, drain: bool = True) -> None:
        """Flush as far as the broker allows (with ``drain``; not from a damaged store), say
        ``offline``, disconnect."""
        deadline = self.loop.time() + self.cfg.flush_timeout_s
        while drain and self.connection.connected and not self.outbox_drain.idle and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        while self.direct and not all(info.is_published() for info in self.direct) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        if not drain and self.outbox_drain.forgetting is not None:
            self.outbox_drain.forgetting.cancel()
        if self.connection.connected:
            info = self.status.say("offline")
            end = self.loop.time() + 2
            while not info.is_published() and self.loop.time() < end:
                await asyncio.sleep(0.01)
        if drain:
            # Last, and with a sync: what the broker acknowledged up to here, the wait for
            # "offline" included, is not sent again after a clean stop. A store found damaged
            # meanwhile keeps the rows: sent again, never lost, and the stop goes on.
            try:
                self.outbox_drain.forget(durable=True)
            except StoreDamaged as exc:
                log.error("acknowledged rows stay in the outbox: %s", exc)
        left = self.outbox.count() if drain else 0
        if left:
            log.warning("%d messages not yet acknowledged by the broker; they go out on the next start", left)
        await self.connection.close()
