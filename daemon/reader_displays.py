"""Each door's mode, shown at the door's readers that can show it (``ShowsDoorMode``: an OSDP
reader's LED at rest and its text display).

Built once by the composition root from the drivers and handed to ``DoorStates``, which tells
it each door's mode as it loads them and every change after; no controller learns which readers
can show anything. A reader is told its door's mode before it starts, and keeps it until it can
show it (an OSDP reader shows it each time it comes online).
"""

from __future__ import annotations

from collections.abc import Mapping

from sekisho.drivers.base import Driver, ShowsDoorMode

from .config import Config


class ReaderDisplays:
    def __init__(self, config: Config, drivers: Mapping[str, Driver]) -> None:
        self.by_door: dict[str, list[ShowsDoorMode]] = {}
        for name, reader in config.readers.items():
            driver = drivers.get(name)
            if reader.door and isinstance(driver, ShowsDoorMode):
                self.by_door.setdefault(reader.door, []).append(driver)

    def door_mode(self, door: str, mode: str) -> None:
        for driver in self.by_door.get(door, ()):
            driver.show_mode(mode)
