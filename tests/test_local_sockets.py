"""Local sockets cannot exhaust the daemon (issue 12, item 8): thousands of connections held
open to the control socket and a sim reader's socket leave it answering taps and commands, its
descriptors and its log bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from conftest import wait_for

UID = "04a1b2c3d4e5f6"
CONNECTIONS = 2000
LOG_BOUND = 200_000
"""Bytes the daemon may log through the whole flood: a handful of rate-limited lines."""


@pytest.fixture
def many_files():
    """This process holds every client socket at once: its soft limit up to what that needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CONNECTIONS + 512
    assert hard == resource.RLIM_INFINITY or hard >= need, \
        f"the test needs {need} open files, the hard limit is {hard} (ulimit -Hn)"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(path: Path, deadline: float) -> socket.socket:
    """Connected, however long the daemon takes to accept (a full backlog answers EAGAIN)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    while True:
        try:
            s.connect(str(path))
            return s
        except BlockingIOError:
            if time.monotonic() > deadline:
                s.close()
                raise AssertionError(f"{path.name} accepted no connection for too long") from None
            time.sleep(0.005)


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def limits(pid: int) -> tuple[int, int]:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@pytest.mark.parametrize("nofile, raised", [("512:1024", (1024, 1024)), ("64:64", (64, 64))],
                         ids=["caps", "out-of-descriptors"])
def test_thousands_of_local_connections_leave_the_daemon_answering(site, subscribe, many_files, nofile, raised):
    """512:1024: the daemon raises its soft limit to the hard one, and 2,000 connections are
    still more than it could hold without its caps. 64:64: a limit below what the caps allow
    for, so accept meets EMFILE, where today's daemon livelocked writing its log."""
    site.enroll("u1", UID)
    sub = subscribe()
    site.start(wrapper=("prlimit", f"--nofile={nofile}", "--"))
    pid = site.proc.pid
    assert limits(pid) == raised
    targets = [site.data_dir / "control.sock", site.data_dir / "sim" / "entrance-in.sock"]
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        for i in range(CONNECTIONS):
            held.append(connect(targets[i % 2], deadline))
        assert site.proc.poll() is None, site.daemon_log()[-2000:]
        # The kernel completes a connect into the listen backlog before the daemon accepts it:
        # the daemon may still be closing the surplus, but never holds more than its caps.
        wait_for(lambda: open_files(pid) < 100, what="the daemon to hold at most its caps' worth of files")
        # Still answering, while every one of those connections is held open by this process.
        site.tap(UID)
        wait_for(lambda: sub.events(), what="the tap's door event")
        assert sub.events()[0]["result"] == "granted", sub.events()
        r = site.cli("door", "list")
        assert "entrance" in r.stdout and "locked" in r.stdout, r.stdout
        assert site.control({"op": "door.list"})["ok"] is True
        assert site.log.stat().st_size < LOG_BOUND, f"the log grew to {site.log.stat().st_size} bytes"
    finally:
        for s in held:
            s.close()
    time.sleep(1)  # anything the flood set off would be logging now
    assert site.stop() == 0
    text = site.daemon_log()
    assert len(text.encode()) < LOG_BOUND, f"the log grew to {len(text.encode())} bytes"
    assert "closed the longest idle" in text  # the cap, not luck, kept it bounded
    assert "Traceback" not in text, text[-3000:]


def test_the_longest_idle_connection_makes_room_never_a_busy_one(tmp_path, caplog):
    """The cap's rule, in one process: a newcomer beyond the cap closes the connection idle the
    longest (by activity, not age); one answering a request is never closed; with every one
    busy, the newcomer is; and each kind of message is logged once, however often it happens."""
    from sekisho.drivers.local_socket import LocalServer

    path = tmp_path / "s.sock"

    async def main() -> None:
        release = asyncio.Event()

        async def answer(line: bytes, uid: int) -> dict:
            if line.strip() == b"wait":
                await release.wait()
            return {"ok": True, "uid": uid}

        server = LocalServer(path, answer, log=logging.getLogger("sekisho.test"), limit=3)
        await server.start()

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_unix_connection(str(path))

        async def ask(client, text: str = "hello") -> bytes:  # noqa: ANN001
            client[1].write(text.encode() + b"\n")
            await client[1].drain()
            return await asyncio.wait_for(client[0].readline(), 5)

        async def busy(n: int) -> None:
            while sum(c.busy for c in server.clients) < n:
                await asyncio.sleep(0.01)

        a, b, c = await connect(), await connect(), await connect()
        for client in (a, b, c):
            assert json.loads(await ask(client)) == {"ok": True, "uid": os.getuid()}
        assert await ask(a)  # a is now the most recently active; b and c are older in use
        b[1].write(b"wait\n")
        await asyncio.wait_for(busy(1), 5)
        d = await connect()
        assert await ask(d)  # room made ...
        assert await asyncio.wait_for(c[0].read(), 5) == b""  # ... by c: b is busy, a was used since
        e = await connect()
        assert await ask(e)
        assert await asyncio.wait_for(a[0].read(), 5) == b""
        d[1].write(b"wait\n")
        e[1].write(b"wait\n")
        await asyncio.wait_for(busy(3), 5)
        f = await connect()
        assert await asyncio.wait_for(f[0].read(), 5) == b""  # every one busy: the newcomer goes
        release.set()
        for client in (b, d, e):
            assert json.loads(await asyncio.wait_for(client[0].readline(), 5))["ok"] is True
        await server.stop()
        assert not path.exists()

    with caplog.at_level(logging.WARNING, logger="sekisho.test"):
        asyncio.run(main())
    made_room = [r for r in caplog.records if "closed the longest idle" in r.getMessage()]
    refused = [r for r in caplog.records if "closed a new one" in r.getMessage()]
    assert len(made_room) == 1 and len(refused) == 1, [r.getMessage() for r in caplog.records]
