"""A throw-away PostgreSQL cluster for the recorder's tests and bench: Debian's ``postgresql``
binaries (/usr/lib/postgresql/<version>/bin), ``initdb`` into a temp dir, listening on a Unix
socket in that dir only (no TCP port, so no clash with another run or a site's own server), and
``pg_ctl stop -m fast`` at the end.

PostgreSQL refuses to run as root: as root (CI) the cluster runs as the ``postgres`` user the
Debian package creates, through ``runuser``, and the temp dir is given to it. Missing binaries
or a missing user fail loudly: the tests never skip PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "sekisho"


def binaries() -> Path:
    """The newest installed version's bin dir."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): run `make deps`, "
                           "which installs Debian's postgresql; the recorder's tests need a real server")
    return found[-1].parent


class Postgres:
    def __init__(self, fsync: bool = True) -> None:
        self.bin = binaries()
        self.fsync = fsync
        self.as_user: list[str] = []
        if os.geteuid() != 0:
            self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        else:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user to run PostgreSQL as: install "
                                   "Debian's postgresql (make deps)") from None
            # In /tmp itself, whatever TMPDIR says: the postgres user must reach the dir, and a
            # test's or a bench's own temp dir is 0700 root's.
            self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._names = itertools.count(1)
        self.running = False

    def _run(self, *cmd: str) -> None:
        r = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120, cwd=self.dir)
        if r.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}\n{log}")

    def start(self) -> Postgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        options = f"-c listen_addresses='' -k {self.dir} -c fsync={'on' if self.fsync else 'off'}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")
        self.running = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.dir}&user={SUPERUSER}"

    def new_database(self) -> str:
        """A fresh, empty database on the cluster; its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            # Also after a start that failed half-way: a postmaster.pid means a server may run.
            if self.running or (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
                self.running = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
