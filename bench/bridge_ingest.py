"""The scale path's ingest (issue 15, item 8; docs/scale.md): 200 desks and 10 doors publish
contract events on a building's broker, whose bridge (tests/bridge.py: MQTT 3.1.1, QoS 1,
cleansession false) carries them to a central broker, where two recorders (daemons with roles =
["recorder"], one ``share_group``) split them and store them into one PostgreSQL.

The simulated nodes, their payloads and their publishing processes are bench/recorder_ingest.py's,
so the two figures compare: the same load, with a bridge and a second recorder in the path. The
bridge goes straight to the central broker (no relay in between). Figures: events stored per
second (first publish to last event stored), zero loss (the store's count equals the count sent,
no gap, each node's last seq its last), publish -> stored latency (the event's ``ts`` to the
``received`` of the batch that stored it), each recorder's peak RSS.

Each run twice: the nodes together offering ``--rate`` events a second, then all at once as fast
as they can. ``--recorders 1`` takes the second recorder out, to see what it adds; ``--batch``
is each recorder's ``[recorder] batch``. PostgreSQL is
a throw-away cluster (tests/postgres.py) with fsync on.
Run: .venv/bin/python bench/bridge_ingest.py [--desks 200] [--doors 10] [--per-node 100] [--procs 2]
     [--rate 5000] [--recorders 2] [--batch 500] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from _site import Broker, parse, workdir
from bridge import Building
from harness import RECORDER_CONFIG, Site, node_site
from postgres import Postgres
from recorder_ingest import TARGET, peak_rss_mb, publish_and_count
from sekisho.daemon.keys import SiteKey


def recorder_config(name: str, database: str, batch: int) -> str:
    return (RECORDER_CONFIG.replace("gap_grace_s = 0.5", "").replace('node = "recorder"', f'node = "{name}"')
            + f'database = "{database}"\nshare_group = "recorders"\nbatch = {batch}\n')


def measure(tmp: Path, database: str, args: argparse.Namespace, rate: float) -> None:
    name = (f"bridge + {args.recorders} recorder{'s' if args.recorders > 1 else ''} + postgresql, "
            f"{f'{rate:,.0f}/s offered' if rate else 'all at once'}")
    (tmp / "central").mkdir()
    central = Broker(tmp / "central")
    central.start()
    building = Building(tmp, central, relay=False)
    SiteKey.load_or_create(tmp / "site.key")
    recorders: list[Site] = [node_site(tmp, central, r, recorder_config(r, database, args.batch), tmp / "site.key")
                             for r in (f"rec-{i}" for i in range(1, args.recorders + 1))]
    try:
        building.start()
        for r in recorders:
            r.start()
        run = publish_and_count(building.broker.port, database, tmp, args, rate)
        rss = ", ".join(f"{r.config.parent.name} {peak_rss_mb(r.proc.pid):.1f} MB" for r in recorders if r.proc)
        run.print(name, args, rate, f"recorders' peak RSS {rss}")
        for r in recorders:
            assert r.stop() == 0
    finally:
        for r in recorders:
            r.kill()
        building.stop()
        central.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parse(ap, desks=(200, 200), doors=(10, 10), per_node=(100, 3), procs=(2, 2),
                 rate=(float(TARGET), 1000.0), recorders=(2, 2), batch=(500, 500))
    tmp = workdir()
    pg = Postgres()
    try:
        pg.start()
        for rate in (args.rate, 0):
            (tmp / f"run-{rate:g}").mkdir()
            measure(tmp / f"run-{rate:g}", pg.new_database(), args, rate)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
