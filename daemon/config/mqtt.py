"""``[mqtt]``: the broker, how to log in to it and how to keep the connection.

The files it names (password, CA, client certificate and key) are opened once while checking,
so a file the daemon could not read is a config problem, not a failure at the first connect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sekisho.drivers.options import Option, between, one_of

from .checker import Checker


def parse_mqtt_url(url: str) -> tuple[bool, str, int]:
    """``mqtt://host:port`` or ``mqtts://host:port`` to (tls, host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"{url!r} must be only scheme, host and port (credentials go in username/password_file)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a port that is not a number from 1 to 65535") from None
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname, port or (8883 if tls else 1883)


def _mqtt_url(v: str) -> str | None:
    try:
        parse_mqtt_url(v)
    except ValueError as exc:
        return str(exc)
    return None


MQTT = {
    "url": Option(str, "mqtt://127.0.0.1:1883", "Broker: mqtt://host:port, or mqtts://host:port for TLS.",
                  _mqtt_url),
    "username": Option(str, "", "Broker user name; empty for none."),
    "password_file": Option(str, "", "File holding the broker password; never the password itself."),
    "protocol": Option(int, 5, "MQTT protocol version: 5, or 3 for 3.1.1.", one_of(3, 5)),
    "ca_file": Option(str, "", "CA bundle to check the broker's certificate; empty means the system's."),
    "cert_file": Option(str, "", "Client certificate for mutual TLS; empty for none."),
    "key_file": Option(str, "", "Private key of cert_file."),
    "client_id": Option(str, "", "MQTT client id; empty means sekisho-<site>-<node>."),
    "keepalive_s": Option(int, 30, "Seconds between keep-alive pings.", between(5, 3600)),
    "reconnect_max_s": Option(int, 30, "Longest wait between reconnect attempts; they start at 1 s and double.",
                              between(1, 3600)),
    "flush_timeout_s": Option(float, 5.0, "At shutdown, how long to wait for the broker to acknowledge what is "
                              "queued.", between(0, 600)),
}


@dataclass(frozen=True)
class MqttConfig:
    url: str
    username: str
    password_file: str
    protocol: int
    ca_file: str
    cert_file: str
    key_file: str
    client_id: str
    keepalive_s: int
    reconnect_max_s: int
    flush_timeout_s: float

    @property
    def endpoint(self) -> tuple[bool, str, int]:
        return parse_mqtt_url(self.url)


def read_mqtt(c: Checker, raw: Any, url_override: str | None) -> MqttConfig:
    """``url_override`` is the command line's ``--mqtt``: checked as the key is, named as itself."""
    values = c.section("mqtt", c.table("mqtt", raw), MQTT)
    if url_override is not None:
        if wrong := _mqtt_url(url_override):
            c.problems.append(f"--mqtt: {wrong}")
        else:
            values["url"] = url_override
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        if values.get(key):
            c.readable(f"mqtt.{key}", values[key])
    if bool(values.get("cert_file")) != bool(values.get("key_file")):
        c.problem("mqtt.cert_file", "cert_file and key_file go together")
    return MqttConfig(**values)
