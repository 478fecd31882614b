"""USBGuard's device ``hash`` and ``parent-hash`` and the interface list, from the same inputs
USBGuard reads, so that a ``hash "..."`` rule written for USBGuard matches the same device here;
and, from the same one walk over the descriptors, what the daemon needs besides (the device class,
the interfaces by configuration and number).

How USBGuard computes them (USBGuard/usbguard @ 1477faa, the files named):

- ``DeviceBase::DeviceBase`` (src/Library/DeviceBase.cpp) reads the sysfs attributes ``product``
  (the name), ``idVendor``, ``idProduct`` and ``serial`` with ``SysFSDevice::readAttribute``,
  which drops trailing ``\\0 \\n \\r \\t \\b`` bytes (``sysfs_text`` here); a missing ``product`` or
  ``serial`` is the empty string. It then opens ``descriptors`` and parses it.
- ``DevicePrivate::initializeHash`` (src/Library/DevicePrivate.cpp) starts a ``Hash`` and feeds it,
  in this order and with nothing between them, the name, the vendor id text, the product id text
  and the serial (``Hash::update(std::string)`` hashes the bytes, no terminator, no length).
- ``USBDescriptorParser::parse`` (src/Library/public/usbguard/USB.cpp) walks the descriptors
  header by header; for each one ``DeviceBase::parseUSBDescriptor`` calls ``updateHash`` on its
  ``bLength`` raw bytes, except that a Linux root hub's device descriptor (vendor 1d6b, product
  0001, 0002 or 0003) is hashed with ``bcdDevice`` set to 0, so a kernel upgrade does not change
  the hash (``updateHashLinuxRootHubDeviceDescriptor``). For well-formed data that is the whole
  file, in order.
- ``Hash`` (src/Library/Hash.cpp) is SHA-256 under all three crypto backends (libsodium,
  OpenSSL, libgcrypt), and ``Hash::getBase64`` encodes the digest with the standard alphabet and
  ``=`` padding (src/Library/Base64.cpp): 44 characters.
- ``parent-hash`` (``DevicePrivate::getDeviceRule``): the parent device's ``hash`` when the parent
  is a USB device (a hub); otherwise, for a root hub, ``hashString`` of the parent's sysfs path
  relative to /sys (``/devices/pci0000:00/0000:00:14.0``), i.e. the same SHA-256 and base64 over
  that path's bytes (``DeviceBase::DeviceBase``, ``parentPath`` in src/Common/Utility.cpp).

USBGuard refuses a device whose descriptors do not parse (wrong size for a device,
configuration, interface or endpoint descriptor, truncated data, an interface before any
configuration, ...). ``parse_descriptors`` raises ``DescriptorError`` for exactly those cases, so
that sekisho never computes a hash for a device USBGuard would not have.

The known-answer tests in tests/test_usbrules_hashing.py use the umockdev recording and the two
hashes from USBGuard's own use-case test (src/Tests/UseCase/devices.umockdev and
003_cli_devices_umockdev.sh).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

_DEVICE, _CONFIGURATION, _INTERFACE, _ENDPOINT = 0x01, 0x02, 0x04, 0x05
_SIZES: Mapping[int, tuple[int, ...]] = MappingProxyType(
    {_DEVICE: (18,), _CONFIGURATION: (9,), _INTERFACE: (9,), _ENDPOINT: (7, 9)})
"""The sizes USBGuard accepts for the descriptors it reads (``USBDescriptorParserHooks::parseUSBDescriptor``);
an endpoint is 7 bytes, or 9 for an audio endpoint."""
_NAMES: Mapping[int, str] = MappingProxyType(
    {_DEVICE: "device", _CONFIGURATION: "configuration", _INTERFACE: "interface", _ENDPOINT: "endpoint"})
_LINUX_FOUNDATION = 0x1D6B
_ROOT_HUB_PRODUCTS = (0x0001, 0x0002, 0x0003)
_SYSFS_TRAILING = b"\0\n\r\t\b"


class DescriptorError(ValueError):
    """Descriptor data that USBGuard would refuse (its message is kept in the text)."""


@dataclass(frozen=True)
class Descriptors:
    """Everything sekisho reads from one device's descriptors, from one walk over them."""

    vendor_id: int | None
    product_id: int | None
    """From the device descriptor; ``None`` when there is none (USBGuard takes the id from sysfs)."""
    interfaces: tuple[str, ...]
    """Every interface descriptor's ``cc:ss:pp`` in order: what a rule's ``with-interface`` sees."""
    hashed: bytes
    """The descriptor bytes as USBGuard hashes them."""
    device_class: str | None = None
    """``bDeviceClass`` as two hex digits (``00``: the class is per interface)."""
    slots: Mapping[tuple[int, int], frozenset[str]] = field(default_factory=dict)
    """(bConfigurationValue, bInterfaceNumber) to the ``cc:ss:pp`` of every alternate setting of
    that interface: the kernel names the interface's sysfs directory ``<port>:<cfg>.<num>``, and an
    interface is blocked when any of its settings is, since a driver may switch to it."""

    @property
    def root_hub(self) -> bool:
        return self.vendor_id == _LINUX_FOUNDATION and self.product_id in _ROOT_HUB_PRODUCTS


def parse_descriptors(raw: bytes) -> Descriptors:
    """Walk the sysfs ``descriptors`` file the way ``USBDescriptorParser::parse`` and
    ``DevicePrivate::load*Descriptor`` do. Read the file as bytes: it holds NUL bytes."""
    pos = 0
    parts: list[bytes] = []
    interfaces: list[str] = []
    seen: set[int] = set()
    vendor: int | None = None
    product: int | None = None
    device_class: str | None = None
    config = 0
    slots: dict[tuple[int, int], set[str]] = {}
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise DescriptorError("Cannot parse descriptor data: partial read while reading header data")
        length, kind = raw[pos], raw[pos + 1]
        if length < 2:
            raise DescriptorError("Invalid descriptor data: bLength is less than the size of the header")
        if pos + length > len(raw):
            raise DescriptorError("Invalid descriptor data: bLength value larger than the amount of available data")
        descriptor = raw[pos:pos + length]
        if kind in _SIZES and length not in _SIZES[kind]:
            raise DescriptorError(f"{_NAMES[kind]} descriptor: unexpected descriptor size: {length}")
        if kind == _DEVICE:
            if _DEVICE in seen:
                raise DescriptorError("Invalid descriptor data: multiple device descriptors for one device")
            vendor = int.from_bytes(descriptor[8:10], "little")
            product = int.from_bytes(descriptor[10:12], "little")
            device_class = f"{descriptor[4]:02x}"
            if vendor == _LINUX_FOUNDATION and product in _ROOT_HUB_PRODUCTS:
                descriptor = descriptor[:12] + b"\0\0" + descriptor[14:]
        elif kind == _CONFIGURATION:
            if _DEVICE not in seen:
                raise DescriptorError("Invalid descriptor data: missing parent device descriptor while loading "
                                      "configuration")
            # USBGuard forgets the interface and endpoint state at each configuration, so an
            # endpoint must follow an interface of the same configuration.
            seen -= {_INTERFACE, _ENDPOINT}
            config = descriptor[5]
        elif kind == _INTERFACE:
            if _CONFIGURATION not in seen:
                raise DescriptorError("Invalid descriptor data: missing parent configuration descriptor while "
                                      "loading interface")
            interfaces.append(f"{descriptor[5]:02x}:{descriptor[6]:02x}:{descriptor[7]:02x}")
            slots.setdefault((config, descriptor[2]), set()).add(interfaces[-1])
        elif kind == _ENDPOINT and _INTERFACE not in seen:
            raise DescriptorError("Invalid descriptor data: missing parent interface descriptor while loading "
                                  "endpoint")
        seen.add(kind)
        parts.append(descriptor)
        pos += length
    if pos < 18:
        raise DescriptorError("USB descriptor parser processed less data than the size of a USB device descriptor")
    return Descriptors(vendor, product, tuple(interfaces), b"".join(parts), device_class,
                       MappingProxyType({k: frozenset(v) for k, v in slots.items()}))


def interface_types(descriptors: bytes) -> tuple[str, ...]:
    return parse_descriptors(descriptors).interfaces


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _digest(*chunks: bytes) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk)
    return base64.b64encode(sha.digest()).decode("ascii")


def device_hash(*, name: str | bytes, vendor_id: str | bytes, product_id: str | bytes, serial: str | bytes,
                descriptors: bytes | Descriptors) -> str:
    """A device's ``hash``: SHA-256 over name, vendor id, product id, serial and the descriptors,
    base64. Pass the sysfs attribute values as ``sysfs_text`` gives them (``idVendor`` is ``"17ef"``
    text, not a number) and ``descriptors`` as the file's raw bytes, or as ``parse_descriptors``
    gave them when they are parsed already."""
    if not vendor_id or not product_id:
        raise DescriptorError("vendor and/or product id values not available")
    parsed = descriptors if isinstance(descriptors, Descriptors) else parse_descriptors(descriptors)
    return _digest(_bytes(name), _bytes(vendor_id), _bytes(product_id), _bytes(serial), parsed.hashed)


def hash_string(value: str | bytes) -> str:
    """USBGuard's ``Device::hashString``: SHA-256 of the bytes, base64."""
    return _digest(_bytes(value))


def parent_path(path: str) -> str:
    """USBGuard's ``parentPath``: ``/foo/bar`` and ``/foo/bar//`` give ``/foo``; ``/foo`` gives ``""``."""
    end = len(path.rstrip("/"))
    if end == 0:
        return ""
    cut = path.rfind("/", 0, end)
    if cut < 0:
        return ""
    return path[:len(path[:cut].rstrip("/"))]


def root_hub_parent_hash(devpath: str) -> str:
    """A root hub's ``parent-hash``: the hash of its parent's sysfs path, relative to /sys.

    ``devpath`` is the root hub's own path as udev's ``DEVPATH`` gives it
    (``/devices/pci0000:00/0000:00:14.0/usb1``). Every other device's ``parent-hash`` is its
    parent device's ``hash``."""
    parent = parent_path(devpath)
    if not parent:
        raise ValueError(f"{devpath!r} has no parent path")
    return hash_string(parent)


def sysfs_text(raw: bytes) -> str:
    """A sysfs attribute's value as USBGuard reads it: trailing NUL, newline, CR, tab and
    backspace bytes dropped, nothing else touched (leading and trailing spaces stay)."""
    return raw.rstrip(_SYSFS_TRAILING).decode("utf-8", "surrogateescape")
