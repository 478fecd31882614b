"""The shipped broker set-up (issue 11, item 10; issue 14, item 4): Debian's mosquitto running
systemd/mosquitto-sekisho.conf as a drop-in under Debian's own mosquitto.conf, with
systemd/mosquitto-sekisho.acl, both as shipped but for what a test must change: the ports of the
two listeners, the paths of the certificates, the password file and the ACL, Debian's pid,
persistence and log paths, and the ACL's commented-out desk-only node, let in as a second node.
A throw-away CA made here signs the broker's certificate for both TLS listeners (MQTT, and
WebSockets for the officer's console); mosquitto_passwd makes the password file.

The daemon runs on examples/sekisho.toml, the example config of the same site (tokyo-hq) and
node (door-a), adapted only where a test must: simulated readers and inputs instead of hardware,
the test's broker, CA and password file, the USB rules file by its absolute path, and a key for
the officer. It logs in over TLS as door-a, under a umockdev testbed (a flash drive present,
blocked) and dbusmock's logind for its desk. The officer logs in over WebSockets with TLS, as
the console's page does: every topic of docs/mqtt.md's table reaches it, and its signed commands
run on the node and are answered. What a node or the officer must not publish or read, the
broker refuses; nobody gets in without a user name and password, or without TLS.

To add a topic to the contract: its row in docs/mqtt.md's table, its entry in CONTRACT below
(test_the_list_is_the_contract_table fails until then), what makes the node publish it in
test_the_example_node_publishes_the_whole_contract_to_the_console (unless it does at start), its
line in the ACL, and its own and another node's topic in the lists of what each node may and may
not publish.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from conftest import REPO, SEKISHO, Broker, Site, wait_for
from sekisho.daemon.commands import public_key_text, sign
from sekisho.daemon.topics import Topics
from usbfake import Kernel, Spec

EXAMPLE = REPO / "examples" / "sekisho.toml"
ACL = REPO / "systemd" / "mosquitto-sekisho.acl"
BROKER_CONF = REPO / "systemd" / "mosquitto-sekisho.conf"
CONTRACT_DOC = REPO / "docs" / "mqtt.md"
SITE, NODE = "tokyo-hq", "door-a"
T = Topics(SITE)
BASE = T.base
PASSWORDS = {"door-a": "door-a-secret", "desk-b": "desk-b-secret", "officer": "officer-secret",
             "recorder": "recorder-secret", "door-a-relay": "relay-secret", "homeassistant": "ha-secret"}
FLASH = Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C530001230417116225")
OFFICER_KEY = Ed25519PrivateKey.generate()
NOT_AUTHORIZED = 0x87
FORCED = f"{NODE}.entrance.forced"
HA_STATUS = "homeassistant/status"


def discovery(node: str, site: str = SITE) -> str:
    """A node's Home Assistant device (docs/homeassistant.md)."""
    return f"homeassistant/device/sekisho_{site}_{node}/config"


# The one list: every topic of docs/mqtt.md's table, and the topics this test makes of it. The
# node publishes them all but cmd/<node>, which is the officer's.
CONTRACT = {
    "node/<node>/status": [T.node_status(NODE)],
    "door/<door>/event": [T.door_event("entrance")],
    "door/<door>/state": [T.door_state("entrance")],
    "area/<area>/occupancy": [T.area_occupancy("operator-room"), T.area_occupancy("lobby")],
    "alarm/<alarm-id>": [T.alarm(FORCED)],
    "desk/<desk>/state": [T.desk_state("desk-01")],
    "desk/<desk>/event": [T.desk_event("desk-01")],
    "cmd/<node>": [T.command(NODE)],
    "cmd/<node>/result": [T.command_result(NODE)],
    "usb/<host>/event": [T.usb_event(NODE)],
    "usb/<host>/exceptions": [T.usb_exceptions(NODE)],
    "print/<node>/event": [T.print_event(NODE)],
    "print/<node>/queue": [T.print_queue(NODE)],
    "enrolment/snapshot/manifest": [T.enrolment_manifest()],
    "enrolment/snapshot/chunk/<index>": [T.enrolment_chunk(0)],
    "enrolment/delta": [T.enrolment_delta()],
}
ENROLMENT = [T.enrolment_manifest(), T.enrolment_chunk(0), T.enrolment_delta()]
RECORDERS = {"enrolment/snapshot/manifest", "enrolment/snapshot/chunk/<index>", "enrolment/delta"}
"""The recorder's topics: the example node is no recorder (test_enrolment_transport has a
recorder publish them); here the ACL lets only the recorder's user write them."""
PRINTERS = {"print/<node>/event", "print/<node>/queue"}
"""Print release's topics: the example node has no [print] (it must start where no CUPS is; the
test_print_* files publish them through a real cupsd); here the ACL lets each node write its own."""

# What each node may publish (its own topics; published last, on the same connection, after
# what it may not) and may not: another node's status, answers, USB events, doors and desks,
# a command to any node (its own included), anything of another site. desk-b is the ACL's
# desk-only node (desk-02), uncommented by the test.
MAY_PUBLISH = {
    "door-a": [T.node_status("door-a"), T.door_event("entrance"), T.door_state("entrance"),
               T.area_occupancy("operator-room"), T.area_occupancy("lobby"), T.desk_state("desk-01"),
               T.desk_event("desk-01"), T.alarm("door-a.acl-probe"), T.command_result("door-a"),
               T.usb_event("door-a"), T.usb_exceptions("door-a"), T.print_event("door-a"),
               T.print_queue("door-a"), discovery("door-a")],
    "desk-b": [T.node_status("desk-b"), T.desk_state("desk-02"), T.desk_event("desk-02"),
               T.alarm("desk-b.desk-02.lock-failed"), T.command_result("desk-b"), T.usb_event("desk-b"),
               T.usb_exceptions("desk-b"), discovery("desk-b")],
    "officer": [T.command("door-a"), T.command("desk-b")],
    # The recorder: its status, its own alarms, replay requests to any node, (occupancy_from =
    # "recorder") every area's occupancy, and the site's enrolment.
    "recorder": [T.node_status("recorder"), T.alarm("recorder.door-a.sequence-gap"), T.command("door-a"),
                 T.command("desk-b"), T.area_occupancy("operator-room"), T.area_occupancy("lobby"), *ENROLMENT],
    "homeassistant": [HA_STATUS],
}
MAY_NOT_PUBLISH = {
    "door-a": [T.node_status("desk-b"), T.command_result("desk-b"), T.usb_event("desk-b"),
               T.usb_exceptions("desk-b"), T.print_event("desk-b"), T.print_queue("desk-b"), T.desk_state("desk-02"),
               T.desk_event("desk-02"), T.command("desk-b"), T.command("door-a"), T.door_state("back-door"),
               T.door_event("back-door"), T.area_occupancy("server-room"), f"{BASE}/alarm/x/y",
               "sekisho/v1/osaka/node/door-a/status", "sekisho/v1/osaka/door/entrance/event",
               "sekisho/v1/osaka/cmd/door-a/result", "sekisho/v1/osaka/alarm/door-a.entrance.forced",
               discovery("desk-b"), discovery("door-a", "osaka"), HA_STATUS, *ENROLMENT],
    "desk-b": [T.node_status("door-a"), T.command_result("door-a"), T.usb_event("door-a"),
               T.usb_exceptions("door-a"), T.desk_state("desk-01"),
               T.desk_event("desk-01"), T.door_state("entrance"), T.door_event("entrance"),
               T.area_occupancy("operator-room"), T.command("desk-b"), "sekisho/v1/osaka/node/desk-b/status",
               discovery("door-a"), *ENROLMENT],
    # The officer sends commands and speaks for no node: no status, no state, no answer.
    "officer": [T.node_status("door-a"), T.door_state("entrance"), T.door_event("entrance"),
                T.desk_state("desk-02"), T.alarm(FORCED), T.command_result("door-a"), T.usb_event("door-a"),
                T.usb_exceptions("door-a"),
                f"{BASE}/cmd/door-a/x", "sekisho/v1/osaka/cmd/door-a", HA_STATUS, discovery("door-a"), *ENROLMENT],
    # The recorder speaks for no other node: no event, state, status or answer; no other site,
    # not even its enrolment.
    "recorder": [T.door_event("entrance"), T.desk_event("desk-02"), T.door_state("entrance"), T.node_status("door-a"),
                 T.command_result("door-a"), T.usb_event("door-a"), "sekisho/v1/osaka/cmd/door-a",
                 "sekisho/v1/osaka/alarm/recorder.door-a.sequence-gap", HA_STATUS,
                 "sekisho/v1/osaka/enrolment/delta", "sekisho/v1/osaka/enrolment/snapshot/manifest"],
    # Home Assistant says it is online, and writes nothing of sekisho's, nor a node's device.
    "homeassistant": [T.command("door-a"), T.door_state("entrance"), T.node_status("door-a"), discovery("door-a")],
}
# What each node reads (node_status.py reads its own status, commands.py its commands,
# presence.py the occupancy of every area, node_watch.py the status of the nodes its [site]
# watch_nodes names: door-a watches desk-b): nothing else, not another node's commands. Each
# subscribes to everything (#); the ACL decides what arrives.
READS = {
    "door-a": {T.node_status("door-a"), T.command("door-a"), T.area_occupancy("operator-room"),
               T.area_occupancy("lobby"), T.node_status("desk-b"), discovery("door-a"), HA_STATUS, *ENROLMENT},
    "desk-b": {T.node_status("desk-b"), T.command("desk-b"), T.area_occupancy("operator-room"),
               T.area_occupancy("lobby"), discovery("desk-b"), HA_STATUS, *ENROLMENT},
    # Home Assistant: its discovery prefix and the topics the entities name (node status, door
    # state and events, desk state, occupancy); never an alarm, a command, an answer or USB.
    "homeassistant": {discovery("door-a"), discovery("desk-b"), HA_STATUS, T.node_status("door-a"),
                      T.node_status("desk-b"), T.node_status("recorder"), T.door_event("entrance"), T.door_state("entrance"),
                      T.area_occupancy("operator-room"), T.area_occupancy("lobby"), T.desk_state("desk-01"),
                      T.desk_state("desk-02")},
}

# The officer's own config for the command line: the site, and the broker as the officer.
OFFICER_CONFIG = """\
[site]
id = "tokyo-hq"
node = "officer"

[mqtt]
url = "mqtts://127.0.0.1:{port}"
username = "officer"
password_file = "{password_file}"
ca_file = "{ca}"
"""

# Debian 12's /etc/mosquitto/mosquitto.conf as the package installs it (mosquitto 2.0.11): the
# shipped file goes in its conf.d.
DEBIAN_MOSQUITTO_CONF = """\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""


def swap(text: str, old: str, new: str, count: int = 1) -> str:
    """Replace ``old``, which must occur exactly ``count`` times: an example that changed under
    the test fails it, rather than being tested half adapted."""
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times in the example, not {count}"
    return text.replace(old, new)


def contract_table() -> dict[str, bool]:
    """docs/mqtt.md's table of topics: each topic as written (`door/<door>/event`), and whether
    its retained column says yes (`yes while open` included)."""
    section = CONTRACT_DOC.read_text().split("## Topics", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9/<>_-]+)` \| ([^|]*) \|", section, re.M)
    return {topic: retained.strip().startswith("yes") for topic, retained in rows}


def example_config(port: int, ca: Path, password_file: Path) -> str:
    text = EXAMPLE.read_text()
    text = swap(text, 'url = "mqtts://broker.example.internal:8883"', f'url = "mqtts://127.0.0.1:{port}"')
    text = swap(text, 'username = "door-a"\n', f'username = "door-a"\npassword_file = "{password_file}"\n')
    text = swap(text, '# ca_file = ""\n', f'ca_file = "{ca}"\n')
    text = swap(text, 'rules = "usb/call-centre.rules"', f'rules = "{REPO / "examples" / "usb" / "call-centre.rules"}"')
    text = swap(text, "[homeassistant]\n# enabled = false\n", "[homeassistant]\nenabled = true\n")
    # Hardware becomes simulated: the readers and the GPIO and evdev inputs, with their options.
    text = swap(text, 'driver = "pcsc"\n', 'driver = "sim"\n', count=2)
    text = swap(text, 'driver = "nfc"\n', 'driver = "sim"\n')
    text = swap(text, 'driver = "gpio"\nkind = "exit"', 'driver = "sim"\nkind = "exit"')
    text = swap(text, 'driver = "evdev"\nkind = "leave_seat"', 'driver = "sim"\nkind = "leave_seat"')
    for option in ('name = "ACS ACR122U PICC Interface 00 00"\n', 'path = "usb:054c:06c3"\n',
                   'name = "SONY FeliCa RC-S300/P*"\n', "line = 22\n", "active_low = true\n", 'bias = "pull-up"\n',
                   'device = "/dev/input/by-id/usb-*-event-kbd"\n', 'key = "KEY_PAUSE"\n'):
        text = swap(text, option, "")
    # The officer's key, which the example leaves commented out.
    return text + (f'\n[commands.keys.officer-1]\npublic_key = "{public_key_text(OFFICER_KEY)}"\n'
                   'ops = ["door.*", "alarm.*"]\n')


def example_acl() -> str:
    """The shipped ACL with its commented-out desk-only node let in, as a second node."""
    text = ACL.read_text()
    block = re.search(r"^#   user desk-b\n(?:#   topic .*\n)+", text, re.M)
    assert block, "the ACL's example of a desk-only node (desk-b) is gone"
    return swap(text, block[0], block[0].replace("#   ", ""))


def broker_drop_in(port: int, ws_port: int, paths: dict[str, str]) -> str:
    """systemd/mosquitto-sekisho.conf with its two listeners on the test's ports (this machine
    only) and each path under /etc/mosquitto/ replaced by the test's file; nothing else."""
    text = BROKER_CONF.read_text()
    text = swap(text, "\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    text = swap(text, "\nlistener 8884\n", f"\nlistener {ws_port} 127.0.0.1\n")
    assert re.findall(r"^listener .*", text, re.M) == [f"listener {port} 127.0.0.1", f"listener {ws_port} 127.0.0.1"]
    for shipped, here in paths.items():
        assert shipped in text, f"{shipped} is no longer in {BROKER_CONF.name}"
        text = text.replace(shipped, here)
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if re.search(r"\s/(etc|var|run)/", line)], \
        f"a path the test does not know of:\n{text}"
    return text


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throw-away CA, and the broker's certificate from it for 127.0.0.1 (and localhost)."""
    folder.mkdir()
    now = dt.datetime.now(dt.timezone.utc)
    valid = (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sekisho test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    broker = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(valid[0]).not_valid_after(valid[1])
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM),
             "broker.crt": broker.public_bytes(serialization.Encoding.PEM),
             "broker.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "broker.key").chmod(0o600)
    return {name: folder / name for name in files}


class SiteBroker:
    """Debian's mosquitto with the shipped drop-in and ACL: ``port`` is MQTT over TLS (the nodes),
    ``ws_port`` MQTT over WebSockets with TLS (the console), ``ca`` the CA that signed both.

    It runs as Debian runs it: started as root, it switches to the mosquitto user before it reads
    the password file, the ACL and the certificate's key (mosquitto 2.0), so those are owned as
    docs/mqtt.md says (root:mosquitto, 0640), and its pid, persistence and log go to a folder of
    the mosquitto user, as /run/mosquitto and /var/lib/mosquitto are. All of it lies outside
    pytest's tmp_path, which the mosquitto user may not enter; ``close`` copies the log there."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = Path(tempfile.mkdtemp(prefix="sekisho-broker-"))
        try:
            self._set_up()
        except BaseException:
            shutil.rmtree(self.root)
            raise

    def _set_up(self) -> None:
        self.root.chmod(0o755)
        mosquitto = pwd.getpwnam("mosquitto")  # the Debian package's user
        self.mosquitto_uid = mosquitto.pw_uid

        def restricted(path: Path, mode: int = 0o640) -> None:
            os.chown(path, 0, mosquitto.pw_gid)
            path.chmod(mode)
        etc, run = self.root / "etc", self.root / "run"
        etc.mkdir(mode=0o755)
        run.mkdir()
        os.chown(run, mosquitto.pw_uid, mosquitto.pw_gid)
        certs = make_certificates(etc / "certs")
        restricted(etc / "certs", 0o750)
        restricted(certs["broker.key"])
        self.ca = certs["ca.crt"]
        self.password_file = etc / "sekisho.passwd"
        for n, (user, password) in enumerate(PASSWORDS.items()):
            subprocess.run(["mosquitto_passwd", *(["-c"] if n == 0 else []), "-b", str(self.password_file), user,
                            password], check=True, timeout=30)
        restricted(self.password_file)
        acl = etc / "sekisho.acl"
        acl.write_text(example_acl())
        restricted(acl)
        (etc / "conf.d").mkdir()
        self.broker = Broker(self.root, websockets=True)  # its free ports and its start and stop; the config is ours
        assert self.broker.ws_port is not None
        self.port, self.ws_port, self.log = self.broker.port, self.broker.ws_port, run / "mosquitto.log"
        (etc / "conf.d" / "sekisho.conf").write_text(broker_drop_in(self.port, self.ws_port, {
            "/etc/mosquitto/certs/": f"{etc / 'certs'}/", "/etc/mosquitto/sekisho.passwd": str(self.password_file),
            "/etc/mosquitto/sekisho.acl": str(acl)}))
        main = DEBIAN_MOSQUITTO_CONF
        main = swap(main, "pid_file /run/mosquitto/mosquitto.pid", f"pid_file {run / 'mosquitto.pid'}")
        main = swap(main, "persistence_location /var/lib/mosquitto/", f"persistence_location {run}/")
        main = swap(main, "log_dest file /var/log/mosquitto/mosquitto.log", f"log_dest file {self.log}")
        main = swap(main, "include_dir /etc/mosquitto/conf.d", f"include_dir {etc / 'conf.d'}")
        self.broker.conf.write_text(main)

    def start(self) -> None:
        try:
            self.broker.start()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        assert self.broker.proc is not None
        assert os.stat(f"/proc/{self.broker.proc.pid}").st_uid == self.mosquitto_uid, "mosquitto runs as root"

    def log_tail(self) -> str:
        log = self.log.read_text() if self.log.exists() else "(none)"
        return "the broker's log ends:\n" + "\n".join(log.splitlines()[-20:])

    def close(self) -> None:
        self.broker.stop()
        # What it logged, and what it said before it could.
        for log, name in ((self.log, "mosquitto.log"), (self.broker.log, "mosquitto.stdout")):
            if log.exists():
                shutil.copy(log, self.tmp / name)
        shutil.rmtree(self.root)


def connect(broker: SiteBroker, client: mqtt.Client, websockets: bool) -> ReasonCode:
    """Connect over TLS, checking the broker's certificate against the test's CA, as the daemon
    (``[mqtt] ca_file``) and the console's browser do; the CONNACK's reason."""
    got: list[ReasonCode] = []
    done = threading.Event()

    def on_connect(c: Any, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        got.append(reason)
        done.set()
    client.on_connect = on_connect
    client.tls_set(ca_certs=str(broker.ca))
    if websockets:
        client.ws_set_options(path="/")  # the console's URL, wss://broker:8884/
    client.connect("127.0.0.1", broker.ws_port if websockets else broker.port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return got[0]


class Client:
    """A real MQTT 5 client logged in as ``user``, over TLS or WebSockets with TLS, recording what
    arrives and the reason code of every PUBACK."""

    def __init__(self, broker: SiteBroker, user: str, subscribe: str | None = None, websockets: bool = False) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, int] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{id(self)}",
                                  protocol=mqtt.MQTTv5, transport="websockets" if websockets else "tcp")
        self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        reason = connect(broker, self.client, websockets)
        assert not reason.is_failure, f"{user} could not log in: {reason}"
        if subscribe:
            subscribed = threading.Event()
            self.client.on_subscribe = lambda c, u, mid, reasons, p: subscribed.set()
            self.client.subscribe(subscribe, qos=1)
            assert subscribed.wait(10), f"no SUBACK for {user}'s {subscribe}"

    def _on_message(self, c: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def _on_publish(self, c: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self.lock:
            self.acks[mid] = reason.value

    def topics(self, retained_only: bool = False) -> set[str]:
        """The topics of what arrived; ``retained_only``: of what the broker had kept (a message
        published after the subscription comes without the retain flag)."""
        with self.lock:
            return {m.topic for m in self.messages if m.retain or not retained_only}

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: str) -> int:
        """Publish at QoS 1 and return the broker's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return wait_for(lambda: self.acks.get(info.mid, None) is not None and [self.acks[info.mid]],
                        what=f"the PUBACK for {topic}")[0]

    def command(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Sign ``op`` with the officer's key, publish it to the node and return its answer."""
        message = sign(op, args, site=SITE, node=NODE, key_name="officer-1", key=OFFICER_KEY)
        assert self.publish(T.command(NODE), json.dumps(message)) == 0

        def answer() -> list[dict[str, Any]]:
            return [a for a in (json.loads(m.payload) for m in self.on(T.command_result(NODE)))
                    if a["id"] == message["id"]]
        return wait_for(answer, what=f"the node's answer to {op}")[0]

    def wait_for_topics(self, topics: set[str], what: str, timeout: float = 10, retained_only: bool = False) -> None:
        """Until each of ``topics`` has arrived (as a retained message); on a timeout, say which never did."""
        try:
            wait_for(lambda: self.topics(retained_only) >= topics, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: never arrived: {sorted(topics - self.topics(retained_only))}") from None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def site_broker(tmp_path):
    b = SiteBroker(tmp_path)
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.fixture
def clients(site_broker):
    made: list[Client] = []

    def make(user: str, subscribe: str | None = None, websockets: bool = False) -> Client:
        made.append(Client(site_broker, user, subscribe, websockets))
        return made[-1]
    yield make
    for c in made:
        c.close()


def test_the_list_is_the_contract_table():
    table = set(contract_table())
    assert table == set(CONTRACT), (f"docs/mqtt.md's topics changed: CONTRACT is to follow them (not listed: "
                                    f"{sorted(table - set(CONTRACT))}, no longer in the table: {sorted(set(CONTRACT) - table)})")


def test_the_example_node_publishes_the_whole_contract_to_the_console(tmp_path, site_broker, clients, testbed,
                                                                      logind):
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)  # present at start: the rules block it, which is a usb event
    node_password, officer_password = tmp_path / "door-a.password", tmp_path / "officer.password"
    for path, user in ((node_password, "door-a"), (officer_password, "officer")):
        path.write_text(PASSWORDS[user] + "\n")
        path.chmod(0o600)
    officer_key = tmp_path / "officer-1.key"
    officer_key.write_bytes(OFFICER_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    site = Site(tmp_path, site_broker.broker)
    site.config.write_text(example_config(site_broker.port, site_broker.ca, node_password))
    # The officer's console, as the page connects: MQTT over WebSockets with TLS.
    officer = clients("officer", f"{BASE}/#", websockets=True)
    relay = clients("door-a-relay", "cmnd/door-a/#")  # the example's strike is a relay on the broker
    home_assistant = clients("homeassistant", "#")  # the ACL decides what of it arrives
    site.start()
    try:
        site.tap("04ffffff", "entrance-in")  # an unknown card: a door event
        site.tap("04ffffff", "desk-01")  # the same at the desk: a desk event
        assert site.sim("entrance-contact", {"op": "set", "active": True}) == {"ok": True}  # forced: an alarm
        # A signed command over WebSockets runs on the node, which answers it (cmd/<node>/result),
        # once the node is online: subscribed to its commands, which are never kept for it.
        wait_for(lambda: [m for m in officer.on(T.node_status(NODE)) if json.loads(m.payload)["state"] == "online"],
                 what="the node online")
        unlock = officer.command("door.unlock", {"door": "entrance", "seconds": 1})
        assert (unlock["ok"], unlock["error"], unlock["node"]) == (True, None, NODE), unlock
        every = {t for topic, topics in CONTRACT.items() if topic not in RECORDERS | PRINTERS for t in topics}
        try:
            officer.wait_for_topics(every, "every topic of the contract at the officer", timeout=15)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {site_broker.log_tail()}") from None
        # The strike is driven locked at start and released by the officer's command, through
        # the broker, to the relay's own user.
        def strike() -> list[bytes]:
            with relay.lock:
                return [m.payload for m in relay.messages if m.topic == "cmnd/door-a/POWER"]
        wait_for(lambda: strike()[:1] == [b"OFF"] and b"ON" in strike(),
                 what="the strike's lock and the command's release at the relay")
        # Home Assistant (docs/homeassistant.md): the node's device, and every topic its entities name.
        device = json.loads(wait_for(lambda: home_assistant.on(discovery(NODE)),
                                     what="the node's discovery payload at Home Assistant")[0].payload)
        named = {device["availability"][0]["topic"]} | {c["state_topic"] for c in device["components"].values()}
        home_assistant.wait_for_topics(named, "the topics the entities read, at Home Assistant")
        assert not [t for t in home_assistant.topics() if "/alarm/" in t or "/cmd/" in t or "/usb/" in t]
        # Its birth message reaches the node, which announces itself again.
        announced = len(home_assistant.on(discovery(NODE)))
        assert home_assistant.publish(HA_STATUS, "online") < 0x80
        wait_for(lambda: len(home_assistant.on(discovery(NODE))) > announced,
                 what="the discovery payload again after Home Assistant's birth message")
        # The officer's command line (sekisho cmd send, on the nodes' TLS listener) as the officer.
        officer_config = tmp_path / "officer.toml"
        officer_config.write_text(OFFICER_CONFIG.format(port=site_broker.port, ca=site_broker.ca,
                                                        password_file=officer_password))
        sent = subprocess.run([*SEKISHO, "cmd", "send", "door.list", "--key", str(officer_key), "--node", NODE,
                               "--config", str(officer_config), "--data-dir", str(tmp_path / "officer")],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and json.loads(sent.stdout)["ok"] is True, sent.stderr
        # What the contract says is retained was kept: a console that connects now has it at once.
        late = clients("officer", f"{BASE}/#", websockets=True)
        retained = {t for topic, kept in contract_table().items() if kept and topic not in RECORDERS | PRINTERS
                    for t in CONTRACT[topic]}
        assert retained >= {T.node_status(NODE), T.door_state("entrance"), T.alarm(FORCED)}
        late.wait_for_topics(retained, "the retained topics at a console connecting later", retained_only=True)
        # The console's main duty: the door shut, the officer acknowledges the alarm, which closes
        # with an empty retained message, the node's to send.
        assert site.sim("entrance-contact", {"op": "set", "active": False}) == {"ok": True}
        wait_for(lambda: any(json.loads(m.payload)["cleared"] for m in officer.on(T.alarm(FORCED)) if m.payload),
                 what="the forced alarm cleared")
        ack = officer.command("alarm.ack", {"id": FORCED, "note": "checked on camera"})
        assert ack["ok"] is True and ack["result"]["closed"] is True, ack
        wait_for(lambda: any(m.payload == b"" for m in officer.on(T.alarm(FORCED))), what="the alarm closed")
        # The node's last will: its connection dies, the broker says offline for it.
        site.stop(signal.SIGKILL)
        wait_for(lambda: json.loads(officer.on(T.node_status(NODE))[-1].payload)["state"] == "offline",
                 what="the node's last will at the officer")
    finally:
        if site.proc is not None:
            site.stop()


def test_each_user_publishes_and_reads_only_its_own(site_broker, clients):
    """door-a, desk-b (the ACL's desk-only node) and the officer each publish what they may not,
    refused (0x87, and delivered to nobody), then what they may, accepted; each node reads its
    own status and commands and the site's occupancy, and nothing else."""
    # mosquitto grants every subscription and checks each message against the ACL as it delivers.
    officer = clients("officer", "#", websockets=True)
    readers = {user: clients(user, "#") for user in READS}
    # The recorder reads the whole site, also through the shared subscription it takes with
    # [recorder] share_group (docs/recorder.md).
    recorder = clients("recorder", f"{BASE}/#")
    recorder_shared = clients("recorder", f"$share/recorders/{BASE}/+/+/event")
    relay = clients("door-a-relay", "cmnd/door-a/#")
    writers = {user: clients(user, websockets=user == "officer") for user in MAY_PUBLISH}
    for user, writer in writers.items():
        refused = {topic: writer.publish(topic, '{"forged": true}') for topic in MAY_NOT_PUBLISH[user]}
        assert refused == dict.fromkeys(MAY_NOT_PUBLISH[user], NOT_AUTHORIZED), f"{user} published what is not its own"
        accepted = {topic: writer.publish(topic, '{"probe": true}') for topic in MAY_PUBLISH[user]}
        assert accepted == dict.fromkeys(MAY_PUBLISH[user], 0), f"{user} could not publish its own"
    # The broker had delivered each refused publish, if at all, before it answered it; what each
    # reader reads of the later publishes (the officer's commands came last) comes after it.
    for user, reader in readers.items():
        reader.wait_for_topics(READS[user], f"what {user} reads, at {user}")
        assert reader.topics() == READS[user], f"{user} read more than its own"
    # The officer's to read: the site, and Home Assistant's birth message, which the ACL's
    # pattern lets every user read.
    allowed = {t for topics in MAY_PUBLISH.values() for t in topics if t.startswith(f"{BASE}/")} | {HA_STATUS}
    officer.wait_for_topics(allowed, "the allowed messages at the officer")
    assert officer.topics() == allowed, "a refused publish was delivered"
    site_topics = allowed - {HA_STATUS}
    recorder.wait_for_topics(site_topics, "the whole site at the recorder")
    assert recorder.topics() == site_topics
    events = {t for t in site_topics if t.endswith("/event")}
    recorder_shared.wait_for_topics(events, "every node's events at the recorder's shared subscription")
    assert recorder_shared.topics() == events
    forged = [(m.topic, user) for user, c in (("officer", officer), ("recorder", recorder), *readers.items())
              for m in c.messages
              if m.payload == b'{"forged": true}']
    assert not forged, f"refused publishes were delivered: {forged}"
    # The door's relay takes the strike's commands and speaks for nothing of sekisho's.
    assert relay.publish(T.door_state("entrance"), '{"lock": "unlocked"}') == NOT_AUTHORIZED
    assert relay.publish("cmnd/door-a/POWER", "ON") == NOT_AUTHORIZED
    assert relay.publish("stat/door-a/POWER", "OFF") < 0x80  # 0x10 when nobody listens: accepted all the same


def test_nobody_gets_in_without_a_user_and_tls(site_broker):
    """Both listeners, one set of users (per_listener_settings false): no anonymous client, no
    wrong password, no cleartext."""
    conf = BROKER_CONF.read_text()
    # The recorder's session queues a site's events while it is away: mosquitto's default (1,000) would drop them.
    queued = re.search(r"^max_queued_messages (\d+)$", conf, re.M)
    assert queued and int(queued[1]) >= 100_000, f"{BROKER_CONF.name} keeps too few messages for an absent recorder"
    for line in ("per_listener_settings false", "allow_anonymous false", "password_file ", "acl_file "):
        assert re.search(rf"^{line}", conf, re.M), f"{BROKER_CONF.name} has no {line!r}"
    for websockets in (False, True):
        for user, password in ((None, None), ("officer", "wrong"), ("door-a", PASSWORDS["officer"])):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-intruder-{websockets}-{user}",
                                 protocol=mqtt.MQTTv5, transport="websockets" if websockets else "tcp")
            if user:
                client.username_pw_set(user, password)
            try:
                reason = connect(site_broker, client, websockets)
            finally:
                client.loop_stop()
                client.disconnect()
            assert reason.is_failure, f"{user or 'anonymous'} got in on the {'WebSockets' if websockets else 'MQTT'} listener"
    # A client that does not speak TLS is dropped before MQTT (or HTTP) is read.
    connect_packet = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 60, 0, 0, 0])
    upgrade = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
    for port, hello in ((site_broker.port, connect_packet), (site_broker.ws_port, upgrade)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(hello)
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass  # dropped: what is wanted
        assert not answer.startswith((b"\x20", b"HTTP/1.1 101")), f"port {port} answered cleartext: {answer!r}"
