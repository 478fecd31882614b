"""The project's exception tree. A ``SekishoError`` is a user's or an installer's problem,
printed as its message alone; anything else is a bug and keeps its traceback.

Each class carries the exit status the command line ends with (sysexits.h, as systemd and
shell scripts read them): a script can tell a typo (64, 65) from a missing daemon (69), a
missing privilege (77) and a broken config (78) without parsing text. The command line maps
them in one place, ``cli.main``.
"""

from __future__ import annotations

import os


class SekishoError(Exception):
    """The command could not be done; the message says why (exit 1)."""

    exit_code = 1


class UsageError(SekishoError):
    """The command was used wrongly: a missing or conflicting argument."""

    exit_code = os.EX_USAGE  # 64


class DataError(SekishoError):
    """What was given is wrong: a name that names nothing (person, door, level, reader), a UID
    that is not hex, a date that is not a date, a range that ends before it starts."""

    exit_code = os.EX_DATAERR  # 65


class DataErrors(DataError):
    """Problems in a file a command reads (a roster), each one line naming the file and its line
    (``roster.csv:12: ...``), all found before anything was written; the message is the summary
    printed after them."""

    def __init__(self, problems: list[str], summary: str) -> None:
        super().__init__(summary)
        self.problems = problems


class NoInput(SekishoError):
    """What a command would read is not there: a data directory without a store."""

    exit_code = os.EX_NOINPUT  # 66


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


class PermissionDenied(SekishoError):
    """The operating system refused access (EACCES, EPERM): a data directory, config or socket
    that belongs to root or to the sekisho user."""

    exit_code = os.EX_NOPERM  # 77
    HINT = "run as root or as the sekisho user"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: permission denied ({self.HINT})")


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
