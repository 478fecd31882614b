"""Tap-to-enroll when no daemon runs: open the reader here, wait for one card, store it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sekisho.drivers import registry
from sekisho.drivers.base import DriverError
from sekisho.policies.events import CardPresented, CardUnreadable, Event

from .app import open_store
from .config import Config
from .errors import SekishoError
from .store.people import People


def enroll_without_daemon(cfg: Config, data_dir: Path, person_id: str, reader_name: str, timeout: float,
                          actor: str) -> str:
    database, key = open_store(cfg, data_dir)
    people = People(database)
    if people.person(person_id) is None:
        raise SekishoError(f"no person {person_id!r} (add them first: sekisho person add)")
    uid = asyncio.run(_one_card(cfg, data_dir, reader_name, timeout))
    card_hash = key.card_hash(uid)
    people.add_card(person_id, card_hash, actor)
    return card_hash[:12]


async def _one_card(cfg: Config, data_dir: Path, reader_name: str, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    cards: asyncio.Queue[Event] = asyncio.Queue()
    reader = cfg.readers[reader_name]
    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(cards.put_nowait, event)

    driver = registry.load(reader.driver)(reader_name, reader.options, emit, data_dir=Path(data_dir))
    try:
        await driver.start()
    except DriverError as exc:
        raise SekishoError(f"readers.{reader_name}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await cards.get()
                if isinstance(event, CardPresented):
                    return event.uid
                if isinstance(event, CardUnreadable):
                    raise SekishoError(f"the card at {reader_name} could not be read ({event.reason}); try again")
    except TimeoutError:
        raise SekishoError(f"no card was presented at {reader_name} within {timeout:g} s") from None
    finally:
        await driver.stop()
