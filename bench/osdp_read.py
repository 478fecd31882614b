"""A card read at an OSDP reader to the door event on the bus, beside libosdp's own delivery of
the same read from the reader to a bare control panel, in the same run.

The reader is libosdp's peripheral-device mode (tests/osdpfake.py) on one end of a pty pair,
in a secure channel; the daemon opens the other end as its RS-485 line, as it would
/dev/ttyUSB0. Each read is submitted at the reader and timed, on the monotonic clock, to:

- the door event at a subscriber on the broker (reader -> libosdp -> driver -> decision ->
  store -> MQTT), one read at a time;
- the anchor: a bare libosdp ControlPanel on a second pty pair, in this process, with its
  event callback: what libosdp and the line cost alone. Both are bound by libosdp's poll
  cycle (a POLL every 50 ms, a 20 ms refresh sleep on each side), which the reader answers
  with the card.

and, for the person at the door, to the green LED command arriving at the reader. Each read
waits for the LED and buzzer commands of the one before: libosdp sends one command per
exchange, so a card read while they are on the line is delivered behind them.

Run: .venv/bin/python bench/osdp_read.py [--reads 500] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import threading
import time
from importlib.metadata import version

import osdp

from _site import UID, Broker, Subscriber, enrolled_site, figure, parse, summary, wait_for, workdir
from osdpfake import OsdpBus, osdp_config  # tests/ is on sys.path through _site
from sekisho.drivers.osdp_keys import new_scbk, store_scbk


def bare_panel(reads: int) -> list[float]:
    """libosdp alone: reader submit -> the panel's event callback, ``reads`` times."""
    bus = OsdpBus()
    key = new_scbk()
    got: list[float] = []
    cond = threading.Condition()

    def on_event(index: int, event: dict) -> int:
        if event.get("event") == osdp.Event.CardRead:
            with cond:
                got.append(time.monotonic())
                cond.notify_all()
        return 0

    from sekisho.drivers.osdp_line import SerialChannel, control_panel, libosdp
    libosdp()
    channel = SerialChannel(bus.path, 115200)
    panel = control_panel(osdp, [osdp.PDInfo(1, channel, scbk=key, flags=[osdp.LibFlag.EnforceSecure])],
                          event_handler=on_event)
    reader = bus.reader(1, key).start()
    panel.start()
    samples = []
    try:
        wait_for(lambda: reader.secure, 10, "the bare panel's secure channel")
        for i in range(1, reads + 1):
            t0 = time.monotonic()
            reader.card(bytes.fromhex(UID))
            with cond:
                assert cond.wait_for(lambda: len(got) >= i, 10), f"read {i} not delivered"
            samples.append((got[i - 1] - t0) * 1000)
    finally:
        panel.teardown()
        channel.close()
        bus.close()
    return samples


def main() -> None:
    args = parse(argparse.ArgumentParser(), reads=(500, 5))
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    bus = OsdpBus()
    site = enrolled_site(tmp, broker)
    sub = None
    try:
        site.cli("person", "grant", "u1", "staff")
        site.config.write_text(osdp_config(broker.url, bus.path, {"entrance-in": 1}))
        key = new_scbk()
        store_scbk(site.data_dir, "entrance-in", key)
        reader = bus.reader(1, key).start()
        arrived: list[float] = []
        cond = threading.Condition()
        sub = Subscriber(broker.port, "sekisho/v1/test/door/+/event")

        def on_message(client, userdata, msg):  # noqa: ANN001
            with cond:
                arrived.append(time.monotonic())
                cond.notify_all()
        sub.client.on_message = on_message
        site.start()
        wait_for(lambda: reader.secure, 10, "the secure channel")
        reader.next(osdp.Command.Text)  # the door's mode at rest, shown once the reader is online
        samples, shown = [], []
        for i in range(1, args.reads + 1):
            t0 = time.monotonic()
            reader.card(bytes.fromhex(UID))
            with cond:
                assert cond.wait_for(lambda: len(arrived) >= i, 10), f"read {i}: no door event"
            samples.append((arrived[i - 1] - t0) * 1000)
            # The green LED and the beep reach the reader before the next card, as they do at a
            # door: a read submitted while they are on the line waits behind them (about 140 ms).
            reader.next(osdp.Command.LED)
            shown.append((time.monotonic() - t0) * 1000)
            reader.next(osdp.Command.Buzzer)
        assert site.stop() == 0
    finally:
        if sub is not None:
            sub.close()
        site.kill()
        bus.close()
        broker.stop()
    bare = bare_panel(args.reads)
    print(f"{args.reads} card reads at an OSDP reader (libosdp {version('libosdp')}'s PD over a pty pair, "
          "secure channel)")
    print(summary("card read -> door event at the subscriber ", samples))
    print(summary("card read -> bare libosdp panel's callback", bare))
    print(summary("card read -> green LED command at the reader", shown))
    figure(args, "OSDP card read at the reader -> door event on the bus", samples=samples,
           anchor="card read -> bare libosdp ControlPanel event callback", anchor_samples=bare)
    figure(args, "OSDP card read at the reader -> the grant's LED command at the reader", samples=shown)


if __name__ == "__main__":
    main()
