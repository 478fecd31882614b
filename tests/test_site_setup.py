"""Site set-up (issue 15, item 6; docs/site.md): ``sekisho site init`` once, ``site join`` and
``site install`` per node, all through the command line as an installer types them.

The site made here is tokyo-hq, the site of the shipped ACL, with a door node (door-a), a desk
node (desk-b) and a recorder (recorder-1), each installed into its own folders. Each passes
``sekisho check-config`` once the installer's sections are appended, and not before (a door
node's roles want a door). The broker is Debian's mosquitto with the shipped drop-in and ACL
(test_broker_acl.SiteBroker) and the password file ``site init`` and ``site join`` wrote, not
mosquitto_passwd's: every node logs in with the password its bundle brought, the wrong one does
not, and a node joined again logs in with its new password only once the broker reloads. The door's and the recorder's daemons, run on their installed configs, are seen online by
the officer, and the door's event names its holder by the site key's pseudonym; the three nodes
hash a card alike, with the site key of the site folder. (The desk's daemon is not run: it
needs logind; check-config is what its bundle is held to.)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from conftest import SEKISHO, answers, wait_for
from sekisho.daemon import site_bundle, site_setup
from sekisho.daemon.broker_passwords import PasswordFile, hash_line
from sekisho.daemon.keys import SiteKey
from test_broker_acl import SiteBroker, connect

SITE = "tokyo-hq"
UID = "04a1b2c3d4e5f6"
NODES = {"door-a": "door", "desk-b": "desk", "recorder-1": "recorder"}
# What the installer fills in at each node, in place of the commented skeleton: simulated
# readers, so check-config and the daemon need no hardware.
FILLED = {
    "door": """
[areas.operator-room]
[levels.staff]
doors = ["entrance"]
[doors.entrance]
area_in = "operator-room"
[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"
""",
    "desk": """
[desks.desk-02]
[readers.desk-02]
driver = "sim"
desk = "desk-02"
""",
    "recorder": "",
}


def sekisho(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SEKISHO, *map(str, args)], capture_output=True, text=True, timeout=60)


def ok(*args: str | Path) -> str:
    r = sekisho(*args)
    assert r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr}"
    return r.stdout


def one_line(r: subprocess.CompletedProcess, code: int) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode, r.stderr.count("\n")) == (code, 1), (r.returncode, r.stderr)
    return r.stderr


@dataclass(frozen=True)
class Node:
    name: str
    etc: Path
    data: Path
    installed: str
    """What site install printed."""
    before_filling: subprocess.CompletedProcess
    """check-config on the config as installed, before the installer's sections."""

    @property
    def config(self) -> Path:
        return self.etc / "sekisho.toml"

    def cli(self, *args: str) -> str:
        return ok(*args, "--config", self.config, "--data-dir", self.data)


@dataclass(frozen=True)
class Installed:
    folder: Path
    broker: SiteBroker
    nodes: dict[str, Node]
    joined: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    broker = SiteBroker(tmp)
    try:
        folder = tmp / "tokyo-hq"
        ok("site", "init", folder, "--site", SITE, "--broker", f"mqtts://127.0.0.1:{broker.port}",
           "--timezone", "Asia/Tokyo", "--ca", broker.ca)
        joined = {node: ok("site", "join", folder, node, "--roles", role) for node, role in NODES.items()}
        nodes = {}
        for node, role in NODES.items():
            etc, data = tmp / node / "etc", tmp / node / "data"
            out = ok("site", "install", folder / f"{node}.sekisho-bundle", "--etc", etc, "--data-dir", data)
            config = etc / "sekisho.toml"
            before = sekisho("check-config", "--config", config, "--data-dir", data)
            config.write_text(config.read_text() + FILLED[role])
            nodes[node] = Node(node, etc, data, out, before)
        # The broker's password file is the site's, as the installer copies it (owner and mode
        # as docs/mqtt.md has them: the test's broker made the file so).
        shutil.copyfile(folder / "mosquitto.passwd", broker.password_file)
        broker.start()
        yield Installed(folder, broker, nodes, joined)
    finally:
        broker.close()


def test_init_makes_the_site_folder_private_and_whole(installed):
    folder = installed.folder
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".sekisho-bundle")) == sorted(
        ["site.toml", "site.key", "recorder.key", "officer.key", "officer.password", "officer.toml",
         "mosquitto.passwd", "ca.crt"])
    for secret in ("site.key", "recorder.key", "officer.key", "officer.password", "mosquitto.passwd",
                   *(f"{n}.sekisho-bundle" for n in NODES)):
        assert (folder / secret).stat().st_mode & 0o777 == 0o600, secret
    assert PasswordFile.parse((folder / "mosquitto.passwd").read_text()).users()[:4] == ("officer", *NODES)
    for out in installed.joined.values():
        assert "SECRET: it holds the site key and the node's broker password" in out, out
    assert "the recorder's signing key" in installed.joined["recorder-1"]


def test_each_node_gets_its_config_password_and_the_site_key(installed):
    site_key = (installed.folder / "site.key").read_bytes()
    for name, node in installed.nodes.items():
        assert (node.data / "site.key").read_bytes() == site_key
        assert node.data.stat().st_mode & 0o777 == 0o700
        assert {p.name: p.stat().st_mode & 0o777 for p in node.etc.iterdir()} == {
            "sekisho.toml": 0o640, "mqtt.password": 0o600, "ca.crt": 0o644,
            **({"recorder.key": 0o600} if name == "recorder-1" else {})}, name
        config = tomllib.loads(node.config.read_text())
        assert config["site"] == {"id": SITE, "node": name, "timezone": "Asia/Tokyo", "roles": [NODES[name]]}
        assert config["mqtt"] == {"url": f"mqtts://127.0.0.1:{installed.broker.port}", "username": name,
                                  "password_file": str(node.etc / "mqtt.password"), "ca_file": str(node.etc / "ca.crt")}
        assert config["commands"]["keys"]["recorder"]["ops"] == ["enrolment.*", "outbox.replay"]
        assert "enrolment.*" not in config["commands"]["keys"]["officer"]["ops"]
        assert str(node.config) in node.installed and "sekisho check-config" in node.installed
        assert "systemctl enable --now sekisho" in node.installed
    recorder = installed.nodes["recorder-1"]
    assert tomllib.loads(recorder.config.read_text())["recorder"] == {"signing_key": "recorder.key"}
    assert (recorder.etc / "recorder.key").read_bytes() == (installed.folder / "recorder.key").read_bytes()
    # The public key every node trusts is the recorder's private key's.
    public = ok("cmd", "public-key", installed.folder / "recorder.key").strip()
    assert tomllib.loads(installed.nodes["door-a"].config.read_text())["commands"]["keys"]["recorder"][
        "public_key"] == public


def test_check_config_passes_once_the_installer_filled_the_sections(installed):
    door = installed.nodes["door-a"].before_filling
    assert door.returncode == 78 and "site.roles: names door, and the config has no [doors.<name>]" in door.stderr
    assert installed.nodes["recorder-1"].before_filling.returncode == 0  # nothing to fill on a recorder
    for node in installed.nodes.values():
        assert f"(site {SITE}, node {node.name}," in node.cli("check-config")


def login(broker: SiteBroker, user: str, password: str) -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-site-{user}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    try:
        return not connect(broker, client, websockets=False).is_failure
    finally:
        client.loop_stop()
        client.disconnect()


def test_each_node_logs_in_with_its_bundles_password_and_no_other(installed):
    broker = installed.broker
    for name, node in installed.nodes.items():
        mqtt_config = tomllib.loads(node.config.read_text())["mqtt"]
        password = Path(mqtt_config["password_file"]).read_text().strip()
        assert login(broker, mqtt_config["username"], password), f"{name} could not log in"
        assert not login(broker, name, password + "x"), f"{name} logged in with a wrong password"
    other = Path(installed.nodes["desk-b"].etc / "mqtt.password").read_text().strip()
    assert not login(broker, "door-a", other), "door-a logged in with desk-b's password"
    assert login(broker, "officer", (installed.folder / "officer.password").read_text().strip())


def test_the_door_and_the_recorder_run_on_their_installed_configs(installed):
    """Each daemon on its config as installed and filled in: TLS with the site's CA, its own
    user and password. The officer, with the password site init made, sees both online, and the
    door's event names its holder by the pseudonym of the site folder's key."""
    door = installed.nodes["door-a"]
    door.cli("person", "add", "--id", "u2001", "--name", "Taro Suzuki")
    door.cli("card", "add", "--person", "u2001", "--uid", "04c0ffee0001")
    door.cli("person", "grant", "u2001", "staff")
    officer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-site-officer", protocol=mqtt.MQTTv5)
    officer.username_pw_set("officer", (installed.folder / "officer.password").read_text().strip())
    seen: list[tuple[str, dict]] = []
    officer.on_message = lambda c, u, m: seen.append((m.topic, json.loads(m.payload))) if m.payload else None
    assert not connect(installed.broker, officer, websockets=False).is_failure
    subscribed = threading.Event()
    officer.on_subscribe = lambda *a: subscribed.set()
    officer.subscribe(f"sekisho/v1/{SITE}/#", qos=1)
    assert subscribed.wait(10)
    procs = {}
    try:
        for name in ("door-a", "recorder-1"):
            node = installed.nodes[name]
            procs[name] = subprocess.Popen([*SEKISHO, "run", "--config", str(node.config), "--data-dir",
                                            str(node.data)], stdout=subprocess.DEVNULL,
                                           stderr=open(node.data / "daemon.log", "wb"))

        def online(name: str) -> bool:
            assert procs[name].poll() is None, (installed.nodes[name].data / "daemon.log").read_text()[-800:]
            return any(t.endswith(f"/node/{name}/status") and p.get("state") == "online" for t, p in seen)
        wait_for(lambda: online("door-a") and online("recorder-1"), 20, "door-a and recorder-1 online at the officer")
        wait_for(lambda: answers(door.data, procs["door-a"].pid), 10, "door-a's control socket")
        assert "granted" in door.cli("sim", "tap", "entrance-in", "04c0ffee0001")
        events = wait_for(lambda: [p for t, p in seen if t.endswith("/door/entrance/event")], 10,
                          "door-a's event at the officer")
        pseudonym = SiteKey.load_or_create(installed.folder / "site.key").pseudonym("u2001")
        assert events[0]["subject"] == pseudonym and events[0]["result"] == "granted", events
        # The officer's command line, on the config and key site init made: the node trusts the key.
        answer = json.loads(ok("cmd", "send", "door.list", "--key", installed.folder / "officer.key", "--node",
                               "door-a", "--config", installed.folder / "officer.toml", "--data-dir",
                               installed.folder.parent / "officer-data"))
        assert answer["ok"] is True and [d["door"] for d in answer["result"]["doors"]] == ["entrance"], answer
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        officer.loop_stop()
        officer.disconnect()


def test_a_rejoined_node_logs_in_with_its_new_password_only(installed):
    """The broker reloads the password file (SIGHUP, as systemctl reload mosquitto sends it):
    the new bundle's password opens it, the old one no longer does."""
    folder, broker = installed.folder, installed.broker
    site_setup.join(folder, "desk-c", ("desk",))
    old = password_of(folder / "desk-c.sekisho-bundle")
    site_setup.join(folder, "desk-c", ("desk",))
    new = password_of(folder / "desk-c.sekisho-bundle")
    shutil.copyfile(folder / "mosquitto.passwd", broker.password_file)
    assert broker.broker.proc is not None
    broker.broker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: login(broker, "desk-c", new), 10, "the broker to take the new password file")
    assert not login(broker, "desk-c", old)
    assert login(broker, "door-a", (installed.nodes["door-a"].etc / "mqtt.password").read_text().strip())


def test_the_nodes_hash_a_card_alike(installed):
    expected = SiteKey.load_or_create(installed.folder / "site.key").card_hash(bytes.fromhex(UID))[:12]
    shown = set()
    for node in installed.nodes.values():
        node.cli("person", "add", "--id", "u1042", "--name", "Hanako Yamada")
        shown.add(node.cli("card", "add", "--person", "u1042", "--uid", UID).split()[1])
    assert len(shown) == 1 and expected.startswith(shown.pop())


# ----------------------------------------------------------------------------- mistakes
@pytest.fixture
def site_folder(tmp_path):
    """A site made in this process (the command line is what the test runs, not this)."""
    folder = tmp_path / "site"
    site_setup.init(folder, site=SITE, broker="mqtt://127.0.0.1:1883", timezone="UTC")
    return folder


def test_a_site_is_never_made_twice(site_folder, tmp_path):
    before = {p.name: p.read_bytes() for p in site_folder.iterdir()}
    err = one_line(sekisho("site", "init", site_folder, "--site", "osaka", "--broker", "mqtt://h:1883"), 1)
    assert f"{site_folder} already holds a site (site {SITE}, made " in err and "a site is made once" in err
    assert {p.name: p.read_bytes() for p in site_folder.iterdir()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    err = one_line(sekisho("site", "init", other, "--site", SITE, "--broker", "mqtt://h:1883"), 1)
    assert "exists and is not an empty folder" in err and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args, message", [
    (["--site", "Tokyo HQ", "--broker", "mqtt://h:1883"], "--site: must be lower-case letters, digits and '-'"),
    (["--site", SITE, "--broker", "http://h"], "--broker: 'http://h' must start with mqtt:// or mqtts://"),
    (["--site", SITE, "--broker", "mqtt://h", "--timezone", "Tokyo"], "--timezone: unknown time zone 'Tokyo'"),
    (["--site", SITE, "--broker", "mqtt://h", "--ca", "/etc/hostname"], "--ca: /etc/hostname is not a PEM"),
])
def test_init_refuses_what_a_node_would_refuse(tmp_path, args, message):
    assert message in one_line(sekisho("site", "init", tmp_path / "s", *args), 65)
    assert not (tmp_path / "s").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]


@pytest.mark.parametrize("node, roles, code, message", [
    ("officer", "desk", 65, "NODE: 'officer' is the officer's broker user"),
    ("Desk 1", "desk", 65, "NODE: must be lower-case letters, digits and '-'"),
    ("desk-1", "desk,printer", 65, "--roles: 'printer' is not a role (known: door, desk, usb, recorder, print)"),
    ("desk-1", "desk,desk", 65, "--roles: names a role twice"),
    ("desk-1", ",", 65, "--roles: name at least one of door, desk, usb, recorder, print"),
])
def test_join_refuses_a_bad_name_or_role(site_folder, node, roles, code, message):
    before = (site_folder / "mosquitto.passwd").read_bytes()
    assert message in one_line(sekisho("site", "join", site_folder, node, "--roles", roles), code)
    assert (site_folder / "mosquitto.passwd").read_bytes() == before


def test_join_needs_a_site_folder_and_a_file_to_write(site_folder, tmp_path):
    err = one_line(sekisho("site", "join", tmp_path / "nowhere", "desk-1", "--roles", "desk"), 66)
    assert "not a site folder (no such folder; `sekisho site init` makes one)" in err
    before = (site_folder / "mosquitto.passwd").read_bytes()
    for out, code, message in ((tmp_path, 65, f"--out: {tmp_path} is a folder; name the bundle's file"),
                               (tmp_path / "no" / "b", 66, f"--out: no folder {tmp_path / 'no'}")):
        err = one_line(sekisho("site", "join", site_folder, "desk-1", "--roles", "desk", "--out", out), code)
        assert message in err
    assert (site_folder / "mosquitto.passwd").read_bytes() == before


def password_of(bundle: Path) -> str:
    return json.loads(bundle.read_text())["broker_password"]


def test_a_rejoin_replaces_the_nodes_password(site_folder):
    site_setup.join(site_folder, "desk-1", ("desk",))
    first = password_of(site_folder / "desk-1.sekisho-bundle")
    out = ok("site", "join", site_folder, "desk-1", "--roles", "desk,usb")
    assert "its old one no longer logs in" in out
    second = password_of(site_folder / "desk-1.sekisho-bundle")
    lines = {line.split(":", 1)[0]: line for line in (site_folder / "mosquitto.passwd").read_text().splitlines()}
    assert list(lines) == ["officer", "desk-1"]
    salt = lines["desk-1"].split("$")[3]
    assert hash_line("desk-1", second, salt=base64.b64decode(salt)) == lines["desk-1"]
    assert hash_line("desk-1", first, salt=base64.b64decode(salt)) != lines["desk-1"]


def bad_bundles(good: bytes) -> dict[str, tuple[bytes, str]]:
    body = json.loads(good)
    edited = json.dumps({**body, "node": "door-b"}).encode()
    return {
        "cut short": (good[: len(good) // 2], "not a sekisho bundle, or cut short (not JSON: "),
        "another file": (b'{"hello": "world"}', 'not a sekisho bundle (no "format": "sekisho-bundle")'),
        "a TOML file": (b'[site]\nid = "x"\n', "not a sekisho bundle, or cut short"),
        "binary": (b"\xff\xfe\x00garbage", "not a sekisho bundle (not text)"),
        "version 2": (json.dumps({**body, "version": 2}).encode(), "a bundle of version 2; this sekisho installs "
                      "version 1"),
        "edited": (edited, "damaged: its content does not match its sha256"),
    }


@pytest.mark.parametrize("case", ["cut short", "another file", "a TOML file", "binary", "version 2", "edited"])
def test_a_bad_bundle_installs_nothing(site_folder, tmp_path, case):
    site_setup.join(site_folder, "door-a", ("door",))
    data, message = bad_bundles((site_folder / "door-a.sekisho-bundle").read_bytes())[case]
    bad = tmp_path / "bad.sekisho-bundle"
    bad.write_bytes(data)
    err = one_line(sekisho("site", "install", bad, "--etc", tmp_path / "etc", "--data-dir", tmp_path / "data"), 65)
    assert err.startswith(f"sekisho: {bad}: {message}") and err.endswith("; nothing was installed\n"), err
    assert not (tmp_path / "etc").exists() and not (tmp_path / "data").exists()


def test_install_without_the_right_to_write_writes_nothing(site_folder):
    """As a user who may not write the etc folder or the data dir: exit 77, one line, and no
    file written in either (the first is refused before the second is tried)."""
    site_setup.join(site_folder, "door-a", ("door",))
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        top = Path(top)
        top.chmod(0o755)  # tmp_path's parents are root's 0700: nobody could not even read the bundle
        bundle = top / "door-a.sekisho-bundle"
        shutil.copy(site_folder / "door-a.sekisho-bundle", bundle)
        bundle.chmod(0o644)
        (top / "etc").mkdir(mode=0o777)
        (top / "etc").chmod(0o777)  # etc writable, the data dir's parent not
        nobody = pwd.getpwnam("nobody")
        r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                            *SEKISHO, "site", "install", str(bundle), "--etc", str(top / "etc"), "--data-dir",
                            str(top / "var" / "data")], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "HOME": "/"})
        assert f"{top}: permission denied (run as root" in one_line(r, 77)
        assert list((top / "etc").iterdir()) == [] and not (top / "var").exists()


def test_install_replaces_a_different_config_only_when_told_and_a_site_key_never(site_folder, tmp_path):
    site_setup.join(site_folder, "door-a", ("door",))
    bundle = site_folder / "door-a.sekisho-bundle"
    etc, data = tmp_path / "etc", tmp_path / "data"
    where = ["--etc", etc, "--data-dir", data]
    ok("site", "install", bundle, *where)
    again = ok("site", "install", bundle, *where)
    assert again.count("unchanged") == 3, again  # config, password and site key: installing twice is harmless
    # The installer edited the config; a new bundle (a re-join) does not overwrite it unasked.
    (etc / "sekisho.toml").write_text((etc / "sekisho.toml").read_text() + "# mine\n")
    site_setup.join(site_folder, "door-a", ("door",))
    password = (etc / "mqtt.password").read_bytes()
    err = one_line(sekisho("site", "install", bundle, *where), 1)
    assert f"{etc / 'sekisho.toml'}, {etc / 'mqtt.password'} exist and differ from the bundle's; nothing was " \
           "installed (--force replaces them; --keep-config keeps a filled-in config and replaces the rest)" in err
    assert (etc / "mqtt.password").read_bytes() == password
    # --keep-config: the filled-in config stays, the new password goes in.
    out = ok("site", "install", bundle, *where, "--keep-config")
    assert f"kept      {etc / 'sekisho.toml'}" in out and f"replaced  {etc / 'mqtt.password'}" in out, out
    assert (etc / "sekisho.toml").read_text().endswith("# mine\n")
    assert (etc / "mqtt.password").read_text().strip() == password_of(bundle)
    # ... but only a config of this node: another node's bundle is refused, and nothing written.
    site_setup.join(site_folder, "door-b", ("door",))
    err = one_line(sekisho("site", "install", site_folder / "door-b.sekisho-bundle", *where, "--keep-config"), 1)
    assert f"{etc / 'sekisho.toml'} is not the config of node door-b of site {SITE} (its [site] says 'door-a')" in err
    assert (etc / "mqtt.password").read_text().strip() == password_of(bundle)
    out = ok("site", "install", bundle, *where, "--force")
    assert f"replaced  {etc / 'sekisho.toml'}" in out and f"unchanged {data / 'site.key'}" in out
    assert not (etc / "sekisho.toml").read_text().endswith("# mine\n")
    # A data dir of another site: its site key stays, --force or not.
    (data / "site.key").write_text("00" * 32 + "\n")
    for force in ([], ["--force"]):
        err = one_line(sekisho("site", "install", bundle, *where, *force), 1)
        assert "this node has another site key" in err and "never replaced" in err
    assert (data / "site.key").read_text() == "00" * 32 + "\n"


@pytest.mark.parametrize("change, message", [
    ({"site_key": "abc"}, "its site key is not 64 hex digits"),
    ({"config": "[site\n"}, "its config is not TOML"),
    ({"roles": ("door", "printer")}, "roles ['door', 'printer'] are not sekisho roles"),
    ({"roles": ("recorder",)}, "a recorder's bundle holds the recorder's key, and only a recorder's"),
    ({"ca": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n"}, "its CA is not a PEM certificate"),
    ({"node": "Door A"}, "its site or node is not a valid name"),
])
def test_a_bundle_sealed_but_not_made_by_join_is_refused(site_folder, change, message):
    """Whole and sealed (its sha256 holds), and still not what join makes: each field is checked."""
    site_setup.join(site_folder, "door-a", ("door",))
    good = site_bundle.read(site_folder / "door-a.sekisho-bundle")
    with pytest.raises(site_bundle.BundleError) as refused:
        site_bundle.loads("b", site_bundle.dumps(dataclasses.replace(good, **change)))
    text = str(refused.value)
    assert text.startswith(f"b: {message}") and text.endswith("; nothing was installed"), text


def test_a_bundle_with_a_field_missing_or_of_a_wrong_type_is_refused(site_folder):
    site_setup.join(site_folder, "door-a", ("door",))
    body = json.loads((site_folder / "door-a.sekisho-bundle").read_text())
    for field, value in (("broker_password", None), ("roles", "door")):
        changed = {k: v for k, v in body.items() if k != "sha256"} | {field: value}
        sealed = {**changed, "sha256": hashlib.sha256(json.dumps(changed, sort_keys=True, separators=(",", ":"))
                                                      .encode()).hexdigest()}
        with pytest.raises(site_bundle.BundleError, match=f"field '{field}' missing or of the wrong type"):
            site_bundle.loads("b", json.dumps(sealed).encode())


def test_join_prints_a_recorders_acl_block_as_the_example_acl_has_it(installed):
    """A recorder's broker user reads the whole site: join prints its block under the node's
    name, and the block is the example ACL's ``user recorder`` one, line for line."""
    assert "in the broker's ACL" not in installed.joined["door-a"]
    printed = installed.joined["recorder-1"]
    assert f"    user recorder-1\n    topic read sekisho/v1/{SITE}/#\n" in printed, printed
    acl = (Path(__file__).parent.parent / "systemd" / "mosquitto-sekisho.acl").read_text().splitlines()
    start = acl.index("user recorder")
    end = acl.index("", start)
    assert "\n".join(acl[start:end]) == site_setup.recorder_acl("tokyo-hq", "recorder")
