"""TLS, user name and password file, and MQTT 3.1.1, against a real mosquitto."""

from __future__ import annotations

import shutil
import sqlite3
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import free_port, wait_for

UID = "04a1b2c3"


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    """mosquitto with TLS on a free port, a private CA, and one user from a password file."""
    d = tmp_path / "tls"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)
    subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", "-c", str(d / "passwd"),
                    "door-a", "s3cret"], check=True, capture_output=True)
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n"
                    f"keyfile {d}/server.key\nallow_anonymous false\npassword_file {d}/passwd\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=open(d / "log", "ab"), stderr=subprocess.STDOUT)
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.tls_set(ca_certs=str(d / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    sub.username_pw_set("door-a", "s3cret")
    got = []
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("sekisho/#", qos=1)
    sub.on_message = lambda c, u, m: got.append(m)

    def connect() -> bool:
        assert proc.poll() is None, (d / "log").read_text()
        try:
            sub.connect("127.0.0.1", port)
            return True
        except OSError:
            return False
    wait_for(connect, what="the TLS broker")
    sub.loop_start()
    yield d, port, got
    sub.loop_stop()
    proc.terminate()
    proc.wait()


def test_tls_with_password_file(site, tls_broker):
    d, port, got = tls_broker
    (d / "pw").write_text("s3cret\n")
    site.use_broker(f"mqtts://127.0.0.1:{port}", username="door-a", password_file=str(d / "pw"),
                    ca_file=str(d / "ca.crt"))
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("card", "add", "--person", "p1", "--uid", UID)
    site.start()
    site.tap(UID)
    wait_for(lambda: [m for m in got if m.topic.endswith("/event")], what="the event over TLS")
    site.stop()


def test_wrong_password_keeps_events_in_outbox(site, tls_broker):
    d, port, got = tls_broker
    (d / "pw").write_text("wrong\n")
    site.use_broker(f"mqtts://127.0.0.1:{port}", username="door-a", password_file=str(d / "pw"),
                    ca_file=str(d / "ca.crt"))
    site.start()
    site.tap(UID)
    wait_for(lambda: "broker refused the connection: Not authorized" in site.daemon_log(), what="refusal logged")
    site.stop()
    assert "messages not yet acknowledged by the broker" in site.daemon_log()
    kept = sqlite3.connect(site.data_dir / "sekisho.db").execute(
        "SELECT count(*) FROM outbox WHERE topic LIKE '%/door/entrance/event'").fetchone()[0]
    assert kept == 1


def test_untrusted_certificate_is_not_accepted(site, tls_broker):
    d, port, got = tls_broker
    (d / "pw").write_text("s3cret\n")
    site.use_broker(f"mqtts://127.0.0.1:{port}", username="door-a", password_file=str(d / "pw"))
    site.start()
    site.tap(UID)
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in site.daemon_log() or "certificate verify failed"
             in site.daemon_log(), what="the certificate refused")
    site.stop()
    assert not [m for m in got if m.topic.endswith("/event")]


def test_mqtt_311(site, broker, subscribe):
    site.use_broker(broker.url, protocol=3)
    sub = subscribe()
    site.start()
    site.tap(UID)
    events = wait_for(sub.events, what="the event over MQTT 3.1.1")
    assert events[0]["reason"] == "unknown_card"
    assert wait_for(lambda: sub.on("/status"), what="status")[0].json["state"] == "online"
    site.stop()
