"""An OSDP reader that stops answering is reader_lost (an alarm at its door) once libosdp declares
it offline, about 8 s of unanswered polls (8 probes of 200 ms plus 800 ms, compiled into
libosdp); started again, it is reader_back within the driver's retry (1 s at first), not after
libosdp's own 300 s, and reads cards again."""

from __future__ import annotations

import pytest

from conftest import wait_for
from osdpfake import OsdpBus, osdp_config
from sekisho.drivers.osdp_keys import new_scbk, store_scbk

UID = "04a1b2c3d4e5f6"


@pytest.fixture
def bus():
    b = OsdpBus()
    yield b
    b.close()


def test_a_reader_stopped_and_started_again_is_lost_then_back(site, bus, subscribe):
    site.config.write_text(osdp_config(site.broker.url, bus.path, {"entrance-in": 1}))
    site.data_dir.mkdir(mode=0o700)
    key = new_scbk()
    store_scbk(site.data_dir, "entrance-in", key)
    site.enroll("p1", UID)
    reader = bus.reader(1, key).start()
    alarms = subscribe("sekisho/v1/test/alarm/#")
    sub = subscribe()
    site.start()
    wait_for(lambda: reader.secure, what="the secure channel")

    reader.stop()
    lost = wait_for(lambda: alarms.on("/door-a.entrance-in.reader-lost"), 15, what="the reader_lost alarm")
    assert lost[0].json["reason"] == f"no answer from address 1 on {bus.path}"
    assert "entrance-in: reader lost: no answer from address 1" in site.daemon_log()

    reader.start()
    wait_for(lambda: "entrance-in: reader back" in site.daemon_log(), 10, what="reader_back")
    wait_for(lambda: alarms.on("/door-a.entrance-in.reader-lost")[-1].json["cleared"], what="the alarm cleared")
    reader.card(bytes.fromhex(UID))
    wait_for(lambda: sub.events(), what="the door event")
    assert sub.events()[0]["result"] == "granted"
    assert site.stop() == 0
