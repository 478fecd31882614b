"""The config is checked whole before anything starts; each problem is one line naming the
file and the dotted key, and the exit code is 78."""

from __future__ import annotations

import os
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
    (GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["desk"]'),
     "bad.toml: site.roles: names desk, and the config has no [desks.<name>]"),
    (GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["recorder"]'),
     "bad.toml: site.roles: does not name door, and the config has [doors.<name>]"),
    (GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["door", "gate"]'),
     "bad.toml: site.roles: 'gate' is not a role (known: door, desk, usb, recorder, print)"),
    (GOOD + "[recorder]\n", "bad.toml: recorder: the recorder runs only on a node whose [site] roles name it"),
    (GOOD.replace('node = "n1"', 'node = "n1"\noccupancy_from = "nodes"'),
     "bad.toml: site.occupancy_from: must be one of 'doors', 'recorder'"),
    (GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["door", "recorder"]\noccupancy_from = "recorder"')
     + '[recorder]\nshare_group = "recorders"\n',
     "bad.toml: site.occupancy_from: recorder: not with [recorder] share_group"),
    (GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["door", "recorder"]') + "[recorder]\ndatabase = \"mysql://x\"\n",
     "bad.toml: recorder.database: 'mysql://x' is not a PostgreSQL URL"),
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


def test_roles_are_named_or_follow_the_sections(tmp_path):
    """Unnamed, the roles are what the sections configure, and never the recorder; named, the
    recorder runs with its defaults when the config has no [recorder] table."""
    cfg = config.load(_write(tmp_path, GOOD))
    assert cfg.site.roles == {"door"} and cfg.recorder is None
    cfg = config.load(_write(tmp_path, GOOD.replace('node = "n1"', 'node = "n1"\nroles = ["recorder", "door"]')))
    assert cfg.site.roles == {"door", "recorder"}
    assert cfg.recorder == config.RecorderConfig()
    only = config.load(_write(tmp_path, '[site]\nid = "t"\nnode = "rec"\nroles = ["recorder"]\n'
                              '[recorder]\ndatabase = "postgresql://sekisho@db/sekisho"\nshare_group = "recorders"\n'))
    assert only.site.roles == {"recorder"} and not only.doors
    assert only.recorder is not None and only.recorder.share_group == "recorders"


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
    schemas = {"site": config.SITE, "mqtt": config.MQTT, "readers": config.READER, "doors": config.DOOR,
               "areas": config.AREA, "schedules": config.SCHEDULE, "levels": config.LEVEL, "inputs": config.INPUT,
               "desks": config.DESK, "usb": config.USB,
               "commands": config.COMMANDS, "commands.keys": config.COMMAND_KEY, "homeassistant": config.HOMEASSISTANT,
               "recorder": config.RECORDER, "print": config.PRINT}
    for kind, keys in config.STRIKES.items():
        schemas[f"strike {kind}"] = keys
        assert f'driver = "{kind}"' in text, f"strike driver {kind} is not shown"
    for kind in registry.KINDS:
        schemas[f"driver {kind}"] = registry.load(kind).OPTIONS
    for kind in registry.INPUTS:
        schemas[f"input driver {kind}"] = registry.load(kind, registry.INPUTS).OPTIONS
    missing = [f"{section}.{key}" for section, keys in schemas.items() for key in keys
               if f"{key} =" not in text and f"{key}\" =" not in text]
    assert not missing, f"examples/sekisho.toml does not document: {missing}"


def test_check_config_warns_about_rules_that_can_never_match(tmp_path):
    text = GOOD + """
[schedules.never]

[levels.ghost]
doors = ["entrance"]
schedule = "never"

[doors.side]
auth_schedules = [{ schedule = "always", auth = "free" }, { schedule = "never", auth = "card" }]

[levels.side]
doors = ["side"]
"""
    r = check(tmp_path, text)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert f"warning: {tmp_path / 'bad.toml'}: levels.ghost: schedule 'never' has no time ranges; " \
           "this level can never open a door" in lines
    assert any("levels.side.doors: door 'side' has no reader on this node" in line for line in lines)
    assert any("doors.side.auth_schedules[2]" in line for line in lines)


@pytest.mark.parametrize("text, expected", [
    (GOOD + "[levels.x]\ndoors = [\"back\"]\n", "bad.toml: levels.x.doors: no door 'back' (doors: entrance)"),
    (GOOD + "[levels.x]\ndoors = [\"entrance\"]\nschedule = \"nights\"\n", "bad.toml: levels.x.schedule: no schedule 'nights'"),
    (GOOD + "[schedules.x]\nmon = [\"9-17\"]\n", "bad.toml: schedules.x.mon: item 1: '9-17' is not a time range"),
    (GOOD + "[schedules.x]\nfunday = []\n", "bad.toml: schedules.x.funday: unknown key"),
    (GOOD + "[schedules.always]\n", "bad.toml: schedules.always: 'always' is built in"),
    (GOOD.replace("[doors.entrance]", "[doors.entrance]\narea_in = \"room\""), "bad.toml: doors.entrance.area_in: no area 'room'"),
    (GOOD.replace("[doors.entrance]", "[doors.entrance]\nauth = \"pin\""), "bad.toml: doors.entrance.auth: must be one of"),
    (GOOD.replace("[doors.entrance]", "[doors.entrance]\nauth_schedules = [{ schedule = \"x\", auth = \"free\" }]"),
     "bad.toml: doors.entrance.auth_schedules[1].schedule: no schedule 'x'"),
    (GOOD.replace('node = "n1"', 'node = "n1"\nholidays = ["2026-01-01"]'), "bad.toml: site.holidays: must be TOML dates"),
    (GOOD + "[areas.r]\npassback = \"strict\"\n", "bad.toml: areas.r.passback: must be one of 'off', 'soft', 'hard'"),
    (GOOD + "[levels.x]\n", "bad.toml: levels.x: names no doors, no desks, and is no [print] supervisor level"),
    (GOOD + "[levels.x]\ndesks = [\"d9\"]\n", "bad.toml: levels.x.desks: no desk 'd9'"),
    (GOOD + "[desks.d1]\ntailgating = \"ignore\"\n", "bad.toml: desks.d1.tailgating: must be one of 'refuse', 'flag'"),
    (GOOD + "[desks.d1]\narea = \"nowhere\"\n", "bad.toml: desks.d1.area: no area 'nowhere'"),
    (GOOD + "[desks.d1]\nunlocked_without_card = \"ignore\"\n",
     "bad.toml: desks.d1.unlocked_without_card: must be one of 'relock', 'alarm_only'"),
    (GOOD + "[desks.d1]\ntty_lock = \"lock\"\n", "bad.toml: desks.d1.tty_lock: must be one of 'terminate', 'alarm_only'"),
    (GOOD + "[desks.d1]\nlock_confirm_command = \"pgrep swaylock\"\n",
     "bad.toml: desks.d1.lock_confirm_command: must be an array, not a string 'pgrep swaylock'"),
    (GOOD + "[desks.d1]\nlock_confirm_command = [\"pgrep\", 3]\n",
     "bad.toml: desks.d1.lock_confirm_command: item 2 must be a string, not an integer 3"),
    (GOOD + "[readers.r2]\ndriver = \"sim\"\ndesk = \"d9\"\n", "bad.toml: readers.r2.desk: no desk 'd9'"),
    (GOOD + "[readers.r2]\ndriver = \"sim\"\n", "bad.toml: readers.r2: serves nothing"),
    (GOOD.replace('direction = "in"\n', ''), "bad.toml: readers.r1.direction: missing: a door's reader is either in or out"),
    (GOOD + "[desks.d1]\n[readers.r2]\ndriver = \"sim\"\ndesk = \"d1\"\ndoor = \"entrance\"\ndirection = \"in\"\n",
     "bad.toml: readers.r2: serves a door or a desk, not both"),
])
def test_bad_access_config(tmp_path, text, expected):
    r = check(tmp_path, text)
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert expected in r.stderr, r.stderr


def _toml_value():
    from hypothesis import strategies as st
    scalars = st.one_of(st.booleans(), st.integers(-5, 100), st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from(["", "entrance", "x", "in", "always", "card", "08:00-17:00", "free", "hard"]),
                        st.dates())
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.sampled_from(
                                                             ["doors", "schedule", "auth", "mon", "driver",
                                                              "door", "direction", "passback", "area_in"]),
                                                             inner, max_size=3)), max_leaves=8)


def test_any_config_shape_is_an_error_never_a_crash(tmp_path):
    """Whatever a person writes, load() returns a config or raises ConfigError: no traceback."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    section_names = st.sampled_from(["entrance", "r1", "x"])
    section = st.dictionaries(st.sampled_from(["doors", "schedule", "auth", "mon", "driver", "door", "direction",
                                               "passback", "area_in", "override", "id", "node"]), _toml_value(),
                              max_size=4)
    data = st.fixed_dictionaries({}, optional={
        "site": section, "mqtt": section,
        **{top: st.dictionaries(section_names, section, max_size=2)
           for top in ("areas", "schedules", "levels", "doors", "readers")}})

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None)
    @given(data)
    def run(d):
        import tomllib

        f = tmp_path / "fuzz.toml"
        f.write_text(_dump(d))
        try:
            tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError:
            return
        try:
            config.load(f)
        except ConfigError:
            pass  # the expected outcome for nearly every generated file

    run()


def _dump(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the fuzz test's plain values (the stdlib reads TOML, not writes)."""
    import datetime as dt
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"

    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) and v:
            tables.append((k, v))
        else:
            lines.append(f"{json.dumps(k)} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        out += f"\n[{name}]\n" + _dump(v, name)
    return out


def test_usb_rules_file_is_checked_with_the_config(tmp_path):
    (tmp_path / "usb.rules").write_text("allow id 046d:c31c\nallow with-interface one-of { 03:00:00 08:06:50\n")
    r = check(tmp_path, GOOD + "[usb]\nrules = \"usb.rules\"\n")
    assert r.returncode == 78
    assert f"{tmp_path / 'usb.rules'}:2:" in r.stderr and "^" in r.stderr
    r = check(tmp_path, GOOD + "[usb]\nrules = \"missing.rules\"\n")
    assert r.returncode == 78 and "bad.toml: usb.rules: cannot read" in r.stderr
    (tmp_path / "usb.rules").write_text("allow id 046d:c31c\n")
    r = check(tmp_path, GOOD + "[usb]\nrules = \"usb.rules\"\nimplicit_target = \"reject\"\n")
    assert r.returncode == 0, r.stderr
    cfg = config.load(tmp_path / "bad.toml")
    assert cfg.usb.implicit_target == "reject" and cfg.usb.host == "n1" and len(cfg.usb.rules.rules) == 1


@pytest.mark.parametrize("usb, desk, expected", [
    ('supervisor_levels = ["boss"]', True, "usb.supervisor_levels: no level 'boss' (levels: staff)"),
    ('supervisor_levels = ["staff"]', False, "usb.supervisor_levels: a supervisor approves at a desk, and this "
                                             "node has no [desks]"),
    ('supervisor_levels = ["staff"]\napproval_minutes = 600', True, "usb.approval_minutes: 600 is more than "
                                                                    "exception_max_minutes (480)"),
    ('supervisor_levels = ["staff"]\napproval_confirm = "pin"', True, "usb.approval_confirm: pin needs a PIN pad on "
                                                                      "every desk's reader; readers.d1 has no pin_pad"),
    ('approval_confirm = "retina"', True, "usb.approval_confirm: must be one of 'card', 'pin'"),
    ('approval_interfaces = "some"', True, "usb.approval_interfaces: must be one of 'rules', 'all'"),
])
def test_supervisor_approval_settings_are_checked(tmp_path, usb, desk, expected):
    (tmp_path / "usb.rules").write_text("allow id 046d:c31c\n")
    desk_part = ('[desks.d1]\n\n[readers.d1]\ndriver = "pcsc"\nname = "x"\ndesk = "d1"\n' if desk else "")
    text = GOOD + '\n[levels.staff]\ndoors = ["entrance"]\n\n' + desk_part + f'[usb]\nrules = "usb.rules"\n{usb}\n'
    r = check(tmp_path, text)
    assert r.returncode == 78 and f"bad.toml: {expected}" in r.stderr, r.stderr


@pytest.mark.parametrize("desks, expected", [
    ('[desks.d1]\nusb_ports = ["usb1"]\n', "desks.d1.usb_ports: item 1: 'usb1' is not a USB port: write the kernel's "
                                           "name for it, <bus>-<port> with .<port> for each hub (1-2, 3-1.4)"),
    ('[desks.d1]\nusb_ports = ["1-2."]\n', "desks.d1.usb_ports: item 1: '1-2.' is not a USB port"),
    ('[desks.d1]\nusb_ports = ["1-2"]\n\n[desks.d2]\n',
     "desks.d2.usb_ports: this node has more than one desk, so each desk needs its usb_ports"),
    ('[desks.d1]\nusb_ports = ["1-2"]\n\n[desks.d2]\nusb_ports = ["1-3", "1-2.4"]\n',
     "desks.d2.usb_ports: 1-2.4 is also a port of desk 'd1': a port belongs to one desk"),
])
def test_desk_usb_ports_are_kernel_port_names_each_one_desks(tmp_path, desks, expected):
    (tmp_path / "usb.rules").write_text("allow id 046d:c31c\n")
    text = GOOD + '\n[levels.staff]\ndoors = ["entrance"]\n\n' + desks + '\n[usb]\nrules = "usb.rules"\n' \
        'supervisor_levels = ["staff"]\n'
    r = check(tmp_path, text)
    assert r.returncode == 78 and f"bad.toml: {expected}" in r.stderr, r.stderr
    good = text.replace('"1-2.4"', '"2-1"').replace('"usb1"', '"1-2"').replace('"1-2."', '"1-2"')
    good = good.replace("[desks.d2]\n\n", '[desks.d2]\nusb_ports = ["1-3"]\n\n')
    r = check(tmp_path, good)
    assert r.returncode == 0, r.stderr
    assert config.load(tmp_path / "bad.toml").desks["d1"].usb_ports == ("1-2",)


def test_config_keys_and_driver_options_are_one_type():
    """A config section and a driver's OPTIONS are declared alike, and one loader converts both."""
    from sekisho.drivers.options import Option
    tables = [config.SITE, config.MQTT, config.READER, config.DOOR, config.AREA, config.SCHEDULE, config.LEVEL,
              config.INPUT, config.DESK, config.USB, config.COMMANDS, config.COMMAND_KEY, *config.STRIKES.values()]
    for kinds in (registry.KINDS, registry.INPUTS, registry.PIN_PADS):
        tables += [registry.load(kind, kinds).OPTIONS for kind in kinds]
    wrong = [(key, spec) for table in tables for key, spec in table.items() if type(spec) is not Option]
    assert not wrong, wrong


def test_references_are_checked_after_every_section_by_itself(tmp_path):
    """Shape problems of every section first, then what the sections name in each other: all in one
    report, and a reference to a section with problems of its own is still checked."""
    text = GOOD.replace('node = "n1"', 'node = 1').replace('door = "entrance"', 'door = "back"') + """
[levels.x]
doors = ["entrance", "side"]
schedule = "nights"

[desks.d1]
tailgating = "ignore"
area = "nowhere"
"""
    with pytest.raises(ConfigError) as exc:
        config.load(_write(tmp_path, text))
    lines = [line.split(": ", 1)[1] for line in exc.value.problems]
    shape = ["site.node: must be a string, not an integer 1",
             "desks.d1.tailgating: must be one of 'refuse', 'flag'"]
    references = ["desks.d1.area: no area 'nowhere' (areas: none)",
                  "levels.x.doors: no door 'side' (doors: entrance)",
                  "levels.x.schedule: no schedule 'nights' (schedules: always)",
                  "readers.r1.door: no door 'back' (doors: entrance)"]
    assert sorted(lines) == sorted(shape + references)
    assert max(lines.index(line) for line in shape) < min(lines.index(line) for line in references)


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace("[doors.entrance]", "[doors.entrance]\nauth_schedules = [1]"),
     "bad.toml: doors.entrance.auth_schedules[1]: must be a table ([doors.entrance.auth_schedules[1]]), not an "
     "integer"),
    (GOOD.replace("[doors.entrance]", "[doors.entrance]\nstrike = { driver = [\"gpio\"] }"),
     "bad.toml: doors.entrance.strike.driver: unknown strike driver ['gpio'] (known: none, sim, command, gpio, mqtt)"),
    (GOOD + "pin_pad = { driver = [\"evdev\"] }\n",
     "bad.toml: readers.r1.pin_pad.driver: unknown PIN pad driver ['evdev'] (known: evdev)"),
])
def test_a_driver_or_window_of_the_wrong_shape_is_a_problem_not_a_crash(tmp_path, text, expected):
    r = check(tmp_path, text)
    assert r.returncode == 78 and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("positions, expected", [
    ('[1, "2"]', "desks.d1.position: must be [row, column], two integers, not [1, '2']"),
    ("[1, 2, 3]", "desks.d1.position: must be [row, column], two integers, not [1, 2, 3]"),
    ("[0, 2]", "desks.d1.position: row and column must be between 1 and 100, not [0, 2]"),
    ('"1,2"', "desks.d1.position: must be an array, not a string '1,2'"),
])
def test_a_desk_position_is_a_row_and_a_column(tmp_path, positions, expected):
    r = check(tmp_path, GOOD + f"\n[desks.d1]\nposition = {positions}\n")
    assert r.returncode == 78 and f"bad.toml: {expected}" in r.stderr, r.stderr


def test_two_desks_on_one_place_of_the_desk_map_are_a_config_error(tmp_path):
    text = GOOD + "\n[desks.d1]\nposition = [2, 3]\n\n[desks.d2]\nposition = [2, 3]\n\n[desks.d3]\nposition = [3, 2]\n"
    r = check(tmp_path, text)
    assert r.returncode == 78, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"{tmp_path / 'bad.toml'}: desks.d2.position: desk 'd1' already stands at [2, 3]; two desks cannot share a "
        "place on the desk map"]
    cfg = config.load(_write(tmp_path, text.replace("position = [3, 2]\n", "")
                             .replace("[desks.d2]\nposition = [2, 3]", "[desks.d2]\nposition = [1, 1]")))
    assert {n: d.position for n, d in cfg.desks.items()} == {"d1": (2, 3), "d2": (1, 1), "d3": None}


def test_usb_rules_file_is_read_once(tmp_path, monkeypatch):
    """check-config parses the rules; `sekisho usb list` decides by what it parsed and never
    opens the file again (the daemon's controller takes ``UsbConfig.rules`` alike)."""
    from sekisho.daemon import cli
    rules = tmp_path / "usb.rules"
    rules.write_text("allow id 046d:c31c\n")
    path = _write(tmp_path, GOOD + "[usb]\nrules = \"usb.rules\"\n")
    reads = []
    real = Path.read_text

    def counting(self, *args, **kwargs):
        if self == rules:
            reads.append(self)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "read_text", counting)
    assert cli.main(["usb", "list", "--json", "--config", str(path), "--data-dir", str(tmp_path / "data")]) == 0
    assert reads == [rules]
