"""The site's own commands around a lock: ``confirm_command``, which must agree that a graphical
session is locked, and a fallback command for a lock that never was confirmed.

A command is an argument list, run without a shell, with ``{session}``, ``{seat}`` and
``{user}`` substituted: a user name is not something to hand to a shell. A command that fails,
cannot start or hangs past its timeout is a ``False`` with a detail for the record, never an
exception: the lock path turns it into a step, as it does a D-Bus error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .logind_sessions import SessionInfo

log = logging.getLogger(__name__)

TERMINATE = "terminate"
Fallback = str | Sequence[str] | None
"""``"terminate"``, a command as an argument list, or None for no fallback."""


def check_fallback(fallback: Fallback) -> None:
    """Raise ``ValueError`` for a fallback ``lock`` cannot run; config checking calls this too."""
    if fallback is None or fallback == TERMINATE:
        return
    if isinstance(fallback, str) or not fallback or not all(isinstance(a, str) for a in fallback):
        raise ValueError(f"a lock fallback is {TERMINATE!r} or a non-empty list of strings, not {fallback!r}")


class SessionCommands:
    """Runs a configured command for a session, killing it after ``timeout`` seconds."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout

    async def run(self, command: Sequence[str], session: SessionInfo, what: str) -> tuple[bool, str]:
        """(exit 0, detail for the record); ``what`` names the command's purpose in the log."""
        argv = [arg.replace("{session}", session.id).replace("{seat}", session.seat).replace("{user}", session.user)
                for arg in command]
        program = argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            log.error("%s %s: %s", what, program, exc)
            return False, str(exc)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("%s %s: killed after %g s", what, program, self.timeout)
            return False, f"timeout after {self.timeout:g} s"
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            detail = f"exit {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
            log.error("%s %s: %s", what, program, detail)
            return False, detail
        return True, "exit 0"
