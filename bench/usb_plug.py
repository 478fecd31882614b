"""Plug-to-authorized latency of the USB controller under umockdev (issue 7), p50/p99, and beside
it, in the same run and from the same instant, umockdev's own delivery of that uevent to a bare
pyudev monitor: the floor that no daemon reading uevents can go below.

The daemon's path, in one process: ``UdevUsb`` (a pyudev monitor joined to an asyncio loop with
``add_reader``) and ``UsbController`` with examples/usb/call-centre.rules run on a loop thread of
their own, the way the daemon's loop waits in epoll; events go through ``call_soon_threadsafe``
as ``Daemon.emit`` sends them. The main thread plays the kernel. Each sample:

  1. a keyboard appears (add_device, authorized 0) and is decided once; its descriptors are
     written and ``authorized`` reset to 0 (umockdev sends its add uevent before binary
     attributes exist, so this first add is not timed);
  2. t0, then ``Testbed.uevent(path, "add")``: the one uevent that is timed;
  3. the bare monitor returns it (t_bare), the controller writes ``authorized`` 1 (t_write);
  4. the keyboard is removed (uevent remove), and both monitors drain it.

Run (umockdev's preload is required):
    umockdev-wrapper .venv/bin/python bench/usb_plug.py [--plugs 1000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from _site import figure, parse  # noqa: E402
from sekisho.daemon.topics import Topics  # noqa: E402
from sekisho.daemon.usb import Sysfs, UsbController, load_rules  # noqa: E402
from sekisho.drivers.udev import UdevUsb, enumerate_usb_devices  # noqa: E402
from usbfake import Kernel, Spec  # noqa: E402

KEYBOARD = Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard", connect_type="hotplug")


class TimedSysfs(Sysfs):
    """Notes when ``authorized`` 1 has been written (after the write returns)."""

    def __init__(self) -> None:
        self.written: dict[str, float] = {}
        self.cond = threading.Condition()

    def write(self, path: str, value: str) -> None:
        super().write(path, value)
        if path.endswith("/authorized") and value == "1":
            with self.cond:
                self.written[path[:-len("/authorized")]] = time.perf_counter()
                self.cond.notify_all()


def wait(cond: threading.Condition, predicate, what: str, timeout: float = 5.0):
    with cond:
        if not cond.wait_for(predicate, timeout):
            raise SystemExit(f"timed out waiting for {what}")
        return predicate()


def percentile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def line(name: str, samples_ms: list[float]) -> str:
    return (f"{name}: n={len(samples_ms)} p50={percentile(samples_ms, 0.5):.3f} ms "
            f"p99={percentile(samples_ms, 0.99):.3f} ms max={max(samples_ms):.3f} ms "
            f"mean={statistics.fmean(samples_ms):.3f} ms")


def main() -> int:
    args = parse(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]), plugs=(1000, 20), warmup=(20, 2))
    if "umockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        print("run under umockdev's preload: umockdev-wrapper .venv/bin/python bench/usb_plug.py", file=sys.stderr)
        return 2
    import gi
    gi.require_version("UMockdev", "1.0")
    import pyudev
    from gi.repository import UMockdev

    tb = UMockdev.Testbed.new()  # before any monitor (see the testing notes)
    kernel = Kernel(tb)
    kernel.root_hub()

    loop = asyncio.new_event_loop()
    sysfs = TimedSysfs()
    decided = threading.Condition()
    records: list = []

    def queue(item) -> None:
        with decided:
            records.append(item)
            decided.notify_all()
    controller = UsbController(load_rules(REPO / "examples" / "usb" / "call-centre.rules"),
                               topic=Topics("bench").usb_event("ws"), queue=queue, loop=loop, sysfs=sysfs)
    handled = [0]

    def handle(event) -> None:
        controller.handle(event)
        with decided:
            handled[0] += 1
            decided.notify_all()
    driver = UdevUsb("udev", {}, lambda event: loop.call_soon_threadsafe(handle, event))
    bare = pyudev.Monitor.from_netlink(pyudev.Context())
    bare.filter_by("usb")
    bare.start()

    async def setup() -> None:
        await driver.start()
        controller.start(enumerate_usb_devices())
    loop.run_until_complete(setup())
    thread = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    thread.start()

    def bare_next(path: str, action: str) -> float:
        while True:
            device = bare.poll(timeout=5)
            if device is None:
                raise SystemExit(f"the bare monitor got no {action} for {path}")
            if device.sys_path == path and device.action == action:
                return time.perf_counter()

    write_ms: list[float] = []
    bare_ms: list[float] = []
    for i in range(args.warmup + args.plugs):
        h = handled[0]
        path = tb.add_device("usb", KEYBOARD.port, kernel.devices["usb1"], [
            "idVendor", "046d", "idProduct", "c31c", "product", "USB Keyboard", "authorized", "0", "remove", "",
            "port/connect_type", "hotplug"], ["DEVTYPE", "usb_device"])
        bare_next(path, "add")
        wait(decided, lambda: handled[0] > h, "the first decision")
        tb.set_attribute_binary(path, "descriptors", KEYBOARD.descriptors)
        tb.set_attribute(path, "authorized", "0")
        sysfs.written.pop(path, None)
        n = len(records)

        t0 = time.perf_counter()
        tb.uevent(path, "add")
        t_bare = bare_next(path, "add")
        t_write = wait(sysfs.cond, lambda: sysfs.written.get(path), "authorized to be written")
        wait(decided, lambda: len(records) > n, "the decision's record")
        if records[-1].payload["action"] != "allowed":
            raise SystemExit(f"expected the keyboard allowed, got {records[-1].payload}")
        if i >= args.warmup:
            write_ms.append((t_write - t0) * 1000)
            bare_ms.append((t_bare - t0) * 1000)

        h = handled[0]
        tb.uevent(path, "remove")
        bare_next(path, "remove")
        wait(decided, lambda: handled[0] > h, "the removal to be handled")
        tb.remove_device(path)

    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    print(f"{args.plugs} plug events (after {args.warmup} warm-up), umockdev, call-centre.rules, a keyboard allowed:")
    print(line("uevent -> authorized written (sekisho)", write_ms))
    print(line("uevent -> bare pyudev monitor (umockdev)", bare_ms))
    over = [w - b for w, b in zip(write_ms, bare_ms, strict=True)]
    print(line("difference per sample (sekisho's own share)", over))
    figure(args, "uevent to authorized: a keyboard's add uevent -> authorized 1 written (call-centre.rules)",
           samples=write_ms, anchor="umockdev's delivery of the uevent to a bare pyudev monitor",
           anchor_samples=bare_ms)
    figure(args, "uevent to authorized: added by sekisho (each sample minus its bare monitor's)", samples=over)
    target = percentile(write_ms, 0.99) <= 20.0
    judged = " (a quick run: not judged)" if args.quick else ""
    print(f"target p99 <= 20 ms: {'met' if target else 'MISSED'}{judged}")
    return 0 if target or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
