"""USBGuard's device hash, parent hash and interface list, against known answers.

How we know the hash matches USBGuard's: USBGuard's own use-case test
src/Tests/UseCase/003_cli_devices_umockdev.sh (USBGuard/usbguard @ 1477faa) starts the daemon on
the umockdev recording src/Tests/UseCase/devices.umockdev and then finds two devices in
``usbguard list-devices`` by their hash: the ThinkPad dock at 1-4,
"2y2qS3rcuMr1Ye5knWsbD8CGzPtrs+eiRR/haro7+Ng=", and the trackball behind it at 1-4.2,
"D3deklX12Ir3kJPfUZ5AQNwHeZn1bwtPkQkw6e+8B38=". The attributes and descriptors below are
copied from that recording (neither device has a ``serial`` file, so the serial is empty).
Computing both hashes here and getting USBGuard's values checks the whole recipe at once: the
order of the fields, no separators, the empty serial, the descriptor bytes, SHA-256 and the
base64 form. The root-hub and parent-path cases are not in that test; their vectors are worked
out by hand from DeviceBase.cpp and Utility.cpp, as the comments say.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from sekisho.policies.usbrules import (
    DescriptorError,
    device_hash,
    hash_string,
    interface_types,
    parse_descriptors,
    root_hub_parent_hash,
    sysfs_text,
)
from sekisho.policies.usbrules.hashing import parent_path

DOCK = bytes.fromhex("1201100209000140EF175A3010500102000109021900010100E0000904000001090000000705810301000C")
TRACKBALL = bytes.fromhex("12010002000000087D04482000060102000109022200010100A0320904000001030102000921110100012252"
                          "000705810308000A")
ROOT_HUB = bytes.fromhex("12010002090001406B1D020015040302010109021900010100E0000904000001090000000705810304000C")
KEYBOARD = bytes.fromhex("12010002000000081111111120020102000109023B00020100A032090400000103010100092100010001225B"
                         "00070581030F0001090401000103010000092100010001226A0007058203040001")


def test_usbguard_known_answer_dock():
    assert device_hash(name="Lenovo ThinkPad WS Dock", vendor_id="17ef", product_id="305a", serial="",
                       descriptors=DOCK) == "2y2qS3rcuMr1Ye5knWsbD8CGzPtrs+eiRR/haro7+Ng="


def test_usbguard_known_answer_trackball_behind_the_dock():
    assert device_hash(name="Kensington Eagle Trackball", vendor_id="047d", product_id="2048", serial="",
                       descriptors=TRACKBALL) == "D3deklX12Ir3kJPfUZ5AQNwHeZn1bwtPkQkw6e+8B38="


def test_hash_is_sha256_of_the_fields_then_the_descriptors():
    expected = base64.b64encode(hashlib.sha256(b"Kensington Eagle Trackball" b"047d" b"2048" b"" + TRACKBALL)
                                .digest()).decode()
    assert device_hash(name=b"Kensington Eagle Trackball", vendor_id=b"047d", product_id=b"2048", serial=b"",
                       descriptors=TRACKBALL) == expected


def test_root_hub_descriptor_is_hashed_with_bcd_device_zeroed():
    # DeviceBase::updateHashLinuxRootHubDeviceDescriptor: vendor 1d6b, product 0001-0003 get
    # bcdDevice (bytes 12-13 of the device descriptor, here 15 04 for kernel 4.15) set to 0.
    zeroed = ROOT_HUB[:12] + b"\0\0" + ROOT_HUB[14:]
    fields = b"xHCI Host Controller" b"1d6b" b"0002" b"0000:00:14.0"
    expected = base64.b64encode(hashlib.sha256(fields + zeroed).digest()).decode()
    assert expected == "jEP/6WzviqdJ5VSeTUY8PatCNBKeaREvo2OqdplND/o="
    got = device_hash(name="xHCI Host Controller", vendor_id="1d6b", product_id="0002", serial="0000:00:14.0",
                      descriptors=ROOT_HUB)
    assert got == expected
    other_kernel = ROOT_HUB[:12] + b"\x19\x06" + ROOT_HUB[14:]
    assert device_hash(name="xHCI Host Controller", vendor_id="1d6b", product_id="0002", serial="0000:00:14.0",
                       descriptors=other_kernel) == got


def test_parent_hash_of_a_root_hub_is_the_hash_of_its_controllers_sysfs_path():
    # DeviceBase: a parent that is not a usb_device gives hashString(parentPath(devpath)).
    expected = base64.b64encode(hashlib.sha256(b"/devices/pci0000:00/0000:00:14.0").digest()).decode()
    assert root_hub_parent_hash("/devices/pci0000:00/0000:00:14.0/usb1") == expected
    assert hash_string("/devices/pci0000:00/0000:00:14.0") == expected


@pytest.mark.parametrize("path, parent", [
    ("/foo/bar", "/foo"), ("/foo/bar/", "/foo"), ("/foo/bar//", "/foo"), ("/foo//bar", "/foo"),
    ("/foo", ""), ("/foo/", ""), ("/", ""), ("//foo", ""), ("foo", ""),
])
def test_parent_path_is_usbguards(path, parent):
    # The cases listed in the comment above parentPath in src/Common/Utility.cpp, and two more.
    assert parent_path(path) == parent


def test_interfaces_are_every_interface_descriptor_in_order():
    assert interface_types(DOCK) == ("09:00:00",)
    assert interface_types(TRACKBALL) == ("03:01:02",)
    assert interface_types(KEYBOARD) == ("03:01:01", "03:01:00")


def test_alternate_settings_and_other_configurations_all_count():
    def config(value: int) -> bytes:
        return bytes.fromhex(f"09021b0001{value:02x}0080fa")

    def iface(number: int, alt: int, class_subclass: str) -> bytes:
        return bytes.fromhex(f"0904{number:02x}{alt:02x}01{class_subclass}0000")

    device = bytes.fromhex("120100020000004011112222000100000002")
    endpoint = bytes.fromhex("0705810340000a")
    data = (device + config(1) + iface(0, 0, "0102") + endpoint + iface(0, 1, "0102") + endpoint
            + config(2) + iface(0, 0, "ffff") + endpoint)
    assert interface_types(data) == ("01:02:00", "01:02:00", "ff:ff:00")
    # The daemon's view of the same walk: the kernel's interface directory <port>:<cfg>.<num>
    # to every setting it may switch to.
    assert parse_descriptors(data).slots == {(1, 0): {"01:02:00"}, (2, 0): {"ff:ff:00"}}


def test_one_walk_gives_the_class_and_the_hash_input():
    parsed = parse_descriptors(DOCK)
    assert (parsed.device_class, parsed.interfaces, dict(parsed.slots)) == ("09", ("09:00:00",), {(1, 0): {"09:00:00"}})
    assert parse_descriptors(TRACKBALL).device_class == "00"
    assert device_hash(name="Lenovo ThinkPad WS Dock", vendor_id="17ef", product_id="305a", serial="",
                       descriptors=parsed) == "2y2qS3rcuMr1Ye5knWsbD8CGzPtrs+eiRR/haro7+Ng="


def test_unknown_descriptors_are_hashed_and_skipped():
    parsed = parse_descriptors(TRACKBALL)  # carries a 9-byte HID descriptor (type 0x21)
    assert parsed.hashed == TRACKBALL
    assert (parsed.vendor_id, parsed.product_id, parsed.root_hub) == (0x047D, 0x2048, False)


@pytest.mark.parametrize("data, message", [
    (b"", "less data than the size of a USB device descriptor"),
    (DOCK[:-1], "bLength value larger than the amount of available data"),
    (DOCK + b"\x09", "partial read while reading header data"),
    (DOCK[:18] + b"\x01\x02", "bLength is less than the size of the header"),
    (bytes([17]) + DOCK[1:17], "device descriptor: unexpected descriptor size: 17"),
    (DOCK[:18] + DOCK[:18], "multiple device descriptors"),
    (DOCK[18:27] + DOCK[:18], "missing parent device descriptor while loading configuration"),
    (DOCK[:18] + DOCK[27:36], "missing parent configuration descriptor while loading interface"),
    (DOCK[:27] + DOCK[36:], "missing parent interface descriptor while loading endpoint"),
    (DOCK[:36] + bytes([8]) + DOCK[37:] + b"\0", "endpoint descriptor: unexpected descriptor size: 8"),
])
def test_descriptors_usbguard_refuses_are_refused(data, message):
    with pytest.raises(DescriptorError, match=message):
        parse_descriptors(data)


def test_hash_needs_the_ids():
    with pytest.raises(DescriptorError, match="vendor and/or product id"):
        device_hash(name="x", vendor_id="", product_id="0001", serial="", descriptors=DOCK)


def test_sysfs_text_trims_like_usbguard():
    assert sysfs_text(b"Lenovo ThinkPad WS Dock\n") == "Lenovo ThinkPad WS Dock"
    assert sysfs_text(b" padded \t\r\n\0\b") == " padded "
    assert sysfs_text(b"\xe3\x82\xab\n") == "カ"
    assert sysfs_text(b"\xff\n").encode("utf-8", "surrogateescape") == b"\xff"
