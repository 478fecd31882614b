"""``sekisho watch``: the site's topic tree as it happens, one line a message."""

from __future__ import annotations

import sys
import threading

from .broker_connection import make_client
from .config import Config
from .errors import SekishoError
from .topics import Topics


def watch(cfg: Config) -> int:
    topics = Topics(cfg.site.id)
    _, host, port = cfg.mqtt.endpoint
    try:
        client = make_client(cfg.mqtt)
    except SekishoError as exc:
        print(f"sekisho: {exc}", file=sys.stderr)
        return 78
    failed = threading.Event()

    def on_connect(c, userdata, flags, reason, properties):  # noqa: ANN001 - paho's signature
        if reason.is_failure:
            print(f"sekisho: broker refused: {reason}", file=sys.stderr)
            failed.set()
            c.disconnect()
            return
        c.subscribe(topics.everything, qos=1)

    def on_subscribe(c, userdata, mid, reasons, properties):  # noqa: ANN001
        # Printed once the broker has the subscription: from here on nothing is missed.
        print(f"# watching {topics.everything} on {cfg.mqtt.url}", file=sys.stderr, flush=True)

    def on_message(c, userdata, msg):  # noqa: ANN001
        flag = " (retained)" if msg.retain else ""
        body = msg.payload.decode("utf-8", "replace") or "<empty: cleared>"
        print(f"{msg.topic[len(topics.base) + 1:]}{flag} {body}", flush=True)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        print(f"sekisho: cannot reach the broker at {cfg.mqtt.url}: {exc}", file=sys.stderr)
        return 69
    try:
        client.loop_forever(retry_first_connection=False)
    except KeyboardInterrupt:
        client.disconnect()
    return 1 if failed.is_set() else 0
