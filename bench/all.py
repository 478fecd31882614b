"""Every benchmark in bench/, one after another, and the README's table of their figures.

Each benchmark runs as its own process with ``--json`` and prints, besides its human lines, one
JSON line per figure (``_site.figure``): its samples' p50/p99/max or a single value, and the
anchor it measured in the same run where there is one. This runner reads only those lines. While
a benchmark runs, the machine's 1-minute load average is sampled every 2 s, so that each row says
how busy the machine was under it. The human output of each benchmark is kept in ``--logs``.

The table is Markdown, printed on stdout after a line naming the date, the machine and the load:
that block is what README.md's "Tests and benchmarks" holds. A benchmark that fails gets a row
saying so (and the runner exits 1), the others still run.

Run: .venv/bin/python bench/all.py [--quick] [--only NAME ...] [--logs DIR]
     (make bench; --quick is the test suite's smoke run, tests/test_bench.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ("tap_latency", "throughput", "pcsc_latency", "osdp_read", "desk_lock_latency", "usb_plug", "usb_rules",
         "doors", "command_flood", "recorder_store", "recorder_ingest", "bridge_ingest", "muster", "enrolment_snapshot",
         "enrolment_transport", "console_page")
"""The table's order: the node's figures first, then the recorder's and the site's. A benchmark
added to bench/ and not named here runs last."""
FULL_ARGS = {"console_page": ("--duration", "300", "--every", "30")}
"""What a full run passes beyond the benchmark's own defaults: console_page's memory run is an
hour by default, which belongs to a run by hand, not to every table."""
UMOCKDEV = {"usb_plug"}
"""Benchmarks that need umockdev's preload: run under umockdev-wrapper unless it is already loaded."""


@dataclass
class Result:
    """One benchmark's run: its figures, its exit code, the load average samples under it."""
    name: str
    command: str
    returncode: int = 0
    figures: list[dict] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    seconds: float = 0.0


def benches() -> list[str]:
    found = {p.stem for p in BENCH.glob("[!_]*.py")} - {Path(__file__).stem}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def command(name: str, quick: bool) -> list[str]:
    """The command line a reader types to reproduce the row (``--json`` is added when run here)."""
    cmd = [".venv/bin/python", f"bench/{name}.py", *(("--quick",) if quick else FULL_ARGS.get(name, ()))]
    return ["umockdev-wrapper", *cmd] if name in UMOCKDEV else cmd


def run(name: str, quick: bool, logs: Path) -> Result:
    shown = command(name, quick)
    argv = [sys.executable if a == ".venv/bin/python" else str(BENCH / Path(a).name) if a.startswith("bench/")
            else a for a in shown] + ["--json"]
    if name in UMOCKDEV and "umockdev-preload" in os.environ.get("LD_PRELOAD", ""):
        argv = argv[1:]
    env = {k: v for k, v in os.environ.items() if k != "UMOCKDEV_DIR"}  # no testbed of someone else's
    result = Result(name, " ".join(shown))
    done = threading.Event()

    def sample() -> None:
        while True:
            result.load.append(os.getloadavg()[0])
            if done.wait(2):
                return
    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    with open(logs / f"{name}.log", "w") as log:
        # A session of its own, so that an interrupted run takes down what the benchmark started
        # (broker, daemons, pcscd, Chromium) with it, and nothing else.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if line.startswith('{"figure"'):
                    result.figures.append(json.loads(line))
            result.returncode = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            raise
    done.set()
    sampler.join()
    result.seconds = time.monotonic() - started
    return result


def number(x: float, unit: str) -> str:
    if unit in ("events/s", "bytes"):
        return f"{x:,.0f} {unit}"
    digits = 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
    return f"{x:,.{digits}f} {'µs' if unit == 'us' else unit}"


def cells(f: dict, unit: str) -> tuple[str, str, str]:
    """p50, p99, max of samples; a single value goes in the first cell."""
    if "p50" in f:
        return number(f["p50"], unit), number(f["p99"], unit), number(f["max"], unit)
    if "value" in f:
        return number(f["value"], unit), "", ""
    return "", "", ""


def table(results: list[Result]) -> str:
    rows = ["| Figure | n | p50 (or value) | p99 | max | Anchor, measured in the same run | anchor p50 (or value) "
            "| anchor p99 | load 1 min, mean (max) | Command |",
            "|---|--:|--:|--:|--:|---|--:|--:|--:|---|"]
    for r in results:
        load = f"{sum(r.load) / len(r.load):.2f} ({max(r.load):.2f})" if r.load else ""
        cmd = f"`{r.command}`"
        if r.returncode:
            rows.append(f"| **{r.name}: failed, exit {r.returncode}** (see its log) | | | | | | | | {load} | {cmd} |")
        for f in r.figures:
            p50, p99, top = cells(f, f["unit"])
            anchor = f.get("anchor")
            a50, a99, _ = cells(anchor, f["unit"]) if anchor else ("", "", "")
            name = anchor["name"] if anchor else "—"
            rows.append(f"| {f['figure']} | {f.get('n', '')} | {p50} | {p99} | {top} | {name} | {a50} | {a99} "
                        f"| {load} | {cmd} |")
    return "\n".join(rows)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, Debian {debian}, " \
           f"kernel {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="each benchmark's --quick: the test suite's smoke run")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these benchmarks only (names without .py)")
    ap.add_argument("--logs", type=Path, help="where each benchmark's own output is kept (default: a temp dir)")
    args = ap.parse_args()
    # Stopped (kill, Ctrl-C), the runner stops the benchmark under way with all it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    names = benches()
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)} (there are: {', '.join(names)})", file=sys.stderr)
        return 2
    logs = args.logs or Path(tempfile.mkdtemp(prefix="sekisho-bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    began, load0 = dt.datetime.now(dt.UTC), os.getloadavg()
    results = []
    for name in args.only or names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(run(name, args.quick, logs))
        r = results[-1]
        print(f"  {name}: exit {r.returncode}, {len(r.figures)} figures, {r.seconds:.0f} s", file=sys.stderr)
    load1 = os.getloadavg()
    took = (dt.datetime.now(dt.UTC) - began).total_seconds()
    quick = " (a --quick run: a few iterations, not figures)" if args.quick else ""
    print(f"Measured {began:%Y-%m-%d %H:%M} UTC{quick}, {took / 60:.0f} min in all, on {machine()}; "
          "load average (1, 5, 15 min) "
          f"{' '.join(f'{x:.2f}' for x in load0)} at the start, {' '.join(f'{x:.2f}' for x in load1)} at the end.")
    print()
    print(table(results))
    print(f"\nEach benchmark's own output: {logs}", file=sys.stderr)
    return 1 if any(r.returncode for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
