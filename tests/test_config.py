"""The config is checked whole before anything starts; each problem is one line naming the
file and the dotted key, and the exit code is 78."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SEKISHO
from sekisho.daemon import config
from sekisho.daemon.errors import ConfigError
from sekisho.drivers import registry

GOOD = """\
[site]
id = "t"
node = "n1"

[doors.entrance]

[readers.r1]
driver = "sim"
door = "entrance"
direction = "in"
"""


def check(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    return subprocess.run([*SEKISHO, "check-config", "--config", str(f), *extra], capture_output=True, text=True)


def test_good_config_passes(tmp_path):
    r = check(tmp_path, GOOD)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


@pytest.mark.parametrize("text, expected", [
    (GOOD + "colour = 1\n", "bad.toml: readers.r1.colour: unknown key"),
    (GOOD.replace('node = "n1"', 'node = 7'), "bad.toml: site.node: must be a string, not an integer 7"),
    (GOOD.replace('door = "entrance"', 'door = "back"'), "bad.toml: readers.r1.door: no door 'back' (doors: entrance)"),
    (GOOD.replace('direction = "in"', 'direction = "up"'), "bad.toml: readers.r1.direction: must be one of 'in', 'out'"),
    (GOOD.replace('driver = "sim"', 'driver = "pcsc2"'), "bad.toml: readers.r1.driver: unknown driver 'pcsc2' (known:"),
    (GOOD + "[mqtt]\nkeepalive_s = 1\n", "bad.toml: mqtt.keepalive_s: must be between 5 and 3600"),
    (GOOD + "[mqtt]\nprotocol = 4\n", "bad.toml: mqtt.protocol: must be one of 3, 5"),
    (GOOD + "[mqtt]\nurl = \"http://x\"\n", "bad.toml: mqtt.url: 'http://x' must start with mqtt:// or mqtts://"),
    (GOOD + "[mqtt]\nreconnect_max_s = true\n", "bad.toml: mqtt.reconnect_max_s: must be an integer, not a boolean"),
    (GOOD.replace('id = "t"', 'id = "Tokyo HQ"'), "bad.toml: site.id: must be lower-case letters"),
    (GOOD.replace('id = "t"\n', ''), "bad.toml: site.id: missing (required)"),
    (GOOD.replace('node = "n1"', 'node = "n1"\ntimezone = "Mars/Olympus"'), "bad.toml: site.timezone: unknown time zone"),
    (GOOD + "[mqtt]\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
     "bad.toml: mqtt.password_file: cannot read /nonexistent/pw"),
    ("[site\nid = 1\n", "bad.toml: invalid TOML: "),
    (GOOD + "[extra]\n", "bad.toml: extra: unknown section"),
    (GOOD + "[doors.side]\narea_in = 5\n", "bad.toml: doors.side.area_in: must be a string"),
])
def test_bad_config_exit_78_names_the_key(tmp_path, text, expected):
    r = check(tmp_path, text)
    assert r.returncode == 78, (r.returncode, r.stdout, r.stderr)
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith(str(tmp_path / "bad.toml")) for line in lines), lines


def test_invalid_toml_names_line(tmp_path):
    r = check(tmp_path, GOOD + "oops\n")
    assert r.returncode == 78
    assert "line 11" in r.stderr


def test_unreadable_file(tmp_path):
    r = subprocess.run([*SEKISHO, "check-config", "--config", str(tmp_path / "missing.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 78
    assert r.stderr.strip() == f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory"


def test_every_problem_is_reported_at_once(tmp_path):
    r = check(tmp_path, GOOD.replace('node = "n1"', 'node = 1').replace('direction = "in"', 'direction = "x"'))
    assert r.returncode == 78
    assert "site.node" in r.stderr and "readers.r1.direction" in r.stderr


def test_mqtt_override_is_checked(tmp_path):
    r = check(tmp_path, GOOD, "--mqtt", "mqtt://")
    assert r.returncode == 78
    assert r.stderr.startswith("--mqtt: 'mqtt://' names no host")
    assert config.load(_write(tmp_path, GOOD), mqtt_url="mqtts://b:9").mqtt.endpoint == (True, "b", 9)


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "c.toml"
    f.write_text(text)
    return f


def test_defaults_and_frozen(tmp_path):
    cfg = config.load(_write(tmp_path, GOOD))
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1883" and cfg.mqtt.protocol == 5
    assert cfg.site.timezone == "UTC" and cfg.site.publish_names is False
    assert cfg.readers["r1"].options == {"socket": ""}
    with pytest.raises(AttributeError):
        cfg.site.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.readers["r2"] = cfg.readers["r1"]  # type: ignore[index]


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    if path.name.endswith(".cases.toml"):
        return
    try:
        config.load(path)
    except ConfigError as exc:
        pytest.fail(str(exc))


def test_annotated_example_documents_every_key():
    """examples/sekisho.toml is the config reference: it must mention every key of the schema
    and of every driver's options, with the default (commented) where one exists."""
    text = (REPO / "examples" / "sekisho.toml").read_text()
    schemas = {"site": config.SITE, "mqtt": config.MQTT, "readers": config.READER, "doors": config.DOOR}
    for kind in registry.KINDS:
        schemas[f"driver {kind}"] = registry.load(kind).OPTIONS
    missing = [f"{section}.{key}" for section, keys in schemas.items() for key in keys
               if f"{key} =" not in text]
    assert not missing, f"examples/sekisho.toml does not document: {missing}"
