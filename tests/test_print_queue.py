"""Print release over time, through the whole node (set up as test_print_release.py does): a job
waiting too long is cancelled; a job waiting before the daemon starts is found and published,
and found again after a restart (cupsd lost is test_print_outage.py)."""

from __future__ import annotations

from conftest import wait_for
from cupsfake import HOLD
from printnode import audit, cups, one, print_events, print_node, pseudonym, waiting

__all__ = ["cups"]  # the fixture, shared

def test_a_job_waiting_too_long_is_cancelled(site, subscribe, cups, tmp_path):
    print_node(site, cups, tmp_path, expire=0.02)  # 1.2 s
    sub = subscribe()
    site.start()
    job = cups.submit("tanaka", "old")
    held = one(sub, "held", job)
    expired = one(sub, "expired", job)
    assert expired["by"] == "expiry" and expired["submitted"] == held["submitted"]
    wait_for(lambda: cups.job_state(job) == "done", what="the job cancelled at CUPS")
    assert cups.printed() == [] and len(audit(site, "print.expire")) == 1


def test_a_job_waiting_before_the_daemon_starts_is_found(site, subscribe, cups, tmp_path):
    print_node(site, cups, tmp_path)
    job = cups.submit("tanaka", "early")
    sub = subscribe()
    site.start()
    assert one(sub, "held", job)["subject"] == pseudonym(site, "op-tanaka")
    wait_for(lambda: waiting(sub) == [job], what="the early job in the retained queue")
    site.stop()
    # A restart publishes it again and loses nothing; the job still waits at CUPS.
    site.start()
    wait_for(lambda: len(print_events(sub, "held")) == 2, what="the job found again")
    assert cups.job_state(job) == HOLD and cups.printed() == []
