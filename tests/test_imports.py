"""A node imports what its config uses and no more (issue 20): no D-Bus client without desks, no
udev or USB rules without [usb], no card-reader, GPIO or evdev library without such a driver.
Every import is start-up time and resident memory on each door terminal.

The daemon runs as a real process, started through a small probe that runs the command line as
``python -m sekisho.daemon.cli`` does and, at its exit, writes the names in its ``sys.modules``:
every module that process loaded, at start or later, on the tap path too, however it was
imported (a driver is loaded by name, through importlib, which Python's own import report
does not show)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import answers, wait_for

UID = "04a1b2c3d4e5f6"

NOT_FOR_A_DOOR = {
    "dbus_fast", "pyudev", "gpiod", "evdev", "osdp", "smartcard", "nfc",
    "sekisho.daemon.desks", "sekisho.daemon.logind", "sekisho.daemon.logind_watch", "sekisho.daemon.approvals",
    "sekisho.daemon.usb", "sekisho.daemon.usb_sysfs", "sekisho.policies.usbrules", "sekisho.drivers.udev",
    "sekisho.drivers.osdp", "sekisho.drivers.evdev_keys", "sekisho.drivers.pcsc",
    "sekisho.drivers.nfc", "sekisho.daemon.recorder", "cryptography",
    "sekisho.daemon.people_cli", "sekisho.daemon.records_cli", "sekisho.daemon.site_cli",
    "sekisho.daemon.enrolment_cli", "sekisho.daemon.site_bundle",
    "cups", "sekisho.drivers.cups", "sekisho.drivers.cups_holding", "sekisho.daemon.printing",
    "sekisho.daemon.print_events",
}
"""What a door-only node with sim readers and no [commands.keys] has no use for: desks, USB, print
release, the recorder, hardware, signature checks (every command is refused unread without a key), and the
other commands of the command line."""

DESK_CONFIG = """\
[site]
id = "test"
node = "desk-a"

[mqtt]
url = "{url}"

[areas.room]

[desks.desk-01]
area = "room"

[readers.desk-01]
driver = "sim"
desk = "desk-01"
"""


PROBE = """
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
runpy.run_module("sekisho.daemon.cli", run_name="__main__", alter_sys=True)
"""


def run_probed(site) -> Path:  # noqa: ANN001
    """Start the daemon through the probe; the file its modules are written to at its exit."""
    out = site.data_dir.parent / "modules.txt"
    site.proc = subprocess.Popen([sys.executable, "-c", PROBE, str(out), "run", "--config", str(site.config),
                                  "--data-dir", str(site.data_dir)], stdout=open(site.log, "ab"),
                                 stderr=subprocess.STDOUT)

    def ready() -> bool:
        assert site.proc.poll() is None, f"daemon exited: {site.daemon_log()}"
        return answers(site.data_dir, site.proc.pid)
    wait_for(ready, 15, "the daemon to answer on its control socket")
    return out


def imported(out: Path) -> set[str]:
    return set(out.read_text().split("\n"))


def test_a_door_node_loads_no_desk_usb_recorder_or_hardware_module(site, subscribe):
    sub = subscribe("sekisho/+/+/door/+/event")
    site.enroll("u1", UID)
    out = run_probed(site)
    site.tap(UID)
    wait_for(lambda: sub.events(), what="the door event")
    assert site.stop() == 0
    loaded = imported(out)
    # The probe sees what is imported late and by name: the sim driver, through the registry.
    assert {"paho.mqtt.client", "sekisho.daemon.doors", "sekisho.drivers.sim"} <= loaded
    assert sorted(loaded & NOT_FOR_A_DOOR) == []


def test_a_desk_node_loads_the_dbus_client_and_still_no_usb(site, logind):
    site.config.write_text(DESK_CONFIG.format(url=site.broker.url))
    out = run_probed(site)
    assert site.stop() == 0
    loaded = imported(out)
    assert {"dbus_fast", "sekisho.daemon.desks", "sekisho.daemon.logind_watch"} <= loaded
    assert sorted(loaded & {"pyudev", "sekisho.daemon.usb", "sekisho.policies.usbrules", "sekisho.drivers.udev"}) == []
