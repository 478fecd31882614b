"""The site recorder (issue 15, docs/recorder.md): every node's events and every alarm step, off
the broker and into the recorder's store (recorder_store.py), each once, nothing lost.

Its own MQTT client, apart from the node's publisher: MQTT 5 with clean start off and a session
expiry, so that the broker keeps the subscription and queues the site's events while the
recorder is away, and with manual acknowledgement, so that a message is acknowledged (PUBACK)
only once the transaction that holds it has committed. A crash anywhere between the broker and
the commit leaves the message unacknowledged, and the broker delivers it again; the store is
idempotent, so a message delivered twice is stored once.

Three threads, none of them the daemon's loop (a PostgreSQL that is down or slow must not hold
up a door):
  - paho's network thread, which only puts each message in the inbox;
  - the worker, which owns the store: takes up to ``batch`` messages, stores them in one
    transaction, acknowledges them, and looks after the gaps. A database error keeps the batch,
    unacknowledged, and tries again (the store reopened) after a pause that grows to 30 s;
  - the daemon's loop, which the worker asks (``call_soon_threadsafe``) to raise or clear a
    ``sequence_gap`` alarm through the node's ``Alarms``.

A gap (a node's ``seq`` skipped) may be the broker handing the missing event to a second
recorder, or delivering it a moment late: only a gap still in the store after ``gap_grace_s`` is
an alarm, and a signed ``outbox.replay`` request to the node (when the recorder has a signing
key), asked again, less and less often, while it stays open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .broker_connection import make_client
from .commands import load_private_key, sign
from .config import MqttConfig, RecorderConfig
from .errors import StoreError
from .outbox_replay import MAX_SEQS
from .recorder_store import AlarmStep, Gap, Received, RecorderStore, Stored, alarm_step, check, open_store
from .timestamps import utc_now
from .topics import Topics

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
"""The longest pause between two tries of a batch the database refused."""
STOP_S = 10.0
"""How long a stop waits for the batch being stored: within systemd's stop timeout."""
REASK_MIN_S = 60.0
REASK_MAX_S = 3600.0
"""A replay request not answered (the gap still open) is asked again after at least this long,
twice as long each time, up to an hour: a node that no longer holds the events is not flooded."""


@dataclass(frozen=True)
class Inbound:
    """A message as paho handed it over, with the connection it came on: its ``mid`` means
    something only on that connection."""
    mid: int
    qos: int
    topic: str
    payload: bytes
    connection: int


def received(topic: str, payload: bytes) -> Received:
    """The event a message holds, or a ValueError that names what is wrong; the fields' values
    are checked by the store (``recorder_store.check``)."""
    try:
        text = payload.decode("utf-8")
        obj = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nested past what the parser takes. It once stopped the recorder's
        # worker, and the message, never acknowledged, stopped it again after each restart.
        raise ValueError(f"{topic}: the payload is not JSON: {payload[:60]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{topic}: the payload is not a JSON object")
    absent = [f for f in ("node", "seq", "id", "ts") if f not in obj]
    if absent:
        raise ValueError(f"{topic}: the event has no {', '.join(absent)}")
    return Received(obj["node"], obj["seq"], obj["id"], topic, obj["ts"], text)


def sender(topic: str, payload: bytes) -> str:
    """Whom to blame for a message the store refuses: its ``node`` when it says one, else the
    door, desk or host its topic names."""
    try:
        node = json.loads(payload).get("node")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        node = None
    return node if isinstance(node, str) and node.isprintable() else topic.split("/")[-2]


def database_errors() -> tuple[type[BaseException], ...]:
    """What a store raises when the database, not the message, is at fault."""
    errors: tuple[type[BaseException], ...] = (StoreError, sqlite3.Error)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


class Recorder:
    def __init__(self, cfg: RecorderConfig, mqtt_cfg: MqttConfig, *, site: str, node: str, data_dir: Path,
                 raise_alarm: Callable[..., object], clear_alarm: Callable[..., object],
                 loop: asyncio.AbstractEventLoop,
                 on_stored: Callable[[Sequence[Received]], object] | None = None) -> None:
        self.cfg = cfg
        self.on_stored = on_stored
        """Told each committed batch's events, minus those refused (site_occupancy.py)."""
        self.site = site
        self.data_dir = Path(data_dir)
        self.topics = Topics(site)
        self.raise_alarm = raise_alarm
        self.clear_alarm = clear_alarm
        self.loop = loop
        self.key = load_private_key(cfg.signing_key) if cfg.signing_key else None
        self.errors = database_errors()
        share = f"$share/{cfg.share_group}/" if cfg.share_group else ""
        self.filters = (share + f"{self.topics.base}/+/+/event", share + self.topics.alarm("+"))
        # MQTT 5 whatever the node speaks: the session expiry and the shared subscription are 5's.
        self.client = make_client(dataclasses.replace(mqtt_cfg, protocol=5), f"sekisho-{site}-{node}-recorder",
                                  manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=mqtt_cfg.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.mqtt_cfg = mqtt_cfg
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.connection = 0
        """Counts connections (paho's thread writes it): a message is acknowledged only on the one it came on."""
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="recorder", daemon=True)
        # The worker's own, from here on.
        self.store: RecorderStore | None = None
        self.failing = False
        self.pause = RETRY_MIN_S
        self.refused: set[str] = set()
        self.conflicting: set[str] = set()
        self.due: dict[str, float] = {}
        """Nodes whose gaps to look at, and when (monotonic)."""
        self.asked: dict[Gap, tuple[float, float]] = {}
        """Each open gap asked to be replayed: when to ask again, and the pause after that."""
        self.alarmed: dict[str, tuple[int, int]] = {}
        """The nodes with a sequence_gap alarm raised, and the span of seq it says."""

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Connect in the background and start the worker: a broker or a database that is down
        only delays the records."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        # The broker hands over at most this many unacknowledged messages: while the database
        # is down they wait at the broker, in its session, not in this process's memory.
        props.ReceiveMaximum = min(65535, 4 * self.cfg.batch)
        _, host, port = self.mqtt_cfg.endpoint
        self.client.connect_async(host, port, keepalive=self.mqtt_cfg.keepalive_s, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        self.worker.start()

    async def stop(self) -> None:
        """Stop taking messages; what is not committed is not acknowledged, and the broker keeps
        it in the session for the next start."""
        self.stopping.set()
        await asyncio.to_thread(self.worker.join, STOP_S)
        if self.worker.is_alive():
            log.warning("recorder: the worker did not finish within %g s (a database that does not answer); its "
                        "batch is not acknowledged and comes again at the next start", STOP_S)
        self.client.disconnect()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.client.loop_stop), 5)
        except TimeoutError:
            log.warning("recorder: the MQTT network thread did not stop within 5 s; leaving it behind")

    # ------------------------------------------------------------------------- paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("recorder: the broker refused the connection: %s", reason)
            return
        self.connection += 1
        if self.connection > 1 and not flags.session_present:
            # Expired (away longer than session_expiry_s) or lost with a broker that did not
            # save it: what came meanwhile was never queued; the gaps will show it.
            log.warning("recorder: the broker no longer had the recorder's session; what was published while it "
                        "was away will show as gaps")
        log.info("recorder: connected (session %s), subscribing to %s", "kept" if flags.session_present else "new",
                 ", ".join(self.filters))
        # Retained alarms only when the subscription is new: a kept session has them already.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(f, options) for f in self.filters])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        if not self.stopping.is_set():
            log.warning("recorder: lost the broker (%s); reconnecting, the session keeps what comes meanwhile", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload), self.connection))

    # ------------------------------------------------------------------------- worker
    def _work(self) -> None:
        try:
            self._loop()
        except Exception:
            # A fault of the recorder's own: nothing more is stored or acknowledged (the broker
            # keeps it all in the session), and the node's log says why, loudly.
            log.critical("recorder: stopped by an unexpected error; nothing more is recorded until the daemon "
                         "restarts (the broker keeps the messages)", exc_info=True)
        finally:
            if self.store is not None:
                self.store.close()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            if not self._open():
                continue
            self._look_at_gaps()
            wait = min((t for t in self.due.values()), default=time.monotonic() + 1.0) - time.monotonic()
            try:
                first = self.inbox.get(timeout=min(max(wait, 0.01), 1.0))
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.cfg.batch:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _open(self) -> bool:
        """The store, opened (again) if need be; False after a failure and a pause."""
        if self.store is not None:
            return True
        try:
            self.store = open_store(self.cfg.database or None, self.data_dir)
            gaps = self.store.gaps()  # left open by a previous run, or by another recorder
        except self.errors as exc:
            self._failed(exc, "opening the store failed")
            return False
        for gap in gaps:
            self.due.setdefault(gap.node, time.monotonic() + self.cfg.gap_grace_s)
        return True

    def _failed(self, exc: BaseException, what: str) -> None:
        """Log once per outage, drop the connection (reopened at the next try) and pause."""
        if not self.failing:
            log.error("recorder: %s: %s; nothing is acknowledged, the broker keeps the messages, retrying",
                      what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        self.failing = True
        if self.store is not None:
            try:
                self.store.close()
            except self.errors:
                pass  # a connection already broken
            self.store = None
        self.stopping.wait(self.pause)
        self.pause = min(self.pause * 2, RETRY_MAX_S)

    def _commit(self, batch: list[Inbound]) -> None:
        """Store a batch, retrying while the database fails, then acknowledge every message in it."""
        events: list[Received] = []
        steps: list[AlarmStep] = []
        now = utc_now()
        alarm_prefix = self.topics.alarm("")
        for m in batch:
            try:
                if m.topic.startswith(alarm_prefix):
                    if m.payload:  # empty: the alarm's removal, after its last step (already a step)
                        steps.append(alarm_step(m.topic[len(alarm_prefix):], m.payload, now))
                else:
                    events.append(received(m.topic, m.payload))
            except ValueError as exc:
                self._refuse(sender(m.topic, m.payload), str(exc))
        while True:
            if self.stopping.is_set() or not self._open():
                if self.stopping.is_set():
                    return  # not acknowledged: delivered again at the next start
                continue
            assert self.store is not None
            try:
                result = self.store.store(events) if events else Stored()
                self.store.store_alarm_steps(steps)
                break
            except self.errors as exc:
                self._failed(exc, "storing a batch failed")
        self.pause = RETRY_MIN_S
        if self.failing:
            log.warning("recorder: the store is back; storing again")
            self.failing = False
        current = self.connection
        for m in batch:
            # A message of an earlier connection is the broker's to send again (stored once).
            if m.qos > 0 and m.connection == current:
                self.client.ack(m.mid, m.qos)
        if self.on_stored is not None and events:
            refused = {id(bad.event) for bad in result.rejected}  # as given: its fields may not even hash
            conflicts = {(c.node, c.seq, c.id) for c in result.conflicts}
            # In the store's form (``ts`` in UTC), as the whereabouts table compares them.
            self.on_stored([check(e) for e in events if id(e) not in refused
                            and (e.node, e.seq, e.id) not in conflicts])
        for bad in result.rejected:
            self._refuse(bad.event.node if isinstance(bad.event.node, str) else "?", str(bad.error))
        for event in result.conflicts:
            # A node whose store was replaced repeats every seq it had: said once, not thousands of times.
            if event.node not in self.conflicting:
                self.conflicting.add(event.node)
                log.error("recorder: %s seq %d is stored with another id than %s: a node whose store was replaced, "
                          "or two nodes with one name; not stored (further ones of %s in silence)", event.node,
                          event.seq, event.id, event.node)
        later = time.monotonic() + self.cfg.gap_grace_s
        for gap in result.opened:
            self.due.setdefault(gap.node, later)
        for gap in result.closed:
            self.due[gap.node] = time.monotonic()  # an alarm to clear, perhaps

    def _refuse(self, node: str, error: str) -> None:
        """A message the store will not take: acknowledged all the same (it would block the
        queue for ever), and said once per node."""
        if node not in self.refused:
            self.refused.add(node)
            log.error("recorder: refused a message from %s (further ones from it are refused in silence): %s",
                      node, error)

    def _look_at_gaps(self) -> None:
        """Each node whose time has come: its gaps as the store has them now (another recorder
        may have filled them), an alarm while any is open, a replay request for each."""
        now = time.monotonic()
        for node in [n for n, t in self.due.items() if t <= now]:
            assert self.store is not None
            try:
                gaps = self.store.gaps(node)
            except self.errors as exc:
                self._failed(exc, "reading the gaps failed")
                return
            if not gaps:
                del self.due[node]
                self.asked = {g: t for g, t in self.asked.items() if g.node != node}
                if self.alarmed.pop(node, None) is not None:
                    log.info("recorder: every gap of %s is filled", node)
                    self.loop.call_soon_threadsafe(self.clear_alarm, "sequence_gap", node)
                continue
            span = (gaps[0].first, gaps[-1].last)
            if self.alarmed.get(node) != span:
                self.alarmed[node] = span
                log.warning("recorder: %s: seq %d to %d missing (%d gaps)", node, *span, len(gaps))
                self.loop.call_soon_threadsafe(functools.partial(
                    self.raise_alarm, "sequence_gap", node, "warning", first_seq=span[0], last_seq=span[1]))
            self.asked = {g: t for g, t in self.asked.items() if g.node != node or g in gaps}
            for gap in gaps:
                when, pause = self.asked.get(gap, (now, REASK_MIN_S / 2))
                if when <= now:
                    self._ask_replay(gap)
                    pause = min(pause * 2, REASK_MAX_S)
                    self.asked[gap] = (now + pause, pause)
            self.due[node] = min(t for g, (t, _) in self.asked.items() if g.node == node) if self.key else \
                now + REASK_MIN_S

    def _ask_replay(self, gap: Gap) -> None:
        if self.key is None:
            return  # no signing key: the alarm says it, nobody can be asked
        log.info("recorder: asking %s to replay seq %d to %d", gap.node, gap.first, gap.last)
        for first in range(gap.first, gap.last + 1, MAX_SEQS):  # a node replays at most MAX_SEQS at once
            args = {"from_seq": first, "to_seq": min(first + MAX_SEQS - 1, gap.last)}
            message = sign("outbox.replay", args, site=self.site, node=gap.node, key_name=self.cfg.key_name,
                           key=self.key)
            self.client.publish(self.topics.command(gap.node), json.dumps(message), qos=1)
