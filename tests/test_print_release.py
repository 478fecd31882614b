"""Print release through the whole node: a real cupsd with ippeveprinter as the printer
(tests/cupsfake.py), a real mosquitto, the daemon as a process, a sim reader at the printer.

A job printed to the holding queue does not come out and is published ``held`` with its
operator's pseudonym; a supervisor's card inside the area releases it and the printer writes it;
an operator's card, or a supervisor outside the area, releases nothing; a signed print.release
works, a forged one is refused; print.cancel removes a job. The node is printnode.py's."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
from zoneinfo import ZoneInfo

from conftest import wait_for
from cupsfake import HOLD, PRINTER
from printnode import BOSS, OPERATOR, audit, one, print_events, print_node, printed, pseudonym, waiting
from sekisho.daemon.keys import SiteKey


def test_held_job_prints_only_for_a_supervisor_inside(cups, site, subscribe, tmp_path):
    print_node(site, cups, tmp_path)
    sub = subscribe()
    site.start()
    job = cups.submit("tanaka", "customer list", options=("job-hold-until=no-hold",))
    held = one(sub, "held", job)
    assert held["subject"] == pseudonym(site, "op-tanaka") and held["user_known"] is True
    assert held["document"] == {"hash": SiteKey.load_or_create(site.data_dir / "site.key").document("customer list")}
    assert "customer list" not in json.dumps(print_events(sub))
    wait_for(lambda: waiting(sub) == [job], what="the job in the retained queue")
    # no-hold changed nothing: the job waits, nothing came out.
    assert cups.job_state(job) == HOLD and cups.printed() == []

    # The simulator's command line says what the card did, as at a door.
    said = site.cli("sim", "tap", "printer", OPERATOR).stdout
    assert said == "printer: release_refused (not_supervisor, rule print.not_supervisor)\n", said
    refused = one(sub, "release_refused")
    assert (refused["reason"], refused["job"], refused["by"]) == ("not_supervisor", job, "card")
    site.tap(BOSS, "printer")  # not recorded inside the office yet
    wait_for(lambda: len(print_events(sub, "release_refused")) == 2, what="the second refusal")
    assert print_events(sub, "release_refused")[1]["reason"] == "not_in_area"
    assert cups.job_state(job) == HOLD and cups.printed() == []

    site.tap(BOSS, "entrance-in")
    wait_for(lambda: [e for e in sub.events() if e.get("result") == "granted"], what="the supervisor in")
    site.tap(BOSS, "printer")
    released = one(sub, "released", job)
    assert released["by"] == "card" and released["actor"] == f"supervisor:{pseudonym(site, 'boss')}"
    wait_for(lambda: cups.printed(), what="the printer's output")
    one(sub, "printed", job)
    wait_for(lambda: waiting(sub) == [], what="the queue empty")
    assert [a["actor"] for a in audit(site, "print.release")] == [f"supervisor:{pseudonym(site, 'boss')}"]
    # The node's audit report counts it, per operator and per supervisor (issue 19, item 4).
    today = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date().isoformat()
    rows = list(csv.DictReader(io.StringIO(site.cli("report", "--day", today, "--format", "csv").stdout)))
    assert {(r["by"], r["person_id"], r["count"]) for r in rows if r["section"] == "print_supervisor"
            and r["what"] == "released"} == {(f"supervisor:{pseudonym(site, 'boss')}", "boss", "1")}
    assert {(r["person_id"], r["count"]) for r in rows if r["section"] == "print_operator"
            and r["what"] == "released"} == {("op-tanaka", "1")}
    # One job per tap: another tap with nothing waiting says so.
    site.tap(BOSS, "printer")
    wait_for(lambda: [e for e in print_events(sub, "release_refused") if e["reason"] == "no_job"],
             what="no_job")
    assert printed(cups) == ["customer_list"]


def test_signed_release_forged_release_and_cancel(cups, site, subscribe, tmp_path):
    key = print_node(site, cups, tmp_path)
    sub = subscribe()
    site.start()
    first = cups.submit("tanaka", "first")
    second = cups.submit("suzuki", "second")  # a user who maps to nobody enrolled
    assert one(sub, "held", second)["subject"] is None and one(sub, "held", second)["user_known"] is False
    one(sub, "held", first)
    listed = site.control({"op": "print.list"})
    assert [j["job"] for j in listed["jobs"]] == [first, second] and listed["printer"] == PRINTER

    forged = json.loads(site.cli("cmd", "sign", "print.release", f"job={second}", "--key", str(key)).stdout)
    forged["args"]["job"] = first
    subprocess.run(["mosquitto_pub", "-p", str(site.broker.port), "-q", "1", "-t", "sekisho/v1/test/cmd/door-a",
                    "-m", json.dumps(forged)], check=True, timeout=10)
    refused = wait_for(lambda: [m.json for m in sub.on("/cmd/door-a/result")], what="the forged command's answer")
    assert refused[0]["ok"] is False and refused[0]["error"].startswith("bad signature")

    answer = json.loads(site.cli("cmd", "send", "print.release", f"job={first}", "--key", str(key)).stdout)
    assert answer["ok"] is True, answer
    released = one(sub, "released", first)
    assert (released["by"], released["actor"]) == ("command", "key:officer")
    wait_for(lambda: printed(cups) == ["first"], what="the released job printed")

    gone = site.cli("cmd", "send", "print.release", f"job={first}", "--key", str(key), check=False)
    assert gone.returncode == 1 and f"no job {first} waiting to release (waiting: {second})" in gone.stderr

    listing = site.cli("print", "list").stdout
    assert listing.startswith("JOB") and listing.splitlines()[1].split()[0] == str(second)
    assert site.cli("print", "cancel", str(second)).stdout == f"job {second} cancelled\n"
    again = site.cli("print", "cancel", str(second), check=False)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "no job" in again.stderr, again.stderr
    cancelled = one(sub, "cancelled", second)
    assert cancelled["by"] == "cli" and cancelled["actor"].startswith("cli:")
    wait_for(lambda: cups.job_state(second) == "done", what="the job gone from CUPS")
    wait_for(lambda: waiting(sub) == [], what="the queue empty")
    assert printed(cups) == ["first"]  # the cancelled job never printed
    assert [a["actor"] for a in audit(site, "print.release")] == ["key:officer"]
    assert len(audit(site, "print.cancel")) == 1 and site.cli("audit", "verify").returncode == 0


def test_a_job_chosen_on_the_console_is_the_one_the_next_card_releases(cups, site, subscribe, tmp_path):
    key = print_node(site, cups, tmp_path)
    sub = subscribe()
    site.start()
    older, newer = cups.submit("tanaka", "older"), cups.submit("tanaka", "newer")
    one(sub, "held", newer)
    refused = site.cli("cmd", "send", "print.choose", "job=999", "--key", str(key), check=False)
    assert refused.returncode == 1 and f"no job 999 waiting to choose (waiting: {older}, {newer})" in refused.stderr
    answer = json.loads(site.cli("cmd", "send", "print.choose", f"job={newer}", "--key", str(key)).stdout)
    assert answer["ok"] is True, answer
    wait_for(lambda: [m.json["chosen"] for m in sub.on("/print/door-a/queue")][-1] == newer, what="chosen in the queue")
    assert cups.printed() == []  # choosing releases nothing by itself
    assert [(a["actor"], a["job"]) for a in audit(site, "print.choose")] == [("key:officer", newer)]

    site.tap(BOSS, "entrance-in")
    wait_for(lambda: [e for e in sub.events() if e.get("result") == "granted"], what="the supervisor in")
    site.tap(BOSS, "printer")
    assert one(sub, "released", newer)["actor"] == f"supervisor:{pseudonym(site, 'boss')}"
    wait_for(lambda: printed(cups) == ["newer"], what="the chosen job printed")
    wait_for(lambda: [m.json["chosen"] for m in sub.on("/print/door-a/queue")][-1] is None, what="the choice spent")
    site.tap(BOSS, "printer")  # the next card: the oldest again
    one(sub, "released", older)
    wait_for(lambda: printed(cups) == ["newer", "older"], what="the older job printed")
