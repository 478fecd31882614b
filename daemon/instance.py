"""One daemon per data dir.

Two daemons on one data dir would decide from the same store, hand out the same ``seq`` twice,
knock each other off the broker (one client id) and take over each other's sockets. So the
daemon holds an exclusive ``flock`` on ``<data-dir>/daemon.lock`` for as long as it runs. The
kernel lets go of it when the process ends, however it ends, so a lock file left behind by a
SIGKILL or a power cut never keeps a node down; the file holds the pid only for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import SekishoError

LOCK_NAME = "daemon.lock"


class AlreadyRunning(SekishoError):
    exit_code = 75  # EX_TEMPFAIL: it may work later, once the other one stops


def hold_data_dir(data_dir: Path) -> int:
    """Lock the data dir for this process; the open file descriptor, kept until the process ends."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SekishoError(f"{path}: cannot open the data dir's lock: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(f"{data_dir}: already running (pid {pid}); one daemon per data dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
