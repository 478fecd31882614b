"""Hostile messages from other nodes on the bus, where a node reads them: the recorder's
``received``, ``sender`` and ``alarm_step``, and a desk node's occupancy from a door node. Each
gives what it reads or a ``ValueError`` (the recorder refuses the message, logs it and
acknowledges it), or is ignored; never another exception. A payload nested past what Python's
parser takes once stopped the recorder's worker, and, never acknowledged, stopped it again after
every restart (test_recorder.py sends one through a real broker too).

The budget is the hypothesis profile's (conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.daemon.recorder import received, sender
from sekisho.daemon.recorder_store import alarm_step
from sekisho.daemon.topics import Topics

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
PAYLOADS = st.one_of(st.binary(max_size=512), JSON.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from(["node", "seq", "id", "ts", "kind", "subjects", "x"]), JSON,
                                     max_size=5).map(lambda d: json.dumps(d).encode()))
DEEP = b"[" * 100_000
TOPIC = "sekisho/v1/test/door/entrance/event"


@given(PAYLOADS)
@example(DEEP)
@example(b'{"node": ' + b"[" * 100_000)
@example(b"\xff")
def test_the_recorder_reads_any_event_or_refuses_it(payload):
    try:
        received(TOPIC, payload)
    except ValueError as exc:
        assert str(exc)
    assert isinstance(sender(TOPIC, payload), str)


@given(st.text(max_size=40), PAYLOADS)
@example("door-a.entrance.forced", DEEP)
def test_the_recorder_reads_any_alarm_step_or_refuses_it(alarm_id, payload):
    try:
        alarm_step(alarm_id, payload, "2026-12-05T09:00:00.000Z")
    except ValueError as exc:
        assert str(exc)


@pytest.fixture(scope="module")
def presence(tmp_path_factory):
    """A desk node's presence, whose occupancy comes from the recorder: every area is remote."""
    from sekisho.daemon.presence import Presence
    from test_controllers import House

    loop = asyncio.new_event_loop()
    house = House(tmp_path_factory.mktemp("house"), loop)
    house.config = dataclasses.replace(house.config, site=dataclasses.replace(house.config.site,
                                                                              occupancy_from="recorder"))
    yield Presence(house.config, house.people, house.record, house.key, Topics("test"), loop, house.queued.append)
    house.database.close()
    loop.close()


@given(payload=PAYLOADS)
@example(payload=DEEP)
@example(payload=b'{"subjects": [[1]]}')
@example(payload=b'{"subjects": "abc"}')
@example(payload=b'{"subjects": [1, 2]}')
def test_a_desk_node_ignores_any_occupancy_it_cannot_read(presence, payload):
    presence.occupancy_heard("sekisho/v1/test/area/room/occupancy", b'{"count": 1, "subjects": ["s-1"]}')
    presence.occupancy_heard("sekisho/v1/test/area/room/occupancy", payload)
    heard = presence.heard["room"]
    # What it heard is a list of pseudonyms, or what it knew before stays.
    try:
        sent = json.loads(payload)["subjects"] if payload else []
    except (ValueError, KeyError, TypeError, RecursionError):
        sent = None
    if isinstance(sent, list) and all(isinstance(s, str) for s in sent):
        assert heard == set(sent)
    else:
        assert heard == {"s-1"}
