"""The daemon's system-bus connection for calls to systemd-logind, made again when it drops.

dbus-fast, not jeepney: its asyncio ``MessageBus`` lives on the loop that owns all state, so a
lock needs no thread and no hand-over, and it is the library bleak (our model for a system
D-Bus client) builds on. Only its low-level API is used (``Message`` in, ``Message`` out): every
name is in ``logind_defs``, no call pays for an introspection round trip, and signals that
logind sends but does not declare (dbusmock's logind declares none) are caught all the same.

Every failure of a call, whatever dbus-fast raised or the bus answered, comes out as one
``SekishoDBusError`` with the D-Bus error name, which is what the lock records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError

from . import logind_defs as ld
from .errors import SekishoDBusError

log = logging.getLogger(__name__)


class LogindBus:
    """One connection to the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` is honoured), connected on
    the first call after it dropped, until ``close``."""

    def __init__(self, *, call_timeout: float = 5.0) -> None:
        self.call_timeout = call_timeout
        self._bus: MessageBus | None = None
        self._closed = False

    @property
    def connection(self) -> MessageBus | None:
        """The connection now, None before the first call or after ``close``."""
        return self._bus

    async def connect(self) -> None:
        self._closed = False
        if self._bus is not None and self._bus.connected:
            return
        try:
            self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, DBusFastError, EOFError) as exc:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, str(exc) or type(exc).__name__,
                                   call="connect to the system bus") from None

    async def close(self) -> None:
        self._closed = True
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            try:
                await bus.wait_for_disconnect()
            except (OSError, DBusFastError, EOFError) as exc:
                # The bus had already dropped us with this error; closed is what was asked for.
                log.debug("system bus connection had failed: %s", exc)

    async def call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
                   body: Sequence[Any] = (), timeout: float | None = None) -> list[Any]:
        """One method call; its reply's body, or ``SekishoDBusError`` with the D-Bus error name."""
        what = f"{member}({', '.join(map(str, body))})"
        if self._closed:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, "the logind client is closed", call=what)
        if self._bus is None or not self._bus.connected:
            # The system bus restarted or dropped us: a desk that cannot lock is worse than a
            # reconnect on the lock path.
            await self.connect()
        assert self._bus is not None
        msg = Message(destination=destination, path=path, interface=interface, member=member,
                      signature=signature, body=list(body))
        try:
            reply = await asyncio.wait_for(self._bus.call(msg), self.call_timeout if timeout is None else timeout)
        except TimeoutError:
            raise SekishoDBusError(ld.ERROR_NO_REPLY, "no reply in time", call=what) from None
        except (OSError, DBusFastError, EOFError) as exc:
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, str(exc) or type(exc).__name__, call=what) from None
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise SekishoDBusError(reply.error_name or "unknown", text, call=what)
        return reply.body

    async def manager(self, member: str, signature: str = "", body: Sequence[Any] = (),
                      timeout: float | None = None) -> list[Any]:
        """A call to logind's ``Manager``."""
        return await self.call(ld.BUS_NAME, ld.MANAGER_PATH, ld.MANAGER_IFACE, member, signature, body, timeout)

    async def bus_daemon(self, member: str, arg: str) -> list[Any]:
        """A call to the bus itself (``GetNameOwner``, ``AddMatch``, ...)."""
        return await self.call(ld.DBUS_NAME, ld.DBUS_PATH, ld.DBUS_IFACE, member, "s", (arg,))

    async def remove_match(self, rule: str) -> None:
        try:
            await self.bus_daemon(ld.REMOVE_MATCH, rule)
        except SekishoDBusError as exc:
            # The match dies with the connection when the bus is gone; nothing is left to remove.
            log.debug("RemoveMatch failed: %s", exc)

    @contextlib.contextmanager
    def handler(self, handler: Callable[[Message], None]) -> Iterator[None]:
        """``handler`` sees every message on the connection while the block runs. Only after a
        call, which connects: the handler stays with the connection it was added to, and is
        removed from that one even if a later call had to connect again."""
        bus = self._bus
        if bus is None:
            # close() ran since that call (the daemon is stopping during a desk's lock): the same
            # answer as any call on a closed client, not an AssertionError in a desk's lock task.
            raise SekishoDBusError(ld.ERROR_DISCONNECTED, "the logind client is closed", call="AddMatch")
        bus.add_message_handler(handler)
        try:
            yield
        finally:
            bus.remove_message_handler(handler)
