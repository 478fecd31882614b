"""The node's SQLite file, opened once and shared by every view of it (``People``, ``Record``,
``Outbox``): the checks at opening, the schema brought up to date, and the one write transaction.

SQLite through sqlite-utils, in WAL mode with ``synchronous=FULL``. Kept apart from what is
stored, because the failure model below is the same for every table: a view only says what to
write, ``transaction()`` decides what a failure means.

The CLI opens the same file while the daemon runs; every write takes the write lock up front
(``BEGIN IMMEDIATE``), so two writers queue instead of failing, and the audit chain and the
sequence are always read and extended under that lock.

When the disk or the file fails:
  - A full disk (or any other failed write) is a ``StoreError``: the transaction is rolled back
    whole, and the caller keeps what it meant to write and tries again. The WAL cannot fill a
    small filesystem by itself: it is checkpointed every ``WAL_PAGES`` pages and cut back to
    ``WAL_LIMIT`` (``journal_size_limit``), a new schema is checkpointed at once, and a failed
    write is followed by a TRUNCATE checkpoint that gives back whatever the WAL still holds.
  - A damaged file (SQLite's CORRUPT or NOTADB) is a ``StoreDamaged``, on reads and writes:
    nothing is written past it. The daemon opens the store only after ``PRAGMA quick_check``
    passes, and ``integrity()`` runs the full check for ``audit verify``.
  - The file, its WAL and its shared-memory index are the site's records: created 0600, in a
    data dir that others may not read (refused otherwise, as the site key is).

One fsync per write transaction is the floor of the tap path, so a write that needs no sync of its
own does not take one (``riders``, ``transaction(durable=False)``): it rides along with the next
transaction, or, when none comes, it commits without a sync. ``synchronous`` is a setting of the
connection, not of a transaction, so a commit without a sync sets it to NORMAL around that one
transaction and back to FULL, on the loop that owns the connection. In WAL mode such a commit is
still atomic and consistent; a crash may only lose it whole, and the next full commit syncs it
with its own frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlite_utils

from ..errors import PermissionDenied, StoreDamaged, StoreError
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

DB_NAME = "sekisho.db"
WAL_PAGES = 256
"""Pages in the WAL that start a checkpoint (SQLite's default, 1,000 pages, is 4 MB: a small data
filesystem fills with WAL frames before a checkpoint ever moves them into the database)."""
WAL_LIMIT = WAL_PAGES * 4096
"""Bytes the WAL is cut back to when it restarts (SQLite's default keeps its largest size)."""
_DAMAGE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes; extended ones add high bits)


def is_damage(exc: BaseException) -> bool:
    """Is this SQLite error a damaged file, as opposed to a full disk, a lock or a bug?"""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in _DAMAGE_CODES


class Database:
    def __init__(self, data_dir: Path, *, check: bool = False) -> None:
        """Open (or create) the node's store in ``data_dir``. With ``check``, as the daemon
        opens it, a file that fails ``PRAGMA quick_check`` is refused before anything is
        written to it."""
        self.path = Path(data_dir) / DB_NAME
        _private_dir(Path(data_dir))
        try:
            # Created 0600 before SQLite sees it: SQLite gives the WAL and the shared-memory
            # file the database file's own mode. Only when it is new (O_EXCL): closing any
            # descriptor of the file drops every POSIX lock this process holds on it, and a
            # second connection in a daemon (the enrolment worker's) would take the first one's
            # locks away; another process would then think itself the last, checkpoint and delete
            # the WAL under it, and the first connection would read a stale store from then on.
            try:
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        except (OSError, sqlite3.Error) as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            # sqlite says only "unable to open database file"; ask the kernel whether it was a
            # missing privilege, which has its own exit status and remedy.
            if isinstance(exc, PermissionError) or not _may_write(Path(data_dir), self.path):
                raise PermissionDenied(str(self.path)) from None
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self.riders: list[Callable[[sqlite3.Connection], Callable[[], None]]] = []
        """Writes that need no sync of their own, done in the next transaction before its COMMIT;
        each returns what to call once that commit took (the outbox's acknowledged rows)."""
        if check:
            problems = self.integrity(quick=True)
            if problems:
                self.db.close()
                raise StoreDamaged(f"{self.path}: the store is damaged and was not opened (nothing was written to "
                                   f"it): {problems[0]}" + (f" (and {len(problems) - 1} more problems)"
                                                            if len(problems) > 1 else "")
                                   + "; run `sekisho audit verify` for the whole check, and restore the file from a "
                                     "backup or move it aside")
        try:
            if self._migrate():
                # A new schema is some 30 pages in the WAL; in the database file they take no
                # room the WAL would want back on a disk that fills.
                self.checkpoint()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise

    def damaged_error(self, exc: BaseException) -> StoreDamaged:
        return StoreDamaged(f"{self.path}: the store is damaged ({exc}); nothing more is written to it")

    def close(self) -> None:
        self.db.close()

    def integrity(self, quick: bool = False) -> list[str]:
        """SQLite's own check of every page, table and index (``quick``: without checking that
        each index matches its table); the problems it names, or none."""
        try:
            rows = self.db.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}(100)").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [row[0] for row in rows if row[0] != "ok"]

    def checkpoint(self) -> None:
        """Copy the WAL into the database and cut the WAL to nothing: after a write failed on
        a full disk, the space the WAL held is what lets the next write through."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise StoreError(f"{self.path}: checkpoint failed: {exc}") from None

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite_utils.Database]:
        """One write transaction, holding the write lock from its first statement, with what
        rides along (``riders``). Not ``durable``: committed without a sync, for what may be
        lost in a crash (see the module's docstring)."""
        if not durable:
            self.db.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction() as db:
                yield db
        finally:
            if not durable:
                self.db.conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise self.damaged_error(exc) from None
            raise StoreError(f"{self.path}: cannot write: {exc}") from None
        try:
            yield self.db
            taken = self._ride_along()
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.conn.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a rollback that fails on a damaged or vanished file leaves nothing to undo
            if is_damage(exc):
                raise self.damaged_error(exc) from exc
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"{self.path}: write failed, nothing of it was kept: {exc}") from exc
            raise
        for done in taken:
            done()

    def _ride_along(self) -> list[Callable[[], None]]:
        """What rides along, each rider in a savepoint of its own: one that fails (a full disk, a
        bug) is undone alone and tried again with a later transaction, and the transaction it rode
        with commits all the same. A rider's work may be put off; an event's commit may not."""
        done = []
        conn = self.db.conn
        for ride in self.riders:
            conn.execute("SAVEPOINT rider")
            try:
                done.append(ride(conn))
            except Exception as exc:
                # Some errors (SQLITE_FULL among them) end the whole transaction, savepoint and
                # all: then nothing of it was kept, and the caller's failure path says so.
                if not conn.in_transaction or (isinstance(exc, sqlite3.Error) and is_damage(exc)):
                    raise
                conn.execute("ROLLBACK TO rider")
                log.warning("%s: put off for a later transaction: %s", self.path, exc)
            conn.execute("RELEASE rider")
        return done

    def schema_version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        return self.db.execute("SELECT version FROM schema_version").fetchone()[0]

    def _migrate(self) -> bool:
        """Bring the schema up to date; whether anything changed."""
        current = self.schema_version()
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.path}: store schema {current} is newer than this sekisho knows "
                             f"({len(MIGRATIONS)}); install a newer sekisho")
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction() as db:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if self.schema_version() >= version:
                    continue
                MIGRATIONS[version - 1](db)
                if version == 1:
                    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    db.execute("INSERT INTO schema_version VALUES (1)")
                else:
                    db.execute("UPDATE schema_version SET version = ?", [version])
        return current < len(MIGRATIONS)


def _may_write(data_dir: Path, db: Path) -> bool:
    """Whether this process may open the store for writing, as far as the kernel says."""
    if not os.path.isdir(data_dir):
        return True  # not a directory at all: a different problem, which StoreError names
    if not os.access(data_dir, os.W_OK | os.X_OK, effective_ids=True):
        return False
    return not os.path.lexists(db) or os.access(db, os.R_OK | os.W_OK, effective_ids=True)


def _private_dir(path: Path) -> None:
    """The data dir holds the records and the site key: made 0700, and refused when others
    may read or enter it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot use the data dir: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(f"{path}: the data dir is open to others (mode {stat.S_IMODE(mode):04o}); "
                         f"run: chmod 700 {path}")
