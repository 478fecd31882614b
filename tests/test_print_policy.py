"""policies/printing.py: which job a card at the printer releases, in the order the module states,
and which jobs have waited too long."""

from __future__ import annotations

from sekisho.policies.printing import Reason, Refuse, Release, Tapper, WaitingJob, expired, next_expiry, oldest, tap


def job(n: int, submitted: float) -> WaitingJob:
    return WaitingJob(job=n, user="op", person_id="op", title=f"doc {n}", pages=1, submitted=submitted)


JOBS = (job(7, 200.0), job(5, 100.0), job(6, 100.0))
BOSS = Tapper("boss", supervisor=True, inside=True)


def test_the_oldest_job_is_released_and_ties_go_to_the_lower_id():
    assert tap(BOSS, JOBS) == Release(job(5, 100.0), "boss")
    assert oldest(JOBS) == job(5, 100.0)
    assert oldest(()) is None


def test_a_chosen_job_still_waiting_goes_before_the_oldest():
    assert tap(BOSS, JOBS, chosen=7) == Release(job(7, 200.0), "boss")
    # Not free (busy, or its time up): nothing, never another's job in its place.
    assert tap(BOSS, JOBS, chosen=99) == Refuse(Reason.CHOSEN_BUSY, "boss")
    assert tap(Tapper("op", supervisor=False, inside=True), JOBS, chosen=7) == \
        Refuse(Reason.NOT_SUPERVISOR, "op", job(7, 200.0))


def test_each_refusal_in_order_names_the_job_it_would_have_released():
    first = job(5, 100.0)
    assert tap(None, JOBS) == Refuse(Reason.UNKNOWN_CARD, None, first)
    # Not a supervisor outranks the area: an operator inside learns only that.
    assert tap(Tapper("op", supervisor=False, inside=True), JOBS) == Refuse(Reason.NOT_SUPERVISOR, "op", first)
    assert tap(Tapper("op", supervisor=False, inside=True, locked_out=True), JOBS) == \
        Refuse(Reason.NOT_SUPERVISOR, "op", first)
    assert tap(Tapper("boss", supervisor=True, inside=True, locked_out=True), JOBS) == \
        Refuse(Reason.LOCKED_OUT, "boss", first)
    assert tap(Tapper("boss", supervisor=True, inside=False), JOBS) == Refuse(Reason.NOT_IN_AREA, "boss", first)
    assert tap(Tapper("boss", supervisor=True, inside=None), JOBS) == Refuse(Reason.OCCUPANCY_UNKNOWN, "boss", first)
    assert tap(BOSS, ()) == Refuse(Reason.NO_JOB, "boss")
    assert tap(Tapper("boss", supervisor=True, inside=False), JOBS).rule == "print.not_in_area"


def test_expiry_counts_from_when_cups_took_the_job():
    assert expired(JOBS, 159.9, 60) == ()
    assert expired(JOBS, 160.0, 60) == (job(5, 100.0), job(6, 100.0))
    assert expired(JOBS, 10_000, 60) == (job(5, 100.0), job(6, 100.0), job(7, 200.0))
    assert next_expiry(JOBS, 60) == 160.0
    assert next_expiry((), 60) is None
