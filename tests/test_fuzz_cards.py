"""Hostile card answers: whatever a card (or a reader) answers to GET UID, and whatever UID nfcpy
reports, the driver reports the card once, as ``CardPresented`` with exactly the UID it was given
when that is a UID (status 90 00, 4 to 10 bytes), and otherwise as ``CardUnreadable`` with a
reason; never an exception in the reader's thread, never a UID it was not given.

``pcsc_uid.parse`` is fuzzed directly; a handful of odd answers also go through the real pcscd
and vpcd to the driver's thread, which must then still read a good card. nfcpy's own tag classes
carry the fuzzed UIDs into the nfc driver's callback. The budget is the hypothesis profile's."""

from __future__ import annotations

import threading
from pathlib import Path

import nfc.clf
import nfc.tag.tt1
import nfc.tag.tt2
import nfc.tag.tt3
from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.drivers.nfc import NfcReader
from sekisho.drivers.pcsc_uid import parse
from sekisho.policies.events import CardPresented, CardUnreadable, Event

ODD_LENGTHS = (0, 1, 2, 3, 11, 12, 255)


@given(st.binary(max_size=300))
@example(b"")
@example(b"\x90")
@example(b"\x90\x00")
@example(b"\x01\x02\x03\x90\x00")
@example(bytes(11) + b"\x90\x00")
@example(bytes(255) + b"\x90\x00")
@example(b"\x04\xa1\xb2\xc3\x6a\x81")
@example(b"\x04\xa1\xb2\xc3\x62\x82")
@example(b"\x04\xa1\xb2\xc3\x90\x01")
def test_any_answer_to_get_uid_is_a_uid_or_a_reason(response):
    read = parse(response)
    if read.uid is None:
        assert read.reason and not read.dead
        return
    assert response[-2:] == b"\x90\x00" and read.uid == response[:-2] and 4 <= len(read.uid) <= 10


@given(st.binary(min_size=4, max_size=10), st.binary(min_size=2, max_size=2).filter(lambda sw: sw != b"\x90\x00"))
def test_a_status_other_than_9000_is_never_a_uid(uid, sw):
    read = parse(uid + sw)
    assert read.uid is None and read.reason == f"status {sw.hex().upper()}"


class Events:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.got.append(event)


def nfc_reader(tmp_path: Path) -> tuple[NfcReader, Events]:
    events = Events()
    reader = NfcReader("desk-01", {"path": "udp:127.0.0.1:1"}, events, data_dir=tmp_path)
    # Open the driver's gate without its polling thread: the callback nfcpy calls is under test.
    reader._start_thread(lambda: None, "nfc")
    return reader, events


TAGS = st.one_of(
    st.binary(max_size=255).map(lambda uid: nfc.tag.tt2.Type2Tag(None, nfc.clf.RemoteTarget("106A", sdd_res=uid))),
    # A FeliCa answer of any length nfcpy makes a tag of: it slices the IDm out, short or not.
    # (At 18 bytes nfcpy's own Type3Tag raises struct.error before there is a tag: the driver
    # reports that card unreadable, test_nfc_driver.py's garbled card.)
    st.binary(max_size=30).filter(lambda res: len(res) != 18).map(lambda res: nfc.tag.tt3.Type3Tag(None, nfc.clf.RemoteTarget("212F", sensf_res=res))),
    st.binary(max_size=8).map(lambda res: nfc.tag.tt1.Type1Tag(None, nfc.clf.RemoteTarget("106A", rid_res=res))))


@given(TAGS)
@example(nfc.tag.tt2.Type2Tag(None, nfc.clf.RemoteTarget("106A", sdd_res=bytes(11))))
@example(nfc.tag.tt3.Type3Tag(None, nfc.clf.RemoteTarget("212F", sensf_res=b"\x01\x02\x03")))
def test_any_uid_from_nfcpy_is_presented_as_given_or_refused(tmp_path_factory, tag):
    reader, events = nfc_reader(tmp_path_factory.getbasetemp())
    try:
        assert reader._on_connect(tag) is True
    finally:
        reader._close()
    [event] = events.got
    uid = bytes(tag.identifier)
    if 4 <= len(uid) <= 10:
        assert isinstance(event, CardPresented) and event.uid == uid
    else:
        assert isinstance(event, CardUnreadable) and event.reason == "bad_uid_length"


def test_odd_uid_lengths_from_nfcpy_are_refused(tmp_path):
    for n in ODD_LENGTHS:
        reader, events = nfc_reader(tmp_path)
        reader._on_connect(nfc.tag.tt2.Type2Tag(None, nfc.clf.RemoteTarget("106A", sdd_res=bytes(range(n)))))
        reader._close()
        assert [(type(e), e.raw.get("detail")) for e in events.got] == [(CardUnreadable, f"{n}-byte UID")]


def test_odd_answers_through_pcscd_are_refused_and_the_reader_carries_on(pcscd, tmp_path):
    """UIDs of 0, 3, 11 and 255 bytes with 90 00, and a UID with 62 82, through the real pcscd and
    vpcd; then a good card is read by the same driver thread."""
    import asyncio

    from fakecard import READER, FakeCard
    from harness import wait_for
    from sekisho.drivers.pcsc import PcscReader
    from sekisho.policies.events import CardRemoved

    events = Events()
    opts = {k: o.default for k, o in PcscReader.OPTIONS.items()} | {"name": READER}
    reader = PcscReader("desk-01", opts, events, data_dir=tmp_path)
    asyncio.run(reader.start())

    def seen(cls: type) -> list[Event]:
        with events.lock:
            return [e for e in events.got if isinstance(e, cls)]
    try:
        odd = [FakeCard(bytes(range(n)), pcscd.port) for n in (0, 3, 11, 255)]
        odd.append(FakeCard(bytes.fromhex("04a1b2c3"), pcscd.port, mode="status", sw=b"\x62\x82"))
        for i, card in enumerate(odd, start=1):
            card.insert()
            wait_for(lambda i=i: len(seen(CardUnreadable)) >= i, 8, f"odd answer #{i} refused")
            card.remove()
            wait_for(lambda i=i: len(seen(CardRemoved)) >= i, 8, f"odd card #{i} removed")
        reasons = [e.reason for e in seen(CardUnreadable)]
        assert reasons == ["bad_uid_length", "bad_uid_length", "bad_uid_length", "bad_uid_length", "status 6282"]
        good = FakeCard("04a1b2c3d4e5f6", pcscd.port)
        good.insert()
        presented = wait_for(lambda: seen(CardPresented), 8, "the good card after the odd ones")
        good.remove()
        assert [e.uid.hex() for e in presented] == ["04a1b2c3d4e5f6"]
    finally:
        asyncio.run(reader.stop())
