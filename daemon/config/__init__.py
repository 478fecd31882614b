"""The config file: read with tomllib, checked whole, returned as frozen values.

Checking runs in two passes, as mqtt-io does. First each section by itself, one reader per
section in its own module (``read_site``, ``read_doors``, ...): known keys only, types, ranges,
defaults, each driver's ``OPTIONS`` merged in. Then the references between sections, once every
section is known (``link_doors``, ``link_levels``, ...): a reader naming a door that does not
exist, a level naming a schedule. Every key, the config's and the drivers', is an ``Option``
(drivers/options.py).

Every problem is one line naming the file and the dotted key, all problems are reported
together (``ConfigError``, exit 78), and nothing starts while there is one. A config whose only
problems are files this process may not read raises ``PermissionDenied`` instead (exit 77).
``sekisho check-config`` calls ``load`` and nothing else, so it checks exactly what start-up
checks. The USB rules file is read and parsed here, once (``UsbConfig.rules``); the other files
the config names (password, certificates) are only opened, to prove that they can be, and the
library each configured driver will import is imported, to prove that it is installed.

The schema is also the documentation: every key has a default and a help text, and a test
holds examples/sekisho.toml to mention each of them.

| module | section |
|---|---|
| checker.py | the report: ``Checker`` (a table converted by its schema), topic-safe names |
| site.py | ``[site]`` |
| mqtt.py | ``[mqtt]``, ``parse_mqtt_url`` |
| access.py | ``[areas]``, ``[schedules]``, ``[levels]``; warnings about what never applies |
| doors.py | ``[doors.<name>]`` and their strikes |
| desks.py | ``[desks.<name>]`` |
| readers.py | ``[readers.<name>]`` and their PIN pads |
| inputs.py | ``[inputs.<name>]``; one GPIO line, one user |
| usb.py | ``[usb]`` and the rules file |
| libraries.py | the hardware library each configured driver imports |
| commands.py | ``[commands]``, ``[commands.keys.<name>]`` |
| homeassistant.py | ``[homeassistant]`` |
| recorder.py | ``[recorder]`` |
| print.py | ``[print]``: print release |
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sekisho.policies.access import SiteRules

from ..errors import ConfigError, PermissionDenied
from .access import AREA, LEVEL, SCHEDULE, link_levels, read_areas, read_levels, read_schedules, warnings
from .checker import Checker, topic_name
from .commands import COMMAND_KEY, COMMANDS, CommandKeyConfig, CommandsConfig, read_commands
from .desks import DESK, DeskConfig, link_desks, read_desks
from .doors import DOOR, STRIKES, DoorConfig, link_doors, read_doors
from .homeassistant import HOMEASSISTANT, HomeAssistantConfig, read_homeassistant
from .inputs import INPUT, InputConfig, link_inputs, read_inputs
from .libraries import link_libraries
from .mqtt import MQTT, MqttConfig, parse_mqtt_url, read_mqtt
from .print import PRINT, PrintConfig, link_print, read_print
from .readers import READER, ReaderConfig, link_readers, read_readers
from .recorder import RECORDER, RecorderConfig, read_recorder
from .site import SITE, SiteConfig, link_roles, read_site
from .usb import USB, UsbConfig, link_usb, read_usb

SNAPSHOT_OP = "enrolment.snapshot"
"""The op a key must be trusted for to sign enrolment snapshots (enrolment_snapshot.OP is this)."""
TOP = ("site", "mqtt", "areas", "schedules", "levels", "doors", "desks", "readers", "inputs", "usb", "commands",
       "homeassistant", "recorder", "print")


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
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    recorder: RecorderConfig | None = None
    """None unless the node runs the recorder role."""
    print: PrintConfig | None = None
    """None when the config has no [print] section: this node releases no print jobs."""
    rules: SiteRules = field(default_factory=lambda: SiteRules({}, {}))
    """Doors, levels, schedules and areas as the access policy takes them."""
    areas: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Things that load but can never take effect (a level that can never open anything ...)."""

    def grantable_levels(self) -> list[str]:
        """The levels a person may be granted on this node: its own, and at the recorder, where
        the site is enrolled, the site's levels its [recorder] names."""
        return sorted(set(self.rules.levels) | set(self.recorder.levels if self.recorder else ()))


def load(path: str | Path, *, mqtt_url: str | None = None) -> Config:
    """Read and check a config file. Raises ConfigError naming every problem."""
    path = Path(path)
    data = _toml(path)
    c = Checker(path)
    for key in data:
        if key not in TOP:
            c.problem(key, f"unknown section (known: {', '.join(TOP)})")

    # Each section by itself.
    site = read_site(c, data.get("site", {}))
    mqtt = read_mqtt(c, data.get("mqtt", {}), mqtt_url)
    areas = read_areas(c, data.get("areas", {}))
    schedules = read_schedules(c, data.get("schedules", {}))
    doors = read_doors(c, data.get("doors", {}))
    desk_values = read_desks(c, data.get("desks", {}))
    printing = read_print(c, data["print"]) if "print" in data else None
    level_values = read_levels(c, data.get("levels", {}), printing.supervisor_levels if printing else frozenset())
    readers = read_readers(c, data.get("readers", {}))
    inputs = read_inputs(c, data.get("inputs", {}))
    usb = read_usb(c, path, data["usb"], site.node or "") if "usb" in data else None
    commands = read_commands(c, data.get("commands", {}))
    homeassistant = read_homeassistant(c, data.get("homeassistant", {}))
    recorder = read_recorder(c, path, data.get("recorder", {}))
    if homeassistant.enabled and site.publish_names:
        # Home Assistant's broker user reads the topics its entities name, whole: a template
        # can leave a name out of what it shows, not out of what it receives and keeps (its
        # MQTT debug info holds the last payloads of each subscription).
        c.problem("homeassistant.enabled", "not with [site] publish_names = true: the topics Home Assistant "
                  "reads would carry names (subject, and the occupancy's subjects) into its history")

    # What the sections name in each other.
    site = link_roles(c, site, {"door": bool(data.get("doors")), "desk": bool(data.get("desks")),
                                "usb": "usb" in data, "recorder": "recorder" in data,
                                "print": "print" in data})
    if site.occupancy_from == "recorder" and "recorder" in site.roles and recorder.share_group:
        # Each recorder of a shared subscription folds only its share of the door events: its
        # occupancy would be the partial view this setting exists to avoid.
        c.problem("site.occupancy_from", "recorder: not with [recorder] share_group (each recorder sees a share "
                  "of the door events); let one recorder without a share group publish occupancy")
    # A node that takes enrolment snapshots may name schedules the recorder's snapshot brings;
    # the recorder itself takes none (it is where they come from).
    from_snapshot = commands.trusts(SNAPSHOT_OP) and "recorder" not in site.roles
    # A door's auth windows are the node's own: a window never active until a snapshot brings its
    # schedule would leave the door's plainer auth in force (a card_and_pin window dropped).
    door_rules = link_doors(c, doors, areas, schedules)
    levels, desk_levels = link_levels(c, level_values, schedules, doors, desk_values, from_snapshot)
    desks = link_desks(c, desk_values, areas, desk_levels)
    link_readers(c, readers, doors, desks, printing.reader if printing else "")
    link_inputs(c, inputs, doors, desks, readers)
    if usb is not None:
        link_usb(c, usb, levels, desks, readers)
    if printing is not None:
        link_print(c, printing, readers, areas, levels)
    link_libraries(c, readers, doors, inputs, usb, printing is not None)

    if c.problems:
        if len(c.denied) == len(c.problems):
            # Nothing wrong with the config but who may read its files (a password file of
            # mode 0600): a privilege to ask for, not a config to fix.
            raise PermissionDenied(c.denied[0])
        raise ConfigError(c.problems)
    rules = SiteRules(MappingProxyType(door_rules), MappingProxyType(levels), MappingProxyType(areas),
                      frozenset(site.holidays), MappingProxyType(schedules))
    served = frozenset(r.door for r in readers.values() if r.door)
    return Config(path=path, site=site, mqtt=mqtt, readers=MappingProxyType(readers),
                  doors=MappingProxyType(doors), inputs=MappingProxyType(inputs), desks=MappingProxyType(desks),
                  usb=usb, commands=commands, homeassistant=homeassistant,
                  recorder=recorder if "recorder" in site.roles else None, print=printing, rules=rules,
                  areas=tuple(sorted(areas)),
                  warnings=tuple(warnings(path, rules, served)))


def _toml(path: Path) -> dict:
    """The file as TOML; a file that cannot be read or parsed is one problem, reported alone."""
    try:
        content = path.read_bytes()
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return tomllib.loads(content.decode())
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text (byte {content[exc.start]:#04x}); "
                           f"save the file as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


__all__ = ["AREA", "COMMANDS", "COMMAND_KEY", "DESK", "DOOR", "HOMEASSISTANT", "INPUT", "LEVEL", "MQTT", "PRINT",
           "READER", "RECORDER", "SCHEDULE", "SITE", "STRIKES", "TOP", "USB", "CommandKeyConfig", "CommandsConfig",
           "Config", "ConfigError", "DeskConfig", "DoorConfig", "HomeAssistantConfig", "InputConfig", "MqttConfig",
           "PermissionDenied", "PrintConfig", "ReaderConfig", "RecorderConfig", "SiteConfig", "UsbConfig", "load",
           "parse_mqtt_url", "topic_name"]
