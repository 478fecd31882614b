"""The line's supervisor in this process (``LineRunner``, drivers/osdp_line.py) with libosdp's own
peripheral device as the reader over a pty pair (osdpfake.py): what it does with libosdp's panel
that the daemon's tests cannot see from outside: libosdp's event queues stay empty, it asks each
reader for its status when it comes online, and a reply forged past libosdp's MAC check is dropped."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import osdp
import pytest

from conftest import wait_for
from osdpfake import OsdpBus, reply_frame
from sekisho.drivers.osdp_keys import new_scbk
from sekisho.drivers.osdp_line import LineRunner

POLL = 0x60
"""osdp_POLL's command id; osdp_RAW's reply id (a card read) below."""
RAW = 0x50


class Port:
    """One reader as the line sees it, keeping what the line tells it."""

    def __init__(self, name: str, address: int) -> None:
        self.name = name
        self.address = address
        self.events: list[Mapping[str, Any]] = []
        self.status: list[tuple[bool, str]] = []
        self.lock = threading.Lock()

    def osdp_event(self, event: Mapping[str, Any]) -> None:
        with self.lock:
            self.events.append(event)

    def osdp_status(self, online: bool, reason: str) -> None:
        with self.lock:
            self.status.append((online, reason))

    @property
    def online(self) -> bool:
        with self.lock:
            return bool(self.status) and self.status[-1][0]


@pytest.fixture
def line():
    bus = OsdpBus()
    key = new_scbk()
    port = Port("r1", 1)
    reader = bus.reader(1, key).start()
    runner = LineRunner(bus.path, 115200, [port], {"r1": key})
    runner.start()
    try:
        wait_for(lambda: port.online and reader.secure, what="the reader online")
        yield runner, port, reader
    finally:
        runner.stop()
        bus.close()


def test_libosdp_keeps_no_copy_of_the_events(line):
    """libosdp's ControlPanel queues every event for get_event, which no one calls: key presses
    (PIN digits) would pile up in memory for the daemon's lifetime."""
    runner, port, reader = line
    reader.keys("1234#")
    reader.card(bytes.fromhex("04a1b2c3d4e5f6"))
    wait_for(lambda: len([e for e in port.events if e["event"] in (osdp.Event.KeyPress, osdp.Event.CardRead)]) == 2,
             what="the key presses and the card")
    assert [q.qsize() for q in runner.panel.event_queue if hasattr(q, "qsize")] in ([], [0])


def test_the_reader_is_asked_for_its_status_when_it_comes_online(line):
    """libosdp sends osdp_LSTAT only when asked: a tamper under way when the reader comes online
    would go unseen until the reader volunteers it. (libosdp 3.2.9's Python peripheral device
    cannot answer with tamper set, its command struct carries the type only: this test sees the
    request and the answer, whose tamper byte is 0.)"""
    _, port, reader = line
    wait_for(lambda: any(c["command"] == osdp.Command.Status for c in iter(lambda: reader.pd.get_command(0.2), None)),
             what="the status request at the reader")
    wait_for(lambda: any(e["event"] == osdp.Event.Status for e in port.events), what="the reader's status report")


def test_a_reply_forged_with_a_handshake_type_is_dropped(line):
    """libosdp 3.2.9 checks a reply's MAC only for SCS_15 and above (osdp_phy.c): inside the
    secure channel, a card read marked SCS_12 (the handshake's osdp_CCRYPT type, no MAC) would
    reach the panel unchecked. Someone on the cable answers a poll with one in the reader's
    place: the line drops it, and the reader's own card reads still come."""
    runner, port, reader = line
    forged: list[bytes] = []

    def forge(frame: bytes) -> bytes | None:
        if forged or frame[1] != 1 or not frame[4] & 0x08 or frame[5 + frame[5]] != POLL:
            return None
        forged.append(frame)
        return reply_frame(1, frame[4], bytes([RAW, 0, 0, 56, 0]) + bytes.fromhex("deadbeef112233"),
                           security_block=bytes([2, 0x12]))
    reader.bus.forge = forge
    wait_for(lambda: forged, what="a poll answered by the forger")
    reader.bus.forge = None
    reader.card(bytes.fromhex("04a1b2c3d4e5f6"))
    wait_for(lambda: [e for e in port.events if e["event"] == osdp.Event.CardRead], what="the reader's card")
    assert [e["data"].hex() for e in port.events if e["event"] == osdp.Event.CardRead] == ["04a1b2c3d4e5f6"]
    assert port.status == [(True, "")]
