"""The composition root: builds the store, the publisher and the drivers, and runs the loop.

One asyncio loop owns all state. Drivers hand events in through ``emit``, which is safe from any
thread; the handler decides through ``sekisho.policies`` and queues what to record. Everything
queued in one loop tick is committed in one transaction (group commit) and only then offered to
the publisher, so nothing is published that is not on disk first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import resource
import signal
import uuid
from pathlib import Path
from typing import Any

from sekisho.drivers import registry
from sekisho.drivers.base import Driver, DriverError
from sekisho.drivers.udev import UdevUsb, enumerate_usb_devices
from sekisho.policies.events import (CardPresented, CardRemoved, CardUnreadable, Event, InputChanged,
                                     LeaveSeatPressed, PinEntered, ReaderBack, ReaderLost, SeatSessionsSeen,
                                     UsbDeviceAdded, UsbDeviceRemoved, UsbInterfaceAdded)

from . import __version__
from .answers import Answer, Answering
from .approvals import Approvals
from .commands import CommandRunner
from .config import Config
from .control import ControlServer
from .desks import Desks
from .doors import Doors
from .errors import SekishoError, StoreDamaged, StoreError
from .instance import hold_data_dir
from .keys import SiteKey
from .logind import Logind
from .logind_watch import SeatWatch
from .ops import Parts, Table, declared
from .publisher import Publisher
from .records_lost import forget_lost, keep_reserve, lost_before, write_lost
from .store import AlarmChange, CommandResult, Move, NewEvent, NewState, Store, is_damage, utc_now
from .strikes import make_strike
from .tap_enrolment import TapEnrolment
from .topics import Topics
from .usb import UsbController, desks_unattended

log = logging.getLogger("sekisho")

RETRY_STORE_S = 1.0
STOP_RETRY_S = 10.0
"""At stop, how long to keep trying a store that refuses writes before journaling what it refused."""
PURGE_EVERY_S = 24 * 3600
EX_IOERR = 74


def raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one: Debian starts a process at 1,024, which a
    node with a hundred sim sockets and their clients could reach (the unit sets LimitNOFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)


def purge_before(config: Config) -> str:
    """The store timestamp before which records are past the site's retention period."""
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=config.site.retention_days)
    return cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_store(config: Config, data_dir: Path, check: bool = False) -> tuple[Store, SiteKey]:
    """The store and the site key, as every command that touches records opens them; ``check``
    (the daemon) refuses a store that fails SQLite's quick check."""
    store = Store(data_dir, config.site.node, check=check)
    return store, SiteKey.load_or_create(Path(data_dir) / "site.key")


class Daemon:
    def __init__(self, config: Config, data_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        raise_fd_limit()  # before anything is opened
        self.config = config
        self.loop = loop
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lock_fd = hold_data_dir(self.data_dir)  # before anything in it is opened, created or replaced
        self.store, self.key = open_store(config, data_dir, check=True)
        self.damaged: BaseException | None = None
        """Set when the store turned out damaged: nothing is decided from then on that cannot be recorded."""
        self.exit_code = 0
        self.retry: asyncio.TimerHandle | None = None
        self.topics = Topics(config.site.id)
        self.publisher = Publisher(
            config.mqtt, self.store, loop=loop, version=__version__, started=utc_now(),
            client_id=config.mqtt.client_id or f"sekisho-{config.site.id}-{config.site.node}",
            status_topic=self.topics.node_status(config.site.node))
        self.drivers: dict[str, Driver] = {
            name: registry.load(reader.driver)(name, reader.options, self.emit, data_dir=Path(data_dir))
            for name, reader in config.readers.items()}
        self.drivers.update({
            name: registry.load(cfg.driver, registry.INPUTS)(name, cfg.options, self.emit, data_dir=Path(data_dir))
            for name, cfg in config.inputs.items()})
        # A PIN pad reports under its reader's name, so its PINs join the reader's cards.
        self.drivers.update({
            f"{name}.pin_pad": registry.load(r.pin_pad["driver"], registry.PIN_PADS)(
                name, {k: v for k, v in r.pin_pad.items() if k != "driver"}, self.emit, data_dir=Path(data_dir))
            for name, r in config.readers.items() if r.pin_pad})
        self.pending: list[NewEvent | NewState | Move | AlarmChange | CommandResult] = []
        self.answering = Answering(loop)
        strikes = {name: make_strike(name, door.strike, self.publisher.client) for name, door in config.doors.items()}
        self.doors = Doors(config, self.store, self.key, self.topics, loop, self._queue, strikes)
        self.logind = Logind() if config.desks else None
        self.occupancy: dict[str, set[str]] = {}
        """Who is in each area by the site's bus, for areas whose doors another node runs."""
        self.local_areas = {a for d in config.doors.values() for a in (d.area_in, d.area_out) if a}
        self.desks = Desks(config, self.store, self.topics, loop, self._queue, logind=self.logind,
                           subject_of=self.doors.subject_of, entered=self._entered,
                           raise_alarm=self.doors.raise_alarm, on_change=self._desk_changed) if self.logind else None
        # The watch reports through handle, the one way in, like a driver.
        self.seat_watch = SeatWatch(self.logind, (d.seat for d in config.desks.values()), self.handle) \
            if self.logind and self.desks else None
        self.usb: UsbController | None = None
        self.usb_driver: UdevUsb | None = None
        if config.usb:
            u = config.usb
            self.usb = UsbController(u.rules, topic=self.topics.usb_event(u.host), queue=self._queue, loop=loop,
                                     present_devices=u.present_devices, hold_hid_while_locked=u.hold_hid_while_locked,
                                     desk_locked=self._desks_unattended, exception_max_minutes=u.exception_max_minutes)
            self.usb_driver = UdevUsb("usb", {}, self.emit)
        self.approvals = Approvals(config, self.store, self.usb, loop, self._queue, subject_of=self.doors.subject_of,
                                   entered=self._entered, desk_of=lambda desk: self.desks.desks[desk],
                                   locked_out=self.doors.locked_out, count_pin=self.doors.count_pin) \
            if self.usb and self.desks and config.usb and config.usb.supervisor_levels else None
        if self.desks and {d.area for d in config.desks.values() if d.area} - self.local_areas:
            self.publisher.subscribe(self.topics.area_occupancy("+"), self._occupancy_seen)
        self.enrolment = TapEnrolment(config, self.store, self.key, loop)
        ops = Table(Parts(doors=self.doors, desks=self.desks, usb=self.usb, enrolment=self.enrolment,
                          occupancy=self.occupancy,
                          remote_areas=tuple(sorted({d.area for d in config.desks.values() if d.area}
                                                    - self.local_areas))), declared())
        self.control = ControlServer(Path(data_dir), ops)
        # Subscribed whatever the keys: with none, every command is refused, and each is audited.
        self.commands = CommandRunner(config.commands, site=config.site.id, node=config.site.node, ops=ops,
                                      store=self.store, queue=self._queue,
                                      result_topic=self.topics.command_result(config.site.node), loop=loop)
        self.publisher.subscribe(self.topics.command(config.site.node), self.commands.offer, retained=False,
                                 threaded=True)
        self.publisher.on_duplicate = self._duplicate_node
        self.duplicate_reported = False
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------------------- lifecycle
    async def run(self) -> int:
        """Run until SIGTERM or SIGINT, or until the store turns out damaged; the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.set_exception_handler(self._loop_error)
        for warning in self.config.warnings:
            log.warning("%s", warning)
        keep_reserve(self.data_dir)
        self.publisher.start()
        await self.doors.startup()  # every strike driven as its mode says before any reader starts
        self._report_lost()
        if self.seat_watch:
            # Before the start-up lock: a session the watch's first listing shows is locked by it,
            # and one that appears after that listing is a change the watch reports.
            await self.seat_watch.start()
        if self.desks:
            self.desks.startup()
        started: list[Driver] = []
        try:
            for name, driver in self.drivers.items():
                try:
                    await driver.start()
                except DriverError as exc:
                    section = "inputs" if name in self.config.inputs else "readers"
                    raise SekishoError(f"{section}.{name}: {exc}") from None
                started.append(driver)
            if self.usb and self.usb_driver:
                # Listen first, then list what is present: a device plugged in between is seen
                # at least once (twice is harmless).
                try:
                    await self.usb_driver.start()
                except DriverError as exc:
                    raise SekishoError(f"usb: {exc}") from None
                started.append(self.usb_driver)
                self.usb.start(enumerate_usb_devices())
            await self.control.start()
            log.info("running: site %s, node %s, %d readers", self.config.site.id, self.config.site.node,
                     len(self.drivers))
            self.publisher.kick()  # rows left from before a restart
            self._purge()
            await self.stopping.wait()
            log.info("stopping")
        finally:
            await self.control.stop()
            self.commands.close()
            for driver in reversed(started):
                await driver.stop()
            await self.doors.shutdown()
            if self.seat_watch:
                await self.seat_watch.stop()
            if self.logind:
                await self.logind.close()
            if self.usb:
                self.usb.stop()  # ends timed exceptions, recorded: they are never kept across a restart
            await self._flush_at_stop()
            await self.publisher.stop(drain=self.damaged is None)
            self.store.close()
            log.info("stopped" if not self.exit_code else f"stopped (exit {self.exit_code})")
        return self.exit_code

    # ------------------------------------------------------------------------- a store that fails
    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A damaged store found anywhere (a timer, a task, a callback) stops the daemon."""
        exc = context.get("exception")
        if exc is not None and (isinstance(exc, StoreDamaged) or is_damage(exc)):
            self._store_damaged(exc)
            return
        loop.default_exception_handler(context)

    def _store_damaged(self, exc: BaseException) -> None:
        """Raise ``store_damaged`` (straight to the broker: the outbox lives in the damaged
        file), take no more decisions, and stop with EX_DATAERR."""
        if self.damaged is not None:
            return
        self.damaged = exc
        error = exc if isinstance(exc, StoreDamaged) else self.store.damaged_error(exc)
        log.critical("%s; no door opens and no device is allowed from now on, and the daemon stops", error)
        node = self.config.site.node
        self.publisher.publish_now(self.topics.alarm(f"{node}-store-damaged"), {
            "kind": "store_damaged", "source": node, "severity": "critical", "raised": utc_now(),
            "detail": str(error), "acked_by": None, "ts": utc_now()})
        self.exit_code = StoreDamaged.exit_code
        self.stopping.set()

    def _duplicate_node(self, detail: str) -> None:
        """Two daemons with one node name on one broker knock each other off it every second;
        say so on both, loudly, instead of flapping silently."""
        node = self.config.site.node
        log.error("duplicate node name %r: %s; give each node its own [site] node", node, detail)
        if not self.duplicate_reported:
            self.duplicate_reported = True
            alarm_id = f"{node}-duplicate-node-{uuid.uuid4().hex[:8]}"
            self._queue(AlarmChange(alarm_id, "duplicate_node", node, "critical", self.topics.alarm(alarm_id),
                                    {"kind": "duplicate_node", "source": node, "severity": "critical",
                                     "detail": detail, "acked_by": None}))

    def _report_lost(self) -> None:
        """An earlier stop could not commit some records: say so, once, in the record itself."""
        count = lost_before(self.data_dir)
        if not count:
            return
        node = self.config.site.node
        alarm_id = f"{node}-records-lost-{uuid.uuid4().hex[:8]}"
        try:
            self.store.record([AlarmChange(alarm_id, "records_lost", node, "critical", self.topics.alarm(alarm_id),
                                           {"kind": "records_lost", "source": node, "severity": "critical",
                                            "count": count, "acked_by": None})])
        except StoreError as exc:
            log.error("%s; the records_lost alarm (%d records) is raised at the next start", exc, count)
            return
        forget_lost(self.data_dir)
        log.error("an earlier stop could not commit %d records (see its journal); alarm %s raised", count, alarm_id)
        self.publisher.kick()

    async def _flush_at_stop(self) -> None:
        """Keep trying within ``STOP_RETRY_S``; journal and count what still cannot be committed."""
        deadline = self.loop.time() + STOP_RETRY_S
        while self.pending and self.damaged is None and not self._commit() and self.loop.time() < deadline:
            await asyncio.sleep(RETRY_STORE_S / 2)
        if self.pending:
            write_lost(self.data_dir, self.pending)
            self.pending = []
            self.exit_code = self.exit_code or EX_IOERR

    def _purge(self) -> None:
        """Retention: delete what is older than the site keeps, now and once a day."""
        try:
            events, audit_rows = self.store.purge(purge_before(self.config), "daemon")
        except StoreError as exc:
            log.error("retention purge failed: %s", exc)
        else:
            if events or audit_rows:
                log.info("retention: deleted %d events and %d audit rows older than %d days", events, audit_rows,
                         self.config.site.retention_days)
        self.loop.call_later(PURGE_EVERY_S, self._purge)

    def emit(self, event: Event) -> None:
        """The one way in for drivers; safe from any thread."""
        self.loop.call_soon_threadsafe(self.handle, event)

    # ------------------------------------------------------------------------- events
    def handle(self, event: Event) -> None:
        answer = event.raw.get("answer")
        if callable(answer):
            self._handle_answering(event, answer)
            return
        if self.damaged is not None and isinstance(event, (CardPresented, PinEntered, UsbDeviceAdded,
                                                           UsbInterfaceAdded)):
            # What could grant (a door, a desk, a device) waits for a store that records it;
            # a pull, a leave-seat, an exit button or a fire input still act.
            log.error("%s: %s ignored: the store is damaged", event.source, type(event).__name__)
            return
        try:
            self._handle(event)
        except Exception as exc:
            if isinstance(exc, StoreDamaged) or is_damage(exc):
                self._store_damaged(exc)
                return
            raise

    def _handle(self, event: Event) -> None:
        if isinstance(event, SeatSessionsSeen):
            if self.desks:
                self.desks.seat_seen(event)
            return
        if isinstance(event, (UsbDeviceAdded, UsbInterfaceAdded, UsbDeviceRemoved)):
            if self.usb:
                self.usb.handle(event)
            return
        if isinstance(event, InputChanged) and event.source in self.config.inputs:
            cfg = self.config.inputs[event.source]
            if cfg.kind == "leave_seat":
                if event.active and self.desks:
                    self.desks.event(cfg.desk, LeaveSeatPressed(source=cfg.name, at=event.at, mono=event.mono))
            else:
                self.doors.input(cfg, event.active)
            return
        reader = self.config.readers.get(event.source)
        if reader is None:
            log.error("event from unknown source %r dropped: %r", event.source, event)
            return
        if isinstance(event, CardPresented) and self.enrolment.take(reader.name, event.uid):
            return
        if reader.desk and self.desks:
            if isinstance(event, (ReaderLost, CardUnreadable)):
                log.warning("%s: %s", reader.name, event)
            card_hash = self.key.card_hash(event.uid) if isinstance(event, CardPresented) else None
            if self.approvals and self.approvals.handle(reader, event, card_hash):
                return  # a supervisor's card or PIN allowing a blocked device
            self.desks.event(reader.desk, event, card_hash)
            return
        match event:
            case CardPresented(uid=uid):
                self.doors.card(reader, self.key.card_hash(uid))
            case CardUnreadable(reason=reason):
                log.warning("%s: unreadable card (%s)", reader.name, reason)
                self.doors.card(reader, None, unreadable=reason)
            case PinEntered(digits=digits):
                self.doors.pin(reader, digits)
            case CardRemoved():
                log.debug("%s: card removed", reader.name)
            case ReaderLost(reason=reason):
                log.warning("%s: reader lost (%s)", reader.name, reason)
            case ReaderBack():
                log.info("%s: reader back", reader.name)

    def _handle_answering(self, event: Event, answer: Answer) -> None:
        """Handle an event whose driver asked what it decided (answers.py): answered behind the
        commit when something was decided now, when the check finishes for a PIN at a door (a
        PIN there always ends in a decision), and at once, with nothing, otherwise."""
        decisions, token = self.answering.start(answer)
        try:
            self.handle(dataclasses.replace(event, raw={k: v for k, v in event.raw.items() if k != "answer"}))
        finally:
            self.answering.end(token)
        reader = self.config.readers.get(event.source)
        at_door = reader is not None and bool(reader.door)
        if decisions.decided or (at_door and isinstance(event, PinEntered) and self.damaged is None):
            return
        decisions.send(waiting="pin" if at_door and event.source in self.doors.pending else None)

    def _desks_unattended(self) -> bool:
        return self.desks is not None and desks_unattended(d.state for d in self.desks.desks.values())

    def _desk_changed(self) -> None:
        if self.usb:
            self.usb.desk_unlocked()  # decides held HID devices once a desk is in use again

    def _entered(self, person_id: str, area: str) -> bool | None:
        """Is the person recorded inside ``area``? None when nobody knows who is in it."""
        if area in self.local_areas:
            return self.doors.locations.get(person_id, ("", ""))[0] == area
        inside = self.occupancy.get(area)
        return None if inside is None else self.doors.subject_of(person_id) in inside

    def _occupancy_seen(self, topic: str, payload: bytes) -> None:
        area = topic.split("/")[-2]
        try:
            self.occupancy[area] = set(json.loads(payload)["subjects"]) if payload else set()
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed occupancy message on %s", topic)

    # ------------------------------------------------------------------------- group commit
    def _queue(self, item: NewEvent | NewState | Move | AlarmChange | CommandResult) -> None:
        if not self.pending and self.retry is None:
            self.loop.call_soon(self._flush)
        self.pending.append(item)
        self.answering.recorded(item)

    def _flush(self) -> None:
        self.retry = None
        if self.pending and not self._commit() and self.damaged is None:
            self.retry = self.loop.call_later(RETRY_STORE_S, self._flush)

    def _commit(self) -> bool:
        """Commit what is pending in one transaction; False when something is left to retry."""
        batch = self.pending
        try:
            self.store.record(batch)
        except StoreDamaged as exc:
            self._store_damaged(exc)  # kept in memory: journaled at the stop
            return False
        except StoreError as exc:
            # Keep them in memory and try again: a full disk must not lose the record. A WAL
            # left at its largest can hold a small disk full by itself: give its space back.
            log.error("%s; %d events kept in memory, retrying in %.0f s", exc, len(batch), RETRY_STORE_S)
            try:
                self.store.checkpoint()
            except StoreDamaged as damage:
                self._store_damaged(damage)
            except StoreError as checkpoint_failed:
                log.debug("%s", checkpoint_failed)
            return False
        except Exception:
            # A bug, not the disk: one item the store cannot take. Record the rest one by one,
            # so that one bad item never stops the record of everything after it.
            log.exception("the store refused a batch of %d; recording them one by one", len(batch))
            self.pending = self._record_each(batch)
            self.publisher.kick()
            return not self.pending
        self.pending = []
        self.publisher.kick()
        return True

    def _record_each(self, batch: list[Any]) -> list[Any]:
        """Record items one at a time; returns those to retry (the disk), drops what is broken."""
        retry = []
        for item in batch:
            try:
                self.store.record([item])
            except StoreError:
                retry.append(item)
            except Exception:
                log.exception("dropped an item the store cannot record: %r", item)
        return retry


def run(config: Config, data_dir: Path) -> int:
    """The daemon until it stops; its exit code (0, or EX_DATAERR for a damaged store, EX_IOERR
    when records could not be committed by the stop)."""
    async def main() -> int:
        return await Daemon(config, data_dir, asyncio.get_running_loop()).run()

    return asyncio.run(main())
