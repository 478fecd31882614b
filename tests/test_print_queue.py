"""Print release over time, through the whole node (set up as test_print_release.py does): a job
waiting too long is cancelled; a job waiting before the daemon starts is found and published,
and listed again after a restart, not said twice; a set-up mistake is a warning at start; a job its owner cancels at CUPS has left
(cupsd lost is test_print_outage.py)."""

from __future__ import annotations

from conftest import wait_for
from cupsfake import HOLD, PRINTER
from printnode import audit, one, print_events, print_node, pseudonym, waiting


def test_a_job_waiting_too_long_is_cancelled(cups, site, subscribe, tmp_path):
    print_node(site, cups, tmp_path, expire=0.02)  # 1.2 s
    sub = subscribe()
    site.start()
    job = cups.submit("tanaka", "old")
    held = one(sub, "held", job)
    expired = one(sub, "expired", job)
    assert expired["by"] == "expiry" and expired["submitted"] == held["submitted"]
    wait_for(lambda: cups.job_state(job) == "done", what="the job cancelled at CUPS")
    assert cups.printed() == [] and len(audit(site, "print.expire")) == 1


def test_a_job_waiting_before_the_daemon_starts_is_found(cups, site, subscribe, tmp_path):
    print_node(site, cups, tmp_path)
    job = cups.submit("tanaka", "early")
    cups.lpadmin("-p", PRINTER, "-o", "printer-is-shared=true")  # a set-up mistake, said at start
    sub = subscribe()
    site.start()
    shared = f"the printer's queue {PRINTER} is shared"
    # Checked in the background once the driver runs: a cupsd that never answers holds up nothing.
    wait_for(lambda: any(w.startswith(shared) for w in site.control({"op": "print.list"})["warnings"]),
             what="the set-up warning")
    assert shared in site.daemon_log() and f"warning: {shared}" in site.cli("print", "list").stderr
    assert one(sub, "held", job)["subject"] == pseudonym(site, "op-tanaka")
    wait_for(lambda: waiting(sub) == [job], what="the early job in the retained queue")
    site.stop()
    # A restart loses nothing and says nothing twice: the job is listed again, not held again;
    # one that came while the daemon was away is held.
    later = cups.submit("tanaka", "while away")
    site.start()
    one(sub, "held", later)
    wait_for(lambda: waiting(sub) == [job, later], what="both jobs in the retained queue")
    assert [e["job"] for e in print_events(sub, "held")] == [job, later]
    assert cups.job_state(job) == HOLD and cups.printed() == []
    # Its owner cancels one at CUPS: it left, by its owner, and is no longer listed.
    assert cups.as_user("tanaka", "cancel", str(later)).returncode == 0
    left = one(sub, "left", later)
    assert (left["by"], left["reason"], left["actor"]) == ("owner", "cancelled", None)
    wait_for(lambda: waiting(sub) == [job], what="the cancelled job off the queue")
