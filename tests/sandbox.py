"""The part of systemd/sekisho.service's sandbox that the kernel enforces per process, applied
without systemd, then ``exec`` of the command after ``--``:

    setpriv --bounding-set=-all ... --no-new-privs python tests/sandbox.py UNIT -- COMMAND ...

setpriv (util-linux) does CapabilityBoundingSet= and NoNewPrivileges=; this file loads the
seccomp filters systemd would build from the unit's SystemCallFilter= (the groups as this
machine's ``systemd-analyze syscall-filter`` lists them), SystemCallErrorNumber=,
SystemCallArchitectures=native, RestrictAddressFamilies= and MemoryDenyWriteExecute=, through
libseccomp as systemd does (one filter each; the kernel applies the strictest answer).

One difference, on purpose: a call outside SystemCallFilter= kills the process here where
systemd answers EPERM, so that a test learns of any call the daemon makes outside the list
(a daemon that shrugs off EPERM would hide it). The calls of the groups the unit removes
(``~@privileged @resources``) are answered EPERM, as under systemd: SQLite's fchown() of its
journal files as root is one, and it ignores the answer.

The mount-namespace directives (ProtectSystem=, ProtectKernelTunables=, ReadWritePaths=,
PrivateTmp=, ProtectHome=, DevicePolicy= ...) are not emulated: they need systemd's own setup.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
CMP_EQ = 4
CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4
SHM_EXEC = 0o100000


def errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def groups() -> dict[str, list[str]]:
    """systemd's syscall groups as this machine's systemd-analyze lists them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = found.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
    return found


def expand(names: list[str], table: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        calls |= expand(table[name], table) if name.startswith("@") else {name}
    return calls


def unit_values(unit: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]


class Filter:
    def __init__(self, lib: ctypes.CDLL, default: int) -> None:
        self.lib = lib
        self.ctx = lib.seccomp_init(default)
        assert self.ctx, "seccomp_init failed"

    def rule(self, action: int, name: str, *conditions: tuple[int, int, int, int]) -> None:
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a call on this architecture
        args = (ArgCmp * max(len(conditions), 1))(*(ArgCmp(*c) for c in conditions))
        rc = self.lib.seccomp_rule_add_array(self.ctx, action, nr, len(conditions), args)
        assert rc == 0 or rc == -errno.EEXIST, f"seccomp rule for {name}: {os.strerror(-rc)}"

    def load(self) -> None:
        rc = self.lib.seccomp_load(self.ctx)
        assert rc == 0, f"seccomp_load: {os.strerror(-rc)}"
        self.lib.seccomp_release(self.ctx)


def apply(unit: Path) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    table = groups()

    # SystemCallFilter=: the allow list, then the groups taken out of it.
    allowed: set[str] = set()
    removed: set[str] = set()
    for value in unit_values(unit, "SystemCallFilter"):
        if value.startswith("~"):
            removed |= expand(value[1:].split(), table)
        else:
            allowed |= expand(value.split(), table)
    (code,) = unit_values(unit, "SystemCallErrorNumber")
    calls = Filter(lib, KILL_PROCESS)
    for name in sorted(allowed - removed):
        calls.rule(ALLOW, name)
    for name in sorted(removed):
        calls.rule(errno_action(getattr(errno, code)), name)

    # MemoryDenyWriteExecute=: no mapping both writable and executable, no exec added later.
    mdwe = Filter(lib, ALLOW)
    mdwe.rule(errno_action(errno.EPERM), "mmap", (2, CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
    mdwe.rule(errno_action(errno.EPERM), "mprotect", (2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    mdwe.rule(errno_action(errno.EPERM), "pkey_mprotect", (2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    mdwe.rule(errno_action(errno.EPERM), "shmat", (2, CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))

    # RestrictAddressFamilies=: socket() of any other family is EAFNOSUPPORT.
    (families,) = unit_values(unit, "RestrictAddressFamilies")
    keep = {int(getattr(socket, name)) for name in families.split()}
    sockets = Filter(lib, ALLOW)
    for family in range(64):  # AF_MAX is below 64 on every kernel so far
        if family not in keep:
            sockets.rule(errno_action(errno.EAFNOSUPPORT), "socket", (0, CMP_EQ, family, 0))

    for f in (mdwe, sockets, calls):  # the allow list last: loading a filter is a call too
        f.load()


def setpriv() -> list[str]:
    """CapabilityBoundingSet= (empty) and NoNewPrivileges=yes, for a root process."""
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs"]


if __name__ == "__main__":
    unit_path, sep, *command = sys.argv[1:]
    assert sep == "--", "usage: sandbox.py UNIT -- COMMAND ..."
    apply(Path(unit_path))
    os.execvp(command[0], command)
