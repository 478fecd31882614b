"""The composition root: builds the store, the publisher and the drivers, and runs the loop.

One asyncio loop owns all state. Drivers hand events in through ``emit``, which is safe from any
thread; the ``Router`` (router.py) hands each to its controller (doors, desks, approvals, USB), which decides
through ``sekisho.policies`` and queues what to record. Everything queued in one loop tick is
committed in one transaction (``GroupCommit``, commits.py) and only then offered to the
publisher, so nothing is published that is not on disk first.

The site's shared state has named homes built here once and passed in: ``Presence`` (who is
where, pseudonyms), ``Alarms`` (their life cycle and ids), ``Lockouts`` (wrong PINs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sekisho.drivers import registry
from sekisho.drivers.base import Driver, DriverError, DriverNotSetUp
from sekisho.policies.events import (
    Event,
)

from . import __version__
from .alarms import Alarms
from .answers import Answering
from .clock_watch import ClockWatch
from .commands import CommandRunner, load_private_key
from .commits import GroupCommit, Item
from .config import Config
from .control import ControlServer
from .door_states import DoorStates
from .doors import Doors
from .enrolment_snapshot import OP as ENROLMENT_OP
from .enrolment_snapshot import current_version, site_policy, stored_policy, trusted
from .errors import ConfigError, SekishoError, StoreDamaged, StoreError
from .instance import hold_data_dir
from .keys import SiteKey
from .lockouts import Lockouts
from .node_watch import NodeWatch
from .ops import Parts, Table, declared
from .outages import Outages
from .outbox_replay import OutboxReplay
from .presence import Presence
from .publisher import Publisher
from .reader_displays import ReaderDisplays
from .records_lost import keep_reserve
from .retention import Retention
from .router import Controllers, Router
from .rules_in_force import RulesInForce
from .service_manager import Notifier, ServiceManager, watchdog_interval
from .store.database import Database, is_damage
from .store.outbox import Outbox
from .store.people import People
from .store.record import Record
from .strikes import make_strike
from .tap_enrolment import TapEnrolment
from .timestamps import utc_now
from .topics import Topics

if TYPE_CHECKING:
    from sekisho.drivers.cups import CupsQueue
    from sekisho.drivers.udev import UdevUsb

    from .approvals import Approvals
    from .desks import Desks
    from .enrolment_publisher import EnrolmentPublisher
    from .enrolment_receiver import EnrolmentReceiver
    from .home_assistant import HomeAssistantDiscovery
    from .logind import Logind
    from .logind_watch import SeatWatch
    from .printing import PrintRelease
    from .recorder import Recorder
    from .site_occupancy import SiteOccupancy
    from .usb import UsbController

log = logging.getLogger(__name__)

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


def open_store(config: Config, data_dir: Path, check: bool = False) -> tuple[Database, SiteKey]:
    """The store's file and the site key, as every command that touches records opens them;
    ``check`` (the daemon) refuses a store that fails SQLite's quick check."""
    database = Database(data_dir, check=check)
    return database, SiteKey.load_or_create(Path(data_dir) / "site.key")


def load_drivers(config: Config, data_dir: Path, emit: Callable[[Event], None]) -> dict[str, Driver]:
    """Every reader, input and PIN pad the config names, by name; none started."""
    # OSDP readers on one RS-485 line share its control panel: one registry of lines for all.
    # Imported only where the config has such a reader, as every driver (registry.load).
    if any(reader.driver == "osdp" for reader in config.readers.values()):
        from sekisho.drivers.osdp import OsdpLines, OsdpReader
        lines = OsdpLines()
    drivers: dict[str, Driver] = {
        name: OsdpReader(name, reader.options, emit, data_dir=data_dir, lines=lines) if reader.driver == "osdp"
        else registry.load(reader.driver)(name, reader.options, emit, data_dir=data_dir)
        for name, reader in config.readers.items()}
    drivers.update({
        name: registry.load(cfg.driver, registry.INPUTS)(name, cfg.options, emit, data_dir=data_dir)
        for name, cfg in config.inputs.items()})
    # A PIN pad reports under its reader's name, so its PINs join the reader's cards.
    drivers.update({
        f"{name}.pin_pad": registry.load(r.pin_pad["driver"], registry.PIN_PADS)(
            name, {k: v for k, v in r.pin_pad.items() if k != "driver"}, emit, data_dir=data_dir)
        for name, r in config.readers.items() if r.pin_pad})
    return drivers


def home_assistant(config: Config, publisher: Publisher) -> HomeAssistantDiscovery | None:
    """Home Assistant's discovery, when the config asks for it: announced on each connection,
    again when Home Assistant comes online; our own topic read back for what to remove."""
    if not config.homeassistant.enabled:
        return None
    from .home_assistant import HomeAssistantDiscovery
    discovery = HomeAssistantDiscovery(config, __version__, publisher.publish_retained)
    publisher.when_connected(discovery.connected)
    publisher.subscribe(discovery.topic, discovery.heard_own)
    publisher.subscribe(discovery.status_topic, discovery.heard_status, retained=False)
    return discovery


async def start_drivers(drivers: Mapping[str, Driver], config: Config, started: list[Driver]) -> None:
    """Start each reader and input driver, adding each to ``started`` once it runs (so that a
    failure still stops the ones before it). A failure names the driver's key; one only a person
    can fix (``DriverNotSetUp``) is a config error, which the unit does not restart."""
    for name, driver in drivers.items():
        try:
            await driver.start()
        except DriverError as exc:
            section = "inputs" if name in config.inputs else "readers"
            if isinstance(exc, DriverNotSetUp):
                raise ConfigError([f"{section}.{name}: {exc}"]) from None
            raise SekishoError(f"{section}.{name}: {exc}") from None
        started.append(driver)


class Daemon:
    def __init__(self, config: Config, data_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        raise_fd_limit()  # before anything is opened
        self.config = config
        self.loop = loop
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lock_fd = hold_data_dir(self.data_dir)  # before anything in it is opened, created or replaced
        self.database, self.key = open_store(config, data_dir, check=True)
        self.people = People(self.database)
        self.record = Record(self.database, config.site.node)
        self.damaged: BaseException | None = None
        """Set when the store turned out damaged: nothing is decided from then on that cannot be recorded."""
        self.exit_code = 0
        self.topics = Topics(config.site.id)
        self.publisher = Publisher(
            config.mqtt, Outbox(self.database), loop=loop, version=__version__, started=utc_now(),
            client_id=config.mqtt.client_id or f"sekisho-{config.site.id}-{config.site.node}",
            status_topic=self.topics.node_status(config.site.node))
        self.drivers = load_drivers(config, self.data_dir, self.emit)
        self.commits = GroupCommit(self.record, self.database, loop, self.data_dir, committed=self.publisher.kick,
                                   on_damaged=self._store_damaged)
        self.answering = Answering(loop)
        # The site's state that several controllers share, each in its own named home.
        self.alarms = Alarms(config.site.node, self.record, self.topics, self._queue,
                             ack_needed=config.site.alarms_need_ack)
        self.presence = Presence(config, self.people, self.record, self.key, self.topics, loop, self._queue)
        self.lockouts = Lockouts(config.site, self.alarms, loop)
        strikes = {name: make_strike(name, door.strike, self.publisher.client) for name, door in config.doors.items()}
        self.door_states = DoorStates(config, self.record, self.topics, loop, self._queue, self.alarms, strikes,
                                      ReaderDisplays(config, self.drivers))
        # The rules every decision reads: the config's with the policy of the last enrolment
        # snapshot applied (stored); the enrolment receiver replaces them after each apply.
        self.rules = RulesInForce(config.rules)
        self.rules.adopt(*stored_policy(self.database, config.site.id))
        self.doors = Doors(config, self.people, self.topics, loop, self._queue, states=self.door_states,
                           presence=self.presence, lockouts=self.lockouts, rules=self.rules)
        # Desks, USB and print release are built (and their modules imported) only on a node
        # that has them: the D-Bus client, udev, the USB rules, pycups. A door node starts
        # without them, sooner and smaller.
        self.logind, self.desks = desks_for(self)
        self.usb, self.usb_driver, self.approvals = usb_parts(self)
        self.print_driver, self.printing = print_release(self)
        if self.presence.remote_areas:
            self.publisher.subscribe(self.topics.area_occupancy("+"), self.presence.occupancy_heard)
        self.enrolment = TapEnrolment(config, self.people, self.key, loop)
        self.router = Router(config, self.key, Controllers(
            doors=self.doors, door_states=self.door_states, enrolment=self.enrolment, desks=self.desks,
            approvals=self.approvals, usb=self.usb, alarms=self.alarms,
            outages=Outages(self.alarms, loop, config.site.reader_lost_after_s), printing=self.printing),
            self.answering,
            damaged=lambda: self.damaged is not None, on_damaged=self._store_damaged)
        # The watch reports straight to the router, on the loop: its first listing is routed
        # before the desks' start-up lock (run() says why).
        self.seat_watch = seat_watch(self)
        self.replay = OutboxReplay(self.record, self.topics, usb_host=config.usb.host if config.usb else None,
                                   committed=self.publisher.kick)
        ops = Table(Parts(door_states=self.door_states, alarms=self.alarms, desks=self.desks, presence=self.presence,
                          usb=self.usb, enrolment=self.enrolment, replay=self.replay, printing=self.printing),
                  declared())
        self.control = ControlServer(Path(data_dir), ops)
        # Subscribed whatever the keys: with none, every command is refused, and each is audited.
        self.commands = CommandRunner(config.commands, site=config.site.id, node=config.site.node, ops=ops,
                                      record=self.record, queue=self._queue,
                                      result_topic=self.topics.command_result(config.site.node), loop=loop)
        self.publisher.subscribe(self.topics.command(config.site.node), self.commands.offer, retained=False,
                                 threaded=True)
        self.node_watch = NodeWatch(config.site.watch_nodes, self.topics, self.alarms, loop,
                                    offline_after_s=config.site.node_offline_after_s)
        for topic in self.node_watch.nodes:
            self.publisher.subscribe(topic, self.node_watch.heard)
        # From the first connection on: a node that cannot reach the broker hears from nobody.
        self.publisher.when_connected(self.node_watch.start)
        self.publisher.on_duplicate = self._duplicate_node
        self.home_assistant = home_assistant(config, self.publisher)
        self.site_occupancy, self.recorder = recorder_parts(self)
        self.enrolment_publisher, self.enrolment_receiver = enrolment_transport(self)
        self.duplicate_reported = False
        self.stopping = asyncio.Event()
        self.service = ServiceManager(Notifier.from_environ(os.environ), loop, status=self.publisher.status_line,
                                      watchdog_s=watchdog_interval(os.environ, os.getpid()))
        self.retention = Retention(config, self.record, loop)
        self.clock_watch = ClockWatch(loop, self._clock_stepped)

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
        if self.enrolment_publisher:
            self.enrolment_publisher.start()
        self.alarms.startup()
        self.presence.startup()
        if self.site_occupancy and self.config.recorder:
            database = self.config.recorder.database
            from .recorder_store import open_store as open_recorder_store
            self.site_occupancy.start(lambda: open_recorder_store(database, self.data_dir))
        await self.door_states.startup()  # every strike driven as its mode says before any reader starts
        self.commits.report_lost(self.alarms, self.config.site.node)
        if self.seat_watch:
            # Before the start-up lock: a session the watch's first listing shows is locked by it,
            # and one that appears after that listing is a change the watch reports.
            await self.seat_watch.start()
        if self.desks:
            self.desks.startup()
        started: list[Driver] = []
        try:
            await start_drivers(self.drivers, self.config, started)
            if self.usb and self.usb_driver:
                # Listen first, then list what is present: a device plugged in between is seen
                # at least once (twice is harmless).
                try:
                    await self.usb_driver.start()
                except DriverError as exc:
                    raise SekishoError(f"usb: {exc}") from None
                started.append(self.usb_driver)
                from sekisho.drivers.udev import enumerate_usb_devices
                self.usb.start(enumerate_usb_devices())
            if self.printing and self.print_driver:
                await start_printing(self.printing, self.print_driver, started)
            if self.recorder:
                self.recorder.start()
            await self.control.start()
            log.info("running: site %s, node %s, %d readers", self.config.site.id, self.config.site.node,
                     len(self.drivers))
            self.publisher.kick()  # rows left from before a restart
            self.retention.purge()
            self.clock_watch.start()
            await self.publisher.first_attempt(self.stopping)
            if not self.stopping.is_set():
                self.service.ready()
            await self.stopping.wait()
            log.info("stopping")
        finally:
            self.service.stopping()
            self.clock_watch.stop()
            self.retention.stop()
            await self.control.stop()
            if self.recorder:
                await self.recorder.stop()
            if self.site_occupancy:
                self.site_occupancy.stop()
            if self.enrolment_publisher:
                await self.enrolment_publisher.stop()
            if self.enrolment_receiver:
                await self.enrolment_receiver.stop()
            self.node_watch.stop()
            self.commands.close()
            if self.printing:
                await self.printing.stop()
            for driver in reversed(started):
                await driver.stop()
            await self.door_states.shutdown()
            if self.seat_watch:
                await self.seat_watch.stop()
            if self.logind:
                await self.logind.close()
            if self.usb:
                self.usb.stop()  # ends timed exceptions, recorded: they are never kept across a restart
            if not await self.commits.flush_at_stop():
                self.exit_code = self.exit_code or EX_IOERR
            await self.publisher.stop(drain=self.damaged is None)
            self.database.close()
            self.service.close()
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
        error = exc if isinstance(exc, StoreDamaged) else self.database.damaged_error(exc)
        log.critical("%s; no door opens and no device is allowed from now on, and the daemon stops", error)
        self.publisher.publish_now(*self.alarms.damaged(str(error)))
        self.exit_code = StoreDamaged.exit_code
        self.stopping.set()

    def _duplicate_node(self, detail: str) -> None:
        """Two daemons with one node name on one broker knock each other off it every second;
        say so on both, loudly, instead of flapping silently."""
        node = self.config.site.node
        log.error("duplicate node name %r: %s; give each node its own [site] node", node, detail)
        if not self.duplicate_reported:
            self.duplicate_reported = True
            self.alarms.raise_("duplicate_node", node, "critical", incident=True, detail=detail)

    def _clock_stepped(self, seconds: float, before: str, after: str) -> None:
        """The wall clock was set (clock_watch.py): audited, for whoever reads timestamps that
        jump here; the retention cut-off taken again from the new time; the USB exceptions'
        ``until`` moved with the clock."""
        try:
            self.record.audit("daemon", "clock.step", {"seconds": round(seconds), "before": before, "after": after})
        except StoreDamaged:
            raise  # the loop's handler stops the daemon (_loop_error)
        except StoreError as exc:
            log.error("cannot audit the clock step: %s", exc)
        self.retention.purge()
        if self.usb:
            self.usb.clock_stepped(seconds)

    def emit(self, event: Event) -> None:
        """The one way in for drivers; safe from any thread."""
        self.loop.call_soon_threadsafe(self.router.handle, event)

    def _desks_unattended(self) -> bool:
        from .usb import desks_unattended
        return self.desks is not None and desks_unattended(d.state for d in self.desks.desks.values())

    def _desk_changed(self) -> None:
        if self.usb:
            self.usb.desk_unlocked()  # decides held HID devices once a desk is in use again

    def _queue(self, item: Item) -> None:
        self.commits.queue(item)
        self.answering.recorded(item)


def desks_for(daemon: Daemon) -> tuple[Logind | None, Desks | None]:
    """The logind client and the desks, on a node whose config has desks."""
    config = daemon.config
    if not config.desks:
        return None, None
    from .desks import Desks
    from .logind import Logind

    logind = Logind()
    return logind, Desks(config, daemon.people, daemon.topics, daemon.loop, daemon._queue, logind=logind,
                         presence=daemon.presence, alarms=daemon.alarms, rules=daemon.rules,
                         on_change=daemon._desk_changed)


def seat_watch(daemon: Daemon) -> SeatWatch | None:
    """The watch of the desks' seats; it reports straight to the router, on the loop: its first
    listing is routed before the desks' start-up lock (run() says why)."""
    if daemon.logind is None or daemon.desks is None:
        return None
    from .logind_watch import SeatWatch

    return SeatWatch(daemon.logind, (d.seat for d in daemon.config.desks.values()), daemon.router.handle)


def usb_parts(daemon: Daemon) -> tuple[UsbController | None, UdevUsb | None, Approvals | None]:
    """The USB controller and its udev monitor, on a node whose config has [usb]; the
    supervisor's approval at a desk where it also has desks and supervisor levels."""
    u = daemon.config.usb
    if u is None:
        return None, None, None
    from sekisho.drivers.udev import UdevUsb

    from .usb import UsbController

    usb = UsbController(u.rules, topic=daemon.topics.usb_event(u.host), queue=daemon._queue, loop=daemon.loop,
                        exceptions_topic=daemon.topics.usb_exceptions(u.host),
                        present_devices=u.present_devices, hold_hid_while_locked=u.hold_hid_while_locked,
                        desk_locked=daemon._desks_unattended, exception_max_minutes=u.exception_max_minutes,
                        alarms=daemon.alarms if u.alarm_on_block else None, host=u.host)
    approvals = None
    if daemon.desks and u.supervisor_levels:
        from .approvals import Approvals

        approvals = Approvals(daemon.config, daemon.people, usb, daemon.loop, daemon._queue, desks=daemon.desks,
                              presence=daemon.presence, lockouts=daemon.lockouts, inventory=usb.inventory,
                              rules=daemon.rules)
    return usb, UdevUsb("usb", {}, daemon.emit), approvals


def recorder_parts(daemon: Daemon) -> tuple[SiteOccupancy | None, Recorder | None]:
    """The site recorder, on a node whose roles name it: its own client and its own thread, so
    that a slow database never holds up the loop; its gap alarms are this node's. Where the site
    says the recorder speaks for every area's occupancy (presence.py then publishes none), from
    every node's door events: folded from the recorder's store at start, then fed each batch the
    recorder stores (SiteOccupancy.stored)."""
    config = daemon.config
    if not config.recorder:
        return None, None
    from .recorder import Recorder
    from .site_occupancy import SiteOccupancy

    occupancy = (SiteOccupancy(config.areas, daemon.topics, daemon.loop, daemon._queue)
                 if config.site.occupancy_from == "recorder" else None)
    return occupancy, Recorder(config.recorder, config.mqtt, site=config.site.id, node=config.site.node,
                               data_dir=daemon.data_dir, raise_alarm=daemon.alarms.raise_,
                               clear_alarm=daemon.alarms.clear, loop=daemon.loop,
                               on_stored=occupancy.stored if occupancy else None)


def print_release(daemon: Daemon) -> tuple[CupsQueue | None, PrintRelease | None]:
    """Print release, on a node whose config has [print]: the CUPS driver and its controller."""
    config = daemon.config
    if config.print is None:
        return None, None
    from sekisho.drivers.cups import CupsQueue

    from .print_events import PrintEvents
    from .printing import PrintRelease

    driver = CupsQueue("print", config.print.driver_options, daemon.emit)
    says = PrintEvents(config.print, presence=daemon.presence, key=daemon.key, queue=daemon._queue,
                       event_topic=daemon.topics.print_event(config.site.node),
                       queue_topic=daemon.topics.print_queue(config.site.node))
    return driver, PrintRelease(config.print, driver, people=daemon.people, record=daemon.record,
                                presence=daemon.presence, alarms=daemon.alarms, lockouts=daemon.lockouts,
                                rules=daemon.rules, timezone=config.site.timezone, says=says, loop=daemon.loop)


async def start_printing(printing: PrintRelease, driver: CupsQueue, started: list[Driver]) -> None:
    """The retained queue (empty until the driver reports), the driver, then the check of the
    CUPS set-up in the background: a cupsd that never answers must not hold up the start."""
    printing.start()
    try:
        await driver.start()
    except DriverError as exc:
        raise SekishoError(f"print: {exc}") from None
    started.append(driver)
    printing.check_later()


def enrolment_transport(daemon: Daemon) -> tuple[EnrolmentPublisher | None, EnrolmentReceiver | None]:
    """The recorder signs enrolment out (with its key); any other node that trusts a key for
    snapshots takes it in (docs/enrolment.md, "Over MQTT"). Wired onto the daemon's publisher."""
    config, publisher, status = daemon.config, daemon.publisher, daemon.publisher.status
    recorder = config.recorder
    if "recorder" in config.site.roles and recorder is not None and recorder.signing_key is not None:
        from .enrolment_publisher import EnrolmentPublisher
        sender = EnrolmentPublisher(daemon.database, daemon.data_dir, site=config.site.id,
                                    key=load_private_key(recorder.signing_key), key_name=recorder.key_name,
                                    topics=daemon.topics, publish=publisher.publish_bytes, loop=daemon.loop,
                                    on_version=status.enrolled, policy=site_policy(config))
        publisher.when_connected(sender.connected)
        return sender, None
    status.enrolled(current_version(daemon.database, config.site.id))
    if "recorder" in config.site.roles or not trusted(config.commands, ENROLMENT_OP)[1]:
        return None, None
    from .enrolment_receiver import EnrolmentReceiver
    receiver = EnrolmentReceiver(daemon.database, daemon.data_dir, site=config.site.id, node=config.site.node,
                                 commands=config.commands, topics=daemon.topics, alarms=daemon.alarms,
                                 record=daemon.record, loop=daemon.loop, on_version=status.enrolled,
                                 config_schedules=config.rules.schedules, on_policy=daemon.rules.adopt)
    manifest, chunks, delta = receiver.topic_filters
    publisher.subscribe(manifest, receiver.manifest_heard)
    publisher.subscribe(chunks, receiver.chunk_heard)
    publisher.subscribe(delta, receiver.delta_heard, retained=False)
    return None, receiver


def run(config: Config, data_dir: Path) -> int:
    """The daemon until it stops; its exit code (0, or EX_DATAERR for a damaged store, EX_IOERR
    when records could not be committed by the stop)."""
    async def main() -> int:
        return await Daemon(config, data_dir, asyncio.get_running_loop()).run()

    return asyncio.run(main())
