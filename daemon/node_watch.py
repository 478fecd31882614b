"""Other nodes' absence, seen from here: ``[site] watch_nodes`` and the ``node_offline`` alarm.

A node cannot say it is gone; the broker says it for it, with the last will it left on
``node/<node>/status`` (docs/mqtt.md), and a clean stop says it too. Whoever reads that topic
can tell. This node reads the status of each node it is told to watch and raises
``node_offline`` (source: the watched node) when one has been offline for
``node_offline_after_s``, or has not been heard from that long after this node first reached the broker (a
machine switched off before the broker last started leaves no retained status). A node back
online clears the alarm, which then waits for a person like any other.

The grace period is there because a restart (a clean stop, then online again a few seconds
later) is no alarm, and a broker's restart drops every node's connection at once.

The clock is the loop's monotonic one: a watched node's ``ts`` is its own clock's, and a wrong
clock there must not hide its absence here.
"""

from __future__ import annotations

import asyncio
import json
import logging

from .alarms import Alarms
from .topics import Topics

log = logging.getLogger(__name__)

KIND = "node_offline"


class NodeWatch:
    def __init__(self, watched: tuple[str, ...], topics: Topics, alarms: Alarms, loop: asyncio.AbstractEventLoop, *,
                 offline_after_s: float) -> None:
        self.alarms = alarms
        self.loop = loop
        self.offline_after_s = offline_after_s
        self.nodes = {topics.node_status(node): node for node in watched}
        """Each watched node's status topic -> its name: what the daemon subscribes to."""
        self.state: dict[str, str | None] = dict.fromkeys(watched)
        """Each watched node's last status: ``online``, ``offline``, or None before it is heard from."""
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.raised: set[str] = set()

    def start(self) -> None:
        """Give every node not heard from yet its grace period; called on each connection to the
        broker (a node that was never connected has heard from nobody)."""
        for node, state in self.state.items():
            if state is None and node not in self.pending:
                self._after_grace(node)

    def stop(self) -> None:
        for handle in self.pending.values():
            handle.cancel()
        self.pending.clear()

    def heard(self, topic: str, payload: bytes) -> None:
        """A status message (retained or live; empty: the node's retained status was removed)."""
        node = self.nodes[topic]
        try:
            state = json.loads(payload)["state"] if payload else "offline"
        except (ValueError, TypeError, KeyError, RecursionError):
            log.warning("node %s: a status that is not the contract's JSON (%r); ignored", node, payload[:80])
            return
        if state not in ("online", "offline"):
            log.warning("node %s: unknown status %r; ignored", node, state)
            return
        self.state[node] = state
        if state == "online":
            self._cancel(node)
            if node in self.raised:
                self.raised.discard(node)
                log.info("node %s is online again", node)
                self.alarms.clear(KIND, node)
        elif node not in self.pending and node not in self.raised:
            # Already waiting (never heard from since start): that grace period goes on.
            self._after_grace(node)

    def _after_grace(self, node: str) -> None:
        self.pending[node] = self.loop.call_later(self.offline_after_s, self._offline, node)

    def _cancel(self, node: str) -> None:
        handle = self.pending.pop(node, None)
        if handle is not None:
            handle.cancel()

    def _offline(self, node: str) -> None:
        self.pending.pop(node, None)
        state = self.state.get(node)
        if state == "online":
            return
        after = f"{self.offline_after_s:g} s"
        detail = f"offline for {after}" if state else \
            f"not heard from in the {after} since this node reached the broker"
        log.warning("node %s: %s", node, detail)
        self.raised.add(node)
        self.alarms.raise_(KIND, node, "warning", detail=detail)
