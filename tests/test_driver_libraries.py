"""A configured driver whose Python library is not installed is a config error (exit 78) naming
the key and the extra that installs it, at check-config and at ``sekisho run``: the unit's
RestartPreventExitStatus=78 then stops, where a driver failing at start would be restarted in a
loop. The library is made missing for real: a sitecustomize on PYTHONPATH puts a finder first on
sys.meta_path that refuses to import it, as an interpreter without it would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import SEKISHO

SITE = """\
[site]
id = "t"
node = "n1"

[doors.entrance]
"""
SIM_READER = """
[readers.r1]
driver = "sim"
door = "entrance"
direction = "in"
"""
USES = {  # extra: (config that uses it, the key named, the module blocked)
    "pcsc": (SITE + '\n[readers.r1]\ndriver = "pcsc"\nname = "ACS ACR122U*"\ndoor = "entrance"\ndirection = "in"\n',
             "readers.r1.driver", "smartcard"),
    "nfc": (SITE + '\n[readers.r1]\ndriver = "nfc"\npath = "usb:054c:06c3"\ndoor = "entrance"\ndirection = "in"\n',
            "readers.r1.driver", "nfc"),
    "evdev": (SITE + SIM_READER + 'pin_pad = { driver = "evdev", device = "/dev/input/by-id/usb-pad-event-kbd" }\n',
              "readers.r1.pin_pad.driver", "evdev"),
    "gpio": (SITE.replace("[doors.entrance]\n", '[doors.entrance]\nstrike = { driver = "gpio", line = 3 }\n')
             + SIM_READER, "doors.entrance.strike.driver", "gpiod"),
    "osdp": (SITE + '\n[readers.r1]\ndriver = "osdp"\nline = "/dev/ttyUSB0"\naddress = 1\ndoor = "entrance"\n'
             'direction = "in"\n', "readers.r1.driver", "osdp"),
    "udev": (SITE + SIM_READER + '\n[usb]\nrules = "usb.rules"\n', "usb", "pyudev"),
}
BLOCKER = """\
import sys


class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def _run(tmp_path: Path, extra: str, command: str, blocked: bool) -> subprocess.CompletedProcess:
    text, _, module = USES[extra]
    path = tmp_path / "node.toml"
    path.write_text(text)
    (tmp_path / "usb.rules").write_text("allow id 046d:c31c\n")
    env = dict(os.environ)
    if blocked:
        (tmp_path / "block").mkdir(exist_ok=True)
        (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER.format(module=module))
        env["PYTHONPATH"] = str(tmp_path / "block")
    return subprocess.run([*SEKISHO, command, "--config", str(path), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("extra", sorted(USES))
def test_a_missing_driver_library_is_a_config_error_naming_the_extra(tmp_path, extra):
    r = _run(tmp_path, extra, "check-config", blocked=False)
    assert r.returncode == 0, r.stderr
    r = _run(tmp_path, extra, "check-config", blocked=True)
    assert r.returncode == 78, r.stderr
    key = USES[extra][1]
    [line] = r.stderr.splitlines()
    assert line.startswith(f"{tmp_path / 'node.toml'}: {key}: {extra!r} needs "), line
    assert f"install the extra {extra!r}" in line and f"install '.[{extra}]'" in line and "No module named" in line


def test_debians_gpiod_1_is_refused_by_name(tmp_path):
    """python3-libgpiod (Debian 12's, version 1.6) is imported as gpiod too, with another API: first
    on the path, it is found and refused, not taken for the gpiod 2 the driver needs."""
    path = tmp_path / "node.toml"
    path.write_text(USES["gpio"][0])
    env = {**os.environ, "PYTHONPATH": "/usr/lib/python3/dist-packages"}
    r = subprocess.run([*SEKISHO, "check-config", "--config", str(path)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 78, r.stderr
    assert "doors.entrance.strike.driver: 'gpio' needs gpiod >= 2.2, which this Python does not have (/usr/lib/python3/" \
        "dist-packages/gpiod.cpython-311-x86_64-linux-gnu.so is an older gpiod, a single module)" in r.stderr, r.stderr


def test_run_stops_at_a_missing_driver_library_before_anything_starts(tmp_path):
    r = _run(tmp_path, "pcsc", "run", blocked=True)
    assert r.returncode == 78, r.stderr
    assert "readers.r1.driver: 'pcsc' needs pyscard >= 2.3" in r.stderr
    assert not (tmp_path / "data").exists()
