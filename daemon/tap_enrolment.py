"""Tap-to-enroll through the running daemon: the next card at a reader goes to a person.

While an enrolment waits at a reader, the daemon hands that reader's next card here instead of
to the door or the desk (``take``), so the tap opens nothing; the card is stored as its keyed
hash. (Without a daemon, ``tap_enrolment_offline.enroll_without_daemon`` opens the reader itself.)

Failure model: one enrolment at a time per reader, refused while another waits there; a person
or reader that does not exist is refused before anyone waits; no card within the timeout is a
``SekishoError`` and the reader goes back to its door or desk. Nothing is kept across a restart.
"""

from __future__ import annotations

import asyncio
import logging

from .config import Config
from .errors import SekishoError
from .keys import SiteKey
from .store.enrolment import CARD_SHOWN
from .store.people import People

log = logging.getLogger(__name__)


class TapEnrolment:
    def __init__(self, config: Config, people: People, key: SiteKey, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.people = people
        self.key = key
        self.loop = loop
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        """Reader name -> the enrolment waiting for its next card."""

    def take(self, reader: str, uid: bytes) -> bool:
        """Give a card presented at ``reader`` to the enrolment waiting there; False when none waits."""
        waiter = self.waiting.pop(reader, None)
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result(uid)
        return True

    async def enroll(self, person_id: str, reader: str, timeout: float, actor: str) -> str:
        """Wait for one card at ``reader`` and enroll it to ``person_id``; its hash prefix."""
        if reader not in self.config.readers:
            raise SekishoError(f"no reader {reader!r} (readers: {', '.join(self.config.readers)})")
        if self.people.person(person_id) is None:
            raise SekishoError(f"no person {person_id!r} (add them first: sekisho person add)")
        if reader in self.waiting:
            raise SekishoError(f"an enrollment is already waiting at {reader}")
        waiter = self.loop.create_future()
        self.waiting[reader] = waiter
        log.info("waiting up to %g s for a card at %s to enroll to %s (%s)", timeout, reader, person_id, actor)
        try:
            uid = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise SekishoError(f"no card was presented at {reader} within {timeout:g} s") from None
        finally:
            if self.waiting.get(reader) is waiter:
                del self.waiting[reader]
        card_hash = self.key.card_hash(uid)
        self.people.add_card(person_id, card_hash, actor)
        log.info("card %s enrolled to %s at %s by %s", card_hash[:CARD_SHOWN], person_id, reader, actor)
        return card_hash[:CARD_SHOWN]
