"""What the hardware reported, as plain frozen values.

Drivers build these and hand them to their ``emit`` callback; nothing else crosses from a
driver into the daemon. The session events at the end are the same kind of fact coming back
from an actuator (logind), so a policy can decide on them too. Names are past tense: each one
is a fact that already happened.
``at`` is the wall clock for the record; ``mono`` is the monotonic clock for latencies, so a
clock step never bends a measured interval.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Event:
    source: str
    """The configured name of the reader (or other input) that saw it."""
    at: float = field(default_factory=time.time)
    mono: float = field(default_factory=time.monotonic)
    raw: Mapping[str, Any] = field(default_factory=dict)
    """Driver-specific extras (ATR, reader name, ...): kept for logs, never decided on. The
    simulator may put ``answer`` here, a callable the daemon tells the decision to
    (daemon/answers.py)."""


@dataclass(frozen=True, kw_only=True)
class CardPresented(Event):
    uid: bytes


@dataclass(frozen=True, kw_only=True)
class CardRemoved(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class CardUnreadable(Event):
    reason: str
    """Why: ``no_answer``, ``status 6A81``, ``short_answer`` ..."""


@dataclass(frozen=True, kw_only=True)
class PinEntered(Event):
    digits: str


@dataclass(frozen=True, kw_only=True)
class ReaderLost(Event):
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ReaderBack(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class ReaderTampered(Event):
    """The reader reports its tamper switch (an OSDP reader's local status): ``active`` while
    it is open or off the wall, False once it is back."""

    active: bool


@dataclass(frozen=True, kw_only=True)
class LeaveSeatPressed(Event):
    """The desk's leave-seat key (an evdev key or the simulator's)."""


@dataclass(frozen=True, kw_only=True)
class SessionLocked(Event):
    """logind confirmed the lock: the session's ``LockedHint`` turned true (and the desk's
    confirmation command, if it has one, agreed)."""

    session: str
    latency_ms: float | None = None
    """From the lock request to the confirmation, when the daemon measured it."""


@dataclass(frozen=True, kw_only=True)
class SessionLockFailed(Event):
    """The lock was not confirmed after every retry; the fallback, if any, has run."""

    session: str | None
    reason: str
    """``unconfirmed``, ``text_session_unconfirmed`` (a console left open by ``tty_lock``),
    ``confirm_command_failed: <how>``, or the D-Bus error name that stopped it."""
    latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True)
class SessionTerminated(Event):
    """A session whose lock could not be confirmed was ended instead (a text console has no
    screen locker to confirm anything)."""

    session: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NoSessionToLock(Event):
    """The seat had no user session to lock when the lock was asked for (the login screen, say).
    A fact about one lock, never about who holds the desk: ``SeatSessionsSeen`` says that."""


@dataclass(frozen=True)
class SeatSession:
    """One user session on a seat, as logind listed it."""

    id: str
    active: bool
    """The seat's foreground session (logind's ``Active``)."""
    locked: bool
    """logind's ``LockedHint``: what the session's locker (or its user) last said."""
    graphical: bool
    """A screen a locker can cover (x11, wayland, mir); False for a text console."""


@dataclass(frozen=True, kw_only=True)
class SeatSessionsSeen(Event):
    """The user sessions on the seat, listed afresh after logind signalled a change (a session
    new or removed, ``LockedHint`` or ``Active`` changed, the seat's ``ActiveSession`` moved).
    The whole picture every time, so a missed or merged signal costs nothing; which session
    became usable is for the policy to work out against the previous picture."""

    seat: str
    sessions: tuple[SeatSession, ...]
    signalled: frozenset[str] = frozenset()
    """Sessions logind signalled unlocked (``LockedHint`` false) or activated since the previous
    listing: a lock and an unlock between two listings would otherwise look like no change."""


@dataclass(frozen=True, kw_only=True)
class InputChanged(Event):
    """A binary input changed: a door contact (active = open), an exit button (active =
    pressed) or a fire alarm input (active = alarm). The config says which an input is."""

    active: bool


@dataclass(frozen=True, kw_only=True)
class UsbDeviceAdded(Event):
    """A USB device (udev DEVTYPE ``usb_device``) appeared, or was there when the driver
    enumerated (``present``). The sysfs values as read and nothing derived: the daemon builds the
    rules' ``Device`` (hash, parent-hash, interfaces) from them. Text attributes are read the way
    USBGuard reads them (``usbrules.sysfs_text``); one that is missing is the empty string."""

    sys_path: str
    """``/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2``."""
    devpath: str
    """The same path relative to /sys (udev's ``DEVPATH``): a root hub's parent-hash hashes its parent's."""
    port: str
    """The sysfs name: ``1-2``, ``1-2.4``, ``usb1`` for a root hub (the rules' ``via-port``)."""
    vendor_id: str
    """``idVendor`` as text, ``1050``."""
    product_id: str
    serial: str
    name: str
    """The ``product`` attribute."""
    descriptors: bytes
    """The ``descriptors`` file, read as bytes (it holds NUL bytes)."""
    connect_type: str
    """``port/connect_type``: ``hotplug``, ``hardwired``, ``not used``, ``unknown``, or empty."""
    authorized: str
    """``authorized`` when read: ``0``, ``1``, or empty when unreadable."""
    parent_sys_path: str
    parent_is_device: bool
    """The parent is a USB device (a hub); False for a root hub, whose parent is the controller."""
    present: bool = False
    """Found by enumeration (at start), not reported by a uevent."""


@dataclass(frozen=True, kw_only=True)
class UsbInterfaceAdded(Event):
    """An interface of a configured USB device appeared (udev DEVTYPE ``usb_interface``)."""

    sys_path: str
    """``/sys/devices/.../1-2/1-2:1.0``."""
    device_sys_path: str
    name: str
    """``1-2:1.0``: the device's port, the configuration value and the interface number."""
    interface_type: str
    """``cc:ss:pp`` of its current alternate setting (``bInterfaceClass`` ...), empty if unreadable."""
    authorized: str


@dataclass(frozen=True, kw_only=True)
class UsbDeviceRemoved(Event):
    sys_path: str


# ---------------------------------------------------------------------------------- printing
# From the CUPS driver (drivers/cups.py); ``source`` is the print section's name, "print".
@dataclass(frozen=True, kw_only=True)
class PrintJobHeld(Event):
    """A job waiting in the holding queue: each found when CUPS is reached (at start, and again
    after cupsd comes back, so the same job may be reported twice), then each new one."""

    job: int
    user: str
    """CUPS's ``job-originating-user-name``: who submitted it, as CUPS knows them."""
    title: str
    """The ``job-name`` (the document's title as the printing program gave it)."""
    pages: int | None
    """``job-impressions`` when the printing program said; CUPS counts pages only as it prints."""
    submitted: float
    """CUPS's ``time-at-creation``, epoch seconds."""
    size_kb: int


@dataclass(frozen=True, kw_only=True)
class PrintJobLeft(Event):
    """A job is no longer waiting, and not by the driver's own release or cancel: its owner or an
    administrator cancelled it at CUPS (``cancelled``) or ``moved`` it to another queue, or it
    ``completed``, was ``aborted`` or is ``gone``. For a job the driver released: how it ended at the real printer."""

    job: int
    state: str
    pages: int | None = None
    """For a finished job: ``job-impressions-completed``, as the printer reported it."""
    released: bool = False
    """The driver had released the job: this is its end at the real printer."""


@dataclass(frozen=True, kw_only=True)
class PrintServerLost(Event):
    reason: str


@dataclass(frozen=True, kw_only=True)
class PrintServerBack(Event):
    pass
