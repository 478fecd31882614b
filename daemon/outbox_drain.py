"""Hands committed outbox rows to the broker, at QoS 1, in ``seq`` order, and forgets a row only
on its PUBACK.

There is exactly one owner of each retry. paho keeps every QoS 1 message it was given until the
broker acknowledges it, and sends it again by itself after a reconnect. So a row is handed to
paho at most once per connection: ``held`` maps paho's message id to the outbox row. After a
reconnect the outbox is read again from its start, skipping the rows paho still holds; after a
restart paho holds nothing and every unacknowledged row goes out again, in order. A duplicate
can then only be a message that was in flight when the connection or the process died, or one
acknowledged just before the process died, which QoS 1 allows and subscribers drop by ``id``.

A PUBACK takes the row out of the outbox's view at once; the row leaves the file with the next
transaction, or ``FORGET_S`` later on a node with nothing to write (store/outbox.py says why
that delete needs no sync of its own), and at a clean stop.

Runs on the asyncio loop only; the connection reports each connection and each PUBACK there.
"""

from __future__ import annotations

import asyncio
import logging

from paho.mqtt.reasoncodes import ReasonCode

from .broker_connection import BrokerConnection
from .errors import StoreDamaged, StoreError
from .store.outbox import Outbox

log = logging.getLogger(__name__)

FORGET_S = 1.0
"""How long an acknowledged row may wait for another transaction to delete it along the way."""


class OutboxDrain:
    def __init__(self, outbox: Outbox, connection: BrokerConnection, loop: asyncio.AbstractEventLoop, *,
                 window: int) -> None:
        self.outbox = outbox
        self.connection = connection
        self.loop = loop
        self.window = window                 # most rows held at once (publisher.WINDOW)
        self.held: dict[int, int] = {}       # paho mid -> outbox row n
        self.held_rows: set[int] = set()
        self.cursor = 0                      # last outbox row handed to paho on this connection
        self.resending = False
        """paho is resending what it holds on a new connection: nothing new is handed over until
        the first acknowledgement, or it could overtake those rows (see ``restart``)."""
        self.forgetting: asyncio.TimerHandle | None = None

    def restart(self) -> None:
        """A new connection: read the outbox again from its start (``kick`` skips what paho holds)."""
        self.cursor = 0
        # paho calls on_connect before it resends the rows it holds, in its own thread: rows
        # handed over now could go out ahead of them, out of seq order. Its first PUBACK on this
        # connection comes after it has resent every one of them; ``acknowledged`` kicks then.
        self.resending = bool(self.held)
        self.kick()

    def kick(self) -> None:
        """Hand the next committed rows to paho, if connected and the window has room."""
        while self.connection.connected and not self.resending and len(self.held) < self.window:
            room = self.window - len(self.held)
            rows = self.outbox.after(self.cursor, room)
            for row in rows:
                self.cursor = row.n
                if row.n in self.held_rows:
                    continue  # paho resends this one itself
                info = self.connection.client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                # Even MQTT_ERR_NO_CONN means paho queued it and will send it after reconnecting.
                self.held[info.mid] = row.n
                self.held_rows.add(row.n)
            if len(rows) < room:
                return  # the end of the outbox: the next commit kicks again

    def acknowledged(self, mid: int, reason: ReasonCode) -> None:
        n = self.held.pop(mid, None)
        if n is None:
            return  # not a row: the status message, or one published straight to paho
        # Only a full window or a resend held rows back; else the outbox has nothing new that
        # a commit has not kicked already.
        held_back = self.resending or len(self.held) + 1 >= self.window
        self.resending = False
        self.held_rows.discard(n)
        if reason.is_failure:
            log.error("broker refused outbox row %d: %s; it stays queued and is retried on reconnect", n, reason)
        elif self.outbox.sent([n]):
            self.forget()
        elif self.forgetting is None:
            self.forgetting = self.loop.call_later(FORGET_S, self.forget)
        if held_back:
            self.kick()

    def forget(self, durable: bool = False) -> None:
        """Delete the acknowledged rows that no transaction took along meanwhile."""
        if self.forgetting is not None:
            self.forgetting.cancel()
            self.forgetting = None
        try:
            self.outbox.forget(durable)
        except StoreDamaged:
            raise
        except StoreError as exc:
            # The rows stay in the file and go out again after a restart: a duplicate, which
            # QoS 1 allows and subscribers drop by id. Nothing is lost.
            log.warning("%s; %d acknowledged rows stay in the outbox", exc, len(self.outbox.pending))

    @property
    def idle(self) -> bool:
        return not self.held and self.outbox.count() == 0
