"""The daemon at work inside the per-process part of systemd/sekisho.service's sandbox (no
capabilities, no new privileges, the unit's system call filter, address families and
MemoryDenyWriteExecute, built from the unit file itself by tests/sandbox.py), with a soft
open-files limit below the hard one as systemd may leave it. The mount-namespace directives need
a booted systemd and are not exercised here (README, "Running under systemd")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, wait_for
from notify_socket import NotifyListener, notify_env
from sandbox import setpriv
from usbfake import Kernel, Spec, read

UNIT = REPO / "systemd" / "sekisho.service"
SANDBOX = REPO / "tests" / "sandbox.py"
CALL_CENTRE = REPO / "examples" / "usb" / "call-centre.rules"
KEYBOARD = Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard", connect_type="hotplug")
FLASH = Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C530001230417116225")


def sandboxed(*command: str) -> list[str]:
    return [*setpriv(), sys.executable, str(SANDBOX), str(UNIT), "--", *command]


def test_the_sandbox_bites():
    """The emulation is not a no-op: a call the unit takes away (sched_setaffinity, in
    @resources), a packet socket, a writable and executable mapping are all refused; a ctypes
    callback (libffi's closures: nfcpy's libusb1) and cryptography's signatures still work."""
    probe = """
import ctypes, mmap, os, socket
from cryptography.hazmat.primitives.asymmetric import ed25519
status = dict((l.split(':', 1)[0], l.split(':', 1)[1].strip()) for l in open('/proc/self/status'))
print(status['CapEff'], status['CapBnd'], status['NoNewPrivs'], status['Seccomp'])
for what, call in (('affinity', lambda: os.sched_setaffinity(0, {0})),
                   ('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),
                   ('wx', lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))):
    try:
        call()
        print(what, 'allowed')
    except OSError as exc:
        print(what, exc.errno)
compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
values = (ctypes.c_int * 4)(3, 1, 4, 2)
ctypes.CDLL(None).qsort(values, 4, ctypes.sizeof(ctypes.c_int), compare(lambda a, b: a[0] - b[0]))
print('sorted', list(values))
key = ed25519.Ed25519PrivateKey.generate()
key.public_key().verify(key.sign(b'x'), b'x')
print('signed')
"""
    r = subprocess.run(sandboxed(sys.executable, "-c", probe), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0000000000000000 0000000000000000 1 2", "affinity 1", "packet 97", "wx 1",
                                     "sorted [1, 2, 3, 4]", "signed"]


def test_the_daemon_serves_inside_the_sandbox(site, subscribe, testbed, tmp_path):
    """Start-up (the store with SQLite's journals, the open-files limit raised, the sim readers'
    and control sockets), READY and pings, a tap decided and published, USB devices decided
    through sysfs, a signed command verified and carried out, a clean stop: all with the unit's
    system call filter killing the daemon on any call outside it."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(KEYBOARD, authorized="1", with_interfaces=True)
    kernel.plug(FLASH)
    key = tmp_path / "officer-1.key"
    section = site.cli("cmd", "keygen", str(key)).stdout.split("\n", 1)[1]
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n\n{section}')
    site.enroll("p-1", "04AABBCCDD")
    sub = subscribe()
    listener = NotifyListener(str(tmp_path / "notify.sock"), watchdog_s=1.0)
    try:
        site.start(env=notify_env(listener.address, WATCHDOG_USEC="1000000", UMOCKDEV_DIR=testbed.get_root_dir()),
                   wrapper=("prlimit", "--nofile=1024:4096", *sandboxed()))
        pid = site.proc.pid
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["CapEff"].strip() == "0000000000000000" and status["NoNewPrivs"].strip() == "1"
        assert int(status["Seccomp_filters"]) == 3
        wait_for(lambda: listener.with_key("READY"), what="READY=1 from the sandboxed daemon")
        wait_for(lambda: len(listener.with_key("WATCHDOG")) >= 2, what="pings")
        nofile = Path(f"/proc/{pid}/limits").read_text()
        assert [line.split()[3:5] for line in nofile.splitlines() if line.startswith("Max open files")] == \
            [["4096", "4096"]], "the soft limit raised to the hard one"
        site.tap("04AABBCCDD")
        granted = wait_for(lambda: [e for e in sub.events() if e["result"] == "granted"], what="the tap granted")
        assert granted[0]["door"] == "entrance"
        usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731 - a probe for wait_for
        wait_for(lambda: len([e for e in usb() if e["cause"] == "present"]) >= 2, what="the present devices decided")
        assert read(f"{kernel.devices['1-2']}/authorized") == "0"
        r = site.cli("cmd", "send", "usb.allow", "match=0781:5567:4C530001230417116225", "minutes=5",
                     "--key", str(key))
        assert json.loads(r.stdout)["ok"] is True
        wait_for(lambda: read(f"{kernel.devices['1-2']}/authorized") == "1", what="the flash drive allowed")
        assert site.stop() == 0
        assert "cannot raise" not in site.daemon_log()
        assert listener.with_key("STOPPING")
    finally:
        listener.close()
