"""PcscReader against the real pcscd, with vsmartcard-vpcd's virtual reader and the fake card of
fakecard.py: insertions, removals, unreadable cards, pcscd restarts, a reader that is missing
and comes back, and a prompt stop.

vpcd notices an insertion in 0.3-0.5 s and a removal in 0.4 s, so waits are 5 s or more. An
"exactly one" claim is checked at a barrier: a later event that must come after any duplicate.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, wait_for
from fakecard import READER, FakeCard, Pcscd, ensure_no_other_pcscd
from sekisho.drivers import registry
from sekisho.drivers.base import DriverError
from sekisho.drivers.pcsc import PcscReader
from sekisho.policies.events import CardPresented, CardRemoved, CardUnreadable, Event, ReaderBack, ReaderLost

UID_A = "04a1b2c3d4e5f6"
UID_B = "0811223344556677"
WAIT = 8.0


class Recorder:
    """The driver's emit: called from the driver's threads, read from the test's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def all(self) -> list[Event]:
        with self.lock:
            return list(self.events)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.all()]

    def count(self, cls: type) -> int:
        return sum(isinstance(e, cls) for e in self.all())

    def wait(self, cls: type, n: int, what: str = "") -> Event:
        """Until the n-th event of ``cls`` arrived; returns it."""
        wait_for(lambda: self.count(cls) >= n, WAIT, what or f"{cls.__name__} #{n} (have {self.kinds()})")
        return [e for e in self.all() if isinstance(e, cls)][n - 1]


@pytest.fixture
def cards(pcscd: Pcscd) -> Iterator[Any]:
    made: list[FakeCard] = []

    def make(uid: str = UID_A, **kw: Any) -> FakeCard:
        card = FakeCard(uid, pcscd.port, **kw)
        made.append(card)
        return card
    yield make
    for card in made:
        card.remove()


@pytest.fixture
def start_reader(tmp_path: Path) -> Iterator[Any]:
    running: list[PcscReader] = []

    def start(**options: Any) -> tuple[PcscReader, Recorder]:
        rec = Recorder()
        opts = {k: o.default for k, o in PcscReader.OPTIONS.items()} | {"name": READER} | options
        reader = PcscReader("desk-01", opts, rec, data_dir=tmp_path)
        asyncio.run(reader.start())
        running.append(reader)
        return reader, rec
    yield start
    for reader in running:
        asyncio.run(reader.stop())


def test_registered_and_module_import_does_not_need_pyscard():
    assert registry.load("pcsc") is PcscReader
    # check-config imports driver modules on nodes without the hardware libraries.
    code = ("import sys, sekisho.drivers.pcsc, sekisho.drivers.nfc; "
            "bad = [m for m in ('smartcard', 'nfc', 'usb1') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr


def test_options_are_checked():
    opts = PcscReader.OPTIONS
    assert opts["name"].check("  ")
    assert opts["poll_timeout_ms"].check(0) and opts["read_timeout_ms"].check(-5)
    assert opts["name"].check("ACS ACR122U*") is None and opts["poll_timeout_ms"].check(2000) is None


def test_missing_pyscard_is_a_driver_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "smartcard", None)  # makes `import smartcard` raise ImportError
    reader = PcscReader("desk-01", {"name": READER}, Recorder(), data_dir=tmp_path)
    with pytest.raises(DriverError, match="pyscard"):
        asyncio.run(reader.start())


def test_insert_remove_reinsert_give_one_event_each(pcscd, cards, start_reader):
    _, rec = start_reader()
    a, b = cards(UID_A), cards(UID_B)
    a.insert()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(UID_A)
    a.remove()
    rec.wait(CardRemoved, 1)
    a.insert()
    assert rec.wait(CardPresented, 2).uid == bytes.fromhex(UID_A)
    # A swap with no gap at all: vpcd takes the new card only after it saw the old one go,
    # and the watcher must still see two transitions, not one "still present".
    a.remove()
    b.insert()
    assert rec.wait(CardPresented, 3).uid == bytes.fromhex(UID_B)
    b.remove()
    rec.wait(CardRemoved, 3)
    a.insert()  # the barrier: a duplicate of anything above would show before this one
    rec.wait(CardPresented, 4)
    assert rec.kinds() == ["CardPresented", "CardRemoved"] * 3 + ["CardPresented"]
    presented = [e for e in rec.all() if isinstance(e, CardPresented)]
    assert all(e.source == "desk-01" and e.raw["reader"] == READER for e in presented)
    assert presented[0].raw["atr"] == "3b8f8001804f0ca000000306030001000000006a"


def test_card_already_on_the_reader_at_start_is_presented_once(pcscd, cards, start_reader):
    card = cards(UID_B)
    card.insert()
    wait_for(pcscd_sees_card, WAIT, "pcscd to see the card")
    _, rec = start_reader()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(UID_B)
    card.remove()
    rec.wait(CardRemoved, 1)
    card.insert()
    rec.wait(CardPresented, 2)
    assert rec.kinds() == ["CardPresented", "CardRemoved", "CardPresented"]


def pcscd_sees_card() -> bool:
    from smartcard import scard as sc
    hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    assert hr == 0, sc.SCardGetErrorMessage(hr)
    try:
        hr, states = sc.SCardGetStatusChange(ctx, 0, [(READER, sc.SCARD_STATE_UNAWARE)])
        return hr == 0 and bool(states[0][1] & sc.SCARD_STATE_PRESENT)
    finally:
        sc.SCardReleaseContext(ctx)


@pytest.mark.parametrize("mode, sw, reason", [
    ("status", b"\x6A\x81", "status 6A81"),
    ("status", b"\x63\x00", "status 6300"),
    ("short", b"", "short_answer"),
    ("garbage", b"", "bad_uid_length"),
    ("hangup", b"", "no_answer"),
])
def test_unreadable_card_is_reported_and_the_next_card_is_read(pcscd, cards, start_reader, mode, sw, reason):
    _, rec = start_reader()
    bad = cards(UID_A, mode=mode, sw=sw)
    bad.insert()
    event = rec.wait(CardUnreadable, 1)
    assert event.reason == reason and event.source == "desk-01"
    assert bad.apdus == [b"\xFF\xCA\x00\x00\x00"]
    bad.remove()
    rec.wait(CardRemoved, 1)
    good = cards(UID_B)
    good.insert()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(UID_B)
    assert rec.kinds() == ["CardUnreadable", "CardRemoved", "CardPresented"]


def test_card_that_never_answers_times_out_and_the_driver_carries_on(pcscd, cards, start_reader):
    # 4 s, twice the default: the wait is the one configured (a lower bound, which a busy machine
    # cannot break), and it ends (the card stays silent until it is removed).
    _, rec = start_reader(read_timeout_ms=4000)
    silent = cards(UID_A, mode="silent")
    inserted = time.monotonic()
    silent.insert()
    wait_for(lambda: silent.apdus, WAIT, "the GET UID command at the card")
    unreadable = rec.wait(CardUnreadable, 1, "the read to time out")
    assert time.monotonic() - inserted >= 4.0
    assert (unreadable.reason, unreadable.raw["detail"]) == ("no_answer", "no reply in 4000 ms")
    silent.remove()
    rec.wait(CardRemoved, 1)
    good = cards(UID_B)
    good.insert()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(UID_B)
    assert rec.kinds() == ["CardUnreadable", "CardRemoved", "CardPresented"]


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_pcscd_restart_is_survived(pcscd, cards, start_reader, how):
    _, rec = start_reader()
    card = cards(UID_A)
    card.insert()
    rec.wait(CardPresented, 1)
    getattr(pcscd, how)()  # SIGKILL, or SIGTERM and pcscd's own clean-up
    # The card was in: the desk must lock, so the removal comes before (or with) the loss.
    lost = rec.wait(ReaderLost, 1)
    assert "pcscd" in lost.reason
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost"]
    pcscd.start()
    rec.wait(ReaderBack, 1)
    wait_for(card.ended.is_set, WAIT, "vpcd to drop the card when pcscd went")
    card.insert()
    assert rec.wait(CardPresented, 2).uid == bytes.fromhex(UID_A)
    card.remove()
    rec.wait(CardRemoved, 2)
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost", "ReaderBack", "CardPresented",
                           "CardRemoved"]


def test_missing_pcscd_and_missing_reader_then_both_back(tmp_path, start_reader):
    pcscd = Pcscd(tmp_path)  # not started: the daemon may come up before pcscd does
    ensure_no_other_pcscd()
    _, rec = start_reader()
    assert "pcscd not reachable" in rec.wait(ReaderLost, 1).reason
    pcscd.start(reader=False)  # pcscd, but the reader is unplugged
    try:
        wait_for(lambda: pcscd_lists([]), WAIT, "pcscd without readers")
        pcscd.stop()
        pcscd.start(reader=True)
        rec.wait(ReaderBack, 1)
        card = FakeCard(UID_A, pcscd.port)
        card.insert()
        try:
            assert rec.wait(CardPresented, 1).uid == bytes.fromhex(UID_A)
        finally:
            card.remove()
        # One outage, one ReaderLost: pcscd down, then up without the reader, is still one.
        assert rec.kinds() == ["ReaderLost", "ReaderBack", "CardPresented"]
    finally:
        pcscd.release()


def pcscd_lists(expected: list[str]) -> bool:
    from smartcard import scard as sc
    hr, ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
    if hr != 0:
        return False
    try:
        hr, names = sc.SCardListReaders(ctx, [])
        return (names if hr == 0 else []) == expected
    finally:
        sc.SCardReleaseContext(ctx)


def test_reader_unplugged_and_plugged_back(pcscd, cards, start_reader, monkeypatch):
    """vpcd's readers are fixed for pcscd's lifetime (pcscd 1.9.9 built with libudev ignores
    the SIGUSR1 that would re-read reader.conf), so the unplugging is played on the reader
    list: while ``unplugged`` is set, SCardListReaders leaves the reader out. The driver finds
    out on its next poll timeout, as it would with a pcscd that sends no PnP notification."""
    from smartcard import scard
    unplugged = threading.Event()
    real_list = scard.SCardListReaders

    def listing(ctx: int, groups: list[str]) -> tuple[int, list[str]]:
        hr, names = real_list(ctx, groups)
        return hr, [n for n in names if not (unplugged.is_set() and n == READER)]
    monkeypatch.setattr(scard, "SCardListReaders", listing)

    _, rec = start_reader(poll_timeout_ms=200)
    card = cards(UID_A)
    card.insert()
    rec.wait(CardPresented, 1)
    unplugged.set()
    assert rec.wait(ReaderLost, 1).reason == f"reader {READER!r} unplugged"
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost"]
    unplugged.clear()
    rec.wait(ReaderBack, 1)
    # Still on the reader when it came back: read afresh, as pcscd would after a replug.
    assert rec.wait(CardPresented, 2).uid == bytes.fromhex(UID_A)
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost", "ReaderBack", "CardPresented"]


def test_no_matching_reader_is_lost_not_an_error(pcscd, start_reader):
    _, rec = start_reader(name="ACS ACR122U*")
    lost = rec.wait(ReaderLost, 1)
    assert "no PC/SC reader matches 'ACS ACR122U*'" in lost.reason and READER in lost.reason


def test_pattern_picks_the_reader(pcscd, cards, start_reader):
    _, rec = start_reader(name="Virtual PCD * 00")
    card = cards(UID_A)
    card.insert()
    assert rec.wait(CardPresented, 1).raw["reader"] == READER


def test_stop_is_prompt_and_final(pcscd, cards, tmp_path, monkeypatch):
    monkeypatch.setattr("sekisho.drivers.pcsc.STOP_TIMEOUT_S", 60.0)  # a stop() that gives up took a minute
    rec = Recorder()
    # A wait of ten minutes per call: only SCardCancel can end it in time.
    reader = PcscReader("desk-01", {"name": READER, "poll_timeout_ms": 600_000}, rec, data_dir=tmp_path)
    asyncio.run(reader.start())
    card = cards(UID_A)
    card.insert()
    rec.wait(CardPresented, 1)
    t0 = time.monotonic()
    asyncio.run(reader.stop())
    assert time.monotonic() - t0 < 30
    assert not [t for t in threading.enumerate() if t.name == "pcsc desk-01"]
    card.remove()  # nothing may arrive after stop(): the thread is gone
    assert rec.kinds() == ["CardPresented"]


def test_stop_is_prompt_while_pcscd_is_down(tmp_path, monkeypatch):
    # It waits a minute before it tries pcscd again; stop() must not wait that out.
    monkeypatch.setattr("sekisho.drivers.pcsc.BACKOFF_FIRST_S", 60.0)
    monkeypatch.setattr("sekisho.drivers.pcsc.BACKOFF_MAX_S", 60.0)
    turn = Pcscd(tmp_path)  # fails the test if pcscd is not installed; holds the machine's pcscd, unstarted
    ensure_no_other_pcscd()
    rec = Recorder()
    reader = PcscReader("desk-01", {"name": READER}, rec, data_dir=tmp_path)
    asyncio.run(reader.start())
    rec.wait(ReaderLost, 1)
    t0 = time.monotonic()
    asyncio.run(reader.stop())
    assert time.monotonic() - t0 < 30
    turn.release()
