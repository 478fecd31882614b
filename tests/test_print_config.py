"""``[print]`` in the config: a good section loads; each mistake is one line naming its key, and
check-config exits 78 on it."""

from __future__ import annotations

import subprocess

import pytest

from conftest import SEKISHO
from sekisho.daemon import config
from sekisho.daemon.errors import ConfigError

PRINT_NODE = """\
[site]
id = "t"
node = "n1"

[areas.office]

[levels.supervisor]
doors = ["entrance"]

[doors.entrance]
area_in = "office"

[readers.r1]
driver = "sim"
door = "entrance"
direction = "in"

[readers.printer]
driver = "sim"

[print]
hold_queue = "hold"
printer = "real"
reader = "printer"
area = "office"
supervisor_levels = ["supervisor"]
expire_minutes = 0.02
users = { alice = "p-alice" }
"""


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    return [p.removeprefix(f"{path}: ") for p in exc.value.problems]


def test_a_print_node_loads(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(PRINT_NODE)
    cfg = config.load(path)
    assert cfg.print is not None and cfg.print.hold_queue == "hold" and cfg.print.reader == "printer"
    assert cfg.print.supervisor_levels == {"supervisor"} and cfg.print.users == {"alice": "p-alice"}
    assert cfg.print.expire_minutes == 0.02 and not cfg.print.document_names
    assert "print" in cfg.site.roles and cfg.print.driver_options == {"server": "", "hold_queue": "hold",
                                                                        "printer": "real"}


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.replace('hold_queue = "hold"\n', ""), "print.hold_queue: missing (required)"),
    (lambda t: t.replace('printer = "real"\n', ""), "print.printer: missing (required)"),
    (lambda t: t.replace('hold_queue = "hold"', 'hold_queue = "real"'),
     "print.hold_queue: 'real' is also the printer: the holding queue must be another queue, or every job prints "
     "at once"),
    (lambda t: t.replace('reader = "printer"', 'reader = "nowhere"'),
     "print.reader: no reader 'nowhere' (readers: printer, r1)"),
    (lambda t: t.replace('reader = "printer"', 'reader = "r1"'),
     "print.reader: reader 'r1' serves door 'entrance'; the printer's reader serves nothing else"),
    (lambda t: t.replace('supervisor_levels = ["supervisor"]', "supervisor_levels = []"),
     "print.reader: a card there releases only for supervisor_levels, and none are named"),
    (lambda t: t.replace('supervisor_levels = ["supervisor"]', 'supervisor_levels = ["boss"]'),
     "print.supervisor_levels: no level 'boss' (levels: supervisor)"),
    (lambda t: t.replace('area = "office"', 'area = "lobby"'), "print.area: no area 'lobby' (areas: office)"),
    (lambda t: t.replace("expire_minutes = 0.02", "expire_minutes = 0"),
     "print.expire_minutes: must be between 0.01 and 10080"),
    (lambda t: t.replace('printer = "real"', 'printer = "my printer"'),
     "print.printer: 'my printer' is not a CUPS queue name"),
    (lambda t: t.replace('{ alice = "p-alice" }', "{ alice = 3 }"),
     "print.users: 'alice' must map to a person id (text), not 3"),
    (lambda t: t.replace("[print]\n", "[print]\ncolour = true\n"), "print.colour: unknown key"),
    (lambda t: t.replace('reader = "printer"', 'reader = ""'), "readers.printer: serves nothing"),
    (lambda t: t.replace('node = "n1"', 'node = "n1"\nroles = ["door"]'),
     "site.roles: does not name print, and the config has [print]"),
])
def test_each_mistake_is_one_line_naming_its_key(tmp_path, change, expected):
    found = problems(tmp_path, change(PRINT_NODE))
    assert any(p.startswith(expected) for p in found), found


def test_check_config_exits_78_on_a_bad_print_section(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(PRINT_NODE.replace('hold_queue = "hold"\n', ""))
    r = subprocess.run([*SEKISHO, "check-config", "--config", str(path)], capture_output=True, text=True)
    assert r.returncode == 78 and "print.hold_queue: missing (required)" in r.stderr, r.stderr


PRINT_ONLY = """\
[site]
id = "t"
node = "print-1"

[areas.office]

[levels.supervisor]

[readers.printer]
driver = "sim"

[print]
hold_queue = "hold"
printer = "real"
reader = "printer"
area = "office"
supervisor_levels = ["supervisor"]
"""


def test_a_print_only_node_loads_with_a_level_that_only_releases(tmp_path):
    """No door, no desk: the supervisors' level gives access to releasing print jobs alone, and
    the office is another node's, its occupancy heard from the bus."""
    path = tmp_path / "print.toml"
    path.write_text(PRINT_ONLY)
    cfg = config.load(path)
    assert cfg.site.roles == {"print"} and "supervisor" in cfg.rules.levels
    found = problems(tmp_path, PRINT_ONLY.replace('supervisor_levels = ["supervisor"]', "supervisor_levels = []"))
    assert "levels.supervisor: names no doors, no desks, and is no [print] supervisor level; a level must give " \
           "access to something" in found, found
