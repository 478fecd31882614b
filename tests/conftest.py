"""Fixtures with real parts (see harness.py). A part that is missing fails the run; it never
becomes a skip."""

from __future__ import annotations

import gc
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cupsfake import Cups
from harness import REPO, SEKISHO, Broker, Proxy, Site, Subscriber, answers, free_port, wait_for  # noqa: F401 - re-exported

# Hypothesis budgets. ``ci`` (the default) is reproducible and bounded: the same examples on every
# run, no database, so a CI failure is the one a developer sees again. ``fuzz`` is for a hand run
# that hunts (README, "Tests"): HYPOTHESIS_PROFILE=fuzz, its finds kept in .hypothesis/ (ignored
# by git) and replayed first next time.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def cups():
    """A real cupsd with ippeveprinter as the printer, its queues set up as docs/printing.md says."""
    c = Cups()
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def subscribe(broker: Broker):
    subs: list[Subscriber] = []

    def make(topic: str = "sekisho/#", persistent: bool = False) -> Subscriber:
        s = Subscriber(broker.port, topic, persistent)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


@pytest.fixture
def proxy(broker: Broker):
    p = Proxy(broker.port)
    yield p
    p.close()


@pytest.fixture
def site(tmp_path: Path, broker: Broker):
    s = Site(tmp_path, broker)
    yield s
    s.kill()


@pytest.fixture
def pcscd(tmp_path: Path):
    """The real pcscd with vpcd's virtual reader on free ports (see fakecard.py)."""
    from fakecard import Pcscd
    d = Pcscd(tmp_path)
    d.start()
    yield d
    d.release()


@pytest.fixture(scope="session")
def logind_bus():
    """dbusmock's logind on a private system bus, one per test session (stopping a bus takes
    about 1.7 s); see logind_mock.py."""
    from logind_mock import start_logind
    yield from start_logind()


@pytest.fixture
def logind(logind_bus):
    """The logind mock, reset: no sessions, no recorded calls, no patches."""
    logind_bus.reset()
    return logind_bus


@pytest.fixture(scope="session")
def gpiosim_lib(tmp_path_factory):
    """The GPIO preload, compiled once per run (gpiosim.py says why it exists)."""
    from gpiosim import build
    return build(tmp_path_factory.mktemp("gpiosim"))


@pytest.fixture
def gpiosim(tmp_path, gpiosim_lib):
    """A userspace GPIO chip 0 with 32 lines; ``gpiosim.env()`` is the environment that sees it."""
    from gpiosim import GpioSim
    sim = GpioSim(tmp_path, gpiosim_lib)
    yield sim
    sim.close()


@pytest.fixture
def testbed():
    """A umockdev testbed for a daemon in another process: it inherits the preload and the
    testbed's directory, so its sysfs reads and writes and its uevents are the testbed's."""
    yield from _testbed()


@pytest.fixture(scope="module")
def module_testbed():
    """As ``testbed``, for a module whose tests share one daemon (test_console)."""
    yield from _testbed()


def _testbed():
    if "umockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        pytest.fail("needs umockdev's preload: run the suite under umockdev-wrapper (make test does)")
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev
    bed = UMockdev.Testbed.new()
    # /sys/bus/usb/drivers_probe exists on every kernel with USB; the testbed has no such file.
    probe = Path(bed.get_root_dir()) / "sys" / "bus" / "usb" / "drivers_probe"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("")
    yield bed
    del bed
    gc.collect()  # finalizes the testbed now: its directory goes, its preload state is reset


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MB filesystem, so the disk really fills (tests run as root, as CI does)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a tmpfs for the full-disk test (run the tests as root): {r.stderr}"
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster for the session, on a Unix socket in its temp dir (see
    postgres.py); stopped at the end, also when a test failed. Tests take a fresh database of it
    each (``postgres.new_database()``)."""
    from postgres import Postgres
    pg = Postgres(fsync=False)  # the tests check behaviour, not durability across a power cut
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()

