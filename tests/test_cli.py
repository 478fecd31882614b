"""The command line as a person uses it: help everywhere, one clear line for a mistake."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
import zoneinfo
from pathlib import Path

import pytest

from conftest import SEKISHO, wait_for
from sekisho.daemon.cli import build_parser

ZONE = zoneinfo.ZoneInfo("Asia/Tokyo")  # the test config's [site] timezone


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


def one_line(r: subprocess.CompletedProcess) -> str:
    """The command's stderr, which must be exactly one line and no traceback."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_top_level_help_lists_every_exit_code_used():
    out = subprocess.run([*SEKISHO, "--help"], capture_output=True, text=True).stdout
    for code in ("0", "1", "64", "65", "66", "69", "74", "75", "77", "78", "130", "141"):
        assert f"\n  {code} " in out, code
    assert "78  the config is invalid" in out


@pytest.mark.parametrize("args, message", [
    (["card", "add", "--person", "p1"], "sekisho: the following arguments are required: --uid "
                                        "(see: sekisho card add --help)"),
    (["card", "nope"], "sekisho: argument ACTION: invalid choice: 'nope'"),
    (["events", "--result", "maybe"], "sekisho: argument --result: invalid choice: 'maybe'"),
    (["card", "enroll", "--person", "p1", "--reader", "entrance-in", "--timeout", "soon"],
     "sekisho: argument --timeout: invalid float value: 'soon'"),
    (["card", "revoke"], "sekisho: name the card by the start of its hash or by --uid"),
    (["card", "revoke", "1234"], "sekisho: '1234' is too short to name one card: give at least 8 hex digits"),
])
def test_usage_errors_exit_64_in_one_line(site, args, message):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli(*args, check=False)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert one_line(r).startswith(message), r.stderr


@pytest.mark.parametrize("args, message", [
    (["card", "add", "--person", "nobody", "--uid", "04a1b2c3"], "sekisho: no person 'nobody'"),
    (["card", "add", "--person", "p1", "--uid", "zz"], "sekisho: UID 'zz' is not hex"),
    (["card", "add", "--person", "p1", "--uid", "0411"], "sekisho: UID '0411' has 2 bytes"),
    (["card", "revoke", "ffffffff"], "sekisho: no active card whose hash starts with 'ffffffff'"),
    (["card", "revoke", "cardcard"], "sekisho: 'cardcard' is not the start of a card hash"),
    (["card", "list", "--person", "nobody"], "sekisho: no person 'nobody' (see: sekisho person list)"),
    (["person", "disable", "ghost"], "sekisho: no person 'ghost' (see: sekisho person list)"),
    (["person", "grant", "p1", "admins"], "sekisho: no level 'admins' in "),
    (["person", "add", "--id", "p2", "--name", "B", "--valid-from", "2026-13-01"],
     "sekisho: --valid-from: '2026-13-01' is not a date like 2026-04-01"),
    (["events", "--since", "yesterday"], "sekisho: --since: 'yesterday' is not a date or time"),
    (["events", "--person", "nobody"], "sekisho: no person 'nobody' (see: sekisho person list)"),
    (["events", "--door", "back"], "sekisho: no door 'back' in "),
    (["muster", "--area", "roof"], "sekisho: no area 'roof' in "),
    (["door", "unlock", "vault"], "sekisho: no door 'vault' in "),
    (["sim", "tap", "nope", "04a1b2c3"], "sekisho: no reader 'nope'"),
    (["sim", "tap", "entrance-in", "04zz"], "sekisho: UID '04zz' is not hex"),
])
def test_data_errors_exit_65_in_one_line(site, args, message):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli(*args, check=False)
    assert r.returncode == 65, (r.returncode, r.stderr)
    assert one_line(r).startswith(message), r.stderr


@pytest.mark.parametrize("command", [["person", "add", "--id", "p2", "--name", "B"],
                                     ["card", "add", "--person", "p1", "--uid", "04a1b2c3"]])
def test_a_validity_range_that_ends_before_it_starts_is_refused(site, command):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli(*command, "--valid-from", "2026-05-01", "--valid-until", "2026-04-30", check=False)
    assert r.returncode == 65, (r.returncode, r.stderr)
    assert one_line(r) == "sekisho: --valid-until 2026-04-30 is before --valid-from 2026-05-01; nothing changed\n"
    assert [line.split()[0] for line in site.cli("person", "list").stdout.splitlines()] == ["ID", "p1"]
    assert site.cli("card", "list").stdout == ""
    site.cli(*command, "--valid-from", "2026-05-01", "--valid-until", "2026-05-01")  # one day is a range


def test_a_pin_that_is_not_a_pin_is_65(site):
    site.cli("person", "add", "--id", "p1", "--name", "A")
    r = site.cli("person", "pin", "p1", input_text="12\n", check=False)
    assert r.returncode == 65 and one_line(r) == "sekisho: a PIN has 4 to 12 digits; nothing changed\n"


@pytest.mark.parametrize("command", [["events"], ["person", "list"], ["card", "list"], ["muster"],
                                     ["audit", "verify"]])
def test_reading_a_data_dir_that_does_not_exist_says_so_and_creates_nothing(site, command):
    assert not site.data_dir.exists()
    r = site.cli(*command, check=False)
    assert r.returncode == 66, (r.returncode, r.stderr)
    assert one_line(r).startswith(f"sekisho: no data directory {site.data_dir} (is --data-dir right?"), r.stderr
    assert not site.data_dir.exists()


def test_config_that_is_not_utf8_is_one_line_78(site):
    site.config.write_bytes(site.config.read_bytes().replace(b'id = "test"', b'id = "t\xe9st"'))
    r = site.cli("check-config", check=False)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert one_line(r) == f"{site.config}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"


def test_a_huge_config_of_unknown_keys_prints_the_first_50_and_counts_the_rest(site):
    text = site.config.read_text()
    junk = "".join(f"k{i} = {i}\n" for i in range(100_000))
    site.config.write_text(text.replace("[site]\n", "[site]\n" + junk, 1))
    r = site.cli("check-config", check=False)
    assert r.returncode == 78
    lines = r.stderr.splitlines()
    assert len(lines) == 51, len(lines)
    assert lines[0].startswith(f"{site.config}: site.k0: unknown key (known: ")
    assert lines[49].startswith(f"{site.config}: site.k49: unknown key")
    assert lines[50] == "... and 99,950 more problems (fix the ones above first)"


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    """The CLI run by an unprivileged user: as root (the suite's user) EACCES never happens."""
    user = pwd.getpwnam("nobody")
    cmd = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *SEKISHO, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/"})


@pytest.fixture
def root_only_site(site):
    """A config and data dir as an install leaves them, somewhere 'nobody' can walk to: the
    data dir 0700 root's, the config world-readable (tmp_path's parents are root's 0700)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        top = Path(top)
        top.chmod(0o755)
        config, data = top / "sekisho.toml", top / "data"
        shutil.copy(site.config, config)
        config.chmod(0o644)
        site.config, site.data_dir = config, data
        site.cli("person", "add", "--id", "p1", "--name", "A")
        assert data.stat().st_mode & 0o777 == 0o700
        yield config, data


@pytest.mark.parametrize("command", [["events"], ["person", "add", "--id", "p2", "--name", "B"], ["door", "list"]])
def test_a_data_dir_the_user_may_not_open_exits_77_with_a_hint(root_only_site, command):
    config, data = root_only_site
    r = as_nobody(*command, "--config", str(config), "--data-dir", str(data))
    assert r.returncode == 77, (r.returncode, r.stderr)
    assert one_line(r).startswith(f"sekisho: {data}/"), r.stderr
    assert r.stderr.endswith(": permission denied (run as root or as the sekisho user)\n"), r.stderr


def test_a_config_the_user_may_not_read_exits_77_with_a_hint(root_only_site):
    config, data = root_only_site
    config.chmod(0o600)
    r = as_nobody("check-config", "--config", str(config))
    assert r.returncode == 77, (r.returncode, r.stderr)
    assert one_line(r) == f"sekisho: {config}: permission denied (run as root or as the sekisho user)\n"


def test_a_password_file_the_user_may_not_read_exits_77_not_78(root_only_site):
    """The config is fine; the user lacks the privilege to read what it names."""
    config, data = root_only_site
    secret = config.parent / "mqtt.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config.write_text(config.read_text().replace("[mqtt]\n", f'[mqtt]\nusername = "door-a"\npassword_file = "{secret}"\n'))
    r = as_nobody("check-config", "--config", str(config))
    assert r.returncode == 77, (r.returncode, r.stderr)
    assert one_line(r) == f"sekisho: {secret}: permission denied (run as root or as the sekisho user)\n"
    secret.chmod(0o644)
    assert as_nobody("check-config", "--config", str(config)).returncode == 0


def test_events_into_a_pipe_closed_early_end_quietly(site):
    from sekisho.daemon.store.database import Database
    from sekisho.daemon.store.record import NewEvent, Record
    database = Database(site.data_dir)
    # Far more than a pipe holds (64 KiB), so the writer is still writing when head has gone.
    Record(database, "door-a").record([
        NewEvent(kind="door", topic="sekisho/v1/test/door/entrance/event",
                 payload={"door": "entrance", "result": "denied", "reason": "unknown_card"},
                 columns={"door": "entrance", "reader": "entrance-in", "result": "denied",
                          "reason": "unknown_card", "rule": "card.unknown"}) for _ in range(2000)])
    database.close()
    cli = " ".join(shlex.quote(a) for a in [*SEKISHO, "events", "--json", "--config", str(site.config),
                                             "--data-dir", str(site.data_dir)])
    r = subprocess.run(f"set -o pipefail; {cli} | head -1; echo \"status ${{PIPESTATUS[0]}}\"", shell=True,
                       executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert r.stderr == ""
    assert r.stdout == "[\nstatus 141\n"


def test_card_enrolled_to_someone_else_is_refused(site):
    """A well-formed request the state refuses: the command failed (1), not a typo (65)."""
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
    r = site.cli("card", "revoke", prefix[:8].upper())
    assert r.stdout == f"card {prefix} of p1 (A) revoked\n"
    assert "revoked" in site.cli("card", "list").stdout


def test_sim_without_daemon_says_so(site):
    r = site.cli("sim", "tap", "entrance-in", "04a1b2c3", check=False)
    assert r.returncode == 69
    assert one_line(r).startswith("sekisho: no daemon is listening")


def test_sim_cli_and_events_filters(site, subscribe):
    site.enroll("p1", "04a1b2c3")
    sub = subscribe()
    site.start()
    assert site.cli("sim", "tap", "entrance-in", "04a1b2c3").stdout == \
        "entrance-in: granted (card, rule level:staff)\n"
    assert site.cli("sim", "pull", "entrance-in").stdout == ""  # no decision, so nothing to print
    assert site.cli("sim", "tap", "entrance-out", "04ffffff").stdout == \
        "entrance-out: denied (unknown_card, rule card.unknown)\n"
    # A pull decides nothing and says so at once, not after the answer time. Asked on the socket
    # with the longest answer time a request may give (10 s), so that a busy machine's slow CLI
    # start is not what is measured, and a pull that waited it out still fails.
    started = time.monotonic()
    assert site.sim("entrance-out", {"op": "pull", "answer": 10}) == {"ok": True, "decided": [], "waiting": None}
    assert time.monotonic() - started < 7
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
    # Listed in the site's time, as --since reads it: the same instant as on the bus.
    listed, sent = dt.datetime.fromisoformat(rows[0]["ts"]), dt.datetime.fromisoformat(sub.events()[0]["ts"])
    assert abs((listed - sent).total_seconds()) < 1 and listed.utcoffset() == sent.astimezone(ZONE).utcoffset()
    only = json.loads(site.cli("events", "--json", "--result", "denied").stdout)
    assert [r["reason"] for r in only] == ["unknown_card"]
    assert json.loads(site.cli("events", "--json", "--person", "p1").stdout)[0]["result"] == "granted"
    assert json.loads(site.cli("events", "--json", "--since", "2999-01-01").stdout) == []
    assert len(json.loads(site.cli("events", "--json", "--until", "2999-01-01T00:00+09:00").stdout)) == 2
    assert site.cli("events", "--json", "--door", "back", check=False).returncode == 65
    table = list(csv.DictReader(io.StringIO(site.cli("events", "--csv").stdout)))
    assert [t["result"] for t in table] == ["granted", "denied"]
    assert "granted" in site.cli("events").stdout


def test_sim_pin_prints_the_decision_taken_after_the_pin_check(site):
    site.config.write_text(site.config.read_text().replace('[doors.entrance]\n',
                                                           '[doors.entrance]\nauth = "card_and_pin"\n'))
    site.enroll("p1", "04a1b2c3")
    site.cli("person", "pin", "p1", input_text="2468\n")
    site.start()
    assert site.cli("sim", "tap", "entrance-in", "04a1b2c3").stdout == \
        "entrance-in: waiting for the PIN (sekisho sim pin entrance-in DIGITS)\n"
    assert site.cli("sim", "pin", "entrance-in", "2468").stdout == \
        "entrance-in: granted (card_and_pin, rule level:staff)\n"
    assert site.cli("sim", "pin", "entrance-in", "2468").stdout == "entrance-in: denied (no_card, rule pin.no-card)\n"
    site.stop()
