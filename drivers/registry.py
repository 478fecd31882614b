"""Driver kinds by the name a config file uses. Explicit, so a typo is an error that lists
what exists, and a daemon running as root imports only what is written here."""

from __future__ import annotations

import importlib

KINDS: dict[str, str] = {
    "sim": "sekisho.drivers.sim:SimReader",
}


def load(kind: str) -> type:
    """The driver class for ``kind``. Importing it does not import its hardware library."""
    module_name, _, class_name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
