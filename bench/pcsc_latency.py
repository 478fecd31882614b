"""What PcscReader adds to pcscd's own card detection, over insert/remove cycles at vpcd.

Each cycle puts the fake card on vsmartcard-vpcd's virtual reader and takes it away again.
Two observers run side by side against one pcscd (started here, on a free port):

- a bare ``SCardGetStatusChange`` loop in a thread with its own context: when pcscd itself
  reports the change;
- PcscReader, as the daemon runs it: when ``emit`` is called with CardPresented (after the UID
  has been read) or CardRemoved.

Both are measured from the fake card's socket connect or close, on the monotonic clock.
vpcd itself polls the card socket, so most of the absolute time is vpcd's; the difference is
the driver's. Target (issue 4): the added latency p99 <= 20 ms.

Run: .venv/bin/python bench/pcsc_latency.py [--cycles 200] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from _site import figure, parse, summary, wait_for, workdir
from fakecard import READER, FakeCard, Pcscd  # tests/ is on sys.path through _site
from sekisho.drivers.pcsc import PcscReader
from sekisho.policies.events import CardPresented, CardRemoved, Event

UID = "04a1b2c3d4e5f6"


class BareWatcher:
    """The least code that learns about a card from pcscd: one context, one blocking wait."""

    def __init__(self) -> None:
        from smartcard import scard as sc
        self.sc = sc
        hr, self.ctx = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        assert hr == 0, sc.SCardGetErrorMessage(hr)
        self.present: list[float] = []
        self.empty: list[float] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="bare watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        sc = self.sc
        state = sc.SCARD_STATE_UNAWARE
        was_present = None
        while not self.stopping:
            hr, out = sc.SCardGetStatusChange(self.ctx, sc.INFINITE, [(READER, state)])
            now = time.monotonic()
            if hr != 0:
                if hr == sc.SCARD_E_CANCELLED:
                    continue
                raise RuntimeError(sc.SCardGetErrorMessage(hr))
            state = out[0][1] & ~sc.SCARD_STATE_CHANGED
            present = bool(state & sc.SCARD_STATE_PRESENT)
            if was_present is not None and present != was_present:
                (self.present if present else self.empty).append(now)
            was_present = present

    def stop(self) -> None:
        self.stopping = True
        while self.thread.is_alive():
            self.sc.SCardCancel(self.ctx)
            self.thread.join(0.05)
        self.sc.SCardReleaseContext(self.ctx)


def label(text: str) -> str:
    what, _, how = text.partition(":")
    return f"{what + ':':<8}{how:<27}"


def main() -> None:
    args = parse(argparse.ArgumentParser(), cycles=(200, 5))
    cycles = args.cycles
    tmp = workdir()
    pcscd = Pcscd(tmp)
    pcscd.start()
    emitted: dict[type, list[float]] = {CardPresented: [], CardRemoved: []}
    other: list[Event] = []

    def emit(event: Event) -> None:
        now = time.monotonic()
        if type(event) in emitted:
            emitted[type(event)].append(now)
        else:
            other.append(event)

    watcher = BareWatcher()
    watcher.start()
    reader = PcscReader("bench", {"name": READER}, emit, data_dir=tmp)
    asyncio.run(reader.start())
    card = FakeCard(UID, pcscd.port)
    ins_bare, ins_drv, rem_bare, rem_drv = [], [], [], []
    try:
        for i in range(1, cycles + 1):
            card.insert()
            wait_for(lambda: len(watcher.present) >= i and len(emitted[CardPresented]) >= i, 10, f"insert {i}")
            card.remove()
            wait_for(lambda: len(watcher.empty) >= i and len(emitted[CardRemoved]) >= i, 10, f"removal {i}")
            ins_bare.append((watcher.present[i - 1] - card.inserted_at) * 1000)
            ins_drv.append((emitted[CardPresented][i - 1] - card.inserted_at) * 1000)
            rem_bare.append((watcher.empty[i - 1] - card.removed_at) * 1000)
            rem_drv.append((emitted[CardRemoved][i - 1] - card.removed_at) * 1000)
    finally:
        asyncio.run(reader.stop())
        watcher.stop()
        card.remove()
        pcscd.release()
    assert len(emitted[CardPresented]) == len(emitted[CardRemoved]) == cycles, "a duplicate or a missed event"
    assert not other, f"unexpected events: {other}"

    print(f"{cycles} insert/remove cycles at vpcd, pcscd {pcscd.exe}")
    print(summary(label("insert:pcscd reports PRESENT"), ins_bare))
    print(summary(label("insert:driver emits Presented"), ins_drv))
    print(summary(label("insert:added by the driver"), [d - b for d, b in zip(ins_drv, ins_bare, strict=True)]))
    print(summary(label("remove:pcscd reports EMPTY"), rem_bare))
    print(summary(label("remove:driver emits Removed"), rem_drv))
    print(summary(label("remove:added by the driver"), [d - b for d, b in zip(rem_drv, rem_bare, strict=True)]))
    added = [d - b for d, b in zip(ins_drv + rem_drv, ins_bare + rem_bare, strict=True)]
    print(summary(label("both:added by the driver"), added))
    figure(args, "card in: fake card at vpcd -> PcscReader emits CardPresented (UID read)", samples=ins_drv,
           anchor="pcscd reports PRESENT (bare SCardGetStatusChange)", anchor_samples=ins_bare)
    figure(args, "card out: fake card gone -> PcscReader emits CardRemoved", samples=rem_drv,
           anchor="pcscd reports EMPTY (bare SCardGetStatusChange)", anchor_samples=rem_bare)
    figure(args, "card in and out: added by the driver (each sample minus its pcscd report)", samples=added)


if __name__ == "__main__":
    main()
