"""``[homeassistant]``: whether this node offers its doors, desks and areas to Home Assistant
through MQTT discovery (docs/homeassistant.md), and under which discovery prefix. Off unless
``enabled = true``: nothing is published outside sekisho's own topics by default."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sekisho.drivers.options import Option

from .checker import Checker

PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def _prefix(v: str) -> str | None:
    return None if PREFIX.match(v) else (f"{v!r} is not a topic prefix: levels of letters, digits, '_' and '-', "
                                         "separated by '/' (no wildcards, no leading or trailing '/')")


HOMEASSISTANT = {
    "enabled": Option(bool, False, "Publish Home Assistant MQTT discovery for this node's doors, desks and areas "
                      "(read-only entities; never a command topic), retained, again whenever Home Assistant "
                      "says it is online."),
    "prefix": Option(str, "homeassistant", "Home Assistant's discovery prefix, as set in its MQTT integration; "
                     "its birth message is read on <prefix>/status.", _prefix),
}


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    prefix: str = "homeassistant"


def read_homeassistant(c: Checker, raw: Any) -> HomeAssistantConfig:
    return HomeAssistantConfig(**c.section("homeassistant", c.table("homeassistant", raw), HOMEASSISTANT))
