"""The Python library each hardware driver imports, by the extra of the sekisho package that
installs it (pyproject.toml). A driver kind and its extra share a name (``pcsc``, ``nfc``,
``evdev``, ``gpio``, ``osdp``); ``udev`` is the USB monitor's, used by a config with a ``[usb]`` section.

A driver imports its library only at ``start()``, so a node needs only what its config uses. The
config check looks for the same library beforehand (daemon/config/libraries.py), finding it
without importing it, as loading a driver's class imports nothing of its hardware either: a
library that is missing is then a config error (exit 78, which the unit does not restart) that
names the extra, not a start-up failure that ``Restart=on-failure`` repeats forever.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Library:
    module: str
    """The top-level module the driver imports."""
    requirement: str
    """The distribution and the floor pyproject.toml names for the extra."""
    package: bool = False
    """The module must be a package: an older, incompatible release was a single module."""


LIBRARIES: dict[str, Library] = {
    "pcsc": Library("smartcard", "pyscard >= 2.3"),
    "nfc": Library("nfc", "nfcpy >= 1.0.4"),
    "udev": Library("pyudev", "pyudev >= 0.24"),
    "evdev": Library("evdev", "evdev >= 1.6"),
    # Debian's python3-libgpiod is gpiod 1, also imported as gpiod: one extension module, where
    # gpiod 2 (request_lines, the API the driver uses) is a package.
    "gpio": Library("gpiod", "gpiod >= 2.2", package=True),
    # The PyPI package named osdp (a controller only, for old Pythons) installs a module osdp
    # too, a single one, where libosdp's is a package.
    "osdp": Library("osdp", "libosdp >= 3.2.9", package=True),
    # pycups, OpenPrinting's binding, from Debian (python3-cups): no wheel on PyPI, and building it
    # needs libcups2-dev; the venv sees Debian's through --system-site-packages.
    "cups": Library("cups", "python3-cups (pycups >= 2.0.1)"),
}


def missing(extra: str) -> str | None:
    """Why this interpreter has no usable library for ``extra``, or None when it has one."""
    library = LIBRARIES[extra]
    try:
        spec = importlib.util.find_spec(library.module)
    except (ImportError, ValueError) as exc:
        return str(exc)
    if spec is None:
        return f"No module named {library.module!r}"
    if library.package and spec.submodule_search_locations is None:
        return f"{spec.origin} is an older {library.module}, a single module"
    return None
