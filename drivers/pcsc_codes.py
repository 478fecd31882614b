"""pcscd's answer codes, sorted by what they mean to the driver, and named for the log.

The groups are listed by name, not number: pyscard exports only the codes the pcsc-lite it was
built against defines, and a name it lacks is simply not in the group.
"""

from __future__ import annotations

from typing import Any

DEAD_NAMES = ("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_F_COMM_ERROR")
"""Codes after which a context is dead for good (notes/testing-without-hardware.md, section 1)."""
NO_ANSWER_NAMES = ("SCARD_W_UNRESPONSIVE_CARD", "SCARD_W_UNPOWERED_CARD", "SCARD_E_NOT_TRANSACTED",
                   "SCARD_E_PROTO_MISMATCH", "SCARD_E_TIMEOUT")
REMOVED_NAMES = ("SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_RESET_CARD")


def codes(sc: Any, names: tuple[str, ...]) -> set[int]:
    """The values ``sc`` (``smartcard.scard``) has for ``names``."""
    return {getattr(sc, n) for n in names if hasattr(sc, n)}


def describe(sc: Any, hr: int) -> str:
    """``hr`` as the log and the events show it: the unsigned code and pcsc-lite's text."""
    return f"0x{hr & 0xFFFFFFFF:08X} {sc.SCardGetErrorMessage(hr)}"
