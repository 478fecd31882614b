"""Door strikes: what actually releases a door. The door controller says release or lock; a
strike carries it out. A failure is reported, never retried in a loop: a strike that does not
answer is a problem for a person, and an alarm says so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from sekisho.drivers.base import DriverError
from sekisho.drivers.gpio import GpioOutput

from .errors import SekishoError

log = logging.getLogger(__name__)


class StrikeError(SekishoError):
    pass


class Strike(Protocol):
    async def set(self, released: bool) -> None: ...

    def close(self) -> None:
        """Let go of the hardware, at the daemon's stop (after the door was locked)."""


class NoStrike:
    """The door is recorded but not driven by this node."""

    async def set(self, released: bool) -> None:
        return None

    def close(self) -> None:
        return None


class SimStrike(NoStrike):
    """Logs what a strike would do; the door's published state shows it too."""

    def __init__(self, door: str) -> None:
        self.door = door

    async def set(self, released: bool) -> None:
        log.info("%s: strike %s", self.door, "released" if released else "locked")


class CommandStrike(NoStrike):
    """Runs a command to release and another to lock (a relay tool, a vendor's CLI)."""

    TIMEOUT_S = 5

    def __init__(self, door: str, unlock: list[str], lock: list[str]) -> None:
        self.door = door
        self.argv = {True: unlock, False: lock}

    async def set(self, released: bool) -> None:
        argv = self.argv[released]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), self.TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise StrikeError(f"{self.door}: strike command {argv[0]} failed: {exc or 'timed out'}") from None
        if proc.returncode != 0:
            raise StrikeError(f"{self.door}: strike command {argv[0]} exited {proc.returncode}: "
                              f"{err.decode(errors='replace').strip()[:200]}")


class MqttStrike(NoStrike):
    """A networked relay that listens on the site's broker. Sent directly, never through the
    outbox: an unlock queued during an outage must not open the door minutes later. A lock is
    the other way round: paho keeps it and sends it as soon as the broker is reached (at start,
    the daemon locks every door before its first connection is up), since a lock that comes
    late is still a lock."""

    def __init__(self, door: str, client: mqtt.Client, topic: str, on: str, off: str) -> None:
        self.door = door
        self.client = client
        self.topic = topic
        self.payload = {True: on, False: off}

    async def set(self, released: bool) -> None:
        if released and not self.client.is_connected():
            raise StrikeError(f"{self.door}: relay topic {self.topic} unreachable: not connected to the broker")
        self.client.publish(self.topic, self.payload[released], qos=1, retain=False)


class GpioStrike:
    """A strike relay on a GPIO line (libgpiod): the line is requested, inactive, when the daemon
    starts, so the door is locked from then on; active releases it."""

    def __init__(self, door: str, cfg: Mapping[str, Any]) -> None:
        self.door = door
        self.output = GpioOutput(door, cfg)
        try:
            self.output.open()
        except DriverError as exc:
            raise StrikeError(f"doors.{door}.strike: {exc}") from None

    async def set(self, released: bool) -> None:
        try:
            self.output.set(released)
        except DriverError as exc:
            raise StrikeError(f"{self.door}: strike {exc}") from None

    def close(self) -> None:
        self.output.close()


def make_strike(door: str, cfg: Mapping[str, Any], client: mqtt.Client) -> Strike:
    match cfg["driver"]:
        case "gpio":
            return GpioStrike(door, cfg)
        case "sim":
            return SimStrike(door)
        case "command":
            return CommandStrike(door, list(cfg["unlock"]), list(cfg["lock"]))
        case "mqtt":
            return MqttStrike(door, client, cfg["topic"], cfg["unlock_payload"], cfg["lock_payload"])
        case _:
            return NoStrike()
