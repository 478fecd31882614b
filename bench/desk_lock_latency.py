"""Card out at a desk -> LockSession at logind, through the daemon, over insert/remove cycles at vpcd.

Everything is real except logind and the card: mosquitto, the daemon as a process (its desk-01
reader on the real pcscd through vsmartcard-vpcd, see tests/fakecard.py), and python-dbusmock's
logind template on a private system bus (tests/logind_mock.py) with a graphical session c1 on
seat0. The mock's ``Manager.LockSession`` is patched to behave like logind with a prompt locker
(``LOCK_LIKE_LOGIND``: ``Session.Lock``, then ``LockedHint`` true), and, as its first statement,
to append ``time.monotonic()`` to a file. CLOCK_MONOTONIC is one clock for every process on a
Linux machine, so that moment is comparable with the fake card's ``removed_at`` taken here.

Each cycle puts the card in, waits for the desk's retained state ``in_use`` on MQTT, sets the
session's ``LockedHint`` back to false (the person unlocked with their password), takes the card
out, and waits for the LockSession stamp and for the daemon's ``session_locked`` event, so no
lock runs into the next cycle. Beside the daemon, a bare ``SCardGetStatusChange`` loop in a
thread of this process with its own context (``BareWatcher`` from bench/pcsc_latency.py) says
when pcscd itself reported the reader EMPTY for the same removal. Both are measured from the
fake card's socket close. vpcd and pcscd's polling make most of the absolute time; the
difference is what the daemon adds: its PC/SC driver, the desk policy, the store, and the D-Bus
round trips before ``LockSession`` goes out. Target (issue 6): the added latency p99 <= 20 ms.

The person taps in at the door reader first, so the desk (in area ``room``) sees a recorded
entry and does not refuse the card as tailgating.

Run: .venv/bin/python bench/desk_lock_latency.py [--cycles 200] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _site import Broker, Site, Subscriber, figure, parse, summary, wait_for, workdir
from fakecard import READER, FakeCard, Pcscd  # tests/ is on sys.path through _site
from logind_mock import start_logind
from pcsc_latency import BareWatcher
from sekisho.daemon import logind_defs as ld
from sekisho.daemon.logind_sim import LOCK_LIKE_LOGIND, SESSION_PATH

UID = "04a1b2c3d4e5f6"
SESSION = "c1"
CONFIG = """\
[site]
id = "bench"
node = "desk-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]
desks = ["desk-01"]

[doors.entrance]
area_in = "room"

[desks.desk-01]
area = "room"
lock_confirm_s = 0.5
lock_retries = 1

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.desk-01]
driver = "pcsc"
name = "{reader}"
desk = "desk-01"
"""

# Runs inside the mock before LOCK_LIKE_LOGIND (dbusmock's AddMethod code is exec'd per call).
STAMP = """
import time as _time
_now = _time.monotonic()
with open(%(path)r, 'a') as _f:
    _f.write(repr(_now) + '\\n')
"""


def stamps(path: Path) -> list[float]:
    """The LockSession stamps written so far; a line still being written is left for later."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [float(line) for line in text.split("\n")[:-1]]


def label(text: str) -> str:
    return f"{text:<46}"


def main() -> None:
    args = parse(argparse.ArgumentParser(), cycles=(200, 3))
    cycles = args.cycles
    began = time.monotonic()
    tmp = workdir()
    stamp_file = tmp / "locksession.mono"

    broker = Broker(tmp)
    broker.start()
    bus = start_logind()  # sets DBUS_SYSTEM_BUS_ADDRESS here, which the daemon inherits
    logind = next(bus)
    pcscd = Pcscd(tmp)
    watcher: BareWatcher | None = None
    site: Site | None = None
    sub: Subscriber | None = None
    card: FakeCard | None = None
    rem_bare: list[float] = []
    rem_lock: list[float] = []
    extra_locks = 0
    try:
        session_path = logind.add_session(SESSION, seat="seat0", user="alice")
        assert session_path == SESSION_PATH + SESSION
        logind.patch(ld.LOCK_SESSION, "s", "",
                     STAMP % {"path": str(stamp_file)} + LOCK_LIKE_LOGIND % {"delay_ms": 0})
        session = logind.bus.get_object(ld.BUS_NAME, session_path)

        pcscd.start()
        watcher = BareWatcher()
        watcher.start()

        site = Site(tmp, broker)
        site.config.write_text(CONFIG.format(url=broker.url, reader=READER))
        site.enroll("alice", UID)
        sub = Subscriber(broker.port, "sekisho/#")

        def states(kind: str) -> int:
            return sum(1 for m in sub.on("/desk/desk-01/state") if m.json and m.json["state"] == kind)

        def locks_confirmed() -> int:
            return sum(1 for m in sub.on("/desk/desk-01/event")
                       if m.json and (m.json["kind"], m.json["reason"]) == ("session_locked", "locked"))

        site.start()
        # Nobody holds the desk at start, so its session is locked once.
        wait_for(lambda: locks_confirmed() == 1 and len(stamps(stamp_file)) == 1, what="the start-up lock")
        doors_before = len(sub.events())
        site.tap(UID)  # entrance-in: a recorded entry into the room, so no tailgating at the desk
        wait_for(lambda: len(sub.events()) > doors_before, what="the door event")
        assert sub.events()[-1]["result"] == "granted", sub.events()[-1]

        card = FakeCard(UID, pcscd.port)
        for i in range(1, cycles + 1):
            in_use, locked, n_stamps = states("in_use"), locks_confirmed(), len(stamps(stamp_file))
            card.insert()
            wait_for(lambda: states("in_use") > in_use and len(watcher.present) >= i, 10, f"in_use {i}")
            session.SetLockedHint(False, dbus_interface=ld.SESSION_IFACE)  # the person unlocked
            card.remove()
            wait_for(lambda: len(stamps(stamp_file)) > n_stamps and len(watcher.empty) >= i
                     and locks_confirmed() > locked, 10, f"the lock after removal {i}")
            got = stamps(stamp_file)
            extra_locks += len(got) - n_stamps - 1
            rem_bare.append((watcher.empty[i - 1] - card.removed_at) * 1000)
            rem_lock.append((got[n_stamps] - card.removed_at) * 1000)
    finally:
        if card is not None:
            card.remove()
        if site is not None and site.proc is not None:
            site.stop()
        if sub is not None:
            sub.close()
        if watcher is not None:
            watcher.stop()
        pcscd.release()
        bus.close()
        broker.stop()

    assert extra_locks == 0, f"{extra_locks} LockSession calls beyond one per removal (retries or relocks)"
    assert len(watcher.empty) == cycles, f"pcscd reported {len(watcher.empty)} removals for {cycles} cycles"
    reported = [m.json["latency_ms"] for m in sub.on("/desk/desk-01/event")
                if m.json and (m.json["kind"], m.json["reason"]) == ("session_locked", "locked")][1:]
    added = [lock - bare for lock, bare in zip(rem_lock, rem_bare, strict=True)]
    print(f"{cycles} insert/remove cycles at vpcd, pcscd {pcscd.exe}, {time.monotonic() - began:.0f} s in all")
    print(summary(label("card out -> pcscd reports EMPTY"), rem_bare))
    print(summary(label("card out -> LockSession received by logind"), rem_lock))
    print(summary(label("added by the daemon (difference)"), added))
    print(summary(label("daemon's session_locked latency_ms (confirm)"), reported))
    figure(args, "removal to lock: card out at a desk -> LockSession received by logind", samples=rem_lock,
           anchor="pcscd reports EMPTY (bare SCardGetStatusChange)", anchor_samples=rem_bare)
    figure(args, "removal to lock: added by the daemon (each sample minus its pcscd report)", samples=added)
    p99 = sorted(added)[min(len(added) - 1, int(0.99 * len(added)))]
    print(f"target: added p99 <= 20 ms: {'met' if p99 <= 20 else 'MISSED'} ({p99:.2f} ms)")


if __name__ == "__main__":
    main()
