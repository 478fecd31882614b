"""Replay (``outbox.replay``): the node publishes again the events a subscriber missed, when the
site recorder finds a skip in the node's ``seq`` and asks for them by a signed command.

What is published again is what was published first, byte for byte: the payload kept in the
``events`` table (same ``id``, ``seq``, ``ts``) on the topic it went out on. It goes through the
outbox like everything else, so the broker acknowledges each one and the normal publisher sends
it; a replayed event is no new event (no seq, no audit row of its own). A replay asked twice
publishes twice, which QoS 1 allows anyway and subscribers drop by ``id``.

Failure model: what the node no longer holds is an answer, not an error. A seq deleted by the
retention purge (``[site] retention_days``), one after the node's last seq (never recorded), or
one recorded before the store kept topics whose topic cannot be told again is listed in the
answer by why; the rest is queued. A range that ends before it starts, or is longer than
``MAX_SEQS``, is refused whole. A store that cannot be written refuses the whole replay
(``StoreError``) and nothing is queued.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .config import topic_name
from .errors import DataError
from .store.record import Record
from .topics import Topics

log = logging.getLogger(__name__)

MAX_SEQS = 100_000
"""Most seqs one replay covers: a day of a busy door is a few thousand; more is several requests,
so that no single one holds the store's write lock or the loop for long (100,000 events take
some 0.5 s on the development VM, in one transaction on the loop)."""


class OutboxReplay:
    def __init__(self, record: Record, topics: Topics, *, usb_host: str | None,
                 committed: Callable[[], None]) -> None:
        self.record = record
        self.topics = topics
        self.usb_host = usb_host
        """``[usb] host``: the topic of a USB event, which its payload does not name."""
        self.committed = committed
        """Called once the rows are queued: the publisher hands them to the broker."""

    def replay(self, first: int, last: int, actor: str) -> dict[str, Any]:
        """Queue seqs ``first`` to ``last`` (inclusive) again; what was queued and what not, by why."""
        if first > last:
            raise DataError(f"bad range: from_seq {first} is after to_seq {last}")
        if last - first + 1 > MAX_SEQS:
            raise DataError(f"bad range: {last - first + 1:,} seqs; at most {MAX_SEQS:,} in one replay "
                            "(ask for the rest in another)")
        done = self.record.replay(first, last, self.topic_of, actor)
        if done.queued:
            self.committed()
        log.info("replay of seq %d to %d for %s: %d queued, purged %s, beyond %s, unreplayable %s", first, last,
                 actor, done.queued, list(done.purged), list(done.beyond), list(done.unreplayable))
        return {"from_seq": first, "to_seq": last, "queued": done.queued, "last_seq": done.last_seq,
                "purged": [list(s) for s in done.purged], "beyond": [list(s) for s in done.beyond],
                "unreplayable": [list(s) for s in done.unreplayable]}

    def topic_of(self, kind: str, payload: str) -> str | None:
        """The topic an event recorded before the store kept topics went out on, as the contract
        names them: ``door/<door>/event`` and ``desk/<desk>/event`` from the payload's door or
        desk, ``usb/<host>/event`` from this node's ``[usb] host``; None when the row does not
        tell (a kind no topic is made for, a payload without its name, USB without ``[usb]``)."""
        try:
            event = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        if kind == "usb":
            return self.topics.usb_event(self.usb_host) if self.usb_host else None
        name = event.get(kind)
        # Only a name that is a topic segment: never a wildcard or a level more.
        if not isinstance(name, str) or topic_name(name) is not None:
            return None
        if kind == "door":
            return self.topics.door_event(name)
        if kind == "desk":
            return self.topics.desk_event(name)
        return None
