"""Wrong PINs and the lockouts they lead to, for every card, wherever the PIN was typed.

``pin_max_wrong`` wrong PINs in a row with one card lock that card out for ``pin_lockout_s``:
at a door, or at a desk approving a USB device (a stolen supervisor card gets no more guesses
there than at the door). A right PIN starts the count again. Kept in memory on the monotonic
clock, so a clock step does not shorten a lockout; a restart forgets them (a person can wait
out a lockout anyway, and a restart is no shortcut an attacker controls).

Each lockout raises a ``pin_lockout`` alarm, about the card's holder, cleared when it ends.
"""

from __future__ import annotations

import asyncio
import logging

from .alarms import Alarms
from .config import SiteConfig

log = logging.getLogger("sekisho.lockouts")


class Lockouts:
    def __init__(self, site: SiteConfig, alarms: Alarms, loop: asyncio.AbstractEventLoop) -> None:
        self.max_wrong = site.pin_max_wrong
        self.lockout_s = site.pin_lockout_s
        self.alarms = alarms
        self.loop = loop
        self.wrong: dict[str, int] = {}
        self.until: dict[str, float] = {}

    def locked_out(self, card_hash: str | None) -> bool:
        return card_hash is not None and self.until.get(card_hash, 0.0) > self.loop.time()

    def count(self, card_hash: str, ok: bool, source: str, subject: str | None = None) -> None:
        """A PIN typed with this card at ``source`` (a door or a desk), right or wrong."""
        if ok:
            self.wrong.pop(card_hash, None)
            return
        self.wrong[card_hash] = self.wrong.get(card_hash, 0) + 1
        if self.wrong[card_hash] >= self.max_wrong:
            self._lock_out(card_hash, source, subject)

    def _lock_out(self, card_hash: str, source: str, subject: str | None) -> None:
        self.wrong.pop(card_hash, None)
        self.until[card_hash] = self.loop.time() + self.lockout_s
        log.warning("%s: card locked out for %d s after %d wrong PINs", source, self.lockout_s, self.max_wrong)
        self.alarms.raise_("pin_lockout", source, "warning", subject)
        self.loop.call_later(self.lockout_s, self._over, card_hash, source, subject)

    def _over(self, card_hash: str, source: str, subject: str | None) -> None:
        if self.until.get(card_hash, 0.0) <= self.loop.time():
            self.until.pop(card_hash, None)
            self.alarms.clear("pin_lockout", source, subject)
