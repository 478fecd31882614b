"""Records the store would not take at the stop, and how the next start learns of them.

Every event is committed before it is published, and a store that refuses a write (a full disk)
keeps the daemon retrying with the events in memory. Only the stop can end that: after the
stop's own retries, what is still not committed is written to the journal (stderr), one JSON
line per record, and counted in ``records-lost`` in the data dir; the daemon exits non-zero, and
the next start raises a ``records_lost`` alarm with the count. The records carry what the store
would have kept: keyed hashes and pseudonyms, never a card UID (nothing in the daemon holds one
past the tap).

A disk that is full at the stop has no room for the count either, so the data dir keeps a small
``reserve`` file while the daemon runs; deleting it is what makes that room.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESERVE = "reserve"
RESERVE_BYTES = 64 * 1024
MARKER = "records-lost"


def keep_reserve(data_dir: Path) -> None:
    """Make sure the reserve exists (at every start: the last stop may have used it)."""
    path = Path(data_dir) / RESERVE
    if path.exists() and path.stat().st_size == RESERVE_BYTES:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)  # real blocks, not a sparse promise
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        path.unlink(missing_ok=True)
        log.warning("%s: cannot keep %d KiB in reserve (%s): a stop on a full disk may not be able to count "
                    "what it could not record", path, RESERVE_BYTES // 1024, exc.strerror)


def write_lost(data_dir: Path, items: Sequence[Any]) -> None:
    """Journal each record that was never committed, and count them for the next start."""
    for item in items:
        log.error("unrecorded %s", json.dumps({"record": type(item).__name__, **dataclasses.asdict(item)},
                                              sort_keys=True, ensure_ascii=False, default=str))
    (Path(data_dir) / RESERVE).unlink(missing_ok=True)
    path = Path(data_dir) / MARKER
    count = len(items) + (lost_before(data_dir) or 0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{count}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.error("%s: cannot note that %d records were lost (%s); the lines above are all that is left of them",
                  path, len(items), exc.strerror)
        return
    log.error("%d records could not be committed; they are in the lines above, and the next start raises "
              "a records_lost alarm", len(items))


def lost_before(data_dir: Path) -> int | None:
    """How many records earlier stops lost, or None when none did."""
    try:
        return int((Path(data_dir) / MARKER).read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("%s: unreadable (%s); counting it as one lost record", Path(data_dir) / MARKER, exc)
        return 1


def forget_lost(data_dir: Path) -> None:
    """Once the alarm is committed, the count has a home in the record."""
    (Path(data_dir) / MARKER).unlink(missing_ok=True)
