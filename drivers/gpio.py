"""GPIO lines through libgpiod (the ``gpiod`` Python binding, version 2): a door contact, an
exit button or a fire alarm input, and the output line a strike relay hangs on.

Inputs are debounced by the kernel (``debounce_ms``, the GPIO uAPI's debounce attribute), so a
bouncing contact reports one change, and ``active_low`` is applied by the kernel too: the driver
reports what the input means (``InputChanged(active=True)``: the door is open, the button
pressed, the alarm on). The line's value at start is reported first, so the door's contact is
known from the beginning; then every edge, read from the line request's fd on the event loop,
without a thread. If reading fails, the driver reports nothing more, logs, and requests the line
again with backoff.

An output is requested with its inactive value, so a strike is locked from the moment the
daemon holds the line (fail-secure), and stays driven until the request is released.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sekisho.policies.events import InputChanged

from .base import DriverError, Emit
from .options import REQUIRED, Option

log = logging.getLogger(__name__)

CONSUMER = "sekisho"
BIASES = ("as-is", "pull-up", "pull-down", "disabled")
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


def _bias(v: str) -> str | None:
    return None if v in BIASES else f"must be one of {', '.join(BIASES)}"


def _offset(v: int) -> str | None:
    return None if 0 <= v < 4096 else "must be a line offset, 0 or more (gpioinfo lists them)"


LINE_OPTIONS: Mapping[str, Option] = {
    "chip": Option(str, "gpiochip0", "The GPIO chip: its name (gpiochip0) or its path (/dev/gpiochip0); "
                   "gpiodetect lists them."),
    "line": Option(int, REQUIRED, "The line's offset on the chip (gpioinfo lists them).", check=_offset),
    "active_low": Option(bool, False, "The line is active (contact open, button pressed, alarm on; strike "
                         "released) at the low level."),
}


def chip_path(chip: str) -> str:
    return chip if "/" in chip else f"/dev/{chip}"


def _gpiod() -> Any:
    try:
        import gpiod
    except ImportError as exc:
        raise DriverError(f"the gpio driver needs the gpiod package, version 2 ({exc}); install it with the "
                          "'gpio' extra") from None
    if not hasattr(gpiod, "request_lines"):
        raise DriverError(f"gpiod {getattr(gpiod, '__version__', '?')} is the old API; the gpio driver needs "
                          "gpiod >= 2")
    return gpiod


def _request(gpiod: Any, chip: str, line: int, settings: Any, what: str) -> Any:
    path = chip_path(chip)
    try:
        return gpiod.request_lines(path, consumer=CONSUMER, config={line: settings})
    except FileNotFoundError:
        raise DriverError(f"no GPIO chip {path} (gpiodetect lists the chips)") from None
    except PermissionError:
        raise DriverError(f"cannot open {path}: permission denied (the daemon needs the gpio group or root)") \
            from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == 16:  # EBUSY
            why = "the line is in use by another program (gpioinfo shows which)"
        elif exc.errno == 22:  # EINVAL
            why = "no such line on this chip, or the chip refuses these settings"
        raise DriverError(f"{path} line {line} ({what}): {why}") from None
    except ValueError as exc:  # the binding's own checks (an offset out of range)
        raise DriverError(f"{path} line {line} ({what}): {exc}") from None


class GpioInput:
    """A binary input on a GPIO line, with kernel debounce: [inputs.<name>] driver = "gpio"."""

    OPTIONS: ClassVar[Mapping[str, Option]] = {
        **LINE_OPTIONS,
        "bias": Option(str, "as-is", "The line's pull: as-is, pull-up, pull-down or disabled (a contact to "
                       "ground wants pull-up and active_low = true).", check=_bias),
        "debounce_ms": Option(int, 20, "How long the line must hold a new level before it counts (0: off).",
                              check=lambda v: None if 0 <= v <= 1000 else "must be from 0 to 1000"),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path | None = None) -> None:
        self.name = name
        self._emit = emit
        self.chip = str(options.get("chip", self.OPTIONS["chip"].default))
        self.line = int(options["line"])
        self.active_low = bool(options.get("active_low", False))
        self.bias = str(options.get("bias", "as-is"))
        self.debounce_ms = int(options.get("debounce_ms", self.OPTIONS["debounce_ms"].default))
        self._gpiod: Any = None
        self._request_obj: Any = None
        self._running = False
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = BACKOFF_FIRST_S

    def _settings(self) -> Any:
        from gpiod.line import Bias, Direction, Edge
        return self._gpiod.LineSettings(
            direction=Direction.INPUT, edge_detection=Edge.BOTH, active_low=self.active_low,
            bias={"as-is": Bias.AS_IS, "pull-up": Bias.PULL_UP, "pull-down": Bias.PULL_DOWN,
                  "disabled": Bias.DISABLED}[self.bias],
            debounce_period=dt.timedelta(milliseconds=self.debounce_ms))

    async def start(self) -> None:
        self._gpiod = _gpiod()
        self._running = True
        self._open(first=True)

    async def stop(self) -> None:
        self._running = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._close()

    def _open(self, first: bool = False) -> None:
        self._retry = None
        if not self._running:
            return
        request = None
        try:
            request = _request(self._gpiod, self.chip, self.line, self._settings(), f"input {self.name}")
            from gpiod.line import Value
            active = request.get_value(self.line) == Value.ACTIVE
        except (DriverError, OSError) as exc:
            if request is not None:
                request.release()  # else the line stays held and every retry finds it busy
            if first:
                raise DriverError(str(exc)) from None
            log.warning("%s: %s; trying again in %g s", self.name, exc, self._backoff)
            self._retry = asyncio.get_running_loop().call_later(self._backoff, self._open)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            return
        self._backoff = BACKOFF_FIRST_S
        self._request_obj = request
        asyncio.get_running_loop().add_reader(request.fd, self._readable)
        log.info("%s: %s line %d, %s at start", self.name, chip_path(self.chip), self.line,
                 "active" if active else "inactive")
        self._send(active)

    def _close(self) -> None:
        request, self._request_obj = self._request_obj, None
        if request is not None:
            asyncio.get_running_loop().remove_reader(request.fd)
            try:
                request.release()
            except OSError:
                pass

    def _readable(self) -> None:
        from gpiod.edge_event import EdgeEvent
        try:
            events = self._request_obj.read_edge_events()
        except (OSError, AttributeError) as exc:
            log.error("%s: reading %s line %d failed: %s", self.name, chip_path(self.chip), self.line, exc)
            self._close()
            self._retry = asyncio.get_running_loop().call_later(self._backoff, self._open)
            return
        for event in events:
            self._send(event.event_type == EdgeEvent.Type.RISING_EDGE)

    def _send(self, active: bool) -> None:
        if self._running:
            self._emit(InputChanged(source=self.name, active=active,
                                    raw={"chip": chip_path(self.chip), "line": self.line}))


class GpioOutput:
    """One output line, driven active or inactive (a strike relay). Requested inactive."""

    OPTIONS: ClassVar[Mapping[str, Option]] = LINE_OPTIONS

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.chip = str(options.get("chip", self.OPTIONS["chip"].default))
        self.line = int(options["line"])
        self.active_low = bool(options.get("active_low", False))
        self._request_obj: Any = None

    def open(self) -> None:
        """Request the line, driven inactive. Raises ``DriverError``."""
        gpiod = _gpiod()
        from gpiod.line import Direction, Value
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, active_low=self.active_low,
                                      output_value=Value.INACTIVE)
        self._request_obj = _request(gpiod, self.chip, self.line, settings, f"output {self.name}")

    def set(self, active: bool) -> None:
        """Drive the line; raises ``DriverError`` when the kernel refuses."""
        from gpiod.line import Value
        if self._request_obj is None:
            raise DriverError(f"{chip_path(self.chip)} line {self.line} is not requested")
        try:
            self._request_obj.set_value(self.line, Value.ACTIVE if active else Value.INACTIVE)
        except OSError as exc:
            raise DriverError(f"{chip_path(self.chip)} line {self.line}: {exc.strerror or exc}") from None

    def close(self) -> None:
        request, self._request_obj = self._request_obj, None
        if request is not None:
            request.release()
