"""The control socket: how the command line asks the running daemon to do something.

A Unix socket in the data dir, mode 0600, so only the daemon's own user (root, or the
``sekisho`` service user) can use it. One JSON request per line, one JSON answer per line:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The caller's user is taken from the
socket's peer credentials, not from the request, and goes into the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from .errors import PermissionDenied, SekishoError

log = logging.getLogger("sekisho.control")

SOCKET_NAME = "control.sock"
Handler = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def peer_user(writer: asyncio.StreamWriter) -> str:
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class ControlServer:
    def __init__(self, data_dir: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = socket_path(data_dir)
        self.handlers = handlers
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.is_socket():
            self.path.unlink()  # left over from a daemon that was killed
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        user = peer_user(writer)
        try:
            while line := await reader.readline():
                reply = await self._dispatch(line, user)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            log.debug("control client %s went away", user)
        finally:
            writer.close()

    async def _dispatch(self, line: bytes, user: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "bad request: not a JSON object"}
        return await run_op(self.handlers, request.get("op"), request, f"cli:{user}")


async def run_op(handlers: Mapping[str, Handler], op: Any, request: dict[str, Any], actor: str) -> dict[str, Any]:
    """Run one op as the control socket and signed commands both do: ``{"ok": true, ...}`` with
    what the op answers, or ``{"ok": false, "error": "..."}``."""
    handler = handlers.get(op) if isinstance(op, str) else None
    if handler is None:
        return {"ok": False, "error": f"unknown op {op!r} (known: {', '.join(handlers)})"}
    try:
        return {"ok": True, **await handler(request, actor)}
    except SekishoError as exc:
        return {"ok": False, "error": str(exc)}
    except KeyError as exc:
        return {"ok": False, "error": f"bad request: {op} needs {exc.args[0]!r}"}
    except (ValueError, TypeError, AttributeError) as exc:
        return {"ok": False, "error": f"bad request: {exc!r}"}


def call(data_dir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Send one request to the running daemon; None when no daemon listens."""
    path = socket_path(data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except PermissionError:
            raise PermissionDenied(str(path)) from None
        s.sendall(json.dumps(request).encode() + b"\n")
        line = s.makefile("rb").readline()
    if not line:
        raise SekishoError("the daemon closed the control connection without answering")
    return json.loads(line)
