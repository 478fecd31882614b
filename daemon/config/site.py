"""``[site]``: which site and node this is, its time zone, holidays and site-wide limits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sekisho.drivers.options import REQUIRED, Option, between, one_of, strings

from .checker import Checker, topic_name


def _timezone(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r} (example: Asia/Tokyo)"
    return None


def _hhmm(v: str) -> str | None:
    try:
        dt.time.fromisoformat(v)
    except ValueError:
        return f"{v!r} is not a time of day like 04:00"
    return None


def _dates(v: list) -> str | None:
    bad = [x for x in v if not isinstance(x, dt.date) or isinstance(x, dt.datetime)]
    return f"must be TOML dates like 2026-01-01 (unquoted), not {bad[0]!r}" if bad else None


def _language(v: str) -> str | None:
    return None if v in ("", "ja", "en") else f"{v!r} is not a language sekisho writes (ja, en; empty: from LANG)"


ROLES = ("door", "desk", "usb", "recorder", "print")


def _roles(v: list) -> str | None:
    wrong = [r for r in v if r not in ROLES]
    if wrong:
        return f"{wrong[0]!r} is not a role (known: {', '.join(ROLES)})"
    return None if len(set(v)) == len(v) else "names a role twice"


SITE = {
    "id": Option(str, REQUIRED, "The site's name; the topic segment after sekisho/v1/.", topic_name),
    "node": Option(str, REQUIRED, "This node's name, unique in the site.", topic_name),
    "timezone": Option(str, "UTC", "The site's time zone, for schedules and reports.", _timezone),
    "publish_names": Option(bool, False, "Publish people's names on the bus instead of pseudonyms."),
    "holidays": Option(list, [], "Dates on which schedules use their holiday ranges instead of the weekday's. "
                       "The recorder's travel in the enrolment snapshot; a node adds them to its own.", _dates),
    "passback_reset": Option(str, "04:00", "Local time of day at which anti-passback forgets where everyone is.",
                             _hhmm),
    "pin_max_wrong": Option(int, 3, "Wrong PINs in a row that lock a card out.", between(1, 20)),
    "retention_days": Option(int, 365, "Days events and audit rows are kept; older ones are deleted daily (and by "
                             "sekisho purge). Also how far back outbox.replay reaches.", between(1, 3650)),
    "pin_lockout_s": Option(int, 300, "Seconds a card stays locked out after too many wrong PINs.",
                            between(1, 86400)),
    "alarms_need_ack": Option(bool, True, "An alarm stays open until a person acknowledges it (sekisho alarm ack, "
                              "or the console), even after its condition has cleared; false: it closes when "
                              "the condition clears (a lab or a demo, never a room with personal data)."),
    "watch_nodes": Option(list, [], "Other nodes of the site whose status this node watches: one offline (its "
                          "last will, or a clean stop) for node_offline_after_s, or never heard from that long "
                          "after this node started, raises a node_offline alarm here. Empty: none (a node "
                          "cannot report its own absence, so name each node on one other node).",
                          strings(topic_name)),
    "node_offline_after_s": Option(float, 60.0, "How long a watched node may be offline before it is an alarm: a "
                                   "restart or a broker's hiccup is not.", between(5, 3600)),
    "reader_lost_after_s": Option(float, 10.0, "How long a door's reader may be lost before it is the reader_lost "
                                  "alarm: one back sooner (pcscd restarting, a USB reader found again, an OSDP "
                                  "reader's session renewed) raises nothing.", between(0, 3600)),
    "roles": Option(list, [], "What this node does: door, desk, usb, recorder, print, any combination. Each "
                    "role needs its section ([doors.<name>], [desks.<name>], [usb], [print]; [recorder] is optional) "
                    "and a section needs its role. Empty: the roles the config's sections name, and never "
                    "recorder.", _roles),
    "occupancy_from": Option(str, "doors", "Who publishes area/<area>/occupancy: doors (each door node, for the areas "
                             "of its own doors: right while each area's doors are all on one node) or recorder "
                             "(the recorder, from every node's door events; door nodes then publish none). The "
                             "same on every node of the site.", one_of("doors", "recorder")),
    "language": Option(str, "", "The language of the audit report (sekisho report): ja or en; empty: Japanese "
                       "when the environment's LANG is ja_*, else English. --lang overrides it.", _language),
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
    alarms_need_ack: bool
    watch_nodes: tuple[str, ...] = ()
    node_offline_after_s: float = 60.0
    reader_lost_after_s: float = 10.0
    language: str = ""
    occupancy_from: str = "doors"
    roles: frozenset[str] = frozenset()
    """As the config names them, or as its sections imply (link_roles)."""


def read_site(c: Checker, raw: Any) -> SiteConfig:
    values = c.section("site", c.table("site", raw), SITE)
    watched = values["watch_nodes"]
    if values["node"] in watched:
        c.problem("site.watch_nodes", f"names this node itself ({values['node']!r}); another node must watch it")
    return SiteConfig(**{**values, "holidays": tuple(values["holidays"]),
                         "watch_nodes": tuple(dict.fromkeys(watched)), "roles": frozenset(values["roles"])})


def link_roles(c: Checker, site: SiteConfig, sections: dict[str, bool]) -> SiteConfig:
    """The roles the node runs. Named, each must have its section and each section its role: a
    [doors] table on a node that was told it is a desk is a copied config, not a wish. Not
    named, the sections say (``recorder`` only ever by name: it subscribes to the whole site)."""
    if not site.roles:
        if sections["recorder"]:
            c.problem("recorder", "the recorder runs only on a node whose [site] roles name it")
        return dataclasses.replace(site, roles=frozenset(r for r, present in sections.items()
                                                         if present and r != "recorder"))
    for role, present in sections.items():
        if role in site.roles and not present and role != "recorder":
            c.problem("site.roles", f"names {role}, and the config has no {SECTION_OF[role]}")
        if present and role not in site.roles:
            c.problem("site.roles", f"does not name {role}, and the config has {SECTION_OF[role]}")
    return site


SECTION_OF = {"door": "[doors.<name>]", "desk": "[desks.<name>]", "usb": "[usb]", "recorder": "[recorder]",
              "print": "[print]"}
