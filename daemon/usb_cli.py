"""What ``sekisho usb ...`` does: list, test-policy, generate, and the ``usb.allow`` request.

Each command is a function with plain arguments that prints and returns an exit code, so the
argparse wiring (declared in cli.py, adapted in control_cli.py) stays thin and tests call these
directly. A user's mistake raises ``SekishoError`` (``ConfigError`` for a broken rules file,
every broken line named).

Devices are read from sysfs the way the daemon reads them (``drivers.udev.read_device``) and
described with the daemon's own ``usb_devices.describe``, so a test-policy run decides exactly as the
daemon would. ``test-policy`` also reads umockdev recordings (``umockdev-record`` output, the
format of USBGuard's own use-case tests), so a policy can be tried on a device recorded on
another machine.
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sekisho.drivers.udev import USB_DEVICES, enumerate_usb_devices, is_usb_device, read_device, usbguard_order
from sekisho.policies.events import UsbDeviceAdded
from sekisho.policies.usbrules import Attribute, Device, DeviceId, Key, Rule, RuleSet, Target, sysfs_text
from sekisho.policies.usbrules.rule import InterfaceType

from .errors import SekishoError
from .timestamps import utc_now
from .usb import conditions_now, load_rules, target_is_allow
from .usb_devices import DeviceState, describe, hash_of, parent_hash_of, shown
from .usb_events import UNREADABLE_RULE
from .usb_exceptions import Match

IMPLICIT_TARGETS = tuple(t.value for t in Target)


# ----------------------------------------------------------------------------- umockdev files
@dataclass
class UmockdevRecord:
    """One device of a umockdev recording: ``P:`` path, ``E:`` properties, ``A:``/``H:`` attributes
    (bytes), ``L:`` links."""

    path: str
    properties: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


_ESCAPES = {"b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v", "\\": b"\\", '"': b'"'}


def _unescape(value: str) -> bytes:
    """An ``A:`` value as umockdev writes it: C escapes, as GLib's ``g_strcompress`` reads them."""
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i:i + 1]
        if c != b"\\" or i + 1 == len(raw):
            out += c
            i += 1
            continue
        nxt = chr(raw[i + 1])
        if nxt in "01234567":
            j = i + 1
            while j < len(raw) and j < i + 4 and chr(raw[j]) in "01234567":
                j += 1
            out.append(int(raw[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out += _ESCAPES.get(nxt, nxt.encode("utf-8", "surrogateescape"))
            i += 2
    return bytes(out)


def parse_umockdev(text: str, file: str = "<umockdev>") -> list[UmockdevRecord]:
    """The devices of a umockdev recording, in file order. Raises ``SekishoError`` naming the
    line of anything that is not the format."""
    records: list[UmockdevRecord] = []
    current: UmockdevRecord | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            current = None
            continue
        if line.startswith("#"):
            continue
        kind, sep, rest = line.partition(": ")
        if not sep or len(kind) != 1:
            raise SekishoError(f"{file}:{number}: not a umockdev line (expected P:, E:, A:, H:, L:, N: or S:)")
        if kind == "P":
            current = UmockdevRecord(rest.strip())
            records.append(current)
            continue
        if current is None:
            raise SekishoError(f"{file}:{number}: {kind}: line before the device's P: line")
        name, _, value = rest.partition("=")
        if kind == "E":
            current.properties[name] = value
        elif kind == "A":
            current.attributes[name] = _unescape(value)
        elif kind == "H":
            try:
                current.attributes[name] = bytes.fromhex(value.strip())
            except ValueError:
                raise SekishoError(f"{file}:{number}: H: {name} is not hex") from None
        elif kind == "L":
            current.links[name] = value
        elif kind not in "NS":  # device node contents and udev symlinks: nothing a rule looks at
            raise SekishoError(f"{file}:{number}: unknown line type {kind}:")
    return records


def _record_event(record: UmockdevRecord, devtypes: dict[str, str]) -> UsbDeviceAdded:
    attrs = record.attributes

    def text(name: str) -> str:
        return sysfs_text(attrs[name]) if name in attrs else ""
    parent = os.path.dirname(record.path)
    port = os.path.basename(record.path)
    parent_type = devtypes.get(parent)
    return UsbDeviceAdded(
        source="umockdev", sys_path="/sys" + record.path, devpath=record.path, port=port,
        vendor_id=text("idVendor"), product_id=text("idProduct"), serial=text("serial"), name=text("product"),
        descriptors=attrs.get("descriptors", b""), connect_type=text("port/connect_type"),
        authorized=text("authorized"),
        parent_sys_path="/sys" + parent,
        parent_is_device=parent_type == "usb_device" if parent_type is not None else not port.startswith("usb"),
        present=True)


def umockdev_devices(path: str | Path) -> list[UsbDeviceAdded]:
    """The USB devices (``DEVTYPE=usb_device``) of a umockdev recording, in file order."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise SekishoError(f"{path}: cannot read: {exc.strerror or exc}") from None
    records = parse_umockdev(text, str(path))
    devtypes = {r.path: r.properties.get("DEVTYPE", "") for r in records}
    # In the order a daemon starting with them would decide them (USBGuard's enumeration order).
    return sorted((_record_event(r, devtypes) for r in records if r.properties.get("DEVTYPE") == "usb_device"),
                  key=lambda e: usbguard_order(e.sys_path))


# ----------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class Item:
    """A device to evaluate, named as the user named it."""

    source: str
    event: UsbDeviceAdded
    device: Device | None
    problem: str = ""


def _items(sources: Sequence[tuple[str, UsbDeviceAdded]]) -> list[Item]:
    """Build each device with its parent-hash: from a parent given alongside it, or read from
    sysfs. A recorded device's parent is looked for in the recordings only: the machine's sysfs
    at that path, if there is one, is another device."""
    by_path = {event.sys_path: event for _, event in sources}
    hashes: dict[str, str] = {}

    def lookup(parent: str, recorded: bool) -> str:
        if parent not in hashes:
            event = by_path.get(parent)
            try:
                if event is None and recorded:
                    raise ValueError("not in the recording")
                hashes[parent] = hash_of(event if event is not None else read_device(parent))
            except ValueError:
                hashes[parent] = ""
        return hashes[parent]
    items = []
    for source, event in sources:
        parent_hash = functools.partial(lookup, recorded=event.source == "umockdev")
        try:
            items.append(Item(source, event, describe(event, parent_hash_of(event, parent_hash))))
        except ValueError as exc:
            items.append(Item(source, event, None, str(exc)))
    return items


def _from_argument(argument: str) -> list[tuple[str, UsbDeviceAdded]]:
    if argument.endswith(".umockdev"):
        found = umockdev_devices(argument)
        if not found:
            raise SekishoError(f"{argument}: no USB device (DEVTYPE=usb_device) in this recording")
        return [(f"{argument}#{e.devpath}", e) for e in found]
    path = os.path.realpath(argument)
    if not os.path.isdir(path):
        raise SekishoError(f"{argument}: no such device (give a sysfs path like /sys/bus/usb/devices/1-2, "
                           "or a .umockdev file)")
    if not is_usb_device(path):
        raise SekishoError(f"{argument}: not a USB device (an interface or something else)")
    return [(argument, read_device(path, source="cli"))]


def present_items(root: str = USB_DEVICES) -> list[Item]:
    return _items([(e.sys_path, e) for e in enumerate_usb_devices(source="cli", root=root)])


def evaluate(rules: RuleSet, items: Iterable[Item]) -> list[dict[str, Any]]:
    """One object per device, in order: how the daemon would decide it. ``as_rule`` is the
    device as ``usbguard list-devices`` shows it (with the decision as its target);
    ``device_rule`` the line ``usbguard generate-policy`` (and ``usb generate``) writes for it.

    Rule conditions are decided as a daemon starting with these devices present would decide
    them, one device after another in this order: ``allowed-matches`` sees the devices allowed
    before it (a root hub, which the daemon keeps as found, if it is authorized), and the device
    itself if it is authorized now (``usb.target_is_allow``); ``localtime`` reads the time now;
    ``random`` takes a fresh draw, so a rule with it may decide otherwise on the next run."""
    results = []
    seen: list[tuple[Device, DeviceState, str]] = []
    """Each device decided so far: what it is, the state the daemon would leave it in, ``authorized``."""
    for item in items:
        e = item.event
        entry: dict[str, Any] = {"device": item.source, "sys_path": shown(e.sys_path), "port": shown(e.port),
                                 "id": shown(f"{e.vendor_id}:{e.product_id}"), "name": shown(e.name),
                                 "serial": shown(e.serial),
                                 "authorized": shown(e.authorized) or None}
        if item.device is None:
            entry.update(decision=Target.BLOCK.value, rule=UNREADABLE_RULE, line=None, text="", blocked_interfaces=[],
                         interfaces=[], as_rule=None, device_rule=None, error=shown(item.problem))
        else:
            state = DeviceState.NEW if e.parent_is_device else DeviceState.KEPT
            context = None
            if rules.conditional:
                context = conditions_now((d for d, s, authorized in [*seen, (item.device, state, e.authorized)]
                                          if target_is_allow(s, authorized)), random.random)
            verdict = rules.first_match(item.device, context)
            if state is DeviceState.NEW:
                state = DeviceState.ALLOWED if verdict.decision is Target.ALLOW else DeviceState.BLOCKED
            seen.append((item.device, state, e.authorized))
            entry.update(decision=verdict.decision.value, rule=verdict.rule, line=verdict.line,
                         text=shown(verdict.text),
                         blocked_interfaces=list(verdict.blocked_interfaces), interfaces=list(item.device.interfaces),
                         as_rule=item.device.as_rule(verdict.decision).to_text(),
                         device_rule=generated_rule(item.device).to_text(), error=None)
        results.append(entry)
    return results


def _print_entries(entries: list[dict[str, Any]], out: TextIO, *, show_state: bool) -> None:
    for entry in entries:
        state = ""
        if show_state:
            state = {"1": "  authorized", "0": "  not authorized"}.get(entry["authorized"] or "", "")
            if entry.get("state"):
                state += f"  ({entry['state']})"
        print(f"{entry['device']}  {entry['id']}  {json.dumps(entry['name'], ensure_ascii=False)}{state}", file=out)
        if entry["error"]:
            print(f"  {entry['decision']}  {entry['rule']}: {entry['error']}", file=out)
            continue
        print(f"  {entry['decision']}  {entry['rule']}" + (f"  {entry['text']}" if entry["text"] else ""), file=out)
        if entry["blocked_interfaces"]:
            print(f"  blocks interfaces {' '.join(entry['blocked_interfaces'])}", file=out)
        if show_state:
            print(f"  {entry['as_rule']}", file=out)


def no_rules() -> RuleSet:
    """The policy of a node with no ``[usb]`` section, for ``usb list``: no rule, the implicit
    target USBGuard's own default is (block)."""
    return RuleSet((), Target.BLOCK, "<no [usb] section>")


def _rules(rules_path: str | Path | None, implicit_target: str, rules_folder: str | Path | None = None) -> RuleSet:
    if implicit_target not in IMPLICIT_TARGETS:
        raise SekishoError(f"implicit target must be one of {', '.join(IMPLICIT_TARGETS)}, not {implicit_target!r}")
    return load_rules(rules_path, implicit_target, rules_folder)


_COLUMNS: tuple[Callable[[dict[str, Any]], str], ...] = (
    lambda e: e["decision"], lambda e: e["port"], lambda e: e["id"],
    lambda e: json.dumps(e["name"], ensure_ascii=False))


def _print_decisions(groups: Sequence[tuple[str, list[dict[str, Any]]]], implicit_target: str, out: TextIO) -> None:
    """``test-policy``'s text: under each source (a recording, a sysfs path, the devices present),
    one line per device: decision, port, id, name, and the rule that decided (where and as
    written), aligned, so that a migration's differences stand out; then the count of each
    decision."""
    entries = [e for _, group in groups for e in group]
    widths = [max(len(column(e)) for e in entries) for column in _COLUMNS]
    for source, group in groups:
        print(source, file=out)
        for e in group:
            cells = "  ".join(column(e).ljust(w) for column, w in zip(_COLUMNS, widths, strict=True))
            if e["error"]:
                why = f"{e['rule']}: cannot be decided: {e['error']}"
            elif e["line"] is None:
                why = f"{e['rule']}: no rule matches, implicit target {implicit_target}"
            else:
                why = f"{e['rule']}  {e['text']}"
            blocks = f"  (blocks interfaces {' '.join(e['blocked_interfaces'])})" if e["blocked_interfaces"] else ""
            print(f"  {cells}  {why}{blocks}", file=out)
    counts = Counter(e["decision"] for e in entries)
    print(f"{len(entries)} device{'' if len(entries) == 1 else 's'}: "
          + ", ".join(f"{counts[t]} {t}" for t in IMPLICIT_TARGETS if counts[t]), file=out)


# ----------------------------------------------------------------------------- commands
def usb_test_policy(rules_path: str | Path | None, devices: Sequence[str] = (), *, implicit_target: str = "block",
                    rules_folder: str | Path | None = None, as_json: bool = False, out: TextIO | None = None) -> int:
    """``sekisho usb test-policy RULES [DEVICE...]``: decide each device (a sysfs path, or every
    USB device of a .umockdev recording; none given: the devices present) by the rules, in the
    order given. RULES is a rules file or a rules folder; ``rules_folder`` is a folder read after
    the file, as USBGuard reads RuleFile then RuleFolder. ``implicit_target`` stands in for the
    config's, as USBGuard's ImplicitPolicyTarget does. Nothing is written to sysfs."""
    out = out or sys.stdout
    rules = _rules(rules_path, implicit_target, rules_folder)
    if devices:
        found = [(argument, pair) for argument in devices for pair in _from_argument(argument)]
        items = _items([pair for _, pair in found])
        origins = [argument for argument, _ in found]
    else:
        items = present_items()
        origins = ["devices present"] * len(items)
    entries = evaluate(rules, items)
    if as_json:
        json.dump(entries, out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif not entries:
        print("no USB devices", file=out)
    else:
        groups: dict[str, list[dict[str, Any]]] = {}
        for origin, entry in zip(origins, entries, strict=True):
            groups.setdefault(origin, []).append(entry)
        _print_decisions(list(groups.items()), implicit_target, out)
    return 0


def usb_list(rules: RuleSet, *, as_json: bool = False, status: dict[str, Any] | None = None,
             out: TextIO | None = None, root: str = USB_DEVICES) -> int:
    """``sekisho usb list``: every device present, whether the kernel has it authorized, how
    the rules decide it and by which line, and the device as a rule (paste it into the rules
    file). ``rules`` are the config's, as it parsed them (``UsbConfig.rules``): the file is not
    read again. ``status`` is the running daemon's ``usb.list`` answer, if there is a daemon: it
    adds what the rules file does not know (held devices, exceptions)."""
    out = out or sys.stdout
    entries = evaluate(rules, present_items(root))
    if status is not None:
        known = {d["sys_path"]: d for d in status.get("devices", [])}
        for entry in entries:
            daemon_view = known.get(entry["sys_path"])
            entry["state"] = daemon_view["state"] if daemon_view else None
            entry["exception"] = daemon_view["exception"] if daemon_view else None
    for entry in entries:
        entry["device"] = entry["port"]
    if as_json:
        json.dump({"devices": entries, "exceptions": (status or {}).get("exceptions", [])}, out, indent=2,
                  ensure_ascii=False)
        out.write("\n")
        return 0
    if not entries:
        print("no USB devices", file=out)
    _print_entries(entries, out, show_state=True)
    for exc in (status or {}).get("exceptions", []):
        print(f"exception {exc['id']}: {exc['match']} allowed until {exc['until']} by {exc['actor']}", file=out)
    return 0


def generated_rule(device: Device, *, with_hash: bool = True, ports: str = "noserial", hash_only: bool = False) -> Rule:
    """A device as ``usbguard generate-policy`` writes it (``PolicyGenerator::dmHookDeviceEvent``
    and ``DevicePrivate::getDeviceRule``, src/CLI/PolicyGenerator.cpp, src/Library/DevicePrivate.cpp):
    id, serial, name, hash, parent-hash, via-port (by default only for a device without a serial
    number, whose port is then all that tells two of them apart), with-interface,
    with-connect-type. ``with_hash`` False drops both hashes (``-X``); ``hash_only`` keeps the
    hashes and the port alone (``-H``, which wins over ``-X`` as it does in USBGuard)."""
    port = ports == "all" or (ports == "noserial" and not device.serial)
    hashes = [Attribute(k, (v,)) for k, v in ((Key.HASH, device.hash), (Key.PARENT_HASH, device.parent_hash)) if v]
    via_port = [Attribute(Key.VIA_PORT, (device.via_port,))] if port else []
    if hash_only:
        return Rule(Target.ALLOW, (*hashes, *via_port))
    attributes = [Attribute(Key.ID, (DeviceId.parse(device.id),)), Attribute(Key.SERIAL, (device.serial,)),
                  Attribute(Key.NAME, (device.name,)), *(hashes if with_hash else ()), *via_port]
    if device.interfaces:
        attributes.append(Attribute(Key.WITH_INTERFACE, tuple(InterfaceType.parse(i) for i in device.interfaces)))
    attributes.append(Attribute(Key.WITH_CONNECT_TYPE, (device.with_connect_type,)))
    return Rule(Target.ALLOW, tuple(attributes))


def usb_generate(*, out: TextIO | None = None, with_hash: bool = True, ports: str = "noserial",
                 hash_only: bool = False, catch_all: str | None = None, root: str = USB_DEVICES) -> int:
    """``sekisho usb generate``: a starting policy that allows exactly the devices present now,
    one rule per device, line for line what ``usbguard generate-policy`` prints for them (in its
    enumeration order, ``drivers.udev.usbguard_order``); only the header comments differ.
    ``ports``: ``noserial`` (USBGuard's default), ``all`` (``-p``) or ``none`` (``-P``).
    ``catch_all``: end with this target's bare rule (``-t``). A device USBGuard would refuse
    (descriptors that do not parse) is left out by both; here a comment says why."""
    out = out or sys.stdout
    if ports not in ("noserial", "all", "none"):
        raise SekishoError(f"ports must be noserial, all or none, not {ports!r}")
    if catch_all is not None and catch_all not in IMPLICIT_TARGETS:
        raise SekishoError(f"catch-all must be one of {', '.join(IMPLICIT_TARGETS)}, not {catch_all!r}")
    items = present_items(root)
    now = utc_now()
    print(f"# USB rules generated by `sekisho usb generate` on {socket.gethostname()} at {now}:\n"
          f"# one allow rule for each of the {len(items)} USB devices present then, root hubs and hubs included.\n"
          "# Review every line and delete what this workstation must not take; the first rule that\n"
          "# matches a device decides, and a device no rule matches gets [usb] implicit_target.\n"
          "# The language is sekisho-rules(5) (docs/sekisho-rules.5.md).", file=out)
    for item in items:
        if item.device is None:
            print(f"# {item.event.port}: left out, it cannot be described: {item.problem}", file=out)
            continue
        print(generated_rule(item.device, with_hash=with_hash, ports=ports, hash_only=hash_only).to_text(), file=out)
    if catch_all:
        print(catch_all, file=out)
    return 0


# ----------------------------------------------------------------------------- the usb.allow request
def allow_request(match: str, minutes: float, interfaces: str = "rules") -> dict[str, Any]:
    """The control request ``sekisho usb allow MATCH --minutes N [--interfaces all]`` sends;
    checks MATCH first, so a typo is reported without a daemon."""
    Match.parse(match)
    return {"op": "usb.allow", "match": match, "minutes": minutes, "interfaces": interfaces}


def format_allow_reply(reply: dict[str, Any]) -> str:
    devices = ", ".join(reply.get("devices") or []) or "none present yet"
    held = f"; held until a desk is in use: {', '.join(reply['held'])}" if reply.get("held") else ""
    every = "; every interface" if reply.get("interfaces") == "all" else ""
    return (f"exception {reply['exception']} until {reply['until']}; authorized now: {devices}{held}{every}; "
            f"bound to the descriptors hash {reply.get('hash')}")
