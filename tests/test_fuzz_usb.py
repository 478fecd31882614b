"""Hostile USB devices: whatever a device's sysfs attributes and descriptors hold (odd lengths,
bytes that are not UTF-8, NUL, empty, truncated), reading it gives an event, describing it gives
either the rules' ``Device`` or a problem that keeps it blocked, never an exception; a described
device prints as a rule that parses back and matches it; and what the controller records and
answers about it is text the store, the bus and a terminal take.

The budget is the hypothesis profile's (conftest.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.daemon.store.database import Database
from sekisho.daemon.store.record import NewEvent, Record
from sekisho.daemon.usb_cli import _items, _print_entries, evaluate
from sekisho.daemon.usb_devices import Tracked, shown
from sekisho.daemon.usb_exceptions import Match
from sekisho.drivers.udev import read_device, read_interface
from sekisho.policies.usbrules import DescriptorError, RuleSet, Target, applies, parse_descriptors, parse_rule

# A USB stick's descriptors, from the umockdev recording the hashing tests use (18 + 9 + 9 + 7 + 7).
STICK = bytes.fromhex("12010002000000400781558301000102030109022000010100803209040000020806500007058102000200"
                      "07050202000200")


def descriptor(kind: int, length: int, body: bytes) -> bytes:
    return bytes([length, kind]) + (body + bytes(length))[:max(0, length - 2)]


DESCRIPTORS = st.one_of(
    st.binary(max_size=80),
    # Headers USBGuard's walk knows, at sizes right and wrong, in any order: reaches past the first check.
    st.lists(st.builds(descriptor, st.sampled_from([1, 2, 4, 5, 0x21, 0xFF]),
                       st.sampled_from([0, 1, 2, 7, 9, 18, 255]), st.binary(max_size=20)), max_size=8).map(b"".join),
    st.builds(lambda cut: STICK[:cut], st.integers(0, len(STICK))),
    st.builds(lambda at, byte: STICK[:at] + bytes([byte]) + STICK[at + 1:], st.integers(0, len(STICK) - 1),
              st.integers(0, 255)))

LATIN1_RULES = RuleSet.parse(b'allow name "Caf\xe9"\nallow with-interface 08:*:*\n'.decode("utf-8", "surrogateescape"),
                             "latin1.rules", Target.BLOCK)
"""A rule whose source line is not UTF-8: its text is shown with each decision it makes."""

ATTRIBUTE = st.one_of(st.none(), st.binary(max_size=24), st.sampled_from(
    [b"0781\n", b"5583\n", b"", b"\n", b"\x00", b"07 81", b"0781\x00", b"\xff\xfe", b"\xed\xa0\x80", b"ABCD\n"]))
"""An attribute file's bytes, or no such file."""


@given(DESCRIPTORS)
@example(b"")
@example(b"\x00\x00")
@example(b"\x12")
@example(STICK[:17])
@example(STICK + b"\x09")
def test_any_descriptors_parse_or_are_refused(raw):
    try:
        parsed = parse_descriptors(raw)
    except DescriptorError:
        return
    assert parsed.hashed and len(parsed.hashed) == len(raw)
    for t in parsed.interfaces:
        assert len(t) == 8 and t.count(":") == 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One node's store for every example (a new one each costs more than the example)."""
    database = Database(tmp_path_factory.mktemp("store") / "data")
    yield Record(database, "desk-01")
    database.close()


def sysfs_device(root: Path, files: dict[str, bytes | None]) -> Path:
    parent = root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1"
    path = parent / "1-2"
    path.mkdir(parents=True, exist_ok=True)
    (parent / "uevent").write_bytes(b"DEVTYPE=usb_device\n")
    (path / "port").mkdir(exist_ok=True)
    for name, content in files.items():
        f = path / name
        f.unlink(missing_ok=True)
        if content is not None:
            f.write_bytes(content)
    return path


@given(vendor=ATTRIBUTE, product=ATTRIBUTE, serial=ATTRIBUTE, name=ATTRIBUTE, connect=ATTRIBUTE,
       descriptors=st.one_of(st.none(), DESCRIPTORS), authorized=ATTRIBUTE)
@example(vendor=b"0781\n", product=b"5583\n", serial=b"\xff\xfe\n", name=b"Cruzer \xed\xa0\x80\n", connect=b"hotplug\n",
         descriptors=STICK, authorized=b"\xff\n")
@example(vendor=b"0781\n", product=b"5583\n", serial=b"4C53\x0000\n", name=b"x", connect=None, descriptors=STICK,
         authorized=None)
@example(vendor=b"0781\n", product=b"5583\n", serial=None, name=b"Caf\xe9\n", connect=None, descriptors=STICK,
         authorized=b"1\n")
def test_any_sysfs_device_is_described_or_kept_blocked_and_recorded(tmp_path_factory, store, vendor, product, serial, name,
                                                                     connect, descriptors, authorized):
    root = tmp_path_factory.mktemp("sysfs")
    path = sysfs_device(root, {"idVendor": vendor, "idProduct": product, "serial": serial, "product": name,
                               "port/connect_type": connect, "descriptors": descriptors,
                               "authorized": authorized})
    event = read_device(str(path))
    tracked = Tracked.of(event, lambda parent: "")
    if tracked.device is None:
        assert tracked.problem  # kept blocked, and says why
    else:
        # `sekisho usb list` prints a device as a rule: it must read back as the same rule and match it.
        rule = tracked.device.as_rule(Target.ALLOW)
        assert parse_rule(rule.to_text()) == rule
        assert applies(rule, tracked.device)
        # A supervisor's exception for it, from an approval or typed from `sekisho usb list`, names it
        # and is recorded.
        approved = Match.of(event, tracked.device.hash)
        assert approved.matches(tracked) and Match.parse(approved.text).matches(tracked)
        json.dumps([approved.text, approved.payload()], ensure_ascii=False).encode("utf-8")
    # What the controller records, publishes and answers is text every consumer takes: the store
    # (SQLite: UTF-8 only), the bus (UTF-8 JSON), PostgreSQL at the recorder (no NUL), a terminal.
    for answer in (tracked.payload(), tracked.status()):
        text = json.dumps(answer, ensure_ascii=False)
        text.encode("utf-8")
        assert "\x00" not in text and "\\u0000" not in text
    # `sekisho usb test-policy` and `usb list` print it, decided by rules from a file saved as Latin-1.
    entries = evaluate(LATIN1_RULES, _items([(str(path), event)]))
    json.dumps(entries, ensure_ascii=False).encode("utf-8")
    printed = io.StringIO()
    _print_entries(entries, printed, show_state=True)
    printed.getvalue().encode("utf-8")
    store.record([NewEvent(kind="usb", topic="usb/desk-01/event", payload={"device": tracked.payload()},
                           columns={"result": "blocked"})])


@given(st.tuples(ATTRIBUTE, ATTRIBUTE, ATTRIBUTE))
@example((b"08\n", b"06\n", b"50\n"))
@example((b"\xff", b"06", b"50"))
def test_any_interface_attributes_read_as_a_type_or_nothing(tmp_path_factory, parts):
    path = tmp_path_factory.mktemp("sysfs") / "1-2:1.0"
    path.mkdir(parents=True, exist_ok=True)
    for name, content in zip(("bInterfaceClass", "bInterfaceSubClass", "bInterfaceProtocol"), parts, strict=True):
        (path / name).unlink(missing_ok=True)
        if content is not None:
            (path / name).write_bytes(content)
    event = read_interface(str(path))
    assert event.interface_type == "" or re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}", event.interface_type)


@given(st.binary(max_size=12), st.binary(max_size=12))
@example(b"A\xff", b"A\\xff")  # the byte 0xff, and the text backslash x f f, once shown alike
@example(b"\0", b"\\x00")
def test_two_device_strings_are_never_shown_alike(a, b):
    # Exceptions typed from `usb list` by serial are matched on the shown serial: two devices
    # whose serials differ must not be shown alike.
    one, other = (x.decode("utf-8", "surrogateescape") for x in (a, b))
    if a != b:
        assert shown(one) != shown(other)
