"""Shared set-up for the benchmarks: the test harness's real broker and daemon, in a temp dir,
and the ``--quick`` mode every benchmark has, in which tests/test_bench.py runs it."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import Broker, Site, Subscriber, answers, wait_for  # noqa: E402,F401 - re-exported for the benches

UID = "04a1b2c3d4e5f6"


def parse(ap: argparse.ArgumentParser, **sizes: tuple[float, float]) -> argparse.Namespace:
    """The command line with ``--quick`` and one option per size, each given as (full, quick):
    ``--quick`` takes the small value of every size not given, so that the suite can run each
    benchmark in seconds and a renamed method or a changed protocol fails there, not the next
    time someone measures. A quick run's figures are printed but judged by nobody."""
    ap.add_argument("--quick", action="store_true",
                    help="a few iterations, targets not judged: the test suite's smoke run (tests/test_bench.py)")
    for name, (full, quick) in sizes.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(full), default=None,
                        help=f"default {full:g}; {quick:g} with --quick")
    args = ap.parse_args()
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sekisho-bench-"))


def enrolled_site(tmp: Path, broker: Broker) -> Site:
    site = Site(tmp, broker)
    site.cli("person", "add", "--id", "u1", "--name", "Bench Person")
    site.cli("card", "add", "--person", "u1", "--uid", UID)
    return site


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def summary(name: str, samples_ms: list[float]) -> str:
    s = sorted(samples_ms)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return (f"{name}: n={len(s)} p50={p(0.50):.2f} ms p99={p(0.99):.2f} ms max={s[-1]:.2f} ms "
            f"mean={statistics.fmean(s):.2f} ms")
