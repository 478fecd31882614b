"""The Python library each hardware driver imports, by the extra of the sekisho package that
installs it (pyproject.toml). A driver kind and its extra share a name (``pcsc``, ``nfc``,
``evdev``, ``gpio``); ``udev`` is the USB monitor's, used by a config with a ``[usb]`` section.

A driver imports its library only at ``start()``, so a node needs only what its config uses. The
config check imports the same library beforehand (daemon/config/libraries.py): a library that is
missing is then a config error (exit 78, which the unit does not restart) that names the extra,
not a start-up failure that ``Restart=on-failure`` repeats forever.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Library:
    module: str
    """What the driver imports."""
    requirement: str
    """The distribution and the floor pyproject.toml names for the extra."""
    attribute: str = ""
    """A name the module must have: an older API under the same module name lacks it."""


LIBRARIES: dict[str, Library] = {
    "pcsc": Library("smartcard.scard", "pyscard >= 2.3"),
    "nfc": Library("nfc", "nfcpy >= 1.0.4"),
    "udev": Library("pyudev", "pyudev >= 0.24"),
    "evdev": Library("evdev", "evdev >= 1.6"),
    # Debian's python3-libgpiod is version 1, also imported as gpiod, without request_lines.
    "gpio": Library("gpiod", "gpiod >= 2.2", attribute="request_lines"),
}


def missing(extra: str) -> str | None:
    """Why the library of ``extra`` cannot be used by this interpreter, or None when it can.
    OSError too: pyscard's extension fails to load without libpcsclite, nfcpy's without libusb."""
    library = LIBRARIES[extra]
    try:
        module = importlib.import_module(library.module)
    except (ImportError, OSError) as exc:
        return str(exc)
    if library.attribute and not hasattr(module, library.attribute):
        return f"{library.module} {getattr(module, '__version__', '')} is an older API".replace("  ", " ")
    return None
