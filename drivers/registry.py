"""Driver kinds by the name a config file uses. Explicit, so a typo is an error that lists
what exists, and a daemon running as root imports only what is written here."""

from __future__ import annotations

import importlib

from .base import Driver

KINDS: dict[str, str] = {  # card readers: [readers.<name>] driver = ...
    "sim": "sekisho.drivers.sim:SimReader",
    "pcsc": "sekisho.drivers.pcsc:PcscReader",
    "nfc": "sekisho.drivers.nfc:NfcReader",
    "osdp": "sekisho.drivers.osdp:OsdpReader",
}

INPUTS: dict[str, str] = {  # binary inputs (door contact, exit button, fire alarm): [inputs.<name>]
    "sim": "sekisho.drivers.sim:SimInput",
    "evdev": "sekisho.drivers.evdev_keys:EvdevKey",
    "gpio": "sekisho.drivers.gpio:GpioInput",
}

PIN_PADS: dict[str, str] = {  # a reader's own PIN pad: [readers.<name>] pin_pad = { driver = ..., ... }
    "evdev": "sekisho.drivers.evdev_keys:EvdevPinPad",
}


def load(kind: str, kinds: dict[str, str] = KINDS) -> type[Driver]:
    """The driver class for ``kind``. Importing it does not import its hardware library."""
    module_name, _, class_name = kinds[kind].partition(":")
    driver: type[Driver] = getattr(importlib.import_module(module_name), class_name)
    return driver
