"""The control socket: how the command line asks the running daemon to do something.

A Unix socket in the data dir, mode 0600, so only the daemon's own user (root, or the
``sekisho`` service user) can use it. One JSON request per line, one JSON answer per line:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; the ops and their arguments are the
table's (ops.py), every op of this node, also those a signed command may not run. The caller's
user is taken from the socket's peer credentials, not from the request, and goes into the audit
log.

No number of clients can exhaust the daemon through it: at most a bounded number of connections
at once, the longest idle closed to make room for a new one, accept backing off when the process
is out of descriptors, and all of it logged at most once a minute (sekisho.drivers.local_socket).
"""

from __future__ import annotations

import json
import logging
import pwd
import socket
from pathlib import Path
from typing import Any

from sekisho.drivers.local_socket import LocalServer, json_request

from .errors import PermissionDenied, SekishoError
from .ops import Table

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class ControlServer:
    def __init__(self, data_dir: Path, ops: Table) -> None:
        self.path = socket_path(data_dir)
        self.ops = ops
        self.server = LocalServer(self.path, self._answer, log=log)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def _answer(self, line: bytes, uid: int) -> dict[str, Any]:
        return await self._dispatch(line, user_name(uid))

    async def _dispatch(self, line: bytes, user: str) -> dict[str, Any]:
        try:
            request = json_request(line)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return await self.ops.run(request.get("op"), request, f"cli:{user}")


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
