"""NfcReader with nfcpy's own ``udp`` pseudo-device: the driver opens ``udp:127.0.0.1:PORT`` as
its reader, and a card emulator in a thread of this process listens on the same port through a
second ContactlessFrontend. nfcpy's whole reader stack runs (sense, activation, presence check);
only the radio is replaced by UDP datagrams. That is nfcpy's own test means, chosen over a fake
at the ContactlessFrontend edge because a fake there would also replace the presence check that
makes "a card left on the reader is one presentation" true.

The FeliCa card is nfcpy's Type 3 Tag emulation. nfcpy has no Type A card emulation, so the
Type A card answers anticollision through ``clf.listen`` and the Type 2 READ of the presence
check by hand (notes/testing-without-hardware.md, section 2).
"""

from __future__ import annotations

import abc
import asyncio
import errno
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nfc
import nfc.clf
import nfc.clf.udp
import pytest

from conftest import wait_for
from sekisho.drivers import registry
from sekisho.drivers.base import DriverError
from sekisho.drivers.nfc import NfcReader
from sekisho.policies.events import CardPresented, CardRemoved, CardUnreadable, Event, ReaderBack, ReaderLost

IDM = "01010501b00ac30b"
PMM = "03014b024f4993ff"
TYPE_A_UID = "04a1b2c3d4e5f6"
WAIT = 10.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def kinds(self) -> list[str]:
        with self.lock:
            return [type(e).__name__ for e in self.events]

    def wait(self, cls: type, n: int, timeout: float = WAIT) -> Event:
        def nth() -> Event | None:
            with self.lock:
                found = [e for e in self.events if isinstance(e, cls)]
            return found[n - 1] if len(found) >= n else None
        return wait_for(nth, timeout, f"{cls.__name__} #{n} (have {self.kinds()})")


LISTEN_S = 5.0
"""How long an emulated Type A card listens for a reader in one go (EmulatedCard._run says why)."""


class EmulatedCard(abc.ABC):
    """A card on the udp "radio": ``insert()`` starts listening on the port, ``remove()`` stops
    answering, so the reader's presence check fails as when the card is taken away."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.removed = threading.Event()
        self.commands = 0
        """Commands answered after activation: the reader's presence checks."""
        self.thread: threading.Thread | None = None

    def insert(self) -> None:
        self.removed.clear()
        self.thread = threading.Thread(target=self._run, name="card emulator", daemon=True)
        self.thread.start()

    def remove(self) -> None:
        if self.thread is None:
            return
        self.removed.set()
        # A card waiting for the reader's next command would wait for ever once the reader is
        # stopped: nfcpy's udp link ends a wait on an RFOFF datagram from another port.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"RFOFF", ("127.0.0.1", self.port))
        self.thread.join(5)
        assert not self.thread.is_alive(), "card emulator did not stop"
        self.thread = None

    def _run(self) -> None:
        clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{self.port}")
        # Long listen windows (LISTEN_S): nfcpy's udp listen ends a window right after the
        # anticollision when its time is up, and the reader's first command then finds nobody
        # listening. A removed card stops at once all the same: every wait for a datagram ends
        # when it is removed (remove() also sends RFOFF, which wakes a wait in progress).
        receive = clf.device._recv_data

        def until_removed(timeout: Any, *brty: Any) -> Any:
            if self.removed.is_set():
                raise nfc.clf.TimeoutError("the card was removed")
            return receive(timeout, *brty)
        clf.device._recv_data = until_removed
        try:
            while not self.removed.is_set():
                self.serve(clf)
        finally:
            clf.close()

    @abc.abstractmethod
    def serve(self, clf: Any) -> None:
        """One round of card emulation on ``clf``; subclasses speak their card type."""


class FelicaCard(EmulatedCard):
    def __init__(self, port: int, idm: str = IDM) -> None:
        super().__init__(port)
        self.idm = bytearray.fromhex(idm)

    def serve(self, clf: Any) -> None:
        def on_startup(target: Any) -> Any:
            target.brty = "212F"
            target.sensf_res = bytearray([1]) + self.idm + bytearray.fromhex(PMM) + bytearray.fromhex("12fc")
            return target

        def on_connect(tag: Any) -> bool:
            answer = tag.process_command

            def counted(cmd: Any) -> Any:
                self.commands += 1
                return answer(cmd)
            tag.process_command = counted
            return True
        clf.connect(card={"on-startup": on_startup, "on-connect": on_connect, "timeout": 0.5},
                    terminate=self.removed.is_set)


class TypeACard(EmulatedCard):
    """An NXP NTAG213 (ISO 14443 A, Type 2): anticollision by nfcpy's udp listen, then the
    commands nfcpy's Type 2 activation and presence check send, answered by hand."""

    def __init__(self, port: int, uid: str = TYPE_A_UID) -> None:
        super().__init__(port)
        self.uid = bytearray.fromhex(uid)

    def serve(self, clf: Any) -> None:
        target = nfc.clf.LocalTarget("106A")
        target.sens_res = bytearray.fromhex("4400")
        target.sdd_res = self.uid
        target.sel_res = bytearray.fromhex("00")
        activated = clf.listen(target, LISTEN_S)
        if activated is None:
            return
        cmd = activated.tt2_cmd
        while not self.removed.is_set():
            response = self.answer(cmd)
            if response is None:
                # A real Type 2 tag goes idle on a command it does not know (nfcpy probes with
                # 1A00, Ultralight C authentication), and the reader selects it again.
                return
            try:
                cmd = clf.exchange(response, 0.5)
            except nfc.clf.CommunicationError:
                return  # the reader sensed again or went away: listen afresh
            if cmd is None:
                return
            self.commands += 1

    def answer(self, cmd: bytes) -> bytes | None:
        if cmd[:1] == b"\x60":  # GET_VERSION: an NTAG213
            return bytearray.fromhex("0004040201000f03")
        if cmd[:1] == b"\x30":  # READ 4 pages from page cmd[1]
            return self.memory()[cmd[1] * 4:cmd[1] * 4 + 16]
        return None

    def memory(self) -> bytearray:
        """NTAG213 pages 0-3 (UID with its check bytes, lock bytes, capability container),
        then empty user memory."""
        u = self.uid
        return (u[0:3] + bytearray([0x88 ^ u[0] ^ u[1] ^ u[2]]) + u[3:7] + bytearray([u[3] ^ u[4] ^ u[5] ^ u[6]])
                + bytearray.fromhex("480000" "e1101200") + bytearray(176))


@pytest.fixture(autouse=True)
def patient_udp_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's commands wait at least half a second for the card's answer. nfcpy times
    them for a radio (a FeliCa presence check waits under 5 ms); here the card is a thread of
    this busy test process behind UDP, and a late answer would make a card that never left the
    reader look removed and presented again."""
    real = nfc.clf.udp.Device.send_cmd_recv_rsp

    def patient(self: Any, target: Any, data: Any, timeout: float) -> Any:
        return real(self, target, data, max(timeout, 0.5) if timeout else timeout)
    monkeypatch.setattr(nfc.clf.udp.Device, "send_cmd_recv_rsp", patient)


@pytest.fixture
def port() -> int:
    return free_udp_port()


@pytest.fixture
def start_reader(tmp_path: Path) -> Iterator[Any]:
    running: list[NfcReader] = []

    def start(path: str, **options: Any) -> tuple[NfcReader, Recorder]:
        rec = Recorder()
        opts = {k: o.default for k, o in NfcReader.OPTIONS.items()} | {"path": path} | options
        reader = NfcReader("desk-02", opts, rec, data_dir=tmp_path)
        asyncio.run(reader.start())
        running.append(reader)
        return reader, rec
    yield start
    for reader in running:
        asyncio.run(reader.stop())


@pytest.fixture
def cards() -> Iterator[Any]:
    made: list[EmulatedCard] = []

    def make(card: EmulatedCard) -> EmulatedCard:
        made.append(card)
        return card
    yield make
    for card in made:
        card.remove()


def test_registered_and_options_checked():
    assert registry.load("nfc") is NfcReader
    opts = NfcReader.OPTIONS
    for good in ("usb", "usb:054c:06c3", "usb:001:023", "tty:USB0:pn532", "udp", "udp:127.0.0.1:54321"):
        assert opts["path"].check(good) is None, good
    for bad in ("", "054c:06c3", "usb:054c:06c3:7", "pcsc:ACR122"):
        assert opts["path"].check(bad), bad
    assert opts["targets"].check(["212F", "106A"]) is None
    assert opts["targets"].check([]) and opts["targets"].check(["212F", "106F"]) and opts["targets"].check([212])


def test_missing_nfcpy_is_a_driver_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nfc", None)
    reader = NfcReader("desk-02", {"path": "usb"}, Recorder(), data_dir=tmp_path)
    with pytest.raises(DriverError, match="nfcpy"):
        asyncio.run(reader.start())


def test_felica_left_on_the_reader_is_one_presentation_and_removal_is_reported(port, cards, start_reader):
    _, rec = start_reader(f"udp:127.0.0.1:{port}", targets=["212F"])
    card = cards(FelicaCard(port))
    card.insert()
    presented = rec.wait(CardPresented, 1)
    assert presented.uid == bytes.fromhex(IDM) and presented.source == "desk-02"
    assert presented.raw["tag"] == "Type3Tag"
    # Ten presence checks answered: the card has sat there for a while, and it is still one.
    wait_for(lambda: card.commands >= 10, WAIT, "the reader's presence checks")
    assert rec.kinds() == ["CardPresented"]
    card.remove()
    rec.wait(CardRemoved, 1)
    card.insert()
    assert rec.wait(CardPresented, 2).uid == bytes.fromhex(IDM)
    card.remove()
    rec.wait(CardRemoved, 2)
    assert rec.kinds() == ["CardPresented", "CardRemoved"] * 2


def test_type_a_card_gives_its_uid(port, cards, start_reader):
    _, rec = start_reader(f"udp:127.0.0.1:{port}", targets=["106A"])
    card = cards(TypeACard(port))
    card.insert()
    presented = rec.wait(CardPresented, 1)
    assert presented.uid == bytes.fromhex(TYPE_A_UID)
    assert presented.raw["tag"] == "Type2Tag" and "NTAG213" in presented.raw["product"]
    wait_for(lambda: card.commands >= 10, WAIT, "the reader's presence checks")
    assert rec.kinds() == ["CardPresented"]
    card.remove()
    rec.wait(CardRemoved, 1)
    assert rec.kinds() == ["CardPresented", "CardRemoved"]


def test_default_targets_find_felica(port, cards, start_reader):
    _, rec = start_reader(f"udp:127.0.0.1:{port}")
    card = cards(FelicaCard(port))
    card.insert()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(IDM)


def test_reader_that_cannot_be_opened_is_lost_and_retried(start_reader, monkeypatch):
    # It waits a minute before it tries again; stop() must not wait that out.
    monkeypatch.setattr("sekisho.drivers.nfc.BACKOFF_FIRST_S", 60.0)
    reader, rec = start_reader("usb:ffff:fffe")
    assert "cannot open usb:ffff:fffe" in rec.wait(ReaderLost, 1).reason
    t0 = time.monotonic()
    asyncio.run(reader.stop())
    assert time.monotonic() - t0 < 30
    assert rec.kinds() == ["ReaderLost"]


def test_unplugged_reader_is_lost_and_comes_back(port, cards, start_reader, monkeypatch):
    """USB unplugging, played on the udp device: while ``unplugged`` is set, opening it and
    every exchange fail with ENODEV, as nfcpy's USB transport fails for a vanished device."""
    unplugged = threading.Event()

    def failing(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if unplugged.is_set():
                raise OSError(errno.ENODEV, "No such device")
            return real(*args, **kwargs)
        return call
    monkeypatch.setattr(nfc.clf.udp, "init", failing(nfc.clf.udp.init))
    for method in ("sense_ttf", "send_cmd_recv_rsp"):
        monkeypatch.setattr(nfc.clf.udp.Device, method, failing(getattr(nfc.clf.udp.Device, method)))

    _, rec = start_reader(f"udp:127.0.0.1:{port}", targets=["212F"])
    card = cards(FelicaCard(port))
    card.insert()
    rec.wait(CardPresented, 1)
    unplugged.set()
    assert "stopped answering" in rec.wait(ReaderLost, 1).reason
    # The card on it counts as gone with the reader, so a desk locks.
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost"]
    card.remove()
    unplugged.clear()
    rec.wait(ReaderBack, 1)
    card.insert()
    assert rec.wait(CardPresented, 2).uid == bytes.fromhex(IDM)
    assert rec.kinds() == ["CardPresented", "CardRemoved", "ReaderLost", "ReaderBack", "CardPresented"]


@pytest.mark.parametrize("with_card", [False, True])
def test_stop_is_prompt(port, cards, tmp_path, with_card):
    rec = Recorder()
    # The pause between polling rounds and between presence checks is 5 s (the longest the option
    # allows), and the reader is in it right after start and right after a card is presented: a
    # stop() that waited for the pause to end would take seconds more than the bound below.
    reader = NfcReader("desk-02", {"path": f"udp:127.0.0.1:{port}", "targets": ["212F"], "poll_interval_ms": 5000},
                       rec, data_dir=tmp_path)
    asyncio.run(reader.start())
    if with_card:
        cards(FelicaCard(port)).insert()
        rec.wait(CardPresented, 1, timeout=30)  # after the first pause
    else:
        wait_for(lambda: reader._pauses, WAIT, "the reader's first pause")
    t0 = time.monotonic()
    asyncio.run(reader.stop())
    # stop() waits out the polling round under way: udp waits 1 s for an answer per target,
    # a USB reader milliseconds.
    assert time.monotonic() - t0 < 3.5
    assert not [t for t in threading.enumerate() if t.name == "nfc desk-02"]
    assert rec.kinds() == (["CardPresented"] if with_card else [])


class GarbledFelicaCard(FelicaCard):
    """A FeliCa card whose SENSF_RES is 18 bytes, one byte short of the system code: nfcpy
    takes it (it asks for at least 17), and its own Type3Tag then fails to unpack it (found by
    tests/test_fuzz_cards.py)."""

    def serve(self, clf: Any) -> None:
        def on_startup(target: Any) -> Any:
            target.brty = "212F"
            target.sensf_res = bytearray([1]) + self.idm + bytearray.fromhex(PMM) + bytearray([0x12])
            return target
        clf.connect(card={"on-startup": on_startup, "on-connect": lambda tag: True, "timeout": 0.5},
                    terminate=self.removed.is_set)


def test_a_garbled_card_is_unreadable_once_and_the_reader_stays(port, cards, start_reader):
    _, rec = start_reader(f"udp:127.0.0.1:{port}", targets=["212F"])
    garbled = cards(GarbledFelicaCard(port))
    garbled.insert()
    unreadable = rec.wait(CardUnreadable, 1)
    assert unreadable.reason == "garbled_answer"
    garbled.remove()
    rec.wait(CardRemoved, 1)
    good = cards(FelicaCard(port))
    good.insert()
    assert rec.wait(CardPresented, 1).uid == bytes.fromhex(IDM)
    assert rec.kinds() == ["CardUnreadable", "CardRemoved", "CardPresented"]
