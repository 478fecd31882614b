"""The hardware libraries the configured drivers import, checked with the config.

A reader, input, PIN pad or strike whose driver's library is not installed is one problem at its
``driver`` key (and ``[usb]`` for the USB monitor's pyudev, ``[print]`` for the CUPS driver's
pycups), naming the extra that installs it: exit 78 from ``check-config`` and at ``sekisho run``, which the unit's
``RestartPreventExitStatus=78`` does not restart, rather than a driver failing at start in a loop.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from sekisho.drivers.libraries import LIBRARIES, missing

from .checker import Checker
from .doors import DoorConfig
from .inputs import InputConfig
from .readers import ReaderConfig
from .usb import UsbConfig


def link_libraries(c: Checker, readers: Mapping[str, ReaderConfig], doors: Mapping[str, DoorConfig],
                   inputs: Mapping[str, InputConfig], usb: UsbConfig | None, printing: bool = False) -> None:
    uses = [(f"readers.{name}.driver", r.driver) for name, r in readers.items()]
    uses += [(f"readers.{name}.pin_pad.driver", r.pin_pad["driver"]) for name, r in readers.items() if r.pin_pad]
    uses += [(f"doors.{name}.strike.driver", d.strike["driver"]) for name, d in doors.items()]
    uses += [(f"inputs.{name}.driver", i.driver) for name, i in inputs.items()]
    if usb is not None:
        uses.append(("usb", "udev"))
    if printing:
        uses.append(("print", "cups"))
    why = {extra: missing(extra) for extra in {extra for _, extra in uses if extra in LIBRARIES}}
    for key, extra in uses:
        if reason := why.get(extra):
            c.problem(key, f"{extra!r} needs {LIBRARIES[extra].requirement}, which this Python does not have "
                      f"({reason}): install the extra {extra!r} (`make install` installs every extra; or, in "
                      f"the source tree, {sys.prefix}/bin/pip install '.[{extra}]')")
