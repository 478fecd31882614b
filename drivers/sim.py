"""A simulated card reader with a PIN pad, and a simulated binary input, driven over Unix sockets.

``sekisho sim tap|pull|pin|input`` connect to the socket and send one JSON line; the driver
emits the same events real hardware would. The demo and the fast tests run on them, and a site
can keep one configured to rehearse a procedure without cards.

Protocol: one request per line; for a reader ``{"op": "tap", "uid": "04a1b2c3"}``,
``{"op": "pull"}`` or ``{"op": "pin", "digits": "1234"}``; for an input ``{"op": "set",
"active": true}`` or ``{"op": "press"}``. The answer is one line, ``{"ok": true}`` or
``{"ok": false, "error": "..."}``.

A reader's request may add ``"answer": S`` (seconds, up to 10): the driver then hands the
daemon a callable in the event's ``raw["answer"]`` and waits up to S seconds for what the event
decided, answering ``{"ok": true, "decided": [{"result", "reason", "rule"}, ...], "waiting":
"pin" or null}``. No answer in time is still ``{"ok": true}``: the event was emitted, and the
record (``sekisho events``) has what became of it. Without ``answer`` the reply comes at once,
as the benchmarks need.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sekisho.policies.events import CardPresented, CardRemoved, Event, InputChanged, PinEntered

from .base import Emit
from .local_socket import LocalServer, json_request
from .options import Option

log = logging.getLogger(__name__)


ANSWER_MAX_S = 10.0


def socket_path(name: str, options: Mapping[str, Any], data_dir: Path) -> Path:
    """Where the reader named ``name`` listens; the CLI finds it the same way."""
    configured = options.get("socket") or ""
    return Path(configured) if configured else Path(data_dir) / "sim" / f"{name}.sock"


def parse_uid(text: str) -> bytes:
    """A UID in hex, with optional ``:`` or space separators; 4 to 10 bytes as ISO 14443 and
    FeliCa IDm have. Raises ValueError with a message fit for a person."""
    cleaned = text.replace(":", "").replace(" ", "")
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"UID {text!r} is not hex (example: 04a1b2c3d4)") from None
    if not 4 <= len(uid) <= 10:
        raise ValueError(f"UID {text!r} has {len(uid)} bytes; a card UID has 4 to 10")
    return uid


class _SimSocket(abc.ABC):
    """A local socket (mode 0600, a bounded number of clients: local_socket.py) taking one JSON
    request per line; subclasses answer them."""

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None:
        self.name = name
        self.path = socket_path(name, options, data_dir)
        self.emit = emit
        self.server = LocalServer(self.path, self._answer, log=log)

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def _answer(self, line: bytes, uid: int) -> dict[str, Any]:
        try:
            return await self.handle(json_request(line))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return {"ok": False, "error": str(exc) or f"bad request: {exc!r}"}

    @abc.abstractmethod
    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request; raising ValueError, KeyError or TypeError answers with the error."""


class SimReader(_SimSocket):
    OPTIONS = {
        "socket": Option(str, "", "Unix socket to listen on; empty means <data-dir>/sim/<reader>.sock"),
    }

    def __init__(self, name: str, options: Mapping[str, Any], emit: Emit, *, data_dir: Path) -> None:
        super().__init__(name, options, emit, data_dir=data_dir)
        self.card_in = False

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        wait = request.get("answer", 0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= ANSWER_MAX_S:
            return {"ok": False, "error": f"answer must be a number of seconds from 0 to {ANSWER_MAX_S:g}"}
        if op == "tap":
            uid = parse_uid(str(request["uid"]))
            if self.card_in:
                self.emit(CardRemoved(source=self.name))
            self.card_in = True
            return await self._emit(CardPresented(source=self.name, uid=uid), wait)
        elif op == "pull":
            if not self.card_in:
                return {"ok": False, "error": f"no card on reader {self.name}"}
            self.card_in = False
            return await self._emit(CardRemoved(source=self.name), wait)
        elif op == "pin":
            digits = str(request["digits"])
            # isdigit alone takes any script's digits (and superscripts): a pad types 0-9 only.
            if not (digits.isascii() and digits.isdigit()) or not 1 <= len(digits) <= 16:
                return {"ok": False, "error": f"PIN {digits!r} must be 1 to 16 digits"}
            return await self._emit(PinEntered(source=self.name, digits=digits), wait)
        return {"ok": False, "error": f"unknown op {op!r} (known: tap, pull, pin)"}

    async def _emit(self, event: Event, wait: float) -> dict[str, Any]:
        """Emit ``event``; with ``wait``, carry a callable the daemon answers through, and wait
        that long for the answer."""
        if not wait:
            self.emit(event)
            return {"ok": True}
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[dict[str, Any]] = loop.create_future()

        def settle(outcome: dict[str, Any]) -> None:
            if not answered.done():
                answered.set_result(outcome)

        def answer(outcome: dict[str, Any]) -> None:  # from the daemon, on any thread
            loop.call_soon_threadsafe(settle, outcome)
        self.emit(dataclasses.replace(event, raw={**event.raw, "answer": answer}))
        try:
            outcome = await asyncio.wait_for(answered, wait)
        except TimeoutError:
            return {"ok": True}
        return {"ok": True, "decided": outcome.get("decided", []), "waiting": outcome.get("waiting")}


class SimInput(_SimSocket):
    """A simulated binary input: ``{"op": "set", "active": true}``, or ``{"op": "press"}`` for
    a momentary press (active, then inactive)."""

    OPTIONS = {
        "socket": Option(str, "", "Unix socket to listen on; empty means <data-dir>/sim/<input>.sock"),
    }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "set":
            active = request["active"]
            if not isinstance(active, bool):
                return {"ok": False, "error": "active must be true or false"}
            self.emit(InputChanged(source=self.name, active=active))
        elif op == "press":
            self.emit(InputChanged(source=self.name, active=True))
            self.emit(InputChanged(source=self.name, active=False))
        else:
            return {"ok": False, "error": f"unknown op {op!r} (known: set, press)"}
        return {"ok": True}
