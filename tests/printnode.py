"""A print node for the tests, through the whole daemon: the demo door (entrance into the office),
a sim reader at the printer, ``[print]`` on a real cupsd with ippeveprinter (cupsfake.py), an
officer's key for signed commands, an operator and a supervisor enrolled; and the helpers that
read what it published and recorded. test_print_release, test_print_queue and test_print_outage
share it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from conftest import wait_for
from cupsfake import HOLD, PRINTER, Cups
from sekisho.daemon.keys import SiteKey

OPERATOR, BOSS = "04a1a1a1", "04b2b2b2"

PRINT_SECTION = """
[areas.office]

[levels.supervisor]
doors = ["entrance"]

[readers.printer]
driver = "sim"

[print]
server = "{server}"
hold_queue = "{hold}"
printer = "{printer}"
reader = "printer"
area = "office"
supervisor_levels = ["supervisor"]
users = {{ tanaka = "op-tanaka" }}
expire_minutes = {expire}
unavailable_after_s = 0.5

[commands]
max_skew_s = 300

[commands.keys.officer]
public_key = "{officer}"
ops = ["print.*"]
"""




def print_node(site: Any, cups: Cups, tmp_path: Path, expire: float = 60) -> Path:
    """The demo door (entrance into office) plus the printer's reader and [print]; the officer's
    key, whose path is returned; an operator and a supervisor enrolled."""
    key = tmp_path / "officer.key"
    out = site.cli("cmd", "keygen", str(key)).stdout
    officer = out.split('public_key = "')[1].split('"')[0]
    text = site.config.read_text().replace('area_in = "operator-room"', 'area_in = "office"')
    site.config.write_text(text + PRINT_SECTION.format(server=cups.server, hold=HOLD, printer=PRINTER,
                                                       expire=expire, officer=officer))
    site.enroll("op-tanaka", OPERATOR)
    site.enroll("boss", BOSS, level="supervisor")
    return key


def pseudonym(site: Any, person: str) -> str:
    return SiteKey.load_or_create(site.data_dir / "site.key").pseudonym(person)


def print_events(sub: Any, action: str | None = None) -> list[dict[str, Any]]:
    return [m.json for m in sub.on("/print/door-a/event") if action is None or m.json["action"] == action]


def one(sub: Any, action: str, job: int | None = None) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in print_events(sub, action) if job is None or e["job"] == job), None),
                    what=f"print event {action} for job {job}")


def waiting(sub: Any) -> list[int]:
    """The jobs the last retained queue message lists."""
    last = [m.json for m in sub.on("/print/door-a/queue")]
    return [j["job"] for j in last[-1]["jobs"]] if last else []


def printed(cups: Cups) -> list[str]:
    """The documents the printer wrote out, by name: ippeveprinter names its files
    <its own job id>-<name>.dat, and its ids are not CUPS's."""
    return sorted(p.stem.split("-", 1)[1] for p in cups.printed())


def audit(site: Any, action: str) -> list[dict[str, Any]]:
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        return [{"actor": a, **json.loads(d)} for a, d in
                db.execute("SELECT actor, detail FROM audit WHERE action = ? ORDER BY n", [action])]
