"""Every benchmark in bench/ runs here in its quick mode (a few iterations, no target judged),
so that none can rot between the times someone measures: each must exit 0 and print its
figures, both as its human lines and as the JSON lines bench/all.py collects into the README's
table. A benchmark added to bench/ without a line here fails the suite. The runner itself runs
here on the two quickest benchmarks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

FIGURES = {
    "bridge_ingest.py": [r"bridge \+ 2 recorders \+ postgresql, 1,000/s offered: 630 events from 210 nodes .*: "
                         r"[\d,]+ events/s stored, 0 lost",
                         r"bridge \+ 2 recorders \+ postgresql, all at once: publish -> stored: p50=\d+ ms p99=\d+ ms "
                         r"max=\d+ ms; recorders' peak RSS rec-1 [\d.]+ MB, rec-2 [\d.]+ MB"],
    "command_flood.py": [r"flood: 2000 junk commands in", r"sim tap -> subscriber during the flood: n=20 p50=",
                         r"audit rows added: \d+"],
    "console_page.py": [r"page weight: \d+ files, [\d,]+ bytes as served .* [\d,]+ bytes gzipped",
                        r"sim tap -> row in the DOM: n=20 p50=", r"sim tap -> frame painted: n=20 p50=",
                        r"JS heap used: start [\d.]+ MB, max [\d.]+ MB, end [\d.]+ MB",
                        r"renderer RSS: start [\d.]+ MB, max [\d.]+ MB, end [\d.]+ MB",
                        r"DOM nodes: start \d+, end \d+"],
    "desk_lock_latency.py": [r"card out -> LockSession received by logind\s*: n=3 p50=", r"added by the daemon"],
    "enrolment_snapshot.py": [r"enrolment snapshot: 1,000 people, 1,000 cards", r"recorder -> node .*: \d+ ms",
                              r"bytes: body [\d,]+ raw, [\d,]+ compressed .* \d+ chunks",
                              r"RSS: recorder before build [\d.]+ MB, peak [\d.]+ MB; "
                              r"node before verify [\d.]+ MB, peak [\d.]+ MB"],
    "enrolment_transport.py": [r"revocation at the recorder -> revoked in the door's store, 5 people enrolled: n=5 p50=",
                               r"revocation at the recorder -> revoked in the door's store, 1,005 people enrolled: n=5 ",
                               r"revoked in the door's store, 1,002 people enrolled, 1.5 s apart: n=2 ",
                               r"revocations carried by a delta: \d+ of 5",
                               r"snapshot of 1,000 people, 1,000 cards: recorder start -> retained manifest [\d.]+ s; "
                               r"fresh door start -> applied [\d.]+ s",
                               r"bytes on the wire: [\d,]+ in \d+ chunks"],
    "doors.py": [r"lookup \+ decide .* p50=", r"sim tap -> strike output: n=\d+ p50=", r"RSS: idle [\d.]+ MB"],
    "muster.py": [r"sqlite: 3,000 events \(1,000 door events\) stored with the table: [\d,]+ events/s",
                  r"sqlite: muster's read of 3,000 events: before \(fold of every door event\) [\d,]+ ms, "
                  r"after \(whereabouts table, [\d,]+ people\) [\d.,]+ ms",
                  r"postgresql: muster's read of 3,000 events: before .* after .* ms",
                  r"postgresql: opening it as a schema-2 store \(the migration fills the table\): [\d,]+ ms"],
    "osdp_read.py": [r"card read -> door event at the subscriber\s*: n=5 p50=",
                     r"card read -> bare libosdp panel's callback\s*: n=5 p50=",
                     r"card read -> green LED command at the reader\s*: n=5 p50="],
    "pcsc_latency.py": [r"insert: driver emits Presented\s*: n=5 p50=", r"both:\s+added by the driver\s*: n=10"],
    "recorder_store.py": [r"sqlite: \d+ events, \d+ batches of 500: [\d,]+ events/s stored",
                          r"postgresql: \d+ events, \d+ batches of 500: [\d,]+ events/s stored",
                          r"postgresql: the same again, all repeats: [\d,]+ events/s",
                          r"postgresql, two writers sharing the batches: [\d,]+ events/s"],
    "recorder_ingest.py": [r"sqlite, 1,000/s offered: 630 events from 210 nodes .*: [\d,]+ events/s stored, 0 lost",
                           r"sqlite, all at once: 630 events .* 0 lost",
                           r"postgresql, all at once: 630 events .* 0 lost",
                           r"postgresql, 1,000/s offered: publish -> stored: p50=\d+ ms p99=\d+ ms .* "
                           r"recorder peak RSS [\d.]+ MB"],
    "tap_latency.py": [r"start-up to retained online: n=1 p50=", r"anchor: bare paho publish -> bare subscriber: n=20 p50=",
                       r"sim tap -> subscriber: n=20 p50=", r"floor: python -c pass, exec -> done: n=1 p50=",
                       r"floor: one sqlite3 WAL synchronous=FULL commit of an event's rows: [\d.]+ ms",
                       r"tap / anchor: p50 [\d.]+x, p99 [\d.]+x"],
    "throughput.py": [r"received 400 distinct events at the subscriber, 0 lost", r"events/s",
                      r"anchor: bare paho, 400 QoS 1 messages offered at 200/s: 400 received, 0 lost",
                      r"ceiling: bare paho, 1000 QoS 1 messages at each of .*, the best with none lost: [\d,]+ messages/s",
                      r"ceiling: sqlite3 WAL synchronous=FULL, .*: [\d,]+ events/s one per transaction, [\d,]+ "
                      r"events/s 100 per transaction"],
    "usb_plug.py": [r"uevent -> authorized written \(sekisho\): n=20 p50="],
    "usb_rules.py": [r"generated\s+rules=201 -> allow .* n=200 p50=", r"call-centre .* p50=",
                     r"thousand +parse of the 1000-rule file: n=3 p50=",
                     r"thousand +one device against 1000 rules \(500 named, 500 to the final block\): n=1000 p50=",
                     r"thousand-if +one device against 1000 rules \(500 named, 500 to the final block\): n=1000 p50="],
}
"""Each benchmark's figures lines, as its quick run prints them."""


RUNNER = "all.py"


def test_every_benchmark_is_run_here():
    assert sorted(p.name for p in (REPO / "bench").glob("[!_]*.py") if p.name != RUNNER) == sorted(FIGURES)


@pytest.fixture
def short_tmp():
    """A benchmark's work dir goes here, not in pytest's tmp_path: its sockets' paths must stay
    within the 108 bytes a Unix socket address holds."""
    path = Path(tempfile.mkdtemp(prefix="bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def quick_env(short_tmp: Path) -> dict[str, str]:
    # The suite runs under umockdev-wrapper, which usb_plug.py needs; a testbed a test left in
    # the environment is no business of the others.
    return {k: v for k, v in os.environ.items() if k != "UMOCKDEV_DIR"} | {"TMPDIR": str(short_tmp)}


@pytest.mark.parametrize("bench", sorted(FIGURES))
def test_benchmark_runs_quick(bench, short_tmp):
    r = subprocess.run([sys.executable, str(REPO / "bench" / bench), "--quick", "--json"], capture_output=True,
                       text=True, timeout=180, cwd=short_tmp, env=quick_env(short_tmp))
    assert r.returncode == 0, f"{bench} --quick exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    for figure in FIGURES[bench]:
        assert re.search(figure, r.stdout), f"{bench} printed no line like {figure!r}:\n{r.stdout}\n{r.stderr}"
    figures = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"figure"')]
    assert figures, f"{bench} --json printed no figure line:\n{r.stdout}"
    for f in figures:
        measured = [f[k] for k in ("p50", "p99", "max", "value") if k in f]
        assert measured and all(isinstance(x, (int, float)) for x in measured) and f["unit"], f"{bench}: {f}"
        if "anchor" in f:
            assert any(k in f["anchor"] for k in ("p50", "value")), f"{bench}: an anchor without a figure: {f}"


def test_the_runner_prints_the_readme_table(short_tmp):
    r = subprocess.run([sys.executable, str(REPO / "bench" / RUNNER), "--quick", "--only", "usb_rules", "usb_plug",
                        "--logs", str(short_tmp / "logs")], capture_output=True, text=True, timeout=120,
                       cwd=short_tmp, env=quick_env(short_tmp))
    assert r.returncode == 0, f"{RUNNER} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert re.match(r"Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC \(a --quick run.*\), \d+ min in all, on \d+ CPUs "
                    r".*load average \(1, 5, 15 min\) [\d.]+ [\d.]+ [\d.]+ at the start", lines[0]), lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| Figure")]
    assert [row[0] for row in rows] == [
        "| USB rules: one device against generated (201 rules, generated.rules:200)",
        "| USB rules: one device against sets (200 rules, IMPLICIT)",
        "| USB rules: one device against call-centre (30 rules, call-centre.rules:77)",
        "| USB rules: parse a 1000-rule file",
        "| USB rules: one device against 1000 rules, per device",
        "| USB rules: parse a 1000-rule file with conditions",
        "| USB rules: one device against 1000 rules with conditions, per device",
        "| uevent to authorized: a keyboard's add uevent -> authorized 1 written (call-centre.rules)",
        "| uevent to authorized: added by sekisho (each sample minus its bare monitor's)"], r.stdout
    uevent = rows[-2]
    assert re.fullmatch(r"[\d.]+ ms", uevent[2]) and uevent[5] == "umockdev's delivery of the uevent to a bare pyudev " \
        "monitor" and re.fullmatch(r"[\d.]+ ms", uevent[6]), uevent
    assert uevent[-1] == "`umockdev-wrapper .venv/bin/python bench/usb_plug.py --quick` |", uevent
    assert (short_tmp / "logs" / "usb_plug.log").read_text().startswith("20 plug events")


def test_the_runner_refuses_an_unknown_benchmark(short_tmp):
    r = subprocess.run([sys.executable, str(REPO / "bench" / RUNNER), "--only", "tap_latncy"], capture_output=True,
                       text=True, timeout=30, cwd=short_tmp, env=quick_env(short_tmp))
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr.startswith("no such benchmark: tap_latncy (there are: tap_latency, throughput,"), r.stderr
