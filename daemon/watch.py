"""``sekisho watch``: the site's topic tree as it happens, one line a message."""

from __future__ import annotations

import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import Config
from .topics import Topics


def watch(cfg: Config) -> int:
    topics = Topics(cfg.site.id)
    _, host, port = cfg.mqtt.endpoint
    protocol = mqtt.MQTTv5 if cfg.mqtt.protocol == 5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    if cfg.mqtt.endpoint[0]:
        client.tls_set(ca_certs=cfg.mqtt.ca_file or None, certfile=cfg.mqtt.cert_file or None,
                       keyfile=cfg.mqtt.key_file or None)
    if cfg.mqtt.username:
        password = open(cfg.mqtt.password_file).read().rstrip("\r\n") if cfg.mqtt.password_file else None
        client.username_pw_set(cfg.mqtt.username, password)
    failed = threading.Event()

    def on_connect(c, userdata, flags, reason, properties):  # noqa: ANN001 - paho's signature
        if reason.is_failure:
            print(f"sekisho: broker refused: {reason}", file=sys.stderr)
            failed.set()
            c.disconnect()
            return
        print(f"# watching {topics.everything} on {cfg.mqtt.url}", file=sys.stderr)
        c.subscribe(topics.everything, qos=1)

    def on_message(c, userdata, msg):  # noqa: ANN001
        flag = " (retained)" if msg.retain else ""
        body = msg.payload.decode("utf-8", "replace") or "<empty: cleared>"
        print(f"{msg.topic[len(topics.base) + 1:]}{flag} {body}", flush=True)

    client.on_connect = on_connect
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
