"""The config file: read with tomllib, checked whole, returned as frozen values.

Checking runs in two passes, as mqtt-io does: first every key against the schema below
(known keys only, types, ranges, defaults), then the references between sections (a reader
naming a door that does not exist). Every problem is one line naming the file and the dotted
key, all problems are reported together, and nothing starts while there is one.
``sekisho check-config`` calls ``load`` and nothing else, so it checks exactly what start-up
checks.

The schema is also the documentation: every key has a default and a help text, and a test
holds examples/sekisho.toml to mention each of them.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from sekisho.drivers import registry
from sekisho.drivers.base import REQUIRED, Option
from sekisho.drivers.gpio import GpioOutput, chip_path
from sekisho.policies.access import Auth, AuthWindow, DoorRules, Level, Passback, SiteRules
from sekisho.policies.schedule import DAYS, HOLIDAY, Schedule, TimeRange
from sekisho.policies.usbrules import RuleSet, RuleSyntaxError, Target

from .errors import ConfigError, PermissionDenied

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""Names become MQTT topic segments and file names: no '/', '+', '#', spaces or capitals."""

Check = Callable[[Any], str | None]
"""Returns what is wrong with a value, or None."""


@dataclass(frozen=True)
class Key:
    type: type
    default: Any
    help: str
    check: Check | None = None


def _one_of(*allowed: Any) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def _between(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _name(v: str) -> str | None:
    return None if NAME.match(v) else "must be lower-case letters, digits and '-' (it becomes a topic segment)"


def _timezone(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r} (example: Asia/Tokyo)"
    return None


def _mqtt_url(v: str) -> str | None:
    try:
        parse_mqtt_url(v)
    except ValueError as exc:
        return str(exc)
    return None


def parse_mqtt_url(url: str) -> tuple[bool, str, int]:
    """``mqtt://host:port`` or ``mqtts://host:port`` to (tls, host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"{url!r} must be only scheme, host and port (credentials go in username/password_file)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a port that is not a number from 1 to 65535") from None
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname, port or (8883 if tls else 1883)


def _hhmm(v: str) -> str | None:
    try:
        dt.time.fromisoformat(v)
    except ValueError:
        return f"{v!r} is not a time of day like 04:00"
    return None


def _dates(v: list) -> str | None:
    bad = [x for x in v if not isinstance(x, dt.date) or isinstance(x, dt.datetime)]
    return f"must be TOML dates like 2026-01-01 (unquoted), not {bad[0]!r}" if bad else None


def _strings(check: Check | None = None) -> Check:
    def run(v: list) -> str | None:
        for i, x in enumerate(v):
            if not isinstance(x, str):
                return f"item {i + 1} must be a string, not {_kind(x)} {x!r}"
            if check and (wrong := check(x)):
                return f"item {i + 1}: {wrong}"
        return None
    return run


def _ed25519_public(v: str) -> str | None:
    try:
        raw = base64.b64decode(v, validate=True)
    except ValueError:
        return "is not base64"
    return None if len(raw) == 32 else f"is {len(raw)} bytes; an Ed25519 public key is 32"


def _op_pattern(v: str) -> str | None:
    return None if re.fullmatch(r"[a-z*][a-z.*]*", v) else f"{v!r} is not an op or a pattern like door.*"


def _time_range(v: str) -> str | None:
    try:
        TimeRange.parse(v)
    except ValueError as exc:
        return str(exc)
    return None


SITE = {
    "id": Key(str, REQUIRED, "The site's name; the topic segment after sekisho/v1/.", _name),
    "node": Key(str, REQUIRED, "This node's name, unique in the site.", _name),
    "timezone": Key(str, "UTC", "The site's time zone, for schedules and reports.", _timezone),
    "publish_names": Key(bool, False, "Publish people's names on the bus instead of pseudonyms."),
    "holidays": Key(list, [], "Dates on which schedules use their holiday ranges instead of the weekday's.", _dates),
    "passback_reset": Key(str, "04:00", "Local time of day at which anti-passback forgets where everyone is.", _hhmm),
    "pin_max_wrong": Key(int, 3, "Wrong PINs in a row that lock a card out.", _between(1, 20)),
    "retention_days": Key(int, 365, "Days events and audit rows are kept; older ones are deleted daily (and by "
                          "sekisho purge).", _between(1, 3650)),
    "pin_lockout_s": Key(int, 300, "Seconds a card stays locked out after too many wrong PINs.", _between(1, 86400)),
}
MQTT = {
    "url": Key(str, "mqtt://127.0.0.1:1883", "Broker: mqtt://host:port, or mqtts://host:port for TLS.", _mqtt_url),
    "username": Key(str, "", "Broker user name; empty for none."),
    "password_file": Key(str, "", "File holding the broker password; never the password itself."),
    "protocol": Key(int, 5, "MQTT protocol version: 5, or 3 for 3.1.1.", _one_of(3, 5)),
    "ca_file": Key(str, "", "CA bundle to check the broker's certificate; empty means the system's."),
    "cert_file": Key(str, "", "Client certificate for mutual TLS; empty for none."),
    "key_file": Key(str, "", "Private key of cert_file."),
    "client_id": Key(str, "", "MQTT client id; empty means sekisho-<site>-<node>."),
    "keepalive_s": Key(int, 30, "Seconds between keep-alive pings.", _between(5, 3600)),
    "reconnect_max_s": Key(int, 30, "Longest wait between reconnect attempts; they start at 1 s and double.",
                           _between(1, 3600)),
    "flush_timeout_s": Key(float, 5.0, "At shutdown, how long to wait for the broker to acknowledge what is queued.",
                           _between(0, 600)),
}
READER = {
    "driver": Key(str, REQUIRED, "How the reader is attached: " + ", ".join(sorted(registry.KINDS)) + "."),
    "door": Key(str, "", "The door this reader serves (a [doors.<name>] section) ..."),
    "direction": Key(str, "", "... and which way a person passes when using it: in or out.",
                     lambda v: v and _one_of("in", "out")(v)),
    "desk": Key(str, "", "... or the desk whose card slot it is (a [desks.<name>] section)."),
    "pin_pad": Key(dict, {}, "The reader's own PIN pad when it is a separate device: { driver = \"evdev\", "
                   "device = \"/dev/input/by-id/...\" }; empty: none (a sim reader takes `sekisho sim pin`)."),
}
DESK = {
    "seat": Key(str, "seat0", "The logind seat whose user sessions (graphical and text) this desk locks."),
    "area": Key(str, "", "The area the desk stands in ([areas.<name>]); a card whose holder has no recorded "
                "entry into it is tailgating. Empty: no tailgating check.", lambda v: v and _name(v)),
    "unlock_on_card": Key(bool, False, "Unlock the session when the holder's card comes back; otherwise the "
                          "holder types their password at the locker as usual."),
    "tailgating": Key(str, "refuse", "A card with no recorded entry into the area: refuse (the desk stays "
                      "locked) or flag (allowed). Both raise the tailgating alarm.", _one_of("refuse", "flag")),
    "unknown_occupancy": Key(str, "allow", "When nobody knows who is in the area (no door node has published "
                             "it): allow (and flag) or refuse.", _one_of("allow", "refuse")),
    "away_timeout_s": Key(float, 600.0, "After leave-seat, how long the card may stay in the slot before the "
                          "desk treats it as removed.", _between(10, 86400)),
    "lock_confirm_s": Key(float, 2.0, "How long logind may take to confirm the lock (LockedHint).",
                          _between(0.1, 60)),
    "lock_retries": Key(int, 1, "LockSession calls after the first, when the lock is not confirmed.",
                        _between(0, 10)),
    "lock_fallback": Key(str, "none", "When the lock is never confirmed: none, or terminate (end the session: "
                         "unsaved work is lost, the screen is safe).", _one_of("none", "terminate")),
    "lock_fallback_command": Key(list, [], "Instead of lock_fallback, a command to run (argv array; {session}, "
                                 "{seat} and {user} are replaced).", _strings()),
    "lock_confirm_command": Key(list, [], "A command that must also exit 0 before a graphical session's lock counts "
                                "as confirmed (argv array, no shell; {session}, {seat} and {user} are replaced); "
                                "LockedHint alone can be set by the session's own user. Its failure is a failed "
                                "lock. Empty: LockedHint alone.", _strings()),
    "unlocked_without_card": Key(str, "relock", "A user session that becomes unlocked or active while no holder's "
                                 "card is in the slot: relock (lock it again) or alarm_only. Both raise the "
                                 "unlocked_without_card alarm.", _one_of("relock", "alarm_only")),
    "tty_lock": Key(str, "terminate", "A text-console session on the seat, whose lock no screen locker confirms: "
                    "terminate (end it) or alarm_only (leave it, lock_failed alarm).",
                    _one_of("terminate", "alarm_only")),
}
DOOR = {
    "area_in": Key(str, "", "The area a person enters through the door's in-reader ([areas.<name>]).",
                   lambda v: v and _name(v)),
    "area_out": Key(str, "", "The area a person enters through the door's out-reader ([areas.<name>]).",
                    lambda v: v and _name(v)),
    "auth": Key(str, "card", "How a person proves who they are: card, card_and_pin, or free (no card).",
                _one_of(*(a.value for a in Auth))),
    "auth_out": Key(str, "", "Authentication at the out-reader, if not the same as auth (e.g. card to leave).",
                    lambda v: v and _one_of(*(a.value for a in Auth))(v)),
    "auth_schedules": Key(list, [], "Times with another authentication: [{ schedule = \"office-hours\", "
                          "auth = \"free\" }]; the first whose schedule is active wins, else auth."),
    "pin_timeout_s": Key(int, 10, "Seconds within which the PIN must follow the card.", _between(3, 120)),
    "unlock_s": Key(float, 5.0, "Seconds the strike stays released after a grant or an exit request.",
                    _between(0.5, 600)),
    "held_open_s": Key(int, 30, "Seconds the door may stand open before the held-open alarm.", _between(1, 3600)),
    "fire_exit": Key(bool, False, "Release this door when a fire input fires, until a person resets its mode."),
    "strike": Key(dict, {"driver": "none"}, "What releases the door: { driver = \"none\" } records only; "
                  "\"sim\"; \"command\" with unlock and lock argv arrays; \"mqtt\" with a relay topic."),
}
STRIKES: dict[str, Mapping[str, Key | Option]] = {
    "none": {},
    "sim": {},
    "command": {
        "unlock": Key(list, REQUIRED, "The command that releases the strike, as an argv array.", _strings()),
        "lock": Key(list, REQUIRED, "The command that locks it again.", _strings()),
    },
    "gpio": dict(GpioOutput.OPTIONS),
    "mqtt": {
        "topic": Key(str, REQUIRED, "The relay's command topic on the site's broker (e.g. cmnd/door-a/POWER)."),
        "unlock_payload": Key(str, "ON", "Payload that releases the strike."),
        "lock_payload": Key(str, "OFF", "Payload that locks it."),
    },
}
USB = {
    "rules": Key(str, REQUIRED, "The USB rules file (sekisho-rules(5), docs/sekisho-rules.5.md); relative to "
                 "this config file's folder. A broken line stops check-config."),
    "implicit_target": Key(str, "block", "What a device no rule matches gets: allow, block or reject.",
                           _one_of("allow", "block", "reject")),
    "present_devices": Key(str, "apply", "Devices present at start: apply (decide them by the rules) or keep "
                           "(leave them as the kernel has them).", _one_of("apply", "keep")),
    "hold_hid_while_locked": Key(bool, True, "Hold a keyboard, mouse or other HID device plugged while no desk of "
                                 "this node is in use; decide it when one is."),
    "exception_max_minutes": Key(float, 480.0, "Longest timed exception a supervisor may grant (sekisho usb allow).",
                                 _between(1, 1440)),
    "host": Key(str, "", "The <host> in usb/<host>/event; empty means [site] node.", lambda v: v and _name(v)),
    "supervisor_levels": Key(list, [], "Levels whose holders may allow the device blocked last, at a desk of this "
                             "node: their card at the desk's reader, then the confirmation. Empty: only sekisho usb "
                             "allow and signed commands can.", _strings()),
    "approval_confirm": Key(str, "card", "How the supervisor confirms: card (take it out and present it again) or "
                            "pin (their PIN on the desk reader's PIN pad).", _one_of("card", "pin")),
    "approval_minutes": Key(float, 15.0, "How long a device allowed at the desk by a supervisor's card stays allowed.",
                            _between(1, 1440)),
    "approval_interfaces": Key(str, "rules", "What a device allowed at the desk gets of the interfaces a "
                               "block-interface rule blocks: rules (they stay blocked) or all (authorized too).",
                               _one_of("rules", "all")),
    "approval_window_s": Key(float, 120.0, "How long after a device is blocked a supervisor's card may still allow it.",
                             _between(5, 3600)),
    "confirm_s": Key(float, 30.0, "How long a supervisor has to confirm (PIN, or the card out and in) after the "
                     "first presentation.", _between(5, 300)),
}
COMMANDS = {
    "max_skew_s": Key(float, 30.0, "How far a signed command's ts may be from this node's clock, either way; "
                      "older or newer commands are refused.", _between(1, 300)),
}
COMMAND_KEY = {
    "public_key": Key(str, REQUIRED, "The key's Ed25519 public key: its 32 raw bytes in base64, as "
                      "sekisho cmd keygen or sekisho cmd public-key prints it.", lambda v: _ed25519_public(v)),
    "ops": Key(list, REQUIRED, "The ops this key may run, as patterns: [\"usb.allow\"], [\"door.*\"], [\"*\"].",
               lambda v: _strings(_op_pattern)(v) or (None if v else "must name at least one op")),
}
INPUT = {
    "driver": Key(str, REQUIRED, "How the input is attached: " + ", ".join(sorted(registry.INPUTS)) + "."),
    "kind": Key(str, REQUIRED, "contact (active = door open), exit (request-to-exit button), fire (fire alarm) "
                "or leave_seat (a desk's leave-seat button).", _one_of("contact", "exit", "fire", "leave_seat")),
    "door": Key(str, "", "The door a contact or exit button belongs to; a fire input serves every fire exit."),
    "desk": Key(str, "", "The desk a leave_seat button belongs to."),
}
SCHEDULE = {day: Key(list, [], f"Time ranges on {label}, e.g. [\"08:30-12:00\", \"13:00-17:30\"]; "
                     "a range that ends before it starts crosses midnight.", _strings(_time_range))
            for day, label in zip(DAYS + (HOLIDAY,), ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays",
                                                      "Saturdays", "Sundays", "the site's holidays"))}
LEVEL = {
    "doors": Key(list, [], "The doors this level opens.", _strings()),
    "desks": Key(list, [], "The desks whose sessions this level may use.", _strings()),
    "schedule": Key(str, "always", "When: a [schedules.<name>] section, or always."),
    "override": Key(bool, False, "Also opens its doors in lockdown (security staff, fire wardens)."),
}
AREA = {
    "passback": Key(str, "off", "Anti-passback: off; soft (grant and flag); hard (deny) entering this area "
                    "while recorded in it, or leaving it while not.", _one_of(*(p.value for p in Passback))),
}


@dataclass(frozen=True)
class SiteConfig:
    id: str
    node: str
    timezone: str
    publish_names: bool
    holidays: tuple[dt.date, ...]
    passback_reset: str
    pin_max_wrong: int
    retention_days: int
    pin_lockout_s: int


@dataclass(frozen=True)
class MqttConfig:
    url: str
    username: str
    password_file: str
    protocol: int
    ca_file: str
    cert_file: str
    key_file: str
    client_id: str
    keepalive_s: int
    reconnect_max_s: int
    flush_timeout_s: float

    @property
    def endpoint(self) -> tuple[bool, str, int]:
        return parse_mqtt_url(self.url)


@dataclass(frozen=True)
class ReaderConfig:
    name: str
    driver: str
    door: str
    direction: str
    desk: str
    pin_pad: Mapping[str, Any]
    """``driver`` and that PIN pad driver's keys, defaults filled in; empty for none."""
    options: Mapping[str, Any]
    """The driver's own keys, defaults filled in."""


@dataclass(frozen=True)
class DoorConfig:
    name: str
    area_in: str
    area_out: str
    auth: str
    auth_out: str
    auth_schedules: tuple[Mapping[str, str], ...]
    pin_timeout_s: int
    unlock_s: float
    held_open_s: int
    fire_exit: bool
    strike: Mapping[str, Any]
    """``driver`` and that driver's keys, defaults filled in."""


@dataclass(frozen=True)
class InputConfig:
    name: str
    driver: str
    kind: str
    door: str
    desk: str
    options: Mapping[str, Any]


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


@dataclass(frozen=True)
class CommandKeyConfig:
    name: str
    public_key: bytes
    """Raw, 32 bytes."""
    ops: tuple[str, ...]


@dataclass(frozen=True)
class CommandsConfig:
    max_skew_s: float = 30.0
    keys: Mapping[str, CommandKeyConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class DeskConfig:
    name: str
    seat: str
    area: str
    unlock_on_card: bool
    tailgating: str
    unknown_occupancy: str
    away_timeout_s: float
    lock_confirm_s: float
    lock_retries: int
    lock_fallback: str
    lock_fallback_command: tuple[str, ...]
    lock_confirm_command: tuple[str, ...]
    unlocked_without_card: str
    tty_lock: str
    levels: frozenset[str]
    """The levels that may use this desk (from [levels.<name>] desks)."""


@dataclass(frozen=True)
class Config:
    path: Path
    site: SiteConfig
    mqtt: MqttConfig
    readers: Mapping[str, ReaderConfig] = field(default_factory=dict)
    doors: Mapping[str, DoorConfig] = field(default_factory=dict)
    inputs: Mapping[str, InputConfig] = field(default_factory=dict)
    desks: Mapping[str, DeskConfig] = field(default_factory=dict)
    usb: UsbConfig | None = None
    """None when the config has no [usb] section: this node does not control USB."""
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    rules: SiteRules = field(default_factory=lambda: SiteRules({}, {}))
    """Doors, levels, schedules and areas as the access policy takes them."""
    areas: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Things that load but can never take effect (a level that can never open anything ...)."""


TOP = ("site", "mqtt", "areas", "schedules", "levels", "doors", "desks", "readers", "inputs", "usb", "commands")


class _Checker:
    """Collects problems while converting one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.denied: list[str] = []
        """Files the config names that the kernel would not let this process read."""

    def unreadable(self, key: str, file: str | Path, exc: OSError) -> None:
        if isinstance(exc, PermissionError):
            self.denied.append(str(file))
        self.problem(key, f"cannot read {file}: {exc.strerror or exc}")

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.path}: {key}: {text}")

    def table(self, where: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(where, f"must be a table ([{where}]), not {_kind(value)}")
        return {}

    def section(self, where: str, data: dict[str, Any], schema: Mapping[str, Key | Option],
                extra_ok: frozenset[str] = frozenset()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in data:
            if key not in schema and key not in extra_ok:
                self.problem(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(schema))})")
        for key, spec in schema.items():
            dotted = f"{where}.{key}"
            if key not in data:
                if spec.default is REQUIRED:
                    self.problem(dotted, "missing (required)")
                out[key] = None if spec.default is REQUIRED else spec.default
                continue
            value = data[key]
            if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
                self.problem(dotted, f"must be {_kind_name(spec.type)}, not {_kind(value)} {value!r}")
                # Never used (a problem stops the load); it only keeps the checking going.
                out[key] = None if spec.default is REQUIRED else spec.default
                continue
            check = getattr(spec, "check", None)
            wrong = check(value) if check else None
            if wrong:
                self.problem(dotted, wrong)
                value = None if spec.default is REQUIRED else spec.default  # as above: keeps checking going
            out[key] = value
        return out


def _kind_name(t: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "an array", dict: "a table"}.get(t, t.__name__)


def _kind(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "a table",
            list: "an array", dt.date: "a date", dt.datetime: "a date-time"}.get(type(value), type(value).__name__)


def load(path: str | Path, *, mqtt_url: str | None = None) -> Config:
    """Read and check a config file. Raises ConfigError naming every problem."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(content.decode())
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text (byte {content[exc.start]:#04x}); "
                           f"save the file as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None

    c = _Checker(path)
    for key in data:
        if key not in TOP:
            c.problem(key, f"unknown section (known: {', '.join(TOP)})")
    site = c.section("site", c.table("site", data.get("site", {})), SITE)
    mqtt = c.section("mqtt", c.table("mqtt", data.get("mqtt", {})), MQTT)
    if mqtt_url is not None:
        if wrong := _mqtt_url(mqtt_url):
            c.problems.append(f"--mqtt: {wrong}")
        else:
            mqtt["url"] = mqtt_url
    if mqtt.get("password_file"):
        _check_readable(c, "mqtt.password_file", mqtt["password_file"])
    for key in ("ca_file", "cert_file", "key_file"):
        if mqtt.get(key):
            _check_readable(c, f"mqtt.{key}", mqtt[key])
    if bool(mqtt.get("cert_file")) != bool(mqtt.get("key_file")):
        c.problem("mqtt.cert_file", "cert_file and key_file go together")

    areas = {}
    for name, raw in c.table("areas", data.get("areas", {})).items():
        where = f"areas.{name}"
        if wrong := _name(name):
            c.problem(where, f"area name {wrong}")
        stance = c.section(where, c.table(where, raw), AREA).get("passback")
        areas[name] = Passback(stance) if stance in Passback.__members__.values() else Passback.OFF

    schedules = {"always": Schedule.always()}
    for name, raw in c.table("schedules", data.get("schedules", {})).items():
        where = f"schedules.{name}"
        if name == "always":
            c.problem(where, "'always' is built in and cannot be redefined")
            continue
        values = c.section(where, c.table(where, raw), SCHEDULE)
        ranges = {k: tuple(TimeRange.parse(x) for x in v) if not _strings(_time_range)(v) else ()
                  for k, v in values.items()}
        schedules[name] = Schedule(name, tuple(ranges[d] for d in DAYS), ranges[HOLIDAY])

    def schedule(key: str, name: str) -> Schedule | None:
        if name not in schedules:
            c.problem(key, f"no schedule {name!r} (schedules: {', '.join(sorted(schedules))})")
        return schedules.get(name)

    doors = {}
    door_rules = {}
    for name, raw in c.table("doors", data.get("doors", {})).items():
        where = f"doors.{name}"
        if wrong := _name(name):
            c.problem(where, f"door name {wrong}")
        values = c.section(where, c.table(where, raw), DOOR)
        for key in ("area_in", "area_out"):
            if values.get(key) and values[key] not in areas:
                c.problem(f"{where}.{key}", f"no area {values[key]!r} (areas: {', '.join(sorted(areas)) or 'none'})")
        windows = []
        for i, item in enumerate(values.get("auth_schedules") or []):
            key = f"{where}.auth_schedules[{i + 1}]"
            item = c.section(key, c.table(key, item), {"schedule": Key(str, REQUIRED, ""),
                                                        "auth": Key(str, REQUIRED, "", DOOR["auth"].check)})
            sched = schedule(f"{key}.schedule", item["schedule"]) if isinstance(item.get("schedule"), str) else None
            if sched and item.get("auth") in Auth.__members__.values():
                windows.append(AuthWindow(sched, Auth(item["auth"])))
        values["auth_schedules"] = tuple(MappingProxyType(w) for w in values.get("auth_schedules") or [])
        strike = dict(values.get("strike") or {"driver": "none"})
        kind = strike.get("driver")
        if kind not in STRIKES:
            c.problem(f"{where}.strike.driver", f"unknown strike driver {kind!r} (known: {', '.join(STRIKES)})")
            values["strike"] = MappingProxyType({"driver": "none"})
        else:
            own = c.section(f"{where}.strike", strike, STRIKES[kind], extra_ok=frozenset({"driver"}))
            values["strike"] = MappingProxyType({"driver": kind, **own})
        doors[name] = DoorConfig(name=name, **values)
        if values.get("auth") in Auth.__members__.values():
            auth_out = Auth(values["auth_out"]) if values.get("auth_out") in Auth.__members__.values() else None
            door_rules[name] = DoorRules(name, Auth(values["auth"]), tuple(windows), values["area_in"] or "",
                                         values["area_out"] or "", auth_out)

    desk_values = {}
    for name, raw in c.table("desks", data.get("desks", {})).items():
        where = f"desks.{name}"
        if wrong := _name(name):
            c.problem(where, f"desk name {wrong}")
        values = c.section(where, c.table(where, raw), DESK)
        if values.get("area") and values["area"] not in areas:
            c.problem(f"{where}.area", f"no area {values['area']!r} (areas: {', '.join(sorted(areas)) or 'none'})")
        desk_values[name] = values

    levels = {}
    desk_levels: dict[str, set[str]] = {name: set() for name in desk_values}
    for name, raw in c.table("levels", data.get("levels", {})).items():
        where = f"levels.{name}"
        values = c.section(where, c.table(where, raw), LEVEL)
        for door in values.get("doors") or []:
            if isinstance(door, str) and door not in doors:
                c.problem(f"{where}.doors", f"no door {door!r} (doors: {', '.join(sorted(doors)) or 'none'})")
        for desk in values.get("desks") or []:
            if isinstance(desk, str) and desk not in desk_values:
                c.problem(f"{where}.desks", f"no desk {desk!r} (desks: {', '.join(sorted(desk_values)) or 'none'})")
            elif isinstance(desk, str):
                desk_levels[desk].add(name)
        if not values.get("doors") and not values.get("desks"):
            c.problem(where, "names no doors and no desks; a level must give access to something")
        sched = schedule(f"{where}.schedule", values["schedule"]) if isinstance(values.get("schedule"), str) else None
        if sched is not None:
            levels[name] = Level(name, frozenset(values.get("doors") or ()), sched, bool(values.get("override")))

    readers = {}
    for name, raw in c.table("readers", data.get("readers", {})).items():
        where = f"readers.{name}"
        if wrong := _name(name):
            c.problem(where, f"reader name {wrong}")
        raw = c.table(where, raw)
        kind = raw.get("driver")
        if isinstance(kind, str) and kind not in registry.KINDS:
            c.problem(f"{where}.driver", f"unknown driver {kind!r} (known: {', '.join(sorted(registry.KINDS))})")
            continue
        options = registry.load(kind).OPTIONS if isinstance(kind, str) else {}
        common = c.section(where, raw, READER, extra_ok=frozenset(options))
        own = c.section(where, {k: v for k, v in raw.items() if k in options}, options)
        if common.get("door") and common.get("desk"):
            c.problem(where, "serves a door or a desk, not both")
        elif common.get("desk"):
            if common["desk"] not in desk_values:
                c.problem(f"{where}.desk", f"no desk {common['desk']!r} (desks: {', '.join(sorted(desk_values)) or 'none'})")
            if common.get("direction"):
                c.problem(f"{where}.direction", "a desk's reader has no direction")
        elif common.get("door") and common["door"] not in doors:
            known = ", ".join(sorted(doors)) or "none are defined"
            c.problem(f"{where}.door", f"no door {common['door']!r} (doors: {known})")
        elif common.get("door") and not common.get("direction"):
            c.problem(f"{where}.direction", "missing: a door's reader is either in or out")
        elif not common.get("door") and not common.get("desk") and common.get("driver"):
            c.problem(where, "serves nothing: set door (and direction) or desk")
        pad = dict(common.get("pin_pad") or {})
        if pad:
            kind = pad.get("driver")
            if kind not in registry.PIN_PADS:
                c.problem(f"{where}.pin_pad.driver", f"unknown PIN pad driver {kind!r} "
                          f"(known: {', '.join(sorted(registry.PIN_PADS))})")
                pad = {}
            else:
                pad_options = registry.load(kind, registry.PIN_PADS).OPTIONS
                pad = {"driver": kind, **c.section(f"{where}.pin_pad", pad, pad_options, extra_ok=frozenset({"driver"}))}
        common["pin_pad"] = MappingProxyType(pad)
        readers[name] = ReaderConfig(name=name, options=MappingProxyType(own), **common)

    inputs = {}
    for name, raw in c.table("inputs", data.get("inputs", {})).items():
        where = f"inputs.{name}"
        if wrong := _name(name):
            c.problem(where, f"input name {wrong}")
        raw = c.table(where, raw)
        kind = raw.get("driver")
        if isinstance(kind, str) and kind not in registry.INPUTS:
            c.problem(f"{where}.driver", f"unknown driver {kind!r} (known: {', '.join(sorted(registry.INPUTS))})")
            continue
        options = registry.load(kind, registry.INPUTS).OPTIONS if isinstance(kind, str) else {}
        common = c.section(where, raw, INPUT, extra_ok=frozenset(options))
        own = c.section(where, {k: v for k, v in raw.items() if k in options}, options)
        if common.get("kind") in ("contact", "exit") and common.get("door") not in doors:
            c.problem(f"{where}.door", f"a {common['kind']} input needs a door (doors: {', '.join(sorted(doors))})")
        elif common.get("kind") == "leave_seat" and common.get("desk") not in desk_values:
            c.problem(f"{where}.desk", f"a leave_seat input needs a desk (desks: {', '.join(sorted(desk_values))})")
        elif common.get("kind") == "fire" and common.get("door"):
            c.problem(f"{where}.door", "a fire input serves every door with fire_exit = true; it names no door")
        if set(readers) & {name}:
            c.problem(where, f"{name!r} is also a reader's name; sim sockets and events need unique names")
        inputs[name] = InputConfig(name=name, options=MappingProxyType(own), **common)

    _gpio_lines(c, doors, inputs)
    usb = _usb(c, path, data["usb"], site.get("node") or "") if "usb" in data else None
    if usb is not None:
        for level in sorted(usb.supervisor_levels - set(levels)):
            c.problem("usb.supervisor_levels", f"no level {level!r} (levels: {', '.join(sorted(levels)) or 'none'})")
        if usb.approval_minutes > usb.exception_max_minutes:
            c.problem("usb.approval_minutes", f"{usb.approval_minutes:g} is more than exception_max_minutes "
                      f"({usb.exception_max_minutes:g})")
        if usb.supervisor_levels and not desk_values:
            c.problem("usb.supervisor_levels", "a supervisor approves at a desk, and this node has no [desks]")
        if usb.supervisor_levels and usb.approval_confirm == "pin":
            for name, r in readers.items():
                if r.desk and not r.pin_pad and r.driver != "sim":
                    c.problem("usb.approval_confirm", f"pin needs a PIN pad on every desk's reader; readers.{name} "
                              "has no pin_pad")
    commands = _commands(c, data.get("commands", {}))

    if c.problems:
        if len(c.denied) == len(c.problems):
            # Nothing wrong with the config but who may read its files (a password file of
            # mode 0600): a privilege to ask for, not a config to fix.
            raise PermissionDenied(c.denied[0])
        raise ConfigError(c.problems)
    desks = {name: DeskConfig(name=name, levels=frozenset(desk_levels[name]),
                              **{**v, "lock_fallback_command": tuple(v["lock_fallback_command"]),
                                 "lock_confirm_command": tuple(v["lock_confirm_command"])})
             for name, v in desk_values.items()}
    site["holidays"] = tuple(site["holidays"])
    rules = SiteRules(MappingProxyType(door_rules), MappingProxyType(levels), MappingProxyType(areas),
                      frozenset(site["holidays"]))
    return Config(path=path, site=SiteConfig(**site), mqtt=MqttConfig(**mqtt), readers=MappingProxyType(readers),
                  doors=MappingProxyType(doors), inputs=MappingProxyType(inputs), desks=MappingProxyType(desks),
                  usb=usb, commands=commands, rules=rules, areas=tuple(sorted(areas)),
                  warnings=tuple(_warnings(path, rules, readers)))


def _usb(c: _Checker, path: Path, raw: Any, node: str) -> UsbConfig | None:
    values = c.section("usb", c.table("usb", raw), USB)
    if not isinstance(values.get("rules"), str):
        return None
    rules_file = (path.parent / values["rules"]).resolve()
    try:
        text = rules_file.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        c.unreadable("usb.rules", rules_file, exc)
        return None
    implicit = values.get("implicit_target") or "block"
    try:
        rules = RuleSet.parse(text, str(rules_file), Target(implicit))
    except RuleSyntaxError as exc:
        # Already one "file:line:col: what" line per problem, with the line and a caret.
        c.problems.extend(str(exc).split("\n"))
        return None
    return UsbConfig(rules_file=rules_file, rules=rules, implicit_target=implicit,
                     present_devices=values["present_devices"], hold_hid_while_locked=values["hold_hid_while_locked"],
                     exception_max_minutes=values["exception_max_minutes"], host=values["host"] or node,
                     supervisor_levels=frozenset(values["supervisor_levels"]),
                     approval_confirm=values["approval_confirm"], approval_minutes=values["approval_minutes"],
                     approval_interfaces=values["approval_interfaces"], approval_window_s=values["approval_window_s"],
                     confirm_s=values["confirm_s"])


def _gpio_lines(c: _Checker, doors: Mapping[str, DoorConfig], inputs: Mapping[str, InputConfig]) -> None:
    """One GPIO line serves one thing: the kernel would refuse the second request at start."""
    users: dict[tuple[str, int], str] = {}
    wanted = [(f"doors.{name}.strike", d.strike) for name, d in doors.items() if d.strike.get("driver") == "gpio"]
    wanted += [(f"inputs.{name}", i.options) for name, i in inputs.items() if i.driver == "gpio"]
    for where, options in wanted:
        if not isinstance(options.get("line"), int):
            continue
        key = (chip_path(str(options.get("chip") or "gpiochip0")), options["line"])
        if key in users:
            c.problem(f"{where}.line", f"{key[0]} line {key[1]} is already {users[key]}'s")
        users.setdefault(key, where)


def _commands(c: _Checker, raw: Any) -> CommandsConfig:
    table = c.table("commands", raw)
    values = c.section("commands", table, COMMANDS, extra_ok=frozenset({"keys"}))
    keys = {}
    for name, spec in c.table("commands.keys", table.get("keys", {})).items():
        where = f"commands.keys.{name}"
        if wrong := _name(name):
            c.problem(where, f"key name {wrong}")
        v = c.section(where, c.table(where, spec), COMMAND_KEY)
        if isinstance(v.get("public_key"), str) and not _ed25519_public(v["public_key"]) and v.get("ops"):
            keys[name] = CommandKeyConfig(name, base64.b64decode(v["public_key"]), tuple(v["ops"]))
    return CommandsConfig(max_skew_s=values["max_skew_s"], keys=MappingProxyType(keys))


def _warnings(path: Path, rules: SiteRules, readers: Mapping[str, ReaderConfig]) -> list[str]:
    """What loads but can never take effect: ``check-config`` prints these, start-up logs them."""
    out = []
    served = {r.door for r in readers.values() if r.door}
    for level in rules.levels.values():
        if level.schedule.never:
            out.append(f"{path}: levels.{level.name}: schedule {level.schedule.name!r} has no time ranges; "
                       "this level can never open a door")
        for door in sorted(level.doors - served):
            out.append(f"{path}: levels.{level.name}.doors: door {door!r} has no reader on this node")
    for door in rules.doors.values():
        for i, window in enumerate(door.windows):
            if window.schedule.never:
                out.append(f"{path}: doors.{door.name}.auth_schedules[{i + 1}]: schedule {window.schedule.name!r} "
                           "has no time ranges; it can never apply")
            elif window.schedule.name == "always" and i + 1 < len(door.windows):
                out.append(f"{path}: doors.{door.name}.auth_schedules[{i + 2}]: never applies, "
                           f"auth_schedules[{i + 1}] is always active")
    return out


def _check_readable(c: _Checker, key: str, file: str) -> None:
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        c.unreadable(key, file, exc)
