"""cupsd lost, through the whole node (set up as test_print_release.py does): down at start or
during a run, it is a log line and, after ``[print] unavailable_after_s``, the print_unavailable
alarm, cleared when cupsd is back; a supervisor's card meanwhile releases nothing, and the job
waiting is still waiting, still listed, afterwards."""

from __future__ import annotations

from conftest import wait_for
from cupsfake import HOLD
from printnode import BOSS, audit, one, print_events, print_node, printed, waiting

ALARM = "/alarm/door-a.print.print-unavailable"


def alarm_states(sub) -> list[str]:
    """Each retained alarm message in turn: raised (not cleared) or cleared; empty ones skipped."""
    return ["cleared" if m.json["cleared"] else "raised" for m in sub.on(ALARM) if m.payload]


def test_cupsd_down_at_start_and_during_a_run(cups, site, subscribe, tmp_path):
    print_node(site, cups, tmp_path)
    cups.stop_cupsd()
    sub = subscribe()
    site.start()
    wait_for(lambda: alarm_states(sub) == ["raised"], what="print_unavailable raised")
    assert "print: cupsd cannot be reached" in site.daemon_log()
    cups.start_cupsd()
    wait_for(lambda: alarm_states(sub) == ["raised", "cleared"], what="print_unavailable cleared")

    job = cups.submit("tanaka", "during")
    one(sub, "held", job)
    site.tap(BOSS, "entrance-in")
    wait_for(lambda: [e for e in sub.events() if e.get("result") == "granted"], what="the supervisor in")
    cups.stop_cupsd()
    wait_for(lambda: alarm_states(sub)[2:] == ["raised"], what="print_unavailable raised again")
    site.tap(BOSS, "printer")
    refused = one(sub, "release_refused")
    assert (refused["reason"], refused["job"]) == ("cups_error", job)
    cups.start_cupsd()
    wait_for(lambda: alarm_states(sub)[2:] == ["raised", "cleared"], what="cleared again")
    # Nothing was released by mistake, nothing lost: the job still waits, still listed.
    assert cups.job_state(job) == HOLD and printed(cups) == []
    assert [j["job"] for j in site.control({"op": "print.list"})["jobs"]] == [job]
    assert waiting(sub) == [job] and print_events(sub, "released") == []
    assert audit(site, "print.release") == []
