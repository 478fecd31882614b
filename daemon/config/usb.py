"""``[usb]``: the rules file and how the node applies it, timed exceptions, supervisor approval.

The rules file is read and parsed here, once, while the config is checked: ``UsbConfig.rules``
is what the controller and ``sekisho usb list`` decide by, and nothing reads the file again. A
broken rule line is a config problem like any other, reported as the parser words it
(``FILE:LINE:COL: what``, the line and a caret). Without a readable, parseable rules file there
is no ``UsbConfig``, and the checks that need one are skipped: the file's problems say enough.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sekisho.drivers.options import REQUIRED, Option, between, one_of, strings
from sekisho.policies.approval import on_ports
from sekisho.policies.usbrules import RuleSet, RuleSyntaxError, Target

from .checker import Checker, optional_topic_name
from .desks import DeskConfig
from .readers import ReaderConfig

USB = {
    "rules": Option(str, REQUIRED, "The USB rules file (sekisho-rules(5), docs/sekisho-rules.5.md); relative to "
                    "this config file's folder. A broken line stops check-config."),
    "implicit_target": Option(str, "block", "What a device no rule matches gets: allow, block or reject.",
                              one_of("allow", "block", "reject")),
    "present_devices": Option(str, "apply", "Devices present at start: apply (decide them by the rules) or keep "
                              "(leave them as the kernel has them).", one_of("apply", "keep")),
    "hold_hid_while_locked": Option(bool, True, "Hold a keyboard, mouse or other HID device plugged while no desk "
                                    "of this node is in use; decide it when one is."),
    "exception_max_minutes": Option(float, 480.0, "Longest timed exception a supervisor may grant (sekisho usb "
                                    "allow).", between(1, 1440)),
    "host": Option(str, "", "The <host> in usb/<host>/event; empty means [site] node.", optional_topic_name),
    "supervisor_levels": Option(list, [], "Levels whose holders may allow the device blocked last, at a desk of "
                                "this node: their card at the desk's reader, then the confirmation. Empty: only "
                                "sekisho usb allow and signed commands can.", strings()),
    "approval_confirm": Option(str, "card", "How the supervisor confirms: card (take it out and present it again) "
                               "or pin (their PIN on the desk reader's PIN pad).", one_of("card", "pin")),
    "approval_minutes": Option(float, 15.0, "How long a device allowed at the desk by a supervisor's card stays "
                               "allowed.", between(1, 1440)),
    "approval_interfaces": Option(str, "rules", "What a device allowed at the desk gets of the interfaces a "
                                  "block-interface rule blocks: rules (they stay blocked) or all (authorized too).",
                                  one_of("rules", "all")),
    "approval_window_s": Option(float, 120.0, "How long after a device is blocked a supervisor's card may still "
                                "allow it.", between(5, 3600)),
    "alarm_on_block": Option(bool, False, "Raise a usb_blocked alarm (an incident: it waits for a person) each "
                             "time a device plugged in is blocked or rejected; devices found at start do not "
                             "raise it. Every decision is an event on usb/<host>/event either way."),
    "confirm_s": Option(float, 30.0, "How long a supervisor has to confirm (PIN, or the card out and in) after the "
                        "first presentation.", between(5, 300)),
}


@dataclass(frozen=True)
class UsbConfig:
    rules_file: Path
    rules: RuleSet
    """Parsed once, by the config check: the daemon never reads the file again."""
    implicit_target: str
    present_devices: str
    hold_hid_while_locked: bool
    exception_max_minutes: float
    host: str
    supervisor_levels: frozenset[str] = frozenset()
    approval_confirm: str = "card"
    approval_minutes: float = 15.0
    approval_interfaces: str = "rules"
    approval_window_s: float = 120.0
    confirm_s: float = 30.0
    alarm_on_block: bool = False


def read_usb(c: Checker, path: Path, raw: Any, node: str) -> UsbConfig | None:
    """``path``: the config file, whose folder a relative ``rules`` is taken from."""
    values = c.section("usb", c.table("usb", raw), USB)
    if not isinstance(values["rules"], str):
        return None
    rules_file = (path.parent / values["rules"]).resolve()
    try:
        text = rules_file.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        c.unreadable("usb.rules", rules_file, exc)
        return None
    try:
        # Verdicts cite the rules by this name: the whole path, as the daemon publishes them.
        rules = RuleSet.parse(text, str(rules_file), Target(values["implicit_target"]))
    except RuleSyntaxError as exc:
        # Already one "file:line:col: what" line per problem, with the line and a caret.
        c.problems.extend(str(exc).split("\n"))
        return None
    if values["approval_minutes"] > values["exception_max_minutes"]:
        c.problem("usb.approval_minutes", f"{values['approval_minutes']:g} is more than exception_max_minutes "
                  f"({values['exception_max_minutes']:g})")
    return UsbConfig(**{**values, "rules": rules, "host": values["host"] or node,
                        "supervisor_levels": frozenset(values["supervisor_levels"])}, rules_file=rules_file)


def link_usb(c: Checker, usb: UsbConfig, levels: Mapping[str, object], desks: Mapping[str, DeskConfig],
             readers: Mapping[str, ReaderConfig]) -> None:
    """Supervisor approval names levels that exist, and desks where it can happen."""
    for level in sorted(usb.supervisor_levels - set(levels)):
        c.no_such("usb.supervisor_levels", "level", level, levels)
    if usb.supervisor_levels and not desks:
        c.problem("usb.supervisor_levels", "a supervisor approves at a desk, and this node has no [desks]")
    if usb.supervisor_levels:
        _desk_ports(c, desks)
    if usb.supervisor_levels and usb.approval_confirm == "pin":
        for name, r in readers.items():
            if r.desk and not r.pin_pad and r.driver != "sim":
                c.problem("usb.approval_confirm", f"pin needs a PIN pad on every desk's reader; readers.{name} "
                          "has no pin_pad")


def _desk_ports(c: Checker, desks: Mapping[str, DeskConfig]) -> None:
    """Approval offers the device blocked last at the desk: with more than one desk on the node,
    each must say which ports are its own, and no port may be two desks'."""
    ports = {name: desk.usb_ports for name, desk in desks.items()}
    if len(ports) > 1:
        for name in sorted(n for n, p in ports.items() if not p):
            c.problem(f"desks.{name}.usb_ports", "this node has more than one desk, so each desk needs its usb_ports: "
                      "otherwise a supervisor's approval at one desk could allow a device plugged at another")
    owner: dict[str, str] = {}
    for name, own in sorted(ports.items()):
        for port in own:
            clash = next((o for p, o in owner.items() if on_ports(port, (p,)) or on_ports(p, (port,))), None)
            if clash is not None and clash != name:
                c.problem(f"desks.{name}.usb_ports",
                          f"{port} is also a port of desk {clash!r}: a port belongs to one desk")
            owner[port] = name
