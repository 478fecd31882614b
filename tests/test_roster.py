"""Rosters: a CSV file of people read whole, planned against the store, applied in one
transaction or not at all; its encodings; export and import again; and the daemon opening for a
card that came in by roster (docs/roster.md)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SEKISHO
from sekisho.daemon.errors import SekishoError
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.roster import Plan, export_rows, plan, read, write_csv
from sekisho.daemon.store.audit import verify
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.enrolment import AddPerson, RevokeCard
from sekisho.daemon.store.people import People

KEY = SiteKey(bytes(range(32)))
LEVELS = ("staff", "night")
HEADER = "id,name,valid_from,valid_until,levels,cards,active\n"
UID_A, UID_B, UID_C = "04a1b2c3d4e5f6", "012e4cd8f2a1b3c4", "04112233"  # ISO 14443 7 bytes, FeliCa IDm, 4 bytes


def card(uid: str) -> str:
    return KEY.card_hash(bytes.fromhex(uid))


@pytest.fixture
def people(tmp_path: Path):
    database = Database(tmp_path / "data")
    yield People(database)
    database.close()


def planned(people: People, text: str | bytes, name: str = "roster.csv", encoding: str | None = None,
            **options: bool) -> Plan:
    data = text if isinstance(text, bytes) else text.encode()
    return plan(read(data, name, encoding), people.snapshot(), LEVELS, KEY.card_hash, **options)


def imported(people: People, text: str, **options: bool) -> list[str]:
    """Plan and apply; the plan's lines as the command prints them."""
    p = planned(people, text, **options)
    assert not p.problems, p.problems
    people.apply(list(p.changes), "cli:test", planned_on=people.snapshot())
    return [f"{c.source}: {c.describe()}" for c in p.changes]


def audit(people: People) -> list[tuple[str, str, dict]]:
    return [(r["actor"], r["action"], json.loads(r["detail"])) for r in people.database.db.query(
        "SELECT * FROM audit ORDER BY n")]


def dump(people: People) -> list[str]:
    return list(people.database.db.conn.iterdump())


# ----------------------------------------------------------------------------- plan and apply
def test_a_roster_adds_people_levels_and_cards_with_one_audit_row_per_change(people):
    lines = imported(people, HEADER + f"u1,山田 太郎,2026/4/1,2027-03-31,staff;night,{UID_A};{UID_B},yes\n"
                                      f"u2,髙橋 ①子,,,staff,{UID_C},\n")
    assert lines == [
        "roster.csv:2: add person u1 (山田 太郎), valid from 2026-04-01 until 2027-03-31",
        "roster.csv:2: grant level night to u1",
        "roster.csv:2: grant level staff to u1",
        f"roster.csv:2: add card {card(UID_A)[:12]} to u1",
        f"roster.csv:2: add card {card(UID_B)[:12]} to u1",
        "roster.csv:3: add person u2 (髙橋 ①子)",
        "roster.csv:3: grant level staff to u2",
        f"roster.csv:3: add card {card(UID_C)[:12]} to u2",
    ]
    holder = people.card_holder(card(UID_B))
    assert holder is not None and holder.person_id == "u1" and holder.levels == {"staff", "night"}
    assert str(holder.valid_from) == "2026-04-01" and str(holder.valid_until) == "2027-03-31"
    assert people.card_holder(card(UID_C)).person_id == "u2"
    rows = audit(people)
    assert [(a, action) for a, action, _ in rows] == [("cli:test", "person.add"), ("cli:test", "level.grant"),
                                                      ("cli:test", "level.grant"), ("cli:test", "card.add"),
                                                      ("cli:test", "card.add"), ("cli:test", "person.add"),
                                                      ("cli:test", "level.grant"), ("cli:test", "card.add")]
    assert rows[0][2] == {"person": "u1", "valid_from": "2026-04-01", "valid_until": "2027-03-31",
                          "source": "roster.csv:2"}
    assert rows[3][2] == {"person": "u1", "card": card(UID_A)[:12], "source": "roster.csv:2"}
    assert verify(people.database.db).ok
    # Only keyed hashes: no UID anywhere in the store.
    stored = "\n".join(dump(people)).lower()
    assert not any(uid in stored for uid in (UID_A, UID_B, UID_C))


def test_the_same_roster_again_changes_nothing(people):
    text = HEADER + f"u1,山田 太郎,2026-04-01,,staff,{UID_A},yes\nu2,B,,,,,no\n"
    imported(people, text)
    assert planned(people, text) == Plan()


def test_the_file_is_the_truth_for_the_people_and_columns_it_has(people):
    imported(people, HEADER + f"u1,A,2026-04-01,2026-12-31,staff;night,{UID_A},yes\nu2,B,,,staff,{UID_B},\n")
    people.set_person_active("u2", False, "cli:officer")
    # u1: a new name, no end date any more, only night, one more card; u2's row has no active
    # column, so the officer's disable stands; u3 is new and inactive.
    lines = imported(people, "id,name,valid_until,levels,cards\n"
                             f"u1,A Yamada,,night,{UID_C}\nu2,B,,staff,\n")
    assert lines == ["roster.csv:2: update person u1: name A Yamada, valid_until none",
                     "roster.csv:2: revoke level staff from u1",
                     f"roster.csv:2: add card {card(UID_C)[:12]} to u1"]
    snap = people.snapshot()
    assert snap.people["u1"].valid_from == "2026-04-01"  # no valid_from column: kept
    assert snap.people["u1"].levels == {"night"}
    assert {c.hash for c in snap.cards_of("u1") if c.active} == {card(UID_A), card(UID_C)}  # not listed: kept
    assert not snap.people["u2"].active
    assert audit(people)[-3][2] == {"person": "u1", "fields": ["name", "valid_until"], "valid_until": None,
                                    "source": "roster.csv:2"}
    # An active column is the truth: an empty cell is yes.
    assert [c.describe() for c in planned(people, "id,name,active\nu2,B,\n").changes] == ["enable person u2"]


def test_revoke_missing_and_deactivate_missing(people):
    imported(people, HEADER + f"u1,A,,,staff,{UID_A};{UID_B},\nu2,B,,,staff,{UID_C},\nu3,C,,,,,no\n")
    p = planned(people, HEADER + f"u1,A,,,staff,{UID_B},\n", revoke_missing=True, deactivate_missing=True)
    assert [f"{c.source}: {c.describe()}" for c in p.changes] == [
        f"roster.csv:2: revoke card {card(UID_A)[:12]} of u1 (not in the file)",
        "roster.csv: disable person u2 (not in the file)"]  # u3 is already disabled
    people.apply(list(p.changes), "cli:test", planned_on=people.snapshot())
    assert people.card_holder(card(UID_A)).card_active is False
    assert people.card_holder(card(UID_C)).person_active is False
    assert [a for _, a, _ in audit(people)[-2:]] == ["card.revoke", "person.disable"]
    # Without a cards column, --revoke-missing would revoke every card: refused.
    p = planned(people, "id,name\nu1,A\n", revoke_missing=True)
    assert p.problems == ("roster.csv:1: --revoke-missing needs a cards or card_hashes column: without one, every "
                          "card of every person listed would be revoked",) and p.changes == ()


def test_a_card_of_someone_else_is_a_problem_and_a_revoked_card_stays_revoked(people):
    imported(people, HEADER + f"u1,A,,,,{UID_A};{UID_B},\nu2,B,,,,,\n")
    people.revoke_card(card(UID_B), "cli:officer")
    p = planned(people, HEADER + f"u2,B,,,,{UID_C};{UID_A},\n")
    assert p.problems == (f"roster.csv:2: cards: card 2 ({card(UID_A)[:12]}) is enrolled to u1: a card belongs to "
                          "one person",) and p.changes == ()
    p = planned(people, HEADER + f"u1,A,,,,{UID_A};{UID_B},\n")
    assert p.changes == () and not p.problems
    assert len(p.warnings) == 1 and p.warnings[0].startswith(
        f"roster.csv:2: warning: card {card(UID_B)[:12]} of u1 was revoked (") and p.warnings[0].endswith(
        ") and stays revoked: an import never re-enables a card (sekisho card add does)")
    # Listed, even though revoked: --revoke-missing leaves it as it is, and revokes nothing else.
    assert planned(people, HEADER + f"u1,A,,,,{UID_A};{UID_B},\n", revoke_missing=True).changes == ()


def test_card_hashes_keep_cards_and_name_no_card_by_echoing_it(people):
    imported(people, HEADER + f"u1,A,,,,{UID_A};{UID_B},\nu2,B,,,,{UID_C},\n")
    a, b = card(UID_A)[:12], card(UID_B)[:12]
    p = planned(people, f"id,name,card_hashes\nu1,A,{a.upper()}\n", revoke_missing=True)
    assert [c.describe() for c in p.changes] == [f"revoke card {b} of u1 (not in the file)"]
    p = planned(people, f"id,name,card_hashes\nu1,A,{card(UID_C)[:12]};{UID_C};zz\n")
    assert p.problems == (
        "roster.csv:2: card_hashes: hash 3 is not the start of a card hash (8 to 64 hex digits, as sekisho card "
        "list and person export show it)",
        "roster.csv:2: card_hashes: hash 1 is the start of no card of u1 (see: sekisho card list --person u1)",
        "roster.csv:2: card_hashes: hash 2 is the start of no card of u1 (see: sekisho card list --person u1)")
    assert UID_C not in "".join(p.problems)


def test_every_problem_is_listed_by_line_and_nothing_is_planned(people):
    imported(people, HEADER + f"u9,Z,,,staff,{UID_B},\n")
    p = planned(people, HEADER
                + f"u1,Good,,,staff,{UID_A},\n"
                + "u2,,2026-13-01,,admins,zz;0411;04a1b2c3d4e5f6a1b2c3d4,maybe\n"
                + "\n"  # a blank line is skipped, and still counted
                + f"u3,Late,2026-05-01,2026/4/30,staff,{UID_B},\n"
                + f"u1,Again,,,staff,{UID_A},\n"
                + "u4,Too,many,cells,,,,,x\n"
                + '"u5","Two\nlines",,,,,\n'
                + "u6,Bad date,2026-04/01,04/01/2026,,,\n")
    assert p.changes == ()
    assert list(p.problems) == [
        "roster.csv:3: name is empty",
        "roster.csv:3: valid_from: '2026-13-01' is not a date like 2026-04-01 or 2026/04/01",
        "roster.csv:3: cards: card 1 is not a UID in hex (like 04a1b2c3d4e5f6)",
        "roster.csv:3: cards: card 2 is 2 bytes; a card UID is 4 to 10 bytes",
        "roster.csv:3: cards: card 3 is 11 bytes; a card UID is 4 to 10 bytes",
        "roster.csv:3: active: 'maybe' is neither yes nor no",
        "roster.csv:3: levels: no level 'admins' in the config (levels: staff, night)",
        "roster.csv:5: valid_until 2026-04-30 is before valid_from 2026-05-01",
        f"roster.csv:5: cards: card 1 ({card(UID_B)[:12]}) is enrolled to u9: a card belongs to one person",
        "roster.csv:6: id u1 is already on line 2",
        "roster.csv:6: cards: card 1 is also listed on line 2",
        "roster.csv:7: 9 cells, but the header has 7 columns",
        "roster.csv:10: valid_from: '2026-04/01' is not a date like 2026-04-01 or 2026/04/01",
        "roster.csv:10: valid_until: '04/01/2026' is not a date like 2026-04-01 or 2026/04/01",
    ]
    assert not any(uid in "".join(p.problems) for uid in ("0411", "04a1b2c3d4e5f6a1b2c3d4"))


def test_a_uid_pasted_into_another_column_is_not_printed(people):
    p = planned(people, "id,name,valid_from,active,levels\nu1,Ana,04a1b2c3d4e5f6,04A1B2C3,04:a1:b2:c3\n")
    assert list(p.problems) == [
        "roster.csv:2: valid_from: the value (not shown: it could be a card UID) is not a date like 2026-04-01 or "
        "2026/04/01",
        "roster.csv:2: active: the value (not shown: it could be a card UID) is neither yes nor no",
        "roster.csv:2: levels: no level the value (not shown: it could be a card UID) in the config (levels: staff, "
        "night)"]


@pytest.mark.parametrize("text, problem", [
    ("", "roster.csv:1: no header row: a roster starts with its column names (id, name, valid_from, valid_until, "
         "levels, cards, card_hashes, active)"),
    ("id,name,email\n", "roster.csv:1: unknown column 'email' (columns: id, name, valid_from, valid_until, levels, "
                        "cards, card_hashes, active)"),
    ("id,levels\n", "roster.csv:1: no 'name' column (a roster needs id and name)"),
    ("id,name,ID\n", "roster.csv:1: column 'id' appears twice"),
    ("id,,name\n", "roster.csv:1: column 2 has no name"),
    ("id,name\nu1," + "x" * 200_000 + "\n", "roster.csv:2: not CSV: field larger than field limit (131072)"),
], ids=["empty", "unknown", "no-name", "twice", "unnamed", "huge-cell"])
def test_a_header_that_is_not_a_roster_stops_at_line_1(people, text, problem):
    assert planned(people, text) == Plan(problems=(problem,))


def test_columns_in_any_order_any_case_and_trailing_empty_columns(people):
    lines = imported(people, " Levels ,NAME,Id,,\r\nstaff,A,u1,,\r\n,,,,\r\n")
    assert lines == ["roster.csv:2: add person u1 (A)", "roster.csv:2: grant level staff to u1"]


# ----------------------------------------------------------------------------- encodings
ROW = f"u1,髙橋 ①子,2026/04/01,,staff,{UID_A},有効\n"


@pytest.mark.parametrize("data, encoding, label", [
    ((HEADER + ROW).encode("utf-8-sig"), None, "UTF-8 with BOM"),
    ((HEADER + ROW).encode("utf-8"), None, "UTF-8"),
    ((HEADER + ROW).encode("cp932"), None, "Shift_JIS (cp932)"),
    ((HEADER + ROW).encode("cp932"), "Shift_JIS", "Shift_JIS (cp932)"),  # Windows' Shift_JIS, with 髙 and ①
    ((HEADER + ROW).encode("utf-8-sig"), "utf-8", "utf-8"),  # a BOM is no column name
])
def test_utf8_with_and_without_bom_and_shift_jis_are_read(people, data, encoding, label):
    roster = read(data, "roster.csv", encoding)
    assert roster.encoding == label and not roster.problems
    assert roster.rows[0].name == "髙橋 ①子" and roster.columns[0] == "id" and roster.rows[0].active is True


def test_bytes_that_are_no_text_name_their_line(people):
    data = (HEADER + "u1,A,,,,,\n").encode() + b"u2,caf\xe9\n"
    assert read(data, "r.csv").problems == ("r.csv:3: neither UTF-8 nor Shift_JIS (cp932) text (byte 0xe9); save "
                                            "it as CSV UTF-8, or name its encoding with --encoding",)
    assert read("id,name\nu1,髙\n".encode("cp932"), "r.csv", "utf-8").problems == (
        "r.csv:2: not utf-8 text (byte 0xee); save it as CSV UTF-8, or name its encoding with --encoding",)
    assert read("id,name\n".encode("utf-16"), "r.csv").problems == (
        "r.csv: UTF-16 text (Excel's \"Unicode text\"); save it as \"CSV UTF-8 (comma delimited)\"",)


# ----------------------------------------------------------------------------- apply
def test_apply_writes_all_or_nothing(people):
    imported(people, HEADER + f"u1,A,,,staff,{UID_A},\n")
    before = dump(people)
    # A change the store refuses, after one it took: the whole transaction is rolled back.
    with pytest.raises(SekishoError, match="revoke card .* of u1: the store is not as planned; nothing was imported"):
        people.apply([AddPerson("u2", "B"), RevokeCard("u1", card(UID_B))], "cli:test", planned_on=people.snapshot())
    assert dump(people) == before
    # A plan made before someone else changed the store is not applied.
    p = planned(people, HEADER + "u3,C,,,,,\n")
    snapshot = people.snapshot()
    people.grant_level("u1", "night", "cli:officer")
    with pytest.raises(SekishoError, match="changed while the roster was read .* nothing was imported: run the "
                                           "import again"):
        people.apply(list(p.changes), "cli:test", planned_on=snapshot)
    assert people.person("u3") is None


def test_an_export_reads_back_as_no_change(people):
    imported(people, HEADER + f"u1,山田 太郎,2026-04-01,2027-03-31,staff;night,{UID_A};{UID_B},\n"
                              f"u2,\"Smith, Jo\",,,,{UID_C},no\nu3,C,,,,,\n")
    people.revoke_card(card(UID_B), "cli:officer")
    rows = export_rows(people.snapshot())
    assert rows[0] == {"id": "u1", "name": "山田 太郎", "valid_from": "2026-04-01", "valid_until": "2027-03-31",
                       "levels": "night;staff", "card_hashes": card(UID_A)[:12], "active": "yes"}
    assert [r["active"] for r in rows] == ["yes", "no", "yes"]
    text = write_csv(rows)
    assert planned(people, text, revoke_missing=True, deactivate_missing=True) == Plan()


# ----------------------------------------------------------------------------- the command line
def db_dump(site) -> list[str]:
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        return list(db.iterdump())


def test_import_dry_run_bad_rows_and_audit_through_the_command(site, tmp_path):
    site.cli("person", "add", "--id", "u0", "--name", "Officer")
    roster = tmp_path / "roster.csv"
    roster.write_bytes((HEADER + f"u1,山田 太郎,2026/4/1,,staff,{UID_A},\nu2,髙橋 ①子,,,staff,{UID_C},\n")
                       .encode("cp932"))
    before = db_dump(site)
    r = site.cli("person", "import", str(roster), "--dry-run")
    assert r.stdout.splitlines() == [
        f"{roster}:2: add person u1 (山田 太郎), valid from 2026-04-01",
        f"{roster}:2: grant level staff to u1",
        f"{roster}:2: add card {site_card(site, UID_A)} to u1",
        f"{roster}:3: add person u2 (髙橋 ①子)",
        f"{roster}:3: grant level staff to u2",
        f"{roster}:3: add card {site_card(site, UID_C)} to u2",
        f"{roster}: 2 people, read as Shift_JIS (cp932); 6 changes; dry run: nothing was written"]
    assert r.stderr == "" and UID_A not in r.stdout
    assert db_dump(site) == before

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"u1,A,,,staff,{UID_A},\nu2,B,,,boss,{UID_A},\nu3,C,,,staff,,\nu4,,,,,,\n",
                   encoding="utf-8-sig")
    r = site.cli("person", "import", str(bad), check=False)
    assert r.returncode == 65, r.stderr
    assert r.stderr.splitlines() == [f"{bad}:3: cards: card 1 is also listed on line 2",
                                     f"{bad}:3: levels: no level 'boss' in the config (levels: staff)",
                                     f"{bad}:5: name is empty",
                                     f"sekisho: {bad}: 3 problems; nothing was imported"]
    assert r.stdout == "" and db_dump(site) == before

    r = site.cli("person", "import", str(roster))
    assert r.stdout.splitlines()[-1] == f"{roster}: 2 people, read as Shift_JIS (cp932); 6 changes made"
    assert site.cli("person", "import", str(roster)).stdout == \
        f"{roster}: 2 people, read as Shift_JIS (cp932); no changes\n"
    listing = site.cli("person", "list").stdout
    assert "山田 太郎" in listing and "髙橋 ①子" in listing
    verified = site.cli("audit", "verify").stdout
    assert verified.startswith("audit log intact: 7 rows"), verified  # u0's person add, then one per change
    with sqlite3.connect(site.data_dir / "sekisho.db") as db:
        rows = db.execute("SELECT actor, action, detail FROM audit WHERE n > 1 ORDER BY n").fetchall()
    assert [a for _, a, _ in rows] == ["person.add", "level.grant", "card.add"] * 2
    assert {actor for actor, _, _ in rows} == {rows[0][0]} and rows[0][0].startswith("cli:")
    assert json.loads(rows[0][2])["source"] == f"{roster}:2"


def site_card(site, uid: str) -> str:
    return SiteKey.load_or_create(site.data_dir / "site.key").card_hash(bytes.fromhex(uid))[:12]


def test_a_running_daemon_opens_for_a_card_imported_and_not_for_one_deactivated(site, tmp_path):
    site.cli("person", "add", "--id", "u0", "--name", "First")  # the store and key, before the daemon
    site.start()
    roster = tmp_path / "roster.csv"
    roster.write_text(HEADER + f"u1,山田 太郎,,,staff,{UID_A},\n", encoding="utf-8")
    site.cli("person", "import", str(roster))
    assert site.cli("sim", "tap", "entrance-in", UID_A).stdout == "entrance-in: granted (card, rule level:staff)\n"
    site.cli("sim", "pull", "entrance-in")
    roster.write_text(HEADER + f"u1,山田 太郎,,,staff,{UID_A},no\n", encoding="utf-8")
    assert site.cli("person", "import", str(roster)).stdout.splitlines()[0] == f"{roster}:2: disable person u1"
    assert site.cli("sim", "tap", "entrance-out", UID_A).stdout == \
        "entrance-out: denied (person_disabled, rule card.person-disabled)\n"
    site.stop()
    assert site.cli("audit", "verify").returncode == 0


def test_export_is_private_and_imports_back_as_no_change(site, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(HEADER + f"u1,山田 太郎,2026-04-01,2027/3/31,staff,{UID_A};{UID_B},\nu2,B,,,,,no\n")
    site.cli("person", "import", str(roster))
    out = tmp_path / "export.csv"
    out.write_text("old")
    out.chmod(0o644)
    r = site.cli("person", "export", "--csv", str(out))
    assert r.stderr == f"exported 2 people to {out} (mode 0600: it holds names)\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [(r["id"], r["name"], r["valid_from"], r["valid_until"], r["levels"], r["active"]) for r in rows] == \
        [("u1", "山田 太郎", "2026-04-01", "2027-03-31", "staff", "yes"), ("u2", "B", "", "", "", "no")]
    assert sorted(rows[0]["card_hashes"].split(";")) == sorted([site_card(site, UID_A), site_card(site, UID_B)])
    assert UID_A not in data.decode("utf-8-sig")
    assert site.cli("person", "import", str(out), "--revoke-missing", "--deactivate-missing").stdout == \
        f"{out}: 2 people, read as UTF-8 with BOM; no changes\n"
    assert site.cli("person", "export").stdout == data.decode("utf-8-sig")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".export.csv.")]  # no temporary file left
    r = site.cli("person", "export", "--encoding", "ascii", check=False)
    assert r.returncode == 65 and r.stderr == ("sekisho: --encoding ascii: line 2 has '山', which ascii cannot hold; "
                                               "nothing was written (UTF-8 holds every name)\n")


@pytest.mark.parametrize("args, code, message", [
    (["person", "import", "nothere.csv"], 66, "sekisho: nothere.csv: no such file\n"),
    (["person", "import", "{roster}", "--encoding", "klingon"], 64,
     "sekisho: --encoding: no encoding 'klingon' (e.g. utf-8, cp932)\n"),
    (["person", "import", "{roster}", "--dry-run"], 66, "sekisho: no data directory {data} (is --data-dir right? "
                                                        "`sekisho run` or `sekisho person add` creates it)\n"),
    (["person", "export"], 66, "sekisho: no data directory {data} (is --data-dir right? `sekisho run` or "
                               "`sekisho person add` creates it)\n"),
])
def test_one_line_for_a_file_or_store_that_is_not_there(site, tmp_path, args, code, message):
    roster = tmp_path / "roster.csv"
    roster.write_text(HEADER)
    r = subprocess.run([*SEKISHO, *(a.format(roster=roster) for a in args), "--config", str(site.config),
                        "--data-dir", str(site.data_dir)], capture_output=True, text=True, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (code, message.format(data=site.data_dir))
    assert not site.data_dir.exists()


def test_the_example_roster_imports_on_the_example_config(tmp_path):
    common = ["--config", str(REPO / "examples" / "sekisho.toml"), "--data-dir", str(tmp_path / "data")]
    r = subprocess.run([*SEKISHO, "person", "import", str(REPO / "examples" / "roster.csv"), *common],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].endswith("roster.csv: 4 people, read as UTF-8; 14 changes made")
    r = subprocess.run([*SEKISHO, "person", "list", *common], capture_output=True, text=True)
    assert "山田 太郎" in r.stdout and "髙橋 花子" in r.stdout
