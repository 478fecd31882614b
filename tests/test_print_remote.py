"""A print-only node (no door, no desk; the supervisors' level releases print jobs and nothing
else), whose area is another node's: whether the supervisor is inside comes from that node's
retained occupancy on the bus. Until it has been heard, nobody is known to be inside and a card
releases nothing (``occupancy_unknown``); once it names the supervisor, their card releases."""

from __future__ import annotations

import json
import subprocess

from conftest import wait_for
from cupsfake import HOLD, PRINTER
from printnode import BOSS, one, print_events, printed, pseudonym

PRINT_ONLY = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.office]

[levels.supervisor]

[readers.printer]
driver = "sim"

[print]
server = "{server}"
hold_queue = "{hold}"
printer = "{printer}"
reader = "printer"
area = "office"
supervisor_levels = ["supervisor"]
"""


def test_a_print_only_node_learns_who_is_inside_from_the_bus(cups, site, subscribe):
    site.config.write_text(PRINT_ONLY.format(url=site.broker.url, server=cups.server, hold=HOLD, printer=PRINTER))
    site.enroll("boss", BOSS, level="supervisor")
    sub = subscribe()
    site.start()
    job = cups.submit("tanaka", "remote")
    one(sub, "held", job)
    site.tap(BOSS, "printer")
    assert one(sub, "release_refused")["reason"] == "occupancy_unknown"

    # The door node's retained occupancy of the office, naming the supervisor.
    occupancy = {"count": 1, "subjects": [pseudonym(site, "boss")], "ts": "2026-12-05T09:00:00.000Z"}
    subprocess.run(["mosquitto_pub", "-p", str(site.broker.port), "-q", "1", "-r",
                    "-t", "sekisho/v1/test/area/office/occupancy", "-m", json.dumps(occupancy)],
                   check=True, timeout=10)

    def released_by_a_tap() -> bool:
        """One tap, and what it did: a tap before the message has reached the node is refused."""
        before = len(print_events(sub))
        site.tap(BOSS, "printer")
        wait_for(lambda: len(print_events(sub)) > before, what="what the tap did")
        return print_events(sub)[before]["action"] == "released"
    wait_for(released_by_a_tap, what="a tap that releases, once the occupancy is heard")
    assert {e["reason"] for e in print_events(sub, "release_refused")} == {"occupancy_unknown"}
    wait_for(lambda: printed(cups) == ["remote"], what="the job printed")
