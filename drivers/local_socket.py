"""A Unix socket for local clients (the ``sekisho`` commands, a simulated reader's driver) that
no number of clients can exhaust.

The socket is born mode 0600 (the umask is set around ``bind``, so it is never briefly open to
others). The protocol is one request per line and one answer per line; what a line means is the
owner's business, through its ``answer`` callback.

How it fails, and why:

- **At most ``limit`` connections at once.** A connection beyond that makes room by closing the
  one that has been idle longest (connected, no request being answered); when every one is in
  the middle of a request, the newcomer is closed at once. So a script that leaks connections
  never shuts out the next ``sekisho`` command or tap, and the daemon's file descriptors stay
  bounded by ``limit`` per socket whatever clients do. Activity, not age, picks the victim: a
  benchmark's one long connection tapping a thousand times is never the one closed.
- **Out of descriptors, accept neither spins nor gives up.** On EMFILE, ENFILE, ENOBUFS or
  ENOMEM (a process limit lower than the caps allow for) the longest idle client of this socket
  is closed to make room, as above; with none, the accept loop sleeps (doubling, up to a second)
  and the clients wait in the kernel's backlog. asyncio's own ``start_unix_server`` does
  neither (Python 3.11): on EMFILE it logs a traceback and tries again up to a hundred times in
  the same tick, scheduling a retry for each attempt, which is how 1,500 connections made the
  daemon livelock writing gigabytes of log.
- **The log stays bounded.** Each kind of trouble (closed to make room, refused, accept failed,
  a handler's bug) is logged at most once a minute per socket, and when the minute is over, one
  line says how many more there were.
- A client that hangs up, or sends a line longer than ``LINE_LIMIT``, is closed without an answer.
- Both owners take a JSON object per line, read by ``json_request``: a line that is not one
  (not UTF-8, not JSON, nested past what Python's parser takes, not an object) is a ``ValueError``
  with one line of text for the answer. A line of 64 KiB of ``[`` once escaped as a
  ``RecursionError``: the client got no answer and the log a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MAX_CLIENTS = 32
"""Connections per socket at once; a person's commands and a test's taps need a handful."""
LINE_LIMIT = 64 * 1024
BACKLOG = 128
BACKOFF_S = (0.05, 1.0)
"""First and longest pause of the accept loop when the process is out of descriptors."""
LOG_EVERY_S = 60.0
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Answer = Callable[[bytes, int], Awaitable[dict[str, Any]]]
"""One request line and the peer's uid -> the answer, sent back as one JSON line."""


def json_request(line: bytes) -> dict[str, Any]:
    """One request line as a JSON object; ``ValueError`` with the reason otherwise."""
    try:
        request = json.loads(line)
    except RecursionError:
        raise ValueError("bad request: nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("bad request: not UTF-8") from None
    except ValueError as exc:
        raise ValueError(f"bad request: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError("bad request: not a JSON object")
    return request


class ThrottledLog:
    """Logs each kind of message at most once per ``every`` seconds; what was left out is
    counted, and reported when the window ends."""

    def __init__(self, log: logging.Logger, prefix: str, every: float = LOG_EVERY_S) -> None:
        self.log = log
        self.prefix = prefix
        self.every = every
        self.last: dict[str, float] = {}
        self.left_out: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self.last.get(kind)
        if last is not None and now - last < self.every:
            if not self.left_out[kind]:
                asyncio.get_running_loop().call_later(self.every - (now - last), self._window_over, kind)
            self.left_out[kind] += 1
            return
        self.last[kind] = now
        self.log.warning("%s: " + message, self.prefix, *args, exc_info=exc_info)

    def _window_over(self, kind: str) -> None:
        n = self.left_out.pop(kind, 0)
        if n:
            self.last[kind] = time.monotonic()
            self.log.warning("%s: %s %d more times in the last %.0f s", self.prefix, kind, n, self.every)


class _Client:
    def __init__(self, sock: socket.socket, uid: int) -> None:
        self.sock = sock
        self.uid = uid
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.busy = False

    def drop(self) -> None:
        """Close at once, whatever is buffered: a peer that reads nothing must not keep it open."""
        if self.writer is not None:
            self.writer.transport.abort()
        if self.task is not None:
            self.task.cancel()


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class LocalServer:
    def __init__(self, path: Path, answer: Answer, *, log: logging.Logger, limit: int = MAX_CLIENTS) -> None:
        self.path = Path(path)
        self.answer = answer
        self.limit = limit
        self.log = ThrottledLog(log, self.path.name)
        self.debug = log.debug
        self.listener: socket.socket | None = None
        self.accepting: asyncio.Task[None] | None = None
        self.clients: collections.OrderedDict[_Client, None] = collections.OrderedDict()
        """Least recently active first: the next to close when a newcomer needs room."""

    async def start(self) -> None:
        if self.path.is_socket():
            self.path.unlink()  # left over from a daemon that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600, never briefly world-writable
        try:
            listener.bind(str(self.path))
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        self.listener = listener
        self.accepting = asyncio.get_running_loop().create_task(self._accept(), name=f"accept {self.path.name}")

    async def stop(self) -> None:
        if self.accepting is not None:
            self.accepting.cancel()
            await asyncio.gather(self.accepting, return_exceptions=True)
            self.accepting = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        tasks = [c.task for c in self.clients if c.task is not None]
        for client in list(self.clients):
            client.drop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.path.unlink(missing_ok=True)

    async def _accept(self) -> None:
        assert self.listener is not None
        loop = asyncio.get_running_loop()
        pause = 0.0
        while True:
            try:
                sock, _ = await loop.sock_accept(self.listener)
            except OSError as exc:
                out = exc.errno in OUT_OF_RESOURCES
                if out and self._drop_longest_idle():
                    # This socket's own idle clients yield first: the newcomer is the one
                    # likely to ask for something. One loop turn lets the dropped one close.
                    self.log.warning("made room", "out of descriptors; closed the longest idle connection")
                    await asyncio.sleep(0)
                    continue
                # Out of descriptors with nothing to give back (or a peer gone before accept):
                # wait, the clients held in the kernel's backlog, rather than retry in a tight loop.
                pause = min(BACKOFF_S[1], pause * 2 or BACKOFF_S[0])
                kind = "out of resources" if out else "accept failed"
                self.log.warning(kind, "cannot accept a connection: %s; retrying in %.2f s", exc.strerror or exc,
                                 pause)
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            self._admit(sock)
            # With a backlog, sock_accept returns at once, never yielding: without this turn a
            # flood of connections starves every other task, and the closes of those dropped.
            await asyncio.sleep(0)

    def _drop_longest_idle(self) -> bool:
        idle = next((c for c in self.clients if not c.busy), None)
        if idle is None:
            return False
        del self.clients[idle]
        idle.drop()
        return True

    def _admit(self, sock: socket.socket) -> None:
        if len(self.clients) >= self.limit:
            if not self._drop_longest_idle():
                sock.close()
                self.log.warning("refused", "%d connections, each answering a request; closed a new one",
                                 len(self.clients))
                return
            self.log.warning("made room", "%d connections at once; closed the longest idle to make room",
                             self.limit)
        try:
            uid = peer_uid(sock)
        except OSError:
            sock.close()  # hung up already
            return
        client = _Client(sock, uid)
        self.clients[client] = None
        client.task = asyncio.get_running_loop().create_task(self._serve(client))
        # A done callback, not a ``finally``: a task cancelled before it ever ran (closed to make
        # room at once) runs no ``finally``, and its socket would wait for the garbage collector.
        client.task.add_done_callback(lambda task: self._gone(client))

    def _gone(self, client: _Client) -> None:
        self.clients.pop(client, None)
        if client.writer is not None:
            client.writer.transport.abort()
        else:
            client.sock.close()

    async def _serve(self, client: _Client) -> None:
        try:
            reader, client.writer = await asyncio.open_unix_connection(sock=client.sock, limit=LINE_LIMIT)
            while line := await reader.readline():
                client.busy = True
                try:
                    reply = await self.answer(line, client.uid)
                finally:
                    client.busy = False
                if client in self.clients:
                    self.clients.move_to_end(client)
                client.writer.write(json.dumps(reply).encode() + b"\n")
                await client.writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            self.debug("%s: a client hung up or sent an over-long line", self.path.name)
        except Exception:
            # A bug in an answer: this client is closed, the socket keeps serving the others.
            self.log.warning("bug", "a request failed", exc_info=True)
