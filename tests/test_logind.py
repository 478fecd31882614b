"""The logind client against dbusmock's logind template on a private system bus.

One bus and one mock serve the whole test session (the ``logind`` fixture in conftest.py and
logind_mock.py); each test starts from ``Reset`` + ``ClearCalls`` and adds its sessions under
explicit ids. The template's
``AddSession`` makes sessions of Type ``test``, which no desktop has, so ``add_session`` sets
the Type a real graphical login has (``wayland``) unless a test asks for another.

The template's ``Manager.LockSession`` only records the call (notes, pitfall 7). ``patch_lock``
makes it behave like logind with a prompt screen locker: emit ``Session.Lock`` on the session,
then set ``LockedHint`` with a ``PropertiesChanged`` signal, at once or after a delay. Unpatched,
``LockedHint`` stays false: a locker that never locks.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# dbusmock and dbus-python come from Debian (python3-dbusmock, python3-dbus) through the venv's
# system site packages; without them this module fails to import, which fails the run.
import dbus
import pytest
from dbus_fast import Message, MessageType, Variant

from logind_mock import SESSION_PATH, LogindMock
from sekisho.daemon import logind_defs as ld
from sekisho.daemon.errors import SekishoDBusError
from sekisho.daemon.logind import Logind
from sekisho.daemon.logind_commands import TERMINATE, check_fallback
from sekisho.daemon.logind_lock import _LockedHintWatch
from sekisho.daemon.logind_results import LockResult, SeatLockResult, Step
from sekisho.daemon.logind_watch import SeatWatch
from sekisho.policies.events import NoSessionToLock, SeatSession, SessionLocked, SessionLockFailed, SessionTerminated


@pytest.fixture
def mock(logind: LogindMock) -> LogindMock:
    return logind


CONFIRMED_S = 30.0
"""``confirm_timeout`` for a lock the mock confirms: long, so that a busy machine's slow mock
never turns it into an unconfirmed one. A confirmed lock returns at once, so it costs nothing;
only a lock that is meant to stay unconfirmed waits out its (short) timeout."""


def run(scenario: Callable[[Logind], Awaitable[Any]]) -> Any:
    """Run ``scenario`` with a connected client on a fresh loop, as the daemon's loop would."""
    async def main() -> Any:
        client = Logind(call_timeout=10.0)
        await client.connect()
        try:
            return await scenario(client)
        finally:
            await client.close()
    return asyncio.run(main())


def lock(seat: str = "seat0", **kw: Any) -> SeatLockResult:
    kw = {"confirm_timeout": 0.15, "retries": 1, **kw}
    return run(lambda c: c.lock(seat, **kw))


def lock1(seat: str = "seat0", **kw: Any) -> LockResult:
    """The lock of a seat with exactly one user session: that session's result."""
    result = lock(seat, **kw)
    assert len(result.results) == 1, result
    return result.results[0]


def steps(result: LockResult) -> list[tuple[str, int]]:
    return [(s.step.value, s.attempt) for s in result.steps]


# ------------------------------------------------------------------------------ finding the session
def test_active_session_reads_the_seat_session(mock: LogindMock):
    mock.add_session("c1", uid=1000, user="alice")
    info = run(lambda c: c.active_session("seat0"))
    assert (info.id, info.path, info.seat, info.uid, info.user) == ("c1", SESSION_PATH + "c1", "seat0", 1000, "alice")
    assert (info.active, info.session_class, info.type, info.locked_hint) == (True, "user", "wayland", False)


def test_of_two_sessions_on_the_seat_the_active_one_is_unlocked_by_card(mock: LogindMock):
    mock.add_session("c1", uid=1000, user="alice", active=False)
    mock.add_session("c2", uid=1001, user="bob", active=True)
    mock.add_session("c9", seat="seat1", uid=1002, user="carol", active=True)
    assert run(lambda c: c.active_session("seat0")).id == "c2"
    assert run(lambda c: c.unlock("seat0")).id == "c2"
    assert mock.calls("UnlockSession") == [["c2"]]


def test_every_user_session_on_the_seat_is_locked_not_only_the_active_graphical_one(mock: LogindMock):
    mock.add_session("c1", uid=1000, user="alice", active=False)           # graphical, in the background
    mock.add_session("c2", uid=1000, user="alice", active=True, type="tty")  # the console she switched to
    mock.add_session("g1", user="gdm", active=False, session_class="greeter")
    mock.add_session("c9", seat="seat1", uid=1002, user="carol", active=True)
    mock.patch_lock()
    # The console's lock stays unconfirmed, so it waits out confirm_timeout: 5 s, so that the
    # graphical session's lock, seconds shorter, shows it was never kept waiting behind it.
    result = lock(retries=0, text_fallback=None, confirm_timeout=5.0)
    assert sorted(mock.calls("LockSession")) == [["c1"], ["c2"]]  # not the greeter, not the other seat
    assert result.result("c1").confirmed and mock.locked_hint("c1")
    assert not result.result("c2").confirmed and result.failed and not result.confirmed
    events = {e.session: e for e in result.events("desk-01")}
    assert isinstance(events["c1"], SessionLocked)
    assert isinstance(events["c2"], SessionLockFailed) and events["c2"].reason == "text_session_unconfirmed"
    # Side by side: the console's wait never delayed the graphical session's lock.
    confirmed_at = next(s.at for s in result.result("c1").steps if s.step is Step.LOCK_CONFIRMED)
    assert confirmed_at - result.started < 3.0
    assert result.finished - result.started >= 4.5  # the console's lock did wait its 5 s


def test_a_text_session_that_cannot_lock_is_terminated_once_without_retries(mock: LogindMock):
    mock.add_session("c1")
    mock.add_session("c2", type="tty")
    mock.patch_lock()
    result = lock(retries=2, fallback=None, text_fallback=TERMINATE, confirm_timeout=5.0)
    assert sorted(mock.calls("LockSession")) == [["c1"], ["c2"]]   # the console is asked once
    assert mock.calls("TerminateSession") == [["c2"]]
    assert mock.session_ids() == ["c1"]
    assert [type(e) for e in result.events("desk-01")] == [SessionLocked, SessionTerminated]


@pytest.mark.parametrize("command, confirmed, reason", [
    ([sys.executable, "-c", "import sys; sys.exit(0 if sys.argv[1:] == ['c1', 'seat0', 'alice'] else 3)",
      "{session}", "{seat}", "{user}"], True, None),
    ([sys.executable, "-c", "import sys; sys.exit('no locker process for c1')"], False,
     "confirm_command_failed: exit 1: no locker process for c1"),
], ids=["command-agrees", "command-disagrees"])
def test_a_confirmation_command_must_agree_with_locked_hint(mock: LogindMock, command, confirmed, reason):
    mock.add_session("c1", user="alice")
    mock.patch_lock()
    # Confirmed or not is the command's word: LockedHint itself must never miss the timeout.
    result = lock1(retries=1, confirm_command=command, fallback=TERMINATE, confirm_timeout=CONFIRMED_S)
    assert result.confirmed is confirmed
    if confirmed:
        assert steps(result)[-1] == ("lock_confirmed", 1) and mock.calls("TerminateSession") == []
    else:
        # Escalated as a failed lock: asked again, then the fallback, then lock_failed.
        assert mock.calls("LockSession") == [["c1"], ["c1"]]
        assert [s for s, _ in steps(result)].count("confirm_command_failed") == 2
        assert mock.calls("TerminateSession") == [["c1"]]
        event = result.event("desk-01")
        assert isinstance(event, SessionLockFailed) and event.reason == reason


def test_a_session_that_logs_out_while_listed_is_skipped(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_lock()
    ghost = ("ghost", dbus.UInt32(1000), "alice", "seat0", dbus.ObjectPath(SESSION_PATH + "ghost"))
    real = ("c1", dbus.UInt32(1000), "alice", "seat0", dbus.ObjectPath(SESSION_PATH + "c1"))
    mock.patch(ld.LIST_SESSIONS, "", "a(susso)", f"ret = [{ghost!r}, {real!r}]")
    result = lock1(confirm_timeout=CONFIRMED_S)
    assert result.confirmed and result.session.id == "c1"


@pytest.mark.parametrize("kw", [
    dict(session_class="greeter", user="gdm"),   # the login screen
    dict(seat="seat1"),
], ids=["greeter", "other-seat"])
def test_nothing_to_lock_without_a_user_session_on_the_seat(mock: LogindMock, kw):
    mock.add_session("c1", **kw)
    result = lock()
    assert result.nothing_to_lock and not result.failed and result.results == ()
    assert [type(e) for e in result.events("desk-01")] == [NoSessionToLock]
    assert mock.calls("LockSession") == [] and mock.calls("LockSessions") == []


def test_a_closing_session_is_no_user_session_any_more(mock: LogindMock):
    path = mock.add_session("c1")
    dbus.Interface(mock.bus.get_object(ld.BUS_NAME, path), dbus.PROPERTIES_IFACE).Set(
        ld.SESSION_IFACE, ld.PROP_STATE, "closing")  # logged out, a process left behind
    assert run(lambda c: c.user_sessions("seat0")) == []
    assert lock().nothing_to_lock


@pytest.mark.parametrize("kw", [dict(type="tty"), dict(type="test"), dict(active=False)],
                         ids=["tty", "mock-type", "inactive"])
def test_text_and_inactive_user_sessions_are_locked_too(mock: LogindMock, kw):
    mock.add_session("c1", **kw)
    result = lock(retries=0, text_fallback=None)
    assert mock.calls("LockSession") == [["c1"]] and not result.nothing_to_lock


def test_nothing_to_lock_on_a_seat_with_no_session_at_all(mock: LogindMock):
    assert lock().nothing_to_lock
    assert run(lambda c: c.unlock("seat0")) is None
    assert mock.calls("LockSession") == [] and mock.calls("UnlockSession") == []


# ------------------------------------------------------------------------------ lock confirmed
def test_lock_calls_lock_session_with_exactly_that_id_and_confirms_by_locked_hint(mock: LogindMock):
    mock.add_session("c7")
    mock.patch_lock()
    seen = []
    result = lock1(on_step=seen.append, confirm_timeout=CONFIRMED_S)
    assert mock.calls("LockSession") == [["c7"]]
    assert mock.calls("LockSessions") == []
    assert mock.calls("Lock", SESSION_PATH + "c7") == []  # through the Manager, as a desk asks
    assert mock.locked_hint("c7")
    assert result.confirmed and not result.failed and result.attempts == 1 and result.fallback is None
    assert steps(result) == [("session_found", 0), ("lock_requested", 1), ("lock_confirmed", 1)]
    assert list(result.steps) == seen  # each step was handed out as it happened
    assert 0 < result.request_ms <= result.latency_ms
    event = result.event("desk-01")
    assert isinstance(event, SessionLocked) and event.session == "c7" and event.latency_ms == result.latency_ms


def test_a_locked_hint_that_arrives_later_is_caught_by_its_signal(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_lock(delay_ms=150)
    # The hint is set 150 ms after LockSession has answered; only its signal can bring the news
    # before confirm_timeout, which is long so that a busy machine's slow mock never misses it.
    result = lock1(confirm_timeout=CONFIRMED_S)
    assert result.confirmed and result.attempts == 1
    assert 150 <= result.latency_ms < CONFIRMED_S * 1000 / 2, result.latency_ms
    assert mock.calls("LockSession") == [["c1"]]


def test_a_session_already_locked_is_confirmed_by_reading_the_hint(mock: LogindMock):
    # The unpatched LockSession changes nothing and sends no signal: only the re-read sees it.
    mock.add_session("c1", locked=True)
    result = lock1(confirm_timeout=CONFIRMED_S)
    assert result.confirmed and result.attempts == 1
    assert mock.calls("LockSession") == [["c1"]]


# ------------------------------------------------------------------------------ lock not confirmed
def test_unconfirmed_lock_retries_then_terminates_the_session(mock: LogindMock):
    mock.add_session("c1")  # unpatched: LockedHint stays false
    result = lock1(retries=2, fallback=TERMINATE)
    assert mock.calls("LockSession") == [["c1"]] * 3
    assert mock.calls("TerminateSession") == [["c1"]]
    assert not result.confirmed and result.failed and result.attempts == 3
    assert (result.fallback, result.fallback_ok) == ("terminate", True)
    assert steps(result) == [("session_found", 0), ("lock_requested", 1), ("lock_unconfirmed", 1),
                             ("lock_requested", 2), ("lock_unconfirmed", 2), ("lock_requested", 3),
                             ("lock_unconfirmed", 3), ("fallback_done", 0)]
    event = result.event("desk-01")
    assert isinstance(event, SessionLockFailed) and (event.session, event.reason) == ("c1", "unconfirmed")
    assert event.latency_ms >= 3 * 150


def test_unconfirmed_lock_runs_the_fallback_command_with_the_session(mock: LogindMock, tmp_path: Path):
    mock.add_session("c3", user="alice")
    out = tmp_path / "fallback.txt"
    command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))",
               str(out), "{session}", "{seat}", "{user}"]
    result = lock1(retries=0, fallback=command)
    assert out.read_text() == "c3 seat0 alice"
    assert (result.fallback, result.fallback_ok, result.failed) == (sys.executable, True, True)
    assert result.steps[-1].step is Step.FALLBACK_DONE
    assert mock.calls("TerminateSession") == []


@pytest.mark.parametrize("command, detail", [
    ([sys.executable, "-c", "import sys; sys.exit('no locker here')"], "exit 1: no locker here"),
    (["/nonexistent/sekisho-fallback"], "No such file or directory"),
], ids=["exit-status", "missing-program"])
def test_a_failing_fallback_command_is_recorded(mock: LogindMock, command, detail):
    mock.add_session("c1")
    result = lock1(retries=0, fallback=command)
    assert result.failed and result.fallback_ok is False
    assert result.steps[-1].step is Step.FALLBACK_FAILED and detail in result.steps[-1].detail


def test_a_hung_fallback_command_is_killed_and_recorded(mock: LogindMock):
    mock.add_session("c1")
    hang = [sys.executable, "-c", "import threading; threading.Event().wait()"]

    async def scenario(client: Logind) -> LockResult:
        client.fallback_timeout = 0.2
        return (await client.lock("seat0", confirm_timeout=0.1, retries=0, fallback=hang)).results[0]
    result = run(scenario)
    assert result.fallback_ok is False and result.steps[-1].detail == "timeout after 0.2 s"


def test_a_logind_that_does_not_answer_in_time_is_a_failed_attempt(mock: LogindMock, tmp_path: Path):
    mock.add_session("c1")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # A hung logind: the mock's LockSession blocks reading the FIFO until the test opens it.
    mock.patch(ld.LOCK_SESSION, "s", "", f"open({str(gate)!r}).read()")

    async def scenario(client: Logind) -> LockResult:
        # The call is bounded by confirm_timeout (5 s), not by the client's call_timeout, which
        # is a minute here so that waiting it out cannot pass for a busy machine's slowness.
        client.bus.call_timeout = 60.0
        return (await client.lock("seat0", confirm_timeout=5.0, retries=0)).results[0]
    result = run(scenario)
    os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO here: the mock never got the call
    assert result.failed
    assert [(s.step, s.detail) for s in result.steps][-1] == (Step.LOCK_CALL_FAILED, ld.ERROR_NO_REPLY)
    assert result.finished - result.started < 30


def test_a_refused_lock_call_keeps_the_dbus_error_name_and_still_falls_back(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_error(ld.LOCK_SESSION, "s", "", "org.freedesktop.DBus.Error.AccessDenied")
    result = lock1(retries=1, fallback=TERMINATE)
    assert [s.detail for s in result.steps if s.step is Step.LOCK_CALL_FAILED] == [
        "org.freedesktop.DBus.Error.AccessDenied"] * 2
    assert mock.calls("TerminateSession") == [["c1"]]
    assert result.event("desk-01").reason == "org.freedesktop.DBus.Error.AccessDenied"


def test_a_failed_terminate_is_recorded(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_error(ld.TERMINATE_SESSION, "s", "", "org.freedesktop.login1.NoSuchSession")
    result = lock1(retries=0, fallback=TERMINATE)
    assert (result.fallback, result.fallback_ok) == ("terminate", False)
    assert result.steps[-1].detail == "org.freedesktop.login1.NoSuchSession"


def test_without_a_fallback_an_unconfirmed_lock_only_reports(mock: LogindMock):
    mock.add_session("c1")
    result = lock1(retries=0)
    assert result.failed and result.fallback is None and result.fallback_ok is None
    assert mock.calls("TerminateSession") == []


def test_logind_refusing_the_listing_is_a_failure_not_nothing_to_lock(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_error(ld.LIST_SESSIONS, "", "a(susso)", "org.freedesktop.DBus.Error.AccessDenied")
    result = lock1(fallback=TERMINATE)
    assert result.failed and not result.nothing_to_lock
    assert result.error == "org.freedesktop.DBus.Error.AccessDenied"
    assert steps(result) == [("lookup_failed", 0)]
    assert result.event("desk-01").reason == "org.freedesktop.DBus.Error.AccessDenied"
    assert mock.calls("LockSession") == [] and mock.calls("TerminateSession") == []


def test_bad_fallbacks_are_refused_before_anything_runs():
    for bad in ("reboot", [], ["ok", 3]):
        with pytest.raises(ValueError):
            check_fallback(bad)
    check_fallback(None)
    check_fallback(TERMINATE)
    check_fallback(["loginctl", "terminate-session", "{session}"])


# ------------------------------------------------------------------------------ unlock
def test_unlock_calls_unlock_session_with_the_id(mock: LogindMock):
    mock.add_session("c4")
    info = run(lambda c: c.unlock("seat0"))
    assert info.id == "c4"
    assert mock.calls("UnlockSession") == [["c4"]]
    assert mock.calls("UnlockSessions") == []


def test_unlock_errors_keep_their_dbus_name(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_error(ld.UNLOCK_SESSION, "s", "", "org.freedesktop.login1.NoSuchSession")
    with pytest.raises(SekishoDBusError) as caught:
        run(lambda c: c.unlock("seat0"))
    assert caught.value.name == "org.freedesktop.login1.NoSuchSession"
    assert "UnlockSession(c1)" in str(caught.value)


# ------------------------------------------------------------------------------ connection
def test_no_system_bus_is_a_dbus_error(mock: LogindMock, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(SekishoDBusError) as caught:
        run(lambda c: c.active_session("seat0"))
    assert caught.value.name == ld.ERROR_DISCONNECTED


def test_a_dropped_bus_connection_is_made_again_on_the_next_call(mock: LogindMock):
    mock.add_session("c1")
    mock.patch_lock()

    async def scenario(client: Logind) -> LockResult:
        dropped = client.bus.connection  # what the system bus restarting would do to the daemon's connection
        dropped.disconnect()
        await dropped.wait_for_disconnect()
        return (await client.lock("seat0", confirm_timeout=CONFIRMED_S)).results[0]
    assert run(scenario).confirmed
    assert mock.calls("LockSession") == [["c1"]]


def test_a_client_closed_during_a_lock_fails_the_attempt_without_raising(mock: LogindMock):
    # The daemon stopping while a desk's lock is under way: close() lands between two calls.
    mock.add_session("c1")
    mock.patch_lock()

    async def scenario(client: Logind) -> LockResult:
        first = client.bus.bus_daemon

        async def then_closed(member: str, arg: str) -> list[Any]:
            got = await first(member, arg)
            await client.close()
            return got
        client.bus.bus_daemon = then_closed  # type: ignore[method-assign]
        return (await client.lock("seat0", confirm_timeout=CONFIRMED_S, retries=0)).results[0]
    result = run(scenario)
    assert result.failed and not result.confirmed
    assert [(s.step, s.detail) for s in result.steps][-1] == (Step.LOCK_CALL_FAILED, ld.ERROR_DISCONNECTED)


def test_a_closed_client_refuses_calls(mock: LogindMock):
    async def scenario(client: Logind) -> None:
        await client.close()
        with pytest.raises(SekishoDBusError):
            await client.active_session("seat0")
    run(scenario)


# ------------------------------------------------------------------------------ the signal filter
def _changed(sender: str, path: str, hint: bool, invalidated: bool = False) -> Message:
    body = [ld.SESSION_IFACE, {} if invalidated else {ld.PROP_LOCKED_HINT: Variant("b", hint)},
            [ld.PROP_LOCKED_HINT] if invalidated else []]
    return Message(message_type=MessageType.SIGNAL, sender=sender, path=path, interface=ld.PROPERTIES_IFACE,
                   member=ld.PROPERTIES_CHANGED, signature="sa{sv}as", body=body)


def test_only_logind_itself_can_confirm_a_lock():
    async def scenario() -> None:
        watch = _LockedHintWatch(SESSION_PATH + "c1", ":1.5")
        watch(_changed(":1.66", SESSION_PATH + "c1", True))   # someone else on the bus
        watch(_changed(":1.5", SESSION_PATH + "c2", True))    # another session
        assert not watch.locked and not watch.changed.is_set()
        watch(_changed(":1.5", SESSION_PATH + "c1", False, invalidated=True))
        assert not watch.locked and watch.changed.is_set()   # re-read, do not assume
        watch(_changed(":1.5", SESSION_PATH + "c1", True))
        assert watch.locked
    asyncio.run(scenario())


# ------------------------------------------------------------------------------ the seat watch
async def _until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_seat_watch_reports_each_change_of_the_seats_user_sessions(mock: LogindMock):
    mock.add_session("c1", locked=True)
    mock.add_session("g9", seat="seat1", user="gdm", session_class="greeter")
    reports: list[tuple[str, tuple, frozenset]] = []

    def ids() -> list[str]:
        return [s.id for s in reports[-1][1]]

    async def scenario(client: Logind) -> None:
        watch = SeatWatch(client, ["seat0", "seat0"], lambda e: reports.append((e.seat, e.sessions, e.signalled)))
        assert await watch.start()  # subscribed and listed once
        try:
            assert reports == [("seat0", (SeatSession("c1", True, True, True),), frozenset())]
            mock.add_session("c2", type="tty", active=True)  # SessionNew
            await _until(lambda: ids() == ["c1", "c2"])
            assert reports[-1][1] == (SeatSession("c1", False, True, True), SeatSession("c2", True, False, False))
            mock.switch_to("c1")  # Active and the seat's ActiveSession
            await _until(lambda: reports[-1][1][0].active)
            # Unlocked and locked again before any listing: logind's signal still counts.
            mock.unlock_by_password("c1")
            mock.bus.get_object(ld.BUS_NAME, SESSION_PATH + "c1").SetLockedHint(True, dbus_interface=ld.SESSION_IFACE)
            await _until(lambda: "c1" in reports[-1][2])
            mock.logout("c2")  # SessionRemoved
            await _until(lambda: ids() == ["c1"])
            mock.logout("c1")
            await _until(lambda: reports[-1][1] == ())
        finally:
            await watch.stop()
    run(scenario)
    assert {seat for seat, _, _ in reports} == {"seat0"}  # one seat, listed once per change


def test_the_seat_watch_without_a_system_bus_starts_late_and_never_raises(mock: LogindMock, monkeypatch,
                                                                         tmp_path: Path):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")

    async def scenario() -> None:
        watch = SeatWatch(Logind(call_timeout=0.5), ["seat0"], lambda e: None, retry_s=0.05)
        assert await watch.start(ready_timeout=0.3) is False
        await watch.stop()
    asyncio.run(scenario())
