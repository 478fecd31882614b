"""systemd/sekisho.service as systemd reads it, without a booted systemd: ``systemd-analyze verify``
(every key known, every value valid, the commands executable) and the exposure score of
``systemd-analyze security --offline=true`` (at most 2.0, issue 16). What the sandbox does to
the running daemon is not tested here: that needs a booted systemd (the README says what it
permits and why)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

UNIT = REPO / "systemd" / "sekisho.service"
INSTALLED = "/opt/sekisho/bin/sekisho"


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_unit_verifies(tmp_path):
    """The unit as shipped, with its commands pointed at this checkout's sekisho (the installed
    path does not exist here, and verify checks that each command is executable). A misspelt key
    or an unknown system call group is only a warning to systemd, so any output fails."""
    sekisho = Path(sys.executable).parent / "sekisho"
    assert sekisho.exists(), f"{sekisho} missing: make venv installs the sekisho command"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1, "ExecStart runs the installed sekisho"
    copy = tmp_path / "sekisho.service"
    copy.write_text(text.replace(INSTALLED, str(sekisho)))
    r = analyze("verify", str(copy), cwd=tmp_path)
    assert r.returncode == 0 and not r.stdout and not r.stderr, r.stdout + r.stderr


def test_a_typo_in_the_unit_is_caught(tmp_path):
    """The check above can fail: a misspelt directive makes verify speak."""
    sekisho = Path(sys.executable).parent / "sekisho"
    copy = tmp_path / "sekisho.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(sekisho)).replace("ProtectHome=", "ProtectHom="))
    r = analyze("verify", str(copy), cwd=tmp_path)
    assert "Unknown key 'ProtectHom'" in r.stderr


def test_exposure_at_most_2_0(tmp_path):
    r = analyze("security", "--offline=true", "--no-pager", str(UNIT), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    found = re.search(r"Overall exposure level for sekisho\.service: (\d+\.\d+)", r.stdout)
    assert found, r.stdout[-2000:]
    assert float(found.group(1)) <= 2.0, r.stdout


def directives(text: str) -> dict[str, list[str]]:
    """The [Service] section's keys and their values, in order."""
    section, keys = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def test_each_directive_says_why():
    """Every group of directives in [Service] carries a comment: which need it serves, or which
    threat it removes (issue 16)."""
    service = UNIT.read_text().split("[Service]", 1)[1].split("[Install]", 1)[0]
    for paragraph in service.strip().split("\n\n"):
        lines = paragraph.strip().splitlines()
        assert any(line.startswith("#") for line in lines), f"no comment says why:\n{paragraph}"


def test_what_the_daemon_relies_on_is_kept():
    """What other parts rely on: readiness and the watchdog (service_manager.py), exit 78 and its
    kin not restarted (the config, the store, the data dir lock), the open-files limit, the
    data dir, and no capability at all."""
    keys = directives(UNIT.read_text())
    assert keys["Type"] == ["notify"] and int(keys["WatchdogSec"][0]) >= 10
    # A bad config's 78 must come from the main process: RestartPreventExitStatus= ignores what an
    # ExecStartPre exits with, and the unit would restart a bad config for ever.
    assert "ExecStartPre" not in keys and keys["ExecStart"] == [f"{INSTALLED} run"]
    assert keys["RestartPreventExitStatus"] == ["65 75 78"] and keys["Restart"] == ["on-failure"]
    assert keys["LimitNOFILE"] == ["65536"] and keys["StateDirectory"] == ["sekisho"]
    assert keys["Environment"] == ["SEKISHO_CONFIG=/etc/sekisho/sekisho.toml SEKISHO_DATA_DIR=/var/lib/sekisho"]
    assert keys["CapabilityBoundingSet"] == [""] and keys["NoNewPrivileges"] == ["yes"]
    # The USB sysfs it writes stays writable under ProtectKernelTunables' read-only /sys.
    assert keys["ProtectKernelTunables"] == ["yes"]
    assert keys["ReadWritePaths"] == ["/sys/devices -/sys/bus/usb/drivers_probe"]
