"""The one report a config file gets: every problem as a line ``FILE: dotted.key: what is wrong``.

``Checker`` collects problems while the section readers convert one file; it never raises, so
every reader runs and the person sees every problem at once. A value that is wrong is replaced
by its default (or None) only so that the checking can go on: a config with a problem never
loads, so that stand-in is never used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sekisho.drivers import registry
from sekisho.drivers.options import REQUIRED, Option, kind, type_name

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""Names become MQTT topic segments and file names: no '/', '+', '#', spaces or capitals."""


def topic_name(v: str) -> str | None:
    """What is wrong with a name that becomes a topic segment, or None."""
    return None if NAME.match(v) else "must be lower-case letters, digits and '-' (it becomes a topic segment)"


def optional_topic_name(v: str) -> str | None:
    """As ``topic_name``, for a key whose empty value means none."""
    return v and topic_name(v)


class Checker:
    """Collects problems while converting one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.denied: list[str] = []
        """Files the config names that the kernel would not let this process read."""

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.path}: {key}: {text}")

    def unreadable(self, key: str, file: str | Path, exc: OSError) -> None:
        if isinstance(exc, PermissionError):
            self.denied.append(str(file))
        self.problem(key, f"cannot read {file}: {exc.strerror or exc}")

    def readable(self, key: str, file: str) -> None:
        """A file the daemon will open later (a password, a certificate) must open now."""
        try:
            with open(file, "rb"):
                pass
        except OSError as exc:
            self.unreadable(key, file, exc)

    def named(self, top: str, raw: Any, what: str | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Each ``[top.<name>]`` table as (name, dotted key, table). With ``what``, the name
        becomes a topic segment and is checked as one (``door name must be ...``)."""
        for name, section in self.table(top, raw).items():
            where = f"{top}.{name}"
            if what and (wrong := topic_name(name)):
                self.problem(where, f"{what} name {wrong}")
            yield name, where, self.table(where, section)

    def no_such(self, key: str, what: str, name: str, known: Iterable[str], none: str = "none") -> None:
        """``key`` names a ``what`` that no section defines; the problem lists those that exist."""
        self.problem(key, f"no {what} {name!r} ({what}s: {', '.join(sorted(known)) or none})")

    def table(self, where: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(where, f"must be a table ([{where}]), not {kind(value)}")
        return {}

    def section(self, where: str, data: dict[str, Any], schema: Mapping[str, Option],
                extra_ok: frozenset[str] = frozenset()) -> dict[str, Any]:
        """``data`` converted by ``schema``: known keys only, types, checks, defaults filled in."""
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
                self.problem(dotted, f"must be {type_name(spec.type)}, not {kind(value)} {value!r}")
                out[key] = None if spec.default is REQUIRED else spec.default
                continue
            wrong = spec.check(value) if spec.check else None
            if wrong:
                self.problem(dotted, wrong)
                value = None if spec.default is REQUIRED else spec.default
            out[key] = value
        return out

    def driven(self, where: str, raw: dict[str, Any], common: Mapping[str, Option],
               kinds: dict[str, str]) -> tuple[dict[str, Any], Mapping[str, Any]] | None:
        """A section whose ``driver`` names a driver class (a reader, an input): the keys every
        such section has, and the driver's own ``OPTIONS``. None when the driver is unknown:
        its options cannot be checked, and nothing else about the section is worth saying."""
        driver = raw.get("driver")
        if isinstance(driver, str) and driver not in kinds:
            self.problem(f"{where}.driver", f"unknown driver {driver!r} (known: {', '.join(sorted(kinds))})")
            return None
        options = registry.load(driver, kinds).OPTIONS if isinstance(driver, str) else {}
        values = self.section(where, raw, common, extra_ok=frozenset(options))
        own = self.section(where, {k: v for k, v in raw.items() if k in options}, options)
        return values, MappingProxyType(own)
