"""The command line as a person uses it: help everywhere, one clear line for a mistake."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from conftest import SEKISHO, wait_for
from sekisho.daemon.cli import build_parser


def leaf_commands() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(parser, prefix):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            out.append(prefix)
            return
        for name, child in subs[0].choices.items():
            walk(child, prefix + [name])
    walk(build_parser(), [])
    return out


@pytest.mark.parametrize("cmd", leaf_commands(), ids=" ".join)
def test_every_command_has_help_with_common_options(cmd):
    r = subprocess.run([*SEKISHO, *cmd, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--config FILE" in r.stdout and "--data-dir DIR" in r.stdout and "--mqtt URL" in r.stdout


def test_top_level_help_lists_exit_codes():
    r = subprocess.run([*SEKISHO, "--help"], capture_output=True, text=True)
    assert "78  the config is invalid" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["card", "add", "--person", "nobody", "--uid", "04a1b2c3"], "sekisho: no person 'nobody'"),
    (["card", "add", "--person", "p1", "--uid", "zz"], "sekisho: UID 'zz' is not hex"),
    (["card", "add", "--person", "p1", "--uid", "0411"], "sekisho: UID '0411' has 2 bytes"),
    (["card", "revoke", "ffff"], "sekisho: no active card whose hash starts with 'ffff'"),
    (["person", "disable", "ghost"], "sekisho: no person 'ghost'"),
    (["events", "--since", "yesterday"], "sekisho: --since: 'yesterday' is not a date or time"),
    (["sim", "tap", "nope", "04a1b2c3"], "sekisho: no reader 'nope'"),
])
def test_mistakes_are_one_line_no_traceback(site, args, message):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli(*args, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == r.stderr.strip().splitlines()[0], r.stderr
    assert r.stderr.startswith(message), r.stderr


def test_card_enrolled_to_someone_else_is_refused(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("person", "add", "--id", "p2", "--name", "B")
    site.cli("card", "add", "--person", "p1", "--uid", "04a1b2c3")
    r = site.cli("card", "add", "--person", "p2", "--uid", "04:A1:B2:C3", check=False)
    assert r.returncode == 1 and "already enrolled to 'p1'" in r.stderr


def test_card_list_shows_hash_prefix_never_uid(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    site.cli("card", "add", "--person", "p1", "--uid", "04a1b2c3")
    out = site.cli("card", "list").stdout
    assert "04a1b2c3" not in out.lower()
    prefix = out.splitlines()[1].split()[0]
    assert len(prefix) == 12
    site.cli("card", "revoke", prefix[:6])
    assert "revoked" in site.cli("card", "list").stdout


def test_sim_without_daemon_says_so(site):
    r = site.cli("sim", "tap", "entrance-in", "04a1b2c3", check=False)
    assert r.returncode == 69
    assert "no daemon is listening" in r.stderr


def test_sim_cli_and_events_filters(site, subscribe):
    site.enroll("p1", "04a1b2c3")
    sub = subscribe()
    site.start()
    site.cli("sim", "tap", "entrance-in", "04a1b2c3")
    site.cli("sim", "pull", "entrance-in")
    site.cli("sim", "tap", "entrance-out", "04ffffff")
    r = site.cli("sim", "pull", "entrance-in", check=False)
    assert r.returncode == 1 and "no card on reader entrance-in" in r.stderr
    r = site.cli("sim", "pin", "entrance-in", "12a4", check=False)
    assert r.returncode == 1 and "must be 1 to 16 digits" in r.stderr
    wait_for(lambda: len(sub.events()) == 2, what="two events")
    site.stop()

    rows = json.loads(site.cli("events", "--json").stdout)
    assert [(r["direction"], r["result"], r["person_id"]) for r in rows] == [("in", "granted", "p1"),
                                                                            ("out", "denied", None)]
    assert [r["id"] for r in rows] == [e["id"] for e in sub.events()]
    only = json.loads(site.cli("events", "--json", "--result", "denied").stdout)
    assert [r["reason"] for r in only] == ["unknown_card"]
    assert json.loads(site.cli("events", "--json", "--person", "p1").stdout)[0]["result"] == "granted"
    assert json.loads(site.cli("events", "--json", "--since", "2999-01-01").stdout) == []
    assert len(json.loads(site.cli("events", "--json", "--until", "2999-01-01T00:00+09:00").stdout)) == 2
    assert json.loads(site.cli("events", "--json", "--door", "back").stdout) == []
    table = list(csv.DictReader(io.StringIO(site.cli("events", "--csv").stdout)))
    assert [t["result"] for t in table] == ["granted", "denied"]
    assert "granted" in site.cli("events").stdout
