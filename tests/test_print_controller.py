"""PrintRelease in process, on the door node's real collaborators (test_controllers' House: store,
presence, alarms) and a recording stand-in for our own CUPS driver (its three actions), for the
paths a real cupsd does not produce on demand: a job said twice after a reconnect, a released
job that fails at the printer, CUPS refusing a release, an expiry that fails while cupsd is away,
and cupsd back within the grace."""

from __future__ import annotations

import asyncio
import time

import pytest

from sekisho.daemon.config import PrintConfig
from sekisho.daemon.errors import SekishoError
from sekisho.daemon.print_events import PrintEvents
from sekisho.daemon.printing import PrintRelease
from sekisho.daemon.rules_in_force import RulesInForce
from sekisho.drivers.base import DriverError
from sekisho.policies.events import PrintJobHeld, PrintJobLeft, PrintServerBack, PrintServerLost
from test_controllers import House, until


class Driver:
    """What the controller asks of the CUPS driver, recorded; ``refusing`` makes each action fail;
    ``gate``, when set, holds each action until it is opened (CUPS slow to answer)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int]] = []
        self.refusing: str | None = None
        self.gate: asyncio.Event | None = None
        self.only: str | None = None
        """The one action ``refusing`` applies to; None: every one."""
        self.asked = 0

    async def _act(self, what: str, job: int) -> None:
        self.asked += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.refusing and self.only in (None, what):
            raise DriverError(self.refusing)
        self.done.append((what, job))

    async def release(self, job: int) -> None:
        await self._act("release", job)

    async def cancel(self, job: int) -> None:
        await self._act("cancel", job)

    async def check(self) -> list[str]:
        return []


def controller(house: House, driver: Driver, **cfg) -> PrintRelease:
    settings = PrintConfig(**{"server": "", "hold_queue": "hold", "printer": "real", **cfg})
    says = PrintEvents(settings, presence=house.presence, key=house.key, event_topic="e", queue_topic="q",
                       queue=house.queued.append)
    return PrintRelease(settings, driver, people=house.people, record=house.record, presence=house.presence,
                        alarms=house.alarms, lockouts=house.lockouts, rules=RulesInForce(house.config.rules),
                        timezone="Asia/Tokyo", says=says, loop=asyncio.get_running_loop())


def held(job: int, submitted: float | None = None) -> PrintJobHeld:
    return PrintJobHeld(source="print", job=job, user="bob", title="t", pages=2,
                        submitted=time.time() if submitted is None else submitted, size_kb=1)


def actions(house: House) -> list[tuple[str, int | None, str | None]]:
    return [(e["action"], e["job"], e.get("reason")) for e in house.events()]


def test_a_job_said_twice_is_held_once_and_a_failed_print_is_said(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        house.people.add_person("bob", "Bob", "test")
        p = controller(house, driver)
        p.handle(held(7))
        p.handle(held(7))  # after a reconnect
        await p.release(7, "key:officer")
        p.handle(held(7))  # a late report of a job already released changes nothing
        p.handle(PrintJobLeft(source="print", job=7, state="aborted", released=True))
        assert driver.done == [("release", 7)]
        assert actions(house) == [("held", 7, None), ("released", 7, None), ("failed", 7, "aborted")]
        assert house.events()[0]["user_known"] is True and house.events()[0]["pages"] == 2
        await p.stop()
    asyncio.run(go())


def test_cups_refusing_keeps_the_job_waiting_and_free(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver)
        p.handle(held(3))
        driver.refusing = "CUPS refused: Forbidden (IPP status 0x0401)"
        with pytest.raises(SekishoError, match=r"^job 3: cannot release: CUPS refused: Forbidden"):
            await p.release(3, "key:officer")
        assert [j["job"] for j in p.listing()] == [3] and not p.jobs.busy
        with pytest.raises(SekishoError, match=r"^no job 4 waiting to cancel \(waiting: 3\)$"):
            await p.cancel(4, "cli:root")
        driver.refusing = None
        await p.cancel(3, "cli:root")
        assert actions(house) == [("held", 3, None), ("cancelled", 3, None)]
        assert house.events()[-1]["by"] == "cli" and house.events()[-1]["user_known"] is False
        await p.stop()
    asyncio.run(go())


def test_an_expiry_that_cannot_cancel_is_done_when_cupsd_is_back(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver, expire_minutes=1.0)
        driver.refusing = "CUPS is not reachable: failed to connect to server"
        p.handle(PrintServerLost(source="print", reason="failed to connect to server"))
        p.handle(held(5, submitted=time.time() - 61))  # its minute is up
        await until(lambda: not p.jobs.busy and p.timer is None, "the failed expiry settled")
        assert [j["job"] for j in p.listing()] == [5] and driver.done == []
        driver.refusing = None
        p.handle(PrintServerBack(source="print"))
        await until(lambda: ("cancel", 5) in driver.done and not p.jobs.waiting, "the expiry done")
        assert actions(house) == [("held", 5, None), ("expired", 5, "waited 1 min")]
        assert house.events()[-1]["by"] == "expiry" and house.events()[-1]["actor"] is None
        await p.stop()
    asyncio.run(go())


def test_cupsd_back_within_the_grace_raises_nothing(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver, unavailable_after_s=0.2)
        p.handle(PrintServerLost(source="print", reason="restarting"))
        p.handle(PrintServerBack(source="print"))
        p.handle(PrintServerLost(source="print", reason="gone"))
        p.handle(PrintServerLost(source="print", reason="gone again"))  # one alarm, not two
        await until(lambda: house.alarm_changes(), "the alarm after the grace")
        p.handle(PrintServerBack(source="print"))
        assert [(c.kind, c.action) for c in house.alarm_changes()] == [("print_unavailable", "alarm.raise"),
                                                                        ("print_unavailable", "alarm.clear")]
        assert house.alarm_changes()[0].alarm_id == "door-a.print.print-unavailable"
        await p.stop()
    asyncio.run(go())


def test_the_document_goes_out_as_a_keyed_hash_unless_the_site_allows_names(tmp_path):
    async def go() -> None:
        house = House(tmp_path, asyncio.get_running_loop())
        hashed, named = controller(house, Driver()), controller(house, Driver(), document_names=True)
        hashed.handle(held(1))
        named.handle(held(2))
        assert [e["document"] for e in house.events()] == [{"hash": house.key.document("t")}, {"name": "t"}]
        assert len(house.key.document("t")) == 16 and house.key.document("t") != house.key.document("u")
        assert hashed.listing()[0]["document"] == {"hash": house.key.document("t")}
    asyncio.run(go())


def test_a_stop_waits_for_an_action_under_way_and_records_it(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        gate = asyncio.Event()
        cancel = driver.cancel

        async def slow_cancel(job: int) -> None:
            await gate.wait()
            await cancel(job)
        driver.cancel = slow_cancel  # type: ignore[method-assign]
        p = controller(house, driver, expire_minutes=1.0)
        p.handle(held(9, submitted=time.time() - 61))
        await until(lambda: p.jobs.busy, "the expiry under way")
        stopping = asyncio.ensure_future(p.stop())
        await asyncio.sleep(0)
        assert not stopping.done()
        gate.set()
        await stopping
        assert driver.done == [("cancel", 9)] and actions(house)[-1] == ("expired", 9, "waited 1 min")
        assert p.timer is None and p.retry is None
    asyncio.run(go())


def test_a_release_whose_asker_went_away_is_still_recorded(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver)
        p.handle(held(8))
        driver.gate = asyncio.Event()
        asking = asyncio.ensure_future(p.release(8, "key:officer"))
        await until(lambda: driver.asked == 1, "the release at CUPS")
        asking.cancel()  # the command's wait ends (a time-out, the control socket closing at the stop)
        await asyncio.sleep(0)
        driver.gate.set()  # ... and CUPS carries the release out
        await p.stop()
        assert driver.done == [("release", 8)]
        assert actions(house) == [("held", 8, None), ("released", 8, None)]
    asyncio.run(go())


def test_an_expiry_due_during_a_failed_release_still_comes(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver, expire_minutes=0.01)  # 0.6 s
        p.handle(held(9))
        driver.gate, driver.refusing = asyncio.Event(), "CUPS refused: Forbidden (IPP status 0x0401)"
        driver.only = "release"
        asking = asyncio.ensure_future(p.release(9, "key:officer"))
        await until(lambda: driver.asked == 1, "the release at CUPS")
        await until(lambda: p.timer is None, "the expiry due while the job is busy")
        driver.gate.set()
        with pytest.raises(SekishoError, match="cannot release"):
            await asking
        await until(lambda: ("cancel", 9) in driver.done, "the expiry after the failed release")
        assert actions(house)[-1] == ("expired", 9, "waited 0.01 min")
        await p.stop()
    asyncio.run(go())


def test_a_job_whose_time_is_up_is_not_released(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver, expire_minutes=1.0, supervisor_levels=frozenset({"staff"}))
        card = house.enroll("boss", "04a1b2c3")
        driver.refusing = "CUPS is not reachable: failed to connect to server"  # the expiry cannot cancel it
        p.handle(held(4, submitted=time.time() - 61))
        await until(lambda: not p.jobs.busy and p.timer is None, "the failed expiry settled")
        with pytest.raises(SekishoError, match="has waited more than 1 min"):
            await p.release(4, "key:officer")
        p.card(card)
        assert actions(house)[-1] == ("release_refused", None, "no_job")
        assert driver.done == []
        await p.stop()
    asyncio.run(go())


def test_a_card_locked_out_after_wrong_pins_releases_nothing(tmp_path):
    async def go() -> None:
        house, driver = House(tmp_path, asyncio.get_running_loop()), Driver()
        p = controller(house, driver, supervisor_levels=frozenset({"staff"}))
        card = house.enroll("boss", "04a1b2c3")
        p.handle(held(6))
        for _ in range(house.config.site.pin_max_wrong):
            house.lockouts.count(card, False, "entrance", "x")
        p.card(card)
        assert actions(house)[-1] == ("release_refused", 6, "locked_out") and driver.done == []
        assert house.events()[-1]["actor"].startswith("supervisor:")
        other = house.enroll("op", "04d4e5f6")
        house.people.grant_level("op", "staff", "test", revoke=True)
        p.card(other)
        assert actions(house)[-1] == ("release_refused", 6, "not_supervisor")
        assert house.events()[-1]["actor"].startswith("person:")
        await p.stop()
    asyncio.run(go())
