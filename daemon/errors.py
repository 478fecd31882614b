"""The project's exception tree. A ``SekishoError`` is a user's or an installer's problem,
printed as its message alone; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import os


class SekishoError(Exception):
    exit_code = 1


class ConfigError(SekishoError):
    """One or more problems in the config, each already formatted as one line."""

    exit_code = os.EX_CONFIG  # 78: what sysexits.h and systemd call a configuration error

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(SekishoError):
    exit_code = 74  # EX_IOERR


class StoreDamaged(StoreError):
    """SQLite found the database file corrupt (SQLITE_CORRUPT) or not a database at all
    (SQLITE_NOTADB). Nothing is written past it: a record added to a damaged file may be lost
    with the rest of it, and a repair is for a person with a backup, not for the daemon."""

    exit_code = 65  # EX_DATAERR, as `audit verify` answers an altered log


class Unavailable(SekishoError):
    """A service the command needs is not there: the daemon, the broker."""

    exit_code = 69  # EX_UNAVAILABLE


class SekishoDBusError(SekishoError):
    """A D-Bus call failed. ``name`` keeps the D-Bus error name (``org.freedesktop.login1.NoSuchSession``,
    ``org.freedesktop.DBus.Error.AccessDenied``, ...), so a caller can tell a gone session from a
    refused call without parsing text."""

    def __init__(self, name: str, text: str = "", *, call: str = "") -> None:
        self.name = name
        self.text = text
        self.call = call
        where = f"{call}: " if call else ""
        super().__init__(f"{where}{name}" + (f": {text}" if text else ""))
