"""A node that is gone (issue 14, item 1: the ``node_offline`` alarm), through a real broker and two
real daemons: door-a watches desk-b (``[site] watch_nodes``); desk-b killed outright leaves its
last will, door-a raises ``node_offline`` after the grace period, desk-b back clears it, and the
alarm waits for a person. A node never heard from is an alarm too; a restart within the grace
period is none."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from conftest import wait_for
from harness import Site
from sekisho.daemon.alarms import Alarms
from sekisho.daemon.node_watch import NodeWatch
from sekisho.daemon.topics import Topics

WATCHER = """\
[site]
id = "test"
node = "door-a"
watch_nodes = {watched}
node_offline_after_s = {grace}

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[doors.entrance]
area_in = "room"

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"
"""

WATCHED = """\
[site]
id = "test"
node = "desk-b"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[doors.back]
area_in = "room"

[readers.back-in]
driver = "sim"
door = "back"
direction = "in"
"""
OFFLINE = "door-a.desk-b.node-offline"


@pytest.fixture
def grace():
    return 5


@pytest.fixture
def two_nodes(site, broker, subscribe, tmp_path, grace):
    site.config.write_text(WATCHER.format(url=broker.url, watched='["desk-b"]', grace=grace))
    (tmp_path / "b").mkdir()
    other = Site(tmp_path / "b", broker)
    other.config.write_text(WATCHED.format(url=broker.url))
    sub = subscribe()
    other.start()
    wait_for(lambda: [m for m in sub.on("/node/desk-b/status") if m.json["state"] == "online"], what="desk-b online")
    site.start()
    yield site, other, sub
    for s in (site, other):
        if s.proc is not None:
            s.stop()


def offline_alarms(sub) -> list[dict]:
    return [m.json for m in sub.on(f"/alarm/{OFFLINE}") if m.payload]


def test_a_node_killed_raises_node_offline_until_a_person_has_seen_it(two_nodes):
    site, other, sub = two_nodes
    other.stop(signal.SIGKILL)  # no clean goodbye: the broker publishes desk-b's last will
    wait_for(lambda: [m for m in sub.on("/node/desk-b/status") if m.json["state"] == "offline"], what="the will")
    raised = wait_for(lambda: offline_alarms(sub), 30, "the node_offline alarm")[-1]
    assert (raised["kind"], raised["source"], raised["severity"], raised["cleared"]) == (
        "node_offline", "desk-b", "warning", None)
    assert raised["detail"] == "offline for 5 s"

    other.start()  # back: the condition clears, the alarm stays open for a person
    wait_for(lambda: offline_alarms(sub)[-1]["cleared"], 30, "the alarm cleared")
    assert OFFLINE in site.cli("alarms", "--open").stdout
    site.cli("alarm", "ack", OFFLINE, "--note", "desk-b rebooted by IT")
    wait_for(lambda: sub.on(f"/alarm/{OFFLINE}")[-1].payload == b"", what="the alarm closed")


@pytest.mark.parametrize("grace", [20])  # a restart on a busy machine takes seconds
def test_a_restart_within_the_grace_period_is_no_alarm(two_nodes):
    site, other, sub = two_nodes
    other.stop()  # a clean stop says offline, and the restart online again
    other.start()
    states = lambda: [m.json["state"] for m in sub.on("/node/desk-b/status")]  # noqa: E731
    wait_for(lambda: "offline" in states() and states()[-1] == "online", what="desk-b online again")
    # Then gone for good: its alarm comes a grace period after this, so any alarm the restart
    # had raised would be on the bus before it.
    other.stop(signal.SIGKILL)
    wait_for(lambda: offline_alarms(sub), 30, "the node_offline alarm")
    assert len({a["raised"] for a in offline_alarms(sub)}) == 1


def test_a_node_never_heard_from_is_an_alarm(site, broker, subscribe):
    site.config.write_text(WATCHER.format(url=broker.url, watched='["desk-ghost"]', grace=5))
    sub = subscribe()
    site.start()
    alarm = wait_for(lambda: [m.json for m in sub.on("/alarm/door-a.desk-ghost.node-offline") if m.payload], 30,
                     "the node_offline alarm")[-1]
    assert alarm["source"] == "desk-ghost" and alarm["detail"] == "not heard from in the 5 s since this node reached the broker"
    site.stop()


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b"42", b'"online"', b'{"state": ["online"]}',
                                     b'{"state": "rebooting"}', b'{"no": "state"}', b"[" * 100_000, b"\xff\xfe"])
def test_a_status_that_is_not_the_contracts_changes_nothing(garbage):
    """In-process, on a real loop and Alarms: garbage after an offline status neither raises nor
    cancels the alarm the offline status leads to, and garbage alone raises nothing."""
    loop = asyncio.new_event_loop()
    changes: list = []
    alarms = Alarms("door-a", None, Topics("test"), changes.append)  # type: ignore[arg-type]
    watch = NodeWatch(("desk-b", "desk-c"), Topics("test"), alarms, loop, offline_after_s=0.05)
    online = json.dumps({"state": "online"}).encode()
    offline = json.dumps({"state": "offline"}).encode()
    topic = {n: Topics("test").node_status(n) for n in ("desk-b", "desk-c")}
    watch.heard(topic["desk-b"], online)
    watch.heard(topic["desk-c"], online)
    watch.start()
    watch.heard(topic["desk-b"], garbage)  # garbage alone: desk-b stays online
    watch.heard(topic["desk-c"], offline)
    watch.heard(topic["desk-c"], garbage)  # garbage after offline: desk-c's alarm still comes
    loop.run_until_complete(asyncio.sleep(0.2))
    loop.close()
    assert [(c.source, c.kind) for c in changes] == [("desk-c", "node_offline")]


@pytest.mark.parametrize("watched, problem", [
    ('["door-a"]', "site.watch_nodes: names this node itself ('door-a')"),
    ('["Desk B"]', "site.watch_nodes: item 1: must be lower-case letters"),
])
def test_check_config_refuses_a_bad_watch_list(site, broker, watched, problem):
    site.config.write_text(WATCHER.format(url=broker.url, watched=watched, grace=5))
    r = site.cli("check-config", check=False)
    assert r.returncode != 0 and problem in r.stderr + r.stdout
