"""sekisho against USBGuard 1.1 itself: the same devices, the same policy text, the same decisions.

The reference is Debian's build of USBGuard (``make usbguard-ref``: libusbguard1 installed, the
``usbguard`` package's programs unpacked under build/usbguard, never installed as a service). Its
programs run on the test's umockdev testbed: started from this process, they inherit the preload
and the testbed's directory, so ``usbguard generate-policy`` enumerates the testbed's sysfs
exactly as it would the machine's (its ``uevent`` device manager, PolicyGenerator.cpp).
``usbguard-daemon`` runs with its own ``umockdev`` backend on a folder of recordings, with a
rules file and a rules folder, and ``usbguard list-rules`` and ``list-devices`` ask it over its
IPC what it read and decided.

Golden, never a frozen copy: each test compares sekisho's output with the output the real tool
gives in the same run (generate-policy's header comments aside, which the tools word differently).

Run under umockdev's preload (``umockdev-wrapper``; the ``testbed`` fixture fails without it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from harness import SEKISHO, wait_for
from sekisho.daemon import config
from sekisho.daemon.errors import ConfigError
from sekisho.daemon.usb import UsbController, load_rules
from sekisho.daemon.usb_cli import usb_generate, usb_list, usb_test_policy
from sekisho.drivers.udev import enumerate_usb_devices, read_device
from sekisho.policies.usbrules import RuleSet, Target
from usbfake import Kernel, Spec, read

USBGUARD = REPO / "build" / "usbguard" / "usr"
DESK_RECORDING = REPO / "tests" / "usb" / "desk.umockdev"


@pytest.fixture(scope="module")
def usbguard() -> Path:
    if not (USBGUARD / "bin" / "usbguard").exists():
        pytest.fail(f"USBGuard's programs are not under {USBGUARD}: run `make usbguard-ref` (make test does)")
    return USBGUARD


@pytest.fixture
def kernel(testbed) -> Iterator[Kernel]:
    k = Kernel(testbed)
    yield k
    k.tb = None  # so that the fixture's collection really finalizes the testbed


def recording_text(path: Path) -> str:
    """A recording as umockdev's loader takes it: no comment lines, no blank lines before the first device."""
    return "".join(line for line in path.read_text().splitlines(keepends=True) if not line.startswith("#")).lstrip("\n")


def reference_policy(usbguard: Path, *options: str) -> list[str]:
    run = subprocess.run([str(usbguard / "bin" / "usbguard"), "generate-policy", *options],
                         capture_output=True, text=True, errors="surrogateescape", timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def sekisho_policy(**options: object) -> list[str]:
    out = io.StringIO()
    assert usb_generate(out=out, **options) == 0  # type: ignore[arg-type]
    return [line for line in out.getvalue().splitlines() if not line.startswith("#")]


OPTIONS = [((), {}), (("-p",), {"ports": "all"}), (("-P",), {"ports": "none"}), (("-X",), {"with_hash": False}),
           (("-H",), {"hash_only": True}), (("-H", "-p"), {"hash_only": True, "ports": "all"}),
           (("-t", "reject"), {"catch_all": "reject"}), (("-X", "-P", "-t", "block"),
                                                        {"with_hash": False, "ports": "none", "catch_all": "block"})]


def a_busy_bus(k: Kernel) -> dict[str, str]:
    """Two root hubs and what USBGuard's order, quoting and hashing can trip on: ports 1-9 and
    1-10 (shorter names first, not 1-10 before 1-9), a hub with 1-1.2 and 1-1.10 behind it and
    a hub behind that with a camera (alternate settings: one interface type several times), names
    with quotes, a backslash, UTF-8 and bytes that are not, a trailing newline, no product or
    serial at all, each connect type, and descriptors USBGuard refuses (left out by both)."""
    k.root_hub("usb1")
    k.tb.set_attribute(k.root_hub("usb2"), "serial", "0000:00:1d.0")  # its own hash, its devices' parent-hash
    paths = {spec.port: k.plug(spec) for spec in (
        Spec("1-9", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard", connect_type="hotplug"),
        Spec("1-10", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C53 0001", connect_type="hardwired"),
        Spec("1-1", 0x05E3, 0x0610, ("09:00:00",), name="USB2.0 Hub", device_class=0x09, connect_type="not used"),
        Spec("1-1.10", 0x047D, 0x2048, ("03:01:02",), name='Say "hi" \\ there', connect_type="unknown"),
        Spec("1-1.2", 0x1234, 0x5678, ("03:01:01", "08:06:50")),
        Spec("1-1.4", 0x05E3, 0x0614, ("09:00:01", "09:00:02"), name="USB2.0 Hub Charger", device_class=0x09),
        Spec("1-1.4.3", 0x5986, 0x0706, ("0e:01:00", "0e:02:00", "0e:02:00", "0e:02:00"), name="Integrated Camera"),
        Spec("2-1", 0x0B0E, 0x24C8, ("01:01:00", "01:02:00", "ff:00:00"), name="x", serial="70BF92E1A2"),
        Spec("2-2", 0x072F, 0xB100, ("0b:00:00",), name="ACR39U ICC Reader\n", serial="\t"),
        Spec("2-3", 0x1050, 0x0407, ("03:01:01", "0b:00:00"), name="broken"),
    )}
    k.tb.set_attribute_binary(paths["2-1"], "product", "Café ".encode() + b"\xff\xfe\x01")
    k.tb.set_attribute_binary(paths["2-3"], "descriptors", bytes.fromhex("1201000200000040501007040001010203"))
    return paths


@pytest.mark.parametrize("reference_options, options", OPTIONS, ids=[" ".join(o) or "default" for o, _ in OPTIONS])
def test_generate_prints_what_usbguard_generate_policy_prints(usbguard, kernel, reference_options, options):
    a_busy_bus(kernel)
    expected = reference_policy(usbguard, *reference_options)
    assert len(expected) == 11 + ("-t" in reference_options)  # every device but the broken one, both root hubs
    assert sekisho_policy(**options) == expected


@pytest.mark.parametrize("recording", [DESK_RECORDING], ids=lambda p: p.name)
def test_generate_on_a_recording_matches_usbguard(usbguard, testbed, recording):
    """A workstation recorded with umockdev-record: root hub, dock, trackball behind it, sticks
    straight on the root hub (their parent-hash is the root hub's own hash)."""
    assert testbed.add_from_string(recording_text(recording))
    expected = reference_policy(usbguard)
    assert sekisho_policy() == expected
    by_port = {re.search(r'(via-port "([^"]*)"|serial "(\S+)")', line).group(0): line for line in expected}
    # Straight on the root hub: the root hub's own hash, from its descriptors (bcdDevice zeroed)
    # and its serial, the controller's bus id; the root hub's: the hash of the controller's path.
    assert 'parent-hash "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o="' in by_port['via-port "1-3"']
    assert 'hash "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o=" parent-hash "rV9bfLq7c2eA4tYjVjwO4bxhm+y6GgZpl9J60L0fB' \
           'kY="' in by_port['serial "0000:00:14.0"']


# ----------------------------------------------------------------------------- a generated policy in force
def test_a_generated_policy_allows_exactly_the_devices_present(usbguard, kernel):
    """The policy generated on a busy bus, loaded as the rules, allows every device present
    (the root hubs by their own lines, the devices on them by the root hub's hash) and nothing
    plugged after: not a copy of a device with no serial in another port, not the same stick
    moved to the other root hub (another parent-hash), not a second stick of the same model."""
    paths = a_busy_bus(kernel)
    text = "\n".join(reference_policy(usbguard)) + "\n"
    assert text == "\n".join(sekisho_policy()) + "\n"
    rules = RuleSet.parse(text, "generated.rules", Target.BLOCK)
    loop = asyncio.new_event_loop()
    controller = UsbController(rules, topic="t", queue=lambda record: None, loop=loop)
    try:
        controller.start(enumerate_usb_devices())
        tracked = {t.event.port: t for t in controller.inventory.devices.values()}
        for port in ("usb1", "usb2"):  # kept as found at start; the rules would allow them too
            assert not rules.first_match(tracked[port].device).implicit
        decided = {port: (t.verdict.rule if t.verdict else None, read(f"{t.event.sys_path}/authorized"))
                   for port, t in tracked.items() if not port.startswith("usb")}
        assert decided.pop("2-3")[1] == "0"  # descriptors USBGuard refuses: in no policy, blocked
        assert all(rule != "IMPLICIT" and authorized == "1" for rule, authorized in decided.values()), decided
        assert len(decided) == 9
        plugged = [
            Spec("1-1.3", 0x1234, 0x5678, ("03:01:01", "08:06:50")),  # 1-1.2's twin, another port
            Spec("2-4", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C53 0001",
                 connect_type="hardwired"),  # 1-10 moved behind the other root hub
            Spec("1-11", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C53 0002",
                 connect_type="hardwired"),  # the same model, another serial
        ]
        for spec in plugged:
            path = kernel.plug(spec)
            controller.handle(read_device(path))
            verdict = controller.inventory.devices[path].verdict
            assert verdict is not None and verdict.implicit and read(f"{path}/authorized") == "0", spec.port
        assert read(f"{paths['1-10']}/authorized") == "1"
    finally:
        controller.stop()
        loop.close()


# ----------------------------------------------------------------------------- rules file and folder
class UsbguardDaemon:
    """usbguard-daemon on a folder of umockdev recordings (its ``umockdev`` backend, as its own
    use-case test 003 runs it), permissions unchecked (-P), seccomp off (-k), asked over its IPC."""

    def __init__(self, usbguard: Path, workdir: Path, recording: Path, rule_file: Path | None,
                 rule_folder: Path | None) -> None:
        self.usbguard = usbguard
        devices = workdir / "devices"
        devices.mkdir()
        (devices / recording.name).write_text(recording_text(recording))
        conf = workdir / "usbguard-daemon.conf"
        conf.write_text("".join([
            f"RuleFile={rule_file}\n" if rule_file else "", f"RuleFolder={rule_folder}\n" if rule_folder else "",
            "ImplicitPolicyTarget=block\nPresentDevicePolicy=apply-policy\nPresentControllerPolicy=apply-policy\n"
            "InsertedDevicePolicy=apply-policy\nRestoreControllerDeviceState=false\nDeviceManagerBackend=umockdev\n"
            "IPCAllowedUsers=root\nDeviceRulesWithPort=false\n"]))
        conf.chmod(0o600)
        self.log = (workdir / "usbguard-daemon.log").open("w")
        self.process = subprocess.Popen([str(usbguard / "sbin" / "usbguard-daemon"), "-d", "-k", "-P", "-c", str(conf)],
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "USBGUARD_UMOCKDEV_DEVICEDIR": str(devices)})

    def ask(self, *command: str) -> list[str] | None:
        assert self.process.poll() is None, f"usbguard-daemon ended ({self.process.returncode}), see {self.log.name}"
        run = subprocess.run([str(self.usbguard / "bin" / "usbguard"), *command], capture_output=True, text=True,
                             timeout=30, check=False)
        return run.stdout.splitlines() if run.returncode == 0 else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def decided_both_ways(usbguard: Path, tmp_path: Path, recording: Path,
                      rules_file: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The recorded devices (all five, the dock's trackball only once the dock is allowed)
    decided by usbguard-daemon at its start, port -> decision, and by ``usb test-policy``,
    port -> (decision, rule)."""
    daemon = UsbguardDaemon(usbguard, tmp_path, recording, rules_file, None)
    try:
        devices = wait_for(lambda: (d := daemon.ask("list-devices")) and len(d) == 5 and d, timeout=30,
                           what="usbguard-daemon to list the five devices")
    finally:
        daemon.stop()
    theirs = {re.search(r'via-port "([^"]*)"', line).group(1): line.split(": ", 1)[1].split(" ", 1)[0]
              for line in devices}
    out = io.StringIO()
    usb_test_policy(rules_file, [str(recording)], as_json=True, out=out)
    return theirs, {e["port"]: (e["decision"], e["rule"]) for e in json.loads(out.getvalue())}


def a_rules_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A RuleFile and a RuleFolder whose order decides: 10-a.conf allows the stick 20-b.conf
    blocks; 30-c.rules (not .conf), a dot file and a link to a file are read; a subfolder is not."""
    rules_file = tmp_path / "rules.conf"
    rules_file.write_text("allow with-interface 09:00:00\n")
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "20-b.conf").write_text('block id 0781:5567\n# a comment\nallow id 047d:2048 name "Kensington Eagle '
                                      'Trackball"\n')
    (folder / "10-a.conf").write_text('allow id 0781:5567 serial "4C530001230417116225"\n')
    (folder / "30-c.rules").write_text("allow id 1234:5678\n")
    (folder / ".hidden").write_text("block id dead:beef\n")
    (folder / "Z-upper.conf").write_text("block id 0000:0001\n")
    (tmp_path / "elsewhere.conf").write_text("block id 0000:0002\n")
    (folder / "40-link.conf").symlink_to(tmp_path / "elsewhere.conf")
    (folder / "00-subfolder.conf").mkdir()
    (folder / "00-subfolder.conf" / "x.conf").write_text("block\n")
    for f in (rules_file, *folder.iterdir()):
        if f.is_file():
            f.chmod(0o600)  # as USBGuard writes its policy, root's alone
    return rules_file, folder


def test_a_rules_folder_is_read_as_usbguard_reads_it(usbguard, testbed, tmp_path):
    """usbguard-daemon makes its own testbed from the recording: ``testbed`` only makes sure it
    runs under umockdev's preload, so that nothing it does reaches the machine's sysfs."""
    rules_file, folder = a_rules_folder(tmp_path)
    rules = load_rules(rules_file, "block", folder)
    daemon = UsbguardDaemon(usbguard, tmp_path, DESK_RECORDING, rules_file, folder)
    try:
        listed = wait_for(lambda: daemon.ask("list-rules"), timeout=30, what="usbguard-daemon to answer")
        # Five devices, the trackball among them only once the dock is allowed.
        devices = wait_for(lambda: (d := daemon.ask("list-devices")) and len(d) == 5 and d, timeout=30,
                           what="usbguard-daemon to list the five devices")
    finally:
        daemon.stop()
    assert [r.rule.to_text() for r in rules.rules] == [line.split(": ", 1)[1] for line in listed]
    assert [f"{r.file}:{r.line}" for r in rules.rules] == [
        "rules.conf:1", "rules.d/.hidden:1", "rules.d/10-a.conf:1", "rules.d/20-b.conf:1", "rules.d/20-b.conf:3",
        "rules.d/30-c.rules:1", "rules.d/40-link.conf:1", "rules.d/Z-upper.conf:1"]
    theirs = {re.search(r'via-port "([^"]*)"', line).group(1): line.split(": ", 1)[1].split(" ", 1)[0]
              for line in devices}
    out = io.StringIO()
    usb_test_policy(rules_file, [str(DESK_RECORDING)], rules_folder=folder, as_json=True, out=out)
    entries = json.loads(out.getvalue())
    assert {e["port"]: e["decision"] for e in entries} == theirs == {
        "usb1": "allow", "1-4": "allow", "1-4.2": "allow", "1-2": "allow", "1-3": "allow"}
    assert {e["port"]: e["rule"] for e in entries} == {
        "usb1": "rules.conf:1", "1-4": "rules.conf:1", "1-4.2": "rules.d/20-b.conf:3", "1-2": "rules.d/10-a.conf:1",
        "1-3": "rules.d/30-c.rules:1"}


def test_a_folder_given_as_the_rules_is_read_as_a_rules_folder(tmp_path):
    _, folder = a_rules_folder(tmp_path)
    rules = load_rules(folder)
    assert [f"{r.file}:{r.line}" for r in rules.rules][:3] == [
        "rules.d/.hidden:1", "rules.d/10-a.conf:1", "rules.d/20-b.conf:1"]


def test_errors_name_the_file_of_the_folder_they_are_in(tmp_path):
    rules_file, folder = a_rules_folder(tmp_path)
    (folder / "20-b.conf").write_text("allow id 0781:5567\nallow with-interface { 08:*:*\n")
    (folder / "30-c.rules").write_text("allow name Kensington\n")
    with pytest.raises(ConfigError) as err:
        load_rules(rules_file, "block", folder)
    starts = [p.split(" ", 1)[0] for p in err.value.problems if p.startswith("rules.d/")]
    assert starts == ["rules.d/20-b.conf:2:30:", "rules.d/30-c.rules:1:12:"], err.value.problems
    with pytest.raises(ConfigError, match=r"nowhere: cannot read the USB rules: No such file or directory"):
        load_rules(rules_file, "block", tmp_path / "nowhere")


# ----------------------------------------------------------------------------- drop-in: [usb] and the command line
NODE = '[site]\nid = "t"\nnode = "n1"\nroles = ["usb"]\n\n[usb]\n'


def test_usbguards_own_policy_is_the_nodes_rules_as_it_stands(usbguard, testbed, tmp_path):
    """A rules.conf as USBGuard writes it (generate-policy's output, mode 0600, root's) and a
    rules folder, named by [usb] rules and rules_folder: check-config takes both as they are, and
    the devices are decided by them, each verdict citing its file's whole path and line."""
    assert testbed.add_from_string(recording_text(DESK_RECORDING))
    etc = tmp_path / "etc" / "usbguard"
    (etc / "rules.d").mkdir(parents=True)
    (etc / "rules.conf").write_text("\n".join(reference_policy(usbguard)[:3]) + "\n")
    (etc / "rules.d" / "50-dock.conf").write_text('allow id 17ef:305a\nallow parent-hash "2y2qS3rcuMr1Ye5knWsbD8CGzPt'
                                                 'rs+eiRR/haro7+Ng="\n')
    for f in (etc / "rules.conf", etc / "rules.d" / "50-dock.conf"):
        f.chmod(0o600)
    path = tmp_path / "sekisho.toml"
    path.write_text(NODE + f'rules = "{etc / "rules.conf"}"\nrules_folder = "{etc / "rules.d"}"\n')
    cfg = config.load(path)
    assert cfg.usb is not None and (cfg.usb.rules_file, cfg.usb.rules_folder) == (etc / "rules.conf", etc / "rules.d")
    out = io.StringIO()
    usb_list(cfg.usb.rules, as_json=True, out=out)
    assert {e["port"]: e["rule"] for e in json.loads(out.getvalue())["devices"]} == {
        "usb1": f"{etc}/rules.conf:1", "1-2": f"{etc}/rules.conf:2", "1-3": f"{etc}/rules.conf:3",
        "1-4": f"{etc}/rules.d/50-dock.conf:1", "1-4.2": f"{etc}/rules.d/50-dock.conf:2"}
    # The same, from the command line, with the rules given by hand.
    # In the order a reader writes it: the folder's option between the rules file and the devices.
    run = subprocess.run([*SEKISHO, "usb", "test-policy", str(etc / "rules.conf"), "--rules-folder", str(etc / "rules.d"),
                          str(DESK_RECORDING)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == str(DESK_RECORDING) and lines[-1] == "5 devices: 5 allow"
    assert re.fullmatch(r'  allow  1-4\.2  047d:2048  "Kensington Eagle Trackball" +rules\.d/50-dock\.conf:2  allow '
                        r'parent-hash "2y2qS3rcuMr1Ye5knWsbD8CGzPtrs\+eiRR/haro7\+Ng="', lines[5]), lines


@pytest.mark.parametrize("usb, problem", [
    ("", "{tmp}/sekisho.toml: usb.rules: give the rules file (rules), a rules folder (rules_folder), or "
     "both, as USBGuard's RuleFile and RuleFolder"),
    ('rules_folder = "nowhere"', "{tmp}/sekisho.toml: usb.rules_folder: cannot read {tmp}/nowhere: No such file or directory"),
    ('rules_folder = "rules.d"', "{tmp}/rules.d/20-b.conf:2:30: expected \"}}\" to close the set (opened at column 22)"),
    ('rules = "rules.conf"\nrules_folder = "rules.conf"',
     "{tmp}/sekisho.toml: usb.rules_folder: cannot read {tmp}/rules.conf: Not a directory"),
])
def test_rules_file_and_folder_problems_name_the_key_and_the_file(tmp_path, usb, problem):
    a_rules_folder(tmp_path)
    (tmp_path / "rules.d" / "20-b.conf").write_text("allow id 0781:5567\nallow with-interface { 08:*:*\n")
    path = tmp_path / "sekisho.toml"
    path.write_text(NODE + usb + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert problem.format(tmp=tmp_path) in err.value.problems


def test_test_policy_shows_each_recorded_device_as_generate_policy_writes_it(usbguard, testbed, tmp_path):
    """``device_rule`` of a device read from a recording is the line USBGuard's generate-policy
    writes for the same device read from sysfs; a parent that is not in the recording gives no
    parent-hash, whatever the machine's sysfs holds at that path."""
    assert testbed.add_from_string(recording_text(DESK_RECORDING))
    expected = reference_policy(usbguard)
    no_rules = tmp_path / "rules.d"
    no_rules.mkdir()
    out = io.StringIO()
    usb_test_policy(None, [str(DESK_RECORDING)], rules_folder=no_rules, as_json=True, out=out)
    entries = json.loads(out.getvalue())
    assert sorted(e["device_rule"] for e in entries) == sorted(expected)
    assert {e["decision"] for e in entries} == {"block"}
    alone = tmp_path / "stick.umockdev"
    alone.write_text(recording_text(DESK_RECORDING).split("\n\n")[4] + "\n")  # 1-2 only; its root hub is in the testbed
    out = io.StringIO()
    usb_test_policy(None, [str(alone)], rules_folder=no_rules, as_json=True, out=out)
    [entry] = json.loads(out.getvalue())
    assert entry["port"] == "1-2" and "parent-hash" not in entry["device_rule"]
    assert entry["device_rule"].replace(' with-interface', ' parent-hash "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o="'
                                        ' with-interface') in expected



def test_conditions_decide_as_usbguard_daemon_decides(usbguard, testbed, tmp_path, monkeypatch):
    """Every kind of condition, each operator over conditions and a label, on the recorded desk,
    decided by usbguard-daemon at its start and by ``usb test-policy``: the same decision for
    every device. What it shows of USBGuard 1.1's code, beyond its man page: ``localtime`` is the
    UTC time of day (both run in a time zone 14 hours off UTC, and the trackball's range holds
    only in UTC); ``rule-applied`` never holds, so ``!rule-applied`` lets both storage devices
    through by line 5 (were the first one's decision remembered, the second would fall to line
    7's block); ``rule-evaluated`` never holds (line 3 rejects nothing)."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()  # this process's local time too: test-policy runs here
    try:
        conditions_both_ways(usbguard, tmp_path)
    finally:
        monkeypatch.undo()
        time.tzset()


def conditions_both_ways(usbguard: Path, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    lo, hi = max(0, now.hour * 60 + now.minute - 60), min(23 * 60 + 59, now.hour * 60 + now.minute + 60)
    utc_range = f"{lo // 60:02d}:{lo % 60:02d}-{hi // 60:02d}:{hi % 60:02d}"
    rules_file = tmp_path / "rules.conf"
    rules_file.write_text("\n".join([
        "allow with-interface equals { 09:00:00 } if true",
        "block id 0781:5567 if false",
        "reject if rule-evaluated",
        f"allow id 047d:2048 if all-of {{ allowed-matches(id 17ef:305a) localtime({utc_range}) }}",
        'allow with-interface one-of { 08:*:* } label "storage" if !rule-applied',
        "block with-interface one-of { 08:*:* } if rule-applied(01:00)",
        "block id 1234:5678 if none-of { false !true rule-evaluated }",
    ]) + "\n")
    rules_file.chmod(0o600)
    theirs, ours = decided_both_ways(usbguard, tmp_path, DESK_RECORDING, rules_file)
    assert {port: decision for port, (decision, _) in ours.items()} == theirs
    assert ours == {"usb1": ("allow", "rules.conf:1"), "1-4": ("allow", "rules.conf:1"),
                    "1-4.2": ("allow", "rules.conf:4"), "1-2": ("allow", "rules.conf:5"),
                    "1-3": ("allow", "rules.conf:5")}


OPERATOR_RULES = [
    "allow with-interface all-of { 08:*:* 03:*:* }",
    "allow with-interface one-of { 08:06:50 03:01:02 }",
    "allow with-interface none-of { 08:*:* }",
    "allow with-interface equals { 03:*:* 08:06:50 }",
    "allow with-interface equals { 08:*:* 08:*:* }",
    "allow with-interface equals-ordered { 08:06:50 03:01:01 }",
    "allow with-interface equals-ordered { 03:01:01 08:06:50 }",
    "allow with-interface match-all { 03:*:* 08:06:* }",
    "allow id match-all { 0781:* }",
    "allow id match-all { 0781:5567 047d:2048 }",
    'allow name match-all { "nothing like it" }',
    "allow id one-of { 0781:* 1234:5678 }",
    "allow id none-of { 0781:* 1234:* }",
    'allow name all-of { "Cruzer Blade" "USB Disk" }',
    'allow serial equals { "" }',
    'allow hash equals-ordered { "b6rDfau+Wl1nTUvSq9z8x+n/zAyMYah08FFJwboYPYM=" }',
    'allow parent-hash "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o=" with-connect-type ""',
    'allow via-port one-of { "1-2" "1-4.2" } label { "a" "b" }',
]


@pytest.mark.parametrize("rule", OPERATOR_RULES)
def test_each_operator_decides_as_usbguard_daemon_decides(usbguard, testbed, tmp_path, rule):
    """One rule under test, then the hubs allowed (so that the devices behind them are seen),
    then the implicit block: usbguard-daemon and ``usb test-policy`` decide each device of the
    recorded desk alike, the operators' quirks (``equals`` counting, ``match-all`` on ids and
    strings) included."""
    rules_file = tmp_path / "rules.conf"
    rules_file.write_text(f"{rule}\nallow with-interface equals {{ 09:00:00 }}\n")
    rules_file.chmod(0o600)
    theirs, ours = decided_both_ways(usbguard, tmp_path, DESK_RECORDING, rules_file)
    assert {port: decision for port, (decision, _) in ours.items()} == theirs


def test_allowed_matches_sees_a_present_device_the_kernel_has_authorized(usbguard, testbed, tmp_path):
    """At start USBGuard gives a present device the target its ``authorized`` file says until
    its policy is applied, so the disk the kernel left authorized (1-3) is "allowed" while its
    own rule is decided, and the stick left unauthorized (1-2) is not: usbguard-daemon and
    ``usb test-policy`` agree on both."""
    lines = recording_text(DESK_RECORDING).split("\n")
    at = lines.index("P: /devices/pci0000:00/0000:00:14.0/usb1/1-3")
    lines[lines.index("A: authorized=0", at)] = "A: authorized=1"
    recording = tmp_path / "desk-live-disk.umockdev"
    recording.write_text("\n".join(lines))
    rules_file = tmp_path / "rules.conf"
    rules_file.write_text("allow with-interface equals { 09:00:00 }\n"
                          'allow name "USB Disk" if allowed-matches(name "USB Disk")\n'
                          'allow name "Cruzer Blade" if allowed-matches(name "Cruzer Blade")\n'
                          "allow id 047d:2048\n")
    rules_file.chmod(0o600)
    theirs, ours = decided_both_ways(usbguard, tmp_path, recording, rules_file)
    assert {port: decision for port, (decision, _) in ours.items()} == theirs
    assert ours["1-3"] == ("allow", "rules.conf:2") and ours["1-2"] == ("block", "IMPLICIT")
