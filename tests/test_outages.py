"""A door reader's outage becomes the reader_lost alarm only once it has lasted the grace
(daemon/outages.py): back sooner, nothing is raised; back later, the alarm is cleared.
The loop is a real one; the alarms are a record of what was asked of them."""

from __future__ import annotations

import asyncio

from sekisho.daemon.outages import Outages


class AskedAlarms:
    def __init__(self) -> None:
        self.asked: list[tuple] = []

    def raise_(self, kind, source, severity, **detail) -> str:
        self.asked.append(("raise", kind, source, severity, detail))
        return "id"

    def clear(self, kind, source) -> None:
        self.asked.append(("clear", kind, source))


def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Run every callback that is due (a grace of 0 is due at once)."""
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))


def test_a_reader_back_within_the_grace_raises_nothing():
    loop = asyncio.new_event_loop()
    alarms = AskedAlarms()
    outages = Outages(alarms, loop, after_s=3600)  # type: ignore[arg-type]
    outages.lost("entrance-in", "pcscd gone")
    outages.back("entrance-in")
    settle(loop)
    assert alarms.asked == [] and outages.pending == {}
    loop.close()


def test_a_reader_lost_for_the_grace_is_an_alarm_until_it_is_back():
    loop = asyncio.new_event_loop()
    alarms = AskedAlarms()
    outages = Outages(alarms, loop, after_s=0)  # type: ignore[arg-type]
    outages.lost("entrance-in", "no answer from address 1")
    outages.lost("entrance-in", "secure channel failed")  # the first loss's alarm, not a second
    settle(loop)
    assert alarms.asked == [("raise", "reader_lost", "entrance-in", "warning",
                             {"reason": "no answer from address 1"})]
    outages.back("entrance-in")
    assert alarms.asked[-1] == ("clear", "reader_lost", "entrance-in")
    loop.close()


def test_a_reader_lost_again_after_its_alarm_is_cleared_when_it_is_back():
    """Lost (the alarm raised), lost again with another reason before it is back (a session
    renewed and failing), then back: the one alarm is cleared; a reader back that was never an
    alarm clears nothing."""
    loop = asyncio.new_event_loop()
    alarms = AskedAlarms()
    outages = Outages(alarms, loop, after_s=0)  # type: ignore[arg-type]
    outages.lost("entrance-in", "no answer from address 1")
    settle(loop)
    outages.lost("entrance-in", "secure channel failed")
    settle(loop)
    outages.back("entrance-in")
    outages.back("exit-out")
    assert [a[0] for a in alarms.asked] == ["raise", "clear"]
    assert alarms.asked[-1] == ("clear", "reader_lost", "entrance-in")
    loop.close()
