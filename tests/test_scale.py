"""The scale path (issue 15, item 8; docs/scale.md): door nodes on a building's broker, bridged
into a central broker, where two recorders on one MQTT 5 shared subscription
(``[recorder] share_group``) store into one PostgreSQL. Every event is stored exactly once,
through a bridge link that drops in the middle of a burst (what was in flight crosses twice) and
one that stays down for a while (the building's broker holds what the doors publish), and both
recorders take part: the central broker's own log says to which client it handed each event.

All real: two mosquittos (tests/bridge.py), the door nodes and the recorders as daemons, the
doors with sim readers, a throw-away PostgreSQL.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from pathlib import Path

from bridge import Building
from harness import DEMO_CONFIG, RECORDER_CONFIG, Broker, Site, node_site, wait_for
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.recorder_store import open_store

PER_NODE = 30
"""Taps at each door in each of the two bursts."""
RECORDER = RECORDER_CONFIG + 'database = "{database}"\nshare_group = "recorders"\n'
DELIVERY = re.compile(r"Sending PUBLISH to (\S+) \(d[01], q1, r0, m\d+, 'sekisho/v1/test/door/[a-z0-9-]+/event'")
"""What the central broker logs (log_type all) as it hands a door event to a subscriber."""


def deliveries(broker: Broker) -> collections.Counter[str]:
    """How many door events the broker handed to each client, by its client id."""
    return collections.Counter(m.group(1) for m in DELIVERY.finditer(broker.log.read_text()))


def taps(nodes: list[Site], cards: range, cut_at: int = -1, cut: Callable[[], int] | None = None) -> None:
    """Each node tapped from its own thread, at once, with each of ``cards``; ``cut`` called by
    the first node's thread after its tap number ``cut_at``."""
    failed: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for i, card in enumerate(cards):
                nodes[n].tap(f"{n:02x}{card:06x}")
                if n == 0 and i == cut_at and cut is not None:
                    assert cut() == 1, "the bridge was not connected"
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            failed.append(exc)
    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]


def test_two_recorders_behind_a_bridge_store_every_event_once(tmp_path: Path, postgres):
    (tmp_path / "central").mkdir()
    central = Broker(tmp_path / "central", extra="log_type all\n")
    central.start()
    building = Building(tmp_path, central)
    SiteKey.load_or_create(tmp_path / "site.key")
    database = postgres.new_database()
    recorders = [node_site(tmp_path, central, name, RECORDER.replace("{database}", database)
                           .replace('node = "recorder"', f'node = "{name}"'), tmp_path / "site.key")
                 for name in ("rec-1", "rec-2")]
    doors: list[Site] = []
    try:
        building.start()
        doors = [node_site(tmp_path, building.broker, name, DEMO_CONFIG, tmp_path / "site.key")
                 for name in ("door-a", "door-b")]
        for s in (*recorders, *doors):
            s.start()
        store = open_store(database, tmp_path)

        # A burst, and the bridge's connection cut in the middle of it: what was in flight is
        # sent again when the bridge reconnects (a second or two later).
        taps(doors, range(0, PER_NODE), cut_at=PER_NODE // 2, cut=building.link.cut)
        wait_for(lambda: store.count() == 2 * PER_NODE, 15, "the first burst stored")
        # The link down for a while: the building's broker holds what the doors publish.
        building.take_down()
        taps(doors, range(PER_NODE, 2 * PER_NODE))
        building.bring_up()
        wait_for(lambda: store.count() == 4 * PER_NODE, 15, "every event stored")

        assert {n: store.last_seq(n) for n in ("door-a", "door-b")} == {"door-a": 2 * PER_NODE, "door-b": 2 * PER_NODE}
        assert store.gaps() == []
        store.close()
        # Both recorders took part: the broker handed each a share, and each event to one of them
        # (a redelivery after the cut aside), not to both; all are stored, so each stored its own.
        handed = deliveries(central)
        shares = [handed[f"sekisho-test-{r}-recorder"] for r in ("rec-1", "rec-2")]
        assert all(shares) and sum(shares) < 8 * PER_NODE, f"not shared between the recorders: {handed}"
        for s in (*doors, *recorders):
            assert s.stop() == 0
    finally:
        for s in (*recorders, *doors):
            s.kill()
        building.stop()
        central.stop()
