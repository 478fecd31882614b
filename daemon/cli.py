"""The ``sekisho`` command line.

Every subcommand takes ``--config``, ``--data-dir`` and ``--mqtt`` and loads the config the way
the daemon does, so a command never acts on a site whose config would not start.

Failure model: a user's or an installer's mistake is one line on stderr and an exit status
from sysexits.h (the epilog of ``--help`` lists them), so a script can tell a typo from a
missing daemon or a missing privilege. Commands raise ``SekishoError`` subclasses and ``main``
alone turns them into a line and a status; argparse's own errors go the same way (64, not 2).
A reader that stops reading stdout (``| head``) ends the command quietly. Anything else keeps
its traceback: it is a bug in sekisho. Commands that only read never create a data directory
or a store: a mistyped ``--data-dir`` is reported, not papered over with an empty store.

This module holds every command's arguments and help, in one place so that they read alike,
and ``main``; what a command does lives in the module named after its group (people_cli.py,
records_cli.py, report_cli.py, sim_cli.py, control_cli.py, commands_cli.py, usb_cli.py, site_cli.py), on the
shared footing
of cli_site.py. Only the daemon's own commands (run, check-config, demo, readers, watch) and the
console's (console_server.py) are here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__, ops
from . import config as config_mod
from .cli_site import DEFAULT_CONFIG, DEFAULT_DATA_DIR, _config, _data_dir
from .errors import DataErrors, PermissionDenied, SekishoError, Unavailable, UsageError
from .report_csv import SECTIONS as REPORT_SECTIONS
from .store.enrolment import HASH_PREFIX_MIN

EX_STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141, what a shell reports for a command killed by SIGPIPE
PROBLEMS_SHOWN = 50
"""Config problems printed before the rest are counted: the first ones are what to fix first,
and a file of garbage must not flood a terminal or the journal with a line per key."""
FORMATTER = argparse.RawDescriptionHelpFormatter
"""Descriptions keep their line breaks: they are written as they should read."""

DESCRIPTION = """\
sekisho enforces the door, desk and device controls of a room where people handle personal
information, and reports every event to an MQTT broker.

Every command reads the site's config (--config) and works on the node's data directory
(--data-dir), where the store and the site key live. Both may also be set in the environment
as SEKISHO_CONFIG and SEKISHO_DATA_DIR.
"""

EPILOG = """\
exit status (sysexits.h):
  0   success
  1   the command failed (the message says why), e.g. a card already enrolled
  64  usage: a missing, unknown or conflicting argument
  65  data: a person, door, level, reader or card that does not exist, a UID that is
      not hex, a date that is not a date, a range that ends before it starts; or
      audit verify found the log altered; or the store file is damaged
  66  no store in the data directory (a read-only command never creates one)
  69  a service the command needs is not there (the daemon, the broker, pcscd)
  74  the store cannot be read or written
  75  another daemon already runs on this data directory (try again once it stops)
  77  permission denied: run as root or as the sekisho user
  78  the config is invalid (each problem printed naming file and key, the first
      50 of them)
  130 interrupted (Ctrl-C)
  141 stdout was closed early (as `| head` does); nothing else is printed

examples:
  sekisho check-config --config /etc/sekisho/sekisho.toml
  sekisho person add --id u1042 --name "Hanako Yamada"
  sekisho card add --person u1042 --uid 04a1b2c3d4e5f6
  sekisho events --since 2026-11-01 --door entrance --csv > november.csv
  sekisho sim tap entrance-in 04a1b2c3d4e5f6
  sekisho cmd send door.unlock door=entrance --key officer-1.key --node door-a
"""


IMPORT_HELP = """\
Add and update people from a roster: a CSV file with a header row, one person per row
(docs/roster.md, examples/roster.csv). The whole file is read and checked against the store
and the config first; then every change is written in one transaction, each with its audit
row (actor cli:<user>). A file with any problem changes nothing: every problem is printed as
FILE:LINE: what (the header is line 1) and the command exits 65.

columns (any order; id and name required; any other name is an error):
  id           the person's id, e.g. the staff number
  name         full name, for the muster list and reports
  valid_from   first day the person's cards open anything: 2026-04-01 or 2026/4/1
  valid_until  last day (inclusive); an empty cell is no limit
  levels       access levels, separated by ; each a [levels.<name>] of the config
  cards        card UIDs in hex, separated by ; (4 to 10 bytes: ISO 14443 UIDs, FeliCa
               IDm); only their keyed hash is stored, and no UID is ever printed
  card_hashes  cards already enrolled, by the start of their hash, as export writes them
  active       yes or no (also 1/0, true/false, 有効/無効); an empty cell is yes

what it means: the file is the truth for the people it lists, in the columns it has.
  - a person not in the store is added; one in it gets the file's name, dates and active
  - levels become exactly those listed (an empty cell takes every level away)
  - cards listed are added; a card enrolled to someone else is an error; a revoked card
    stays revoked (a warning): an import never re-enables a card
  - a card the file does not list is kept, unless --revoke-missing
  - people the file does not list are left alone, unless --deactivate-missing
  - a column the file does not have changes nothing
The file may be UTF-8 (with or without the BOM Excel writes) or Shift_JIS as Windows Excel
writes it (cp932); --encoding names it when neither fits.

examples:
  sekisho person import roster.csv --dry-run
  sekisho person import roster.csv
  sekisho person import roster.csv --revoke-missing --deactivate-missing
"""

EXPORT_HELP = """\
Write everyone in the store as a roster: id, name, valid_from, valid_until, levels,
card_hashes and active, one person per row, by id. Cards appear only as the start of their
hash (as card list shows them): UIDs are never stored, so an export cannot enroll a card
anywhere else. Imported again into this store, it changes nothing: card_hashes keep the cards
(with --revoke-missing, a hash taken out of the cell revokes that card).

The export holds names: written to a file it is mode 0600 from its first byte, in UTF-8 with
a BOM (Excel opens it as UTF-8); to standard output it is plain UTF-8.

examples:
  sekisho person export --csv people-2026-12.csv
  sekisho person export | grep ,no$
"""


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="FILE", default=default,
                        help=f"site config (default: $SEKISHO_CONFIG or {DEFAULT_CONFIG})")
    parser.add_argument("--data-dir", metavar="DIR", default=default,
                        help=f"store and site key (default: $SEKISHO_DATA_DIR or {DEFAULT_DATA_DIR})")
    parser.add_argument("--mqtt", metavar="URL", default=default,
                        help="broker as mqtt://host:port or mqtts://host:port; overrides [mqtt] url")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log more")


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line and exit 64 (EX_USAGE), like every other mistake;
    subcommands get the same class (add_subparsers uses the parent's)."""

    def error(self, message: str):  # noqa: ANN201 - never returns
        raise UsageError(f"{message} (see: {self.prog} --help)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse, except that a command whose last positional takes many values
        (``set_defaults(more_values=<dest>)``) also takes those given after an option:
        ``usb test-policy RULES --rules-folder D DEVICE`` (argparse would have DEVICE unrecognized,
        having filled both positionals before the option)."""
        parsed, extra = self.parse_known_args(args, namespace)
        more = getattr(parsed, "more_values", None)
        if extra and more and not any(a.startswith("-") for a in extra):
            getattr(parsed, more).extend(extra)
            extra = []
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _later(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command's handler from its own module, imported only when that command runs: ``sekisho
    run`` starts without loading every other command's modules (people, reports, site set-up)."""
    def handler(args: argparse.Namespace) -> int:
        func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(f".{module}", __package__), name)
        return func(args)
    return handler


def _add(subparsers: Any, name: str, func: Callable[..., int] | None, help: str,
         description: str = "") -> argparse.ArgumentParser:
    """One subcommand, with the common options and its handler; ``func`` None for a group."""
    p = subparsers.add_parser(name, help=help, description=description or help, formatter_class=FORMATTER)
    _common(p, suppress=True)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """Every command, one group at a time, in the order ``sekisho --help`` lists them."""
    parser = _Parser(prog="sekisho", description=DESCRIPTION, epilog=EPILOG, formatter_class=FORMATTER)
    parser.add_argument("--version", action="version", version=f"sekisho {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # What goes through the running daemon says what its op declares (ops.py), in the same words.
    op = {o.name: o for o in ops.declared()}
    _add_node(sub)
    _add_site(sub)
    _add_people(sub)
    _add_cards(sub)
    _add_enrolment(sub)
    _add_records(sub)
    _add_report(sub)
    _add_sim(sub)
    _add_doors_and_desks(sub, op)
    _add_alarms(sub, op)
    _add_usb(sub, op)
    _add_print(sub, op)
    _add_outbox(sub, op)
    _add_cmd(sub)
    _add_console(sub)
    _add_tools(sub)
    return parser


# ----------------------------------------------------------------------------- command groups
def _add_node(sub: Any) -> None:
    """The daemon itself: run it, check its config, or run it in the demo."""
    _add(sub, "run", cmd_run, "run the daemon in the foreground",
         "Run the daemon in the foreground until SIGTERM or SIGINT: start the readers, decide,\n"
         "record every event, and publish it. Logs go to stderr (the journal under systemd).")
    _add(sub, "check-config", cmd_check_config, "check the config exactly as start-up does",
         "Check the config exactly as start-up does and print every problem, one per line,\n"
         "naming the file and the key; a driver whose library is not installed is one, naming\n"
         "the extra that installs it. Exit 0 when it would start, 78 when it would not.")
    _add(sub, "demo", cmd_demo, "run a private broker, the daemon and a bus monitor, for a first look",
         "Start a private mosquitto on the port in the config's [mqtt] url, enroll two demo\n"
         "people, run the daemon and print every message on the bus. `make demo` runs this on\n"
         "examples/demo.toml; tap cards from a second terminal with `sekisho sim tap`.")


SITE_HELP = """\
Set up a site of many nodes (docs/site.md): make the site once on the officer's machine,
then one bundle per node, one file that the installer copies to the node and installs.

  sekisho site init ~/tokyo-hq --site tokyo-hq --broker mqtts://broker.example.internal:8883 \\
      --timezone Asia/Tokyo --ca ca.crt
  sekisho site join ~/tokyo-hq door-a --roles door
  scp ~/tokyo-hq/door-a.sekisho-bundle door-a:          # then, on door-a:
  sekisho site install door-a.sekisho-bundle
"""

INIT_HELP = """\
Make a new site in DIR (created, mode 0700; it must not exist or be empty): the site key
(every node's card hashes and pseudonyms), the recorder's Ed25519 signing key (enrolment
snapshots and deltas, replay requests), the officer's Ed25519 key (signed commands from the
console or `sekisho cmd send`), the broker's password file in mosquitto_passwd's format with
the officer's user (officer), the officer's broker password, the broker's CA (with --ca) and
site.toml, the site record that `site join` reads. A folder that holds a site already is never
touched: a site is made once, and its key cannot change once nodes hash cards with it.

DIR holds every secret of the site: keep it on the officer's machine, backed up, never on a
node. Copy its mosquitto.passwd to the broker (the command printed says how).

exit status: 0 made; 1 DIR holds a site or other files; 65 a site id, broker URL, time zone
or CA that would not do.

example:
  sekisho site init ~/tokyo-hq --site tokyo-hq --broker mqtts://broker.example.internal:8883 \\
      --timezone Asia/Tokyo --ca /etc/mosquitto/certs/ca.crt
"""

JOIN_HELP = """\
Prepare node NODE of the site in DIR: a new random broker password for it, whose line
replaces the node's earlier one in DIR/mosquitto.passwd (joining a node again gives it a new
password; its old bundle no longer logs in), and one bundle file, DIR/NODE.sekisho-bundle
(or --out), mode 0600, for the installer to copy to the node and `sekisho site install`.

The bundle holds the node's config (site id, node name, roles, the broker's URL, user and
password file, the time zone, the recorder's and the officer's public keys as
[commands.keys.recorder] with ops enrolment.* and outbox.replay, and [commands.keys.officer]
with door.*, desk.*, alarm.*, usb.*; on a recorder [recorder] signing_key; for door, desk
and usb a commented skeleton of the sections the installer fills in), the broker password,
the site key, the broker's CA if the site has one, and on a recorder the recorder's private
key. It is a secret: copy it to that node only, and delete it once installed.

After each join, copy DIR/mosquitto.passwd to the broker and reload it; the node's ACL block
(its doors, desks and areas) is added by hand, as docs/mqtt.md says.

exit status: 0 joined; 65 a node name, or roles, that would not do; 66 DIR is not a site.

examples:
  sekisho site join ~/tokyo-hq door-a --roles door
  sekisho site join ~/tokyo-hq desk-017 --roles desk,usb
  sekisho site join ~/tokyo-hq recorder-1 --roles recorder
"""

INSTALL_HELP = f"""\
Install a bundle that `sekisho site join` made, on its node: the config as
ETC/sekisho.toml (0640), the broker password as ETC/mqtt.password (0600), the broker's CA as
ETC/ca.crt, on a recorder the recorder's key as ETC/recorder.key (0600), and the site key as
site.key in the data dir (0600; the folder is made 0700). The config's paths follow --etc.

Everything is checked before the first file is written: a bundle that is cut short, damaged
(its sha256), not a bundle, or of another version is refused with one line, and nothing is
written. A file that exists and differs from the bundle's is not replaced unless --force; a
site key that differs is never replaced (the node's store hashes cards with it). Files the
same as the bundle's are left as they are, so installing twice is harmless. After a re-join
(a new broker password), --keep-config keeps the config the installer filled in, if it is
this node's, and puts the new password in place.

Then: fill in the commented sections of the node's roles (its doors, desks, USB rules),
`sekisho check-config`, `systemctl enable --now sekisho`, and delete the bundle.

exit status: 0 installed; 1 a file exists and differs (or another site key, or a config kept
that is another node's); 65 not a bundle this sekisho installs; 77 ETC or the data dir may
not be written (run as root).

examples:
  sekisho site install door-a.sekisho-bundle
  sekisho site install desk-017.sekisho-bundle --etc /etc/sekisho --data-dir {DEFAULT_DATA_DIR}
  sekisho site install desk-017.sekisho-bundle --keep-config     # after a re-join
"""


def _add_site(sub: Any) -> None:
    site = _add(sub, "site", None, "set up a site: make it once, then a bundle per node, installed on the node",
                SITE_HELP).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _add(site, "init", _later("site_cli", "cmd_site_init"),
             "make a new site: site key, signing keys, broker passwords", INIT_HELP)
    p.add_argument("dir", metavar="DIR", help="the site's folder, made here (mode 0700)")
    p.add_argument("--site", required=True, metavar="ID", help="the site's id, [site] id of every node: lower-case "
                   "letters, digits and -")
    p.add_argument("--broker", required=True, metavar="URL",
                   help="the broker as every node reaches it: mqtts://host:8883 (or mqtt://host:port)")
    p.add_argument("--timezone", default="UTC", metavar="ZONE", help="the site's time zone (default UTC), e.g. "
                   "Asia/Tokyo")
    p.add_argument("--ca", metavar="FILE", help="the CA certificate (PEM) that signed the broker's certificate, "
                   "for every node's [mqtt] ca_file; omit when the nodes' system trust store has it")
    p = _add(site, "join", _later("site_cli", "cmd_site_join"),
             "prepare one node: its broker password and its bundle file", JOIN_HELP)
    p.add_argument("dir", metavar="DIR", help="the site's folder (site init made it)")
    p.add_argument("node", metavar="NODE", help="the node's name, [site] node and its broker user")
    p.add_argument("--roles", required=True, metavar="ROLES",
                   help="what the node does, comma-separated: door, desk, usb, recorder, print")
    p.add_argument("--out", metavar="FILE", help="write the bundle here (default DIR/NODE.sekisho-bundle)")
    p = _add(site, "install", _later("site_cli", "cmd_site_install"),
             "install a node's bundle: config, broker password, site key",
             INSTALL_HELP)
    p.add_argument("bundle", metavar="BUNDLE", help="the NODE.sekisho-bundle file site join made")
    p.add_argument("--etc", default=str(Path(DEFAULT_CONFIG).parent), metavar="DIR",
                   help=f"where the config and its files go (default {Path(DEFAULT_CONFIG).parent})")
    replace = p.add_mutually_exclusive_group()
    replace.add_argument("--force", action="store_true",
                         help="replace a config, password file or key that differs (never a different site key)")
    replace.add_argument("--keep-config", action="store_true",
                         help="keep the node's config (filled in already) and replace the rest: a re-join's new "
                              "password for a node already set up")


def _add_people(sub: Any) -> None:
    person = _add(sub, "person", None, "manage people").add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _add(person, "add", _later("people_cli", "cmd_person_add"), "add a person")
    p.add_argument("--id", required=True, help="the person's id, e.g. the staff number")
    p.add_argument("--name", required=True, help="full name, for the muster list and reports")
    p.add_argument("--valid-from", metavar="DATE", help="first day the person's cards open anything (YYYY-MM-DD)")
    p.add_argument("--valid-until", metavar="DATE", help="last day the person's cards open anything (YYYY-MM-DD)")
    _add(person, "list", _later("people_cli", "cmd_person_list"), "list people")
    p = _add(person, "grant", _later("people_cli", "cmd_person_grant"), "give a person an access level from the config")
    p.add_argument("id", help="the person's id")
    p.add_argument("level", help="a [levels.<name>] of the config")
    p = _add(person, "ungrant", _later("people_cli", "cmd_person_ungrant"), "take an access level away from a person")
    p.add_argument("id", help="the person's id")
    p.add_argument("level", help="the level's name")
    p = _add(person, "pin", _later("people_cli", "cmd_person_pin"),
             "set a person's PIN (read from the terminal, or one line of stdin)",
             "Set a person's PIN: 4 to 12 digits, typed twice at a terminal, or one line on\n"
             "standard input. Only a salted scrypt hash is stored. --clear removes it.")
    p.add_argument("id", help="the person's id")
    p.add_argument("--clear", action="store_true", help="remove the PIN instead")
    p = _add(person, "disable", _later("people_cli", "cmd_person_disable"),
             "disable a person: their cards stop opening anything")
    p.add_argument("id", help="the person's id")
    p = _add(person, "enable", _later("people_cli", "cmd_person_enable"), "enable a disabled person again")
    p.add_argument("id", help="the person's id")
    p = _add(person, "import", _later("people_cli", "cmd_person_import"),
             "add and update people, levels and cards from a roster (CSV)",
             IMPORT_HELP)
    p.add_argument("file", metavar="FILE", help="the roster, a CSV file with a header row (- for standard input)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would change and how the file was read; write nothing")
    p.add_argument("--revoke-missing", action="store_true",
                   help="also revoke each listed person's cards that the file does not list (by UID in cards "
                        "or by hash in card_hashes)")
    p.add_argument("--deactivate-missing", action="store_true",
                   help="also disable everyone in the store whom the file does not list")
    p.add_argument("--encoding", metavar="NAME",
                   help="read the file in this encoding (utf-8, cp932, shift_jis, ...) instead of finding out")
    p = _add(person, "export", _later("people_cli", "cmd_person_export"),
             "write people, levels, validity and card hashes as a roster (CSV)",
             EXPORT_HELP)
    p.add_argument("--csv", metavar="FILE", default="-",
                   help="write to FILE (mode 0600, replaced whole), or - for standard output (the default)")
    p.add_argument("--encoding", metavar="NAME",
                   help="utf-8, cp932, ... (default: UTF-8 with a BOM to a file, so Excel reads it right; "
                        "UTF-8 to standard output)")


def _add_cards(sub: Any) -> None:
    card = _add(sub, "card", None, "manage cards").add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _add(card, "add", _later("people_cli", "cmd_card_add"), "enroll a card by its UID",
             "Enroll a card by its UID. Only a keyed hash of the UID is stored.")
    p.add_argument("--person", required=True, help="the holder's person id")
    p.add_argument("--uid", required=True, help="the card's UID in hex, e.g. 04a1b2c3d4e5f6")
    p.add_argument("--valid-from", metavar="DATE", help="first day the card opens anything (YYYY-MM-DD)")
    p.add_argument("--valid-until", metavar="DATE", help="last day the card opens anything (YYYY-MM-DD)")
    p = _add(card, "enroll", _later("people_cli", "cmd_card_enroll"), "enroll a card by tapping it on a reader",
             "Wait for one card at a reader and enroll it to a person; the tap opens nothing.\n"
             "Goes through the running daemon if there is one; otherwise opens the reader itself\n"
             "(stop the daemon first if it holds the reader).")
    p.add_argument("--person", required=True, help="the holder's person id")
    p.add_argument("--reader", required=True, help="the reader's name in the config")
    p.add_argument("--timeout", type=float, default=60, metavar="S", help="seconds to wait for the card (default 60)")
    p = _add(card, "revoke", _later("people_cli", "cmd_card_revoke"), "revoke a card",
             f"Revoke a card, named by the start of its hash as card list shows it (at least\n"
             f"{HASH_PREFIX_MIN} hex digits, so that a slip cannot revoke someone else's card) or by --uid.\n"
             "Prints the card revoked and its holder.")
    p.add_argument("hash", nargs="?", help=f"the start of the card's hash ({HASH_PREFIX_MIN}+ hex digits)")
    p.add_argument("--uid", help="the card's UID in hex, instead of its hash")
    p = _add(card, "list", _later("people_cli", "cmd_card_list"), "list cards (hash prefixes, never UIDs)")
    p.add_argument("--person", help="only this person's cards")


def _add_records(sub: Any) -> None:
    p = _add(sub, "muster", _later("records_cli", "cmd_muster"),
             "who is inside now, by area, with names (for the fire drill)",
             "List everyone recorded inside an area now, with names from the store: the roll call\n"
             "for an evacuation. Entry and exit both need the card, so the list is what the\n"
             "readers saw. At a recorder node: every node's doors, from the recorder's store\n"
             "(--local: this node's own doors).")
    p.add_argument("--area", help="only this area")
    p.add_argument("--csv", action="store_true", help="CSV with a header row, for a printout")
    p.add_argument("--local", action="store_true", help="at a recorder node: only this node's own store (by "
                                                        "default the whole site's, from the recorder's)")
    p = _add(sub, "events", _later("records_cli", "cmd_events"), "list recorded events",
             "List recorded events, oldest first: a node's own in the order it recorded them (by seq,\n"
             "which a wall clock set back does not change). Times without a zone are in the site's\n"
             "time zone. At a recorder node: every node's events, from the recorder's store, by\n"
             "time, with the node and the person's name (--local: this node's own).")
    p.add_argument("--since", metavar="TIME", help="from this time on (2026-11-01 or 2026-11-01T09:00)")
    p.add_argument("--until", metavar="TIME", help="before this time")
    p.add_argument("--door", help="only this door")
    p.add_argument("--person", help="only this person's id")
    p.add_argument("--result", choices=["granted", "denied"], help="only this result")
    p.add_argument("--node", help="at a recorder node: only this node's events")
    p.add_argument("--local", action="store_true", help="at a recorder node: only this node's own store (by "
                                                        "default the whole site's, from the recorder's)")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="a JSON array on stdout")
    fmt_group.add_argument("--csv", action="store_true", help="CSV with a header row on stdout")
    _add(sub, "purge", _later("records_cli", "cmd_purge"),
         "delete events and audit rows older than the site's retention_days",
         "Delete events and audit rows older than [site] retention_days now (the daemon also\n"
         "does it daily). The audit chain stays verifiable from an anchor; the purge is audited.")
    audit = _add(sub, "audit", None, "check the audit log").add_subparsers(dest="action", metavar="ACTION",
                                                                           required=True)
    _add(audit, "verify", _later("records_cli", "cmd_audit_verify"),
         "walk the hash chain; name the first altered or missing row",
         "Walk the audit log's hash chain from its first row. Exit 0 when every row is intact;\n"
         "otherwise print the first row that was altered or removed and exit 65.")


REPORT_HELP = """\
The report for the data-protection audit, for one day or one month of the site's time
zone ([site] timezone: a day is 00:00 to 24:00 there): from this node's store, or, at a
recorder node ([site] roles names recorder), for the whole site from the recorder's store
(--local: this node's own):

  - who entered and left each area, by day, with names, person ids, local times and doors
  - per door: entries, exits and denials, counted by reason
  - per desk: sessions (whose card was in the slot, from when to when), lock failures,
    refused cards, tailgating and other problems
  - USB devices blocked, and exceptions with who approved them
  - alarms: raised, cleared, acknowledged by whom and when, with the note
  - changes to people, cards, levels and PINs from the audit log (who, what, when), and
    door modes, unlocks and purges; a card only as the start of its keyed hash
  - the audit chain's verification (as `sekisho audit verify`): OK, or the first row that
    does not hold; and what the store does not record, said rather than guessed

--area limits presence, doors and desks to that area (doors whose area_in or area_out it
is, desks in it); USB, alarms and changes stay the node's (the site's at a recorder).

formats:
  html  one self-contained page (no script, nothing fetched), Japanese or English
        (--lang; default [site] language, else from LANG), printable on A4 with a page
        per section, two charts
  csv   one table: the first column, section, says which part a row belongs to (report,
        presence, door, desk_session, desk_event, usb, alarm, change); --section keeps
        one of them (and the report rows). docs/report.md lists the columns.
The format follows -o's name (.html, .csv) unless --format says it; to standard output
--format is required. A file is written mode 0600 from its first byte (it holds names),
CSV in UTF-8 with a BOM so that Excel reads it right.

the seal: the report ends with the SHA-256 of its own content: a CSV's last line is
digest,sha256,<hex> over every byte before that line (UTF-8, without the BOM); a page's
<footer id="seal"> states it over every byte before that tag. The digest is also printed
on stderr. `sekisho report --verify FILE` recomputes it: exit 0 when it matches, 65 when
the file was changed.

exit status: 0 the report was written (also when the audit chain is broken: the report
and stderr say so, and a damaged month's report can still be handed over); 64 a missing
or conflicting argument; 65 a month, day or area that is none, or --verify found the
file changed; 66 no store in --data-dir (nothing is created) or no such FILE.

examples:
  sekisho report --month 2026-11 -o report-2026-11.html
  sekisho report --month 2026-11 --lang en -o report-2026-11-en.html
  sekisho report --day 2026-11-30 --area operator-room -o 2026-11-30.csv
  sekisho report --month 2026-11 --format csv --section alarm | less
  sekisho report --verify report-2026-11.html
"""


def _add_report(sub: Any) -> None:
    p = _add(sub, "report", _later("report_cli", "cmd_report"),
             "the data-protection audit report of a day or a month (HTML or CSV)",
             REPORT_HELP)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--month", metavar="YYYY-MM", help="a month of the site's time zone, e.g. 2026-11")
    when.add_argument("--day", metavar="YYYY-MM-DD", help="a day of the site's time zone, e.g. 2026-11-30")
    when.add_argument("--verify", metavar="FILE", help="recompute the seal of a report written before; nothing "
                                                       "else is read")
    p.add_argument("--area", help="only this area's presence, doors and desks")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (mode 0600, replaced whole); - or none: "
                                                          "standard output")
    p.add_argument("--format", choices=["html", "csv"], help="default: from -o's name (.html, .csv)")
    p.add_argument("--lang", choices=["ja", "en"], help="the page's language (default: [site] language, else ja "
                                                        "when LANG is ja_*, else en)")
    p.add_argument("--section", choices=REPORT_SECTIONS, help="CSV only: just this section (and the report rows)")
    p.add_argument("--local", action="store_true", help="at a recorder node: only this node's own store (by "
                                                        "default the whole site's, from the recorder's)")


def _add_sim(sub: Any) -> None:
    sim = _add(sub, "sim", None, "drive a simulated reader (driver = \"sim\") of the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = _add(sim, "tap", _later("sim_cli", "cmd_sim_tap"), "present a card; it stays until pull or the next tap")
    p.add_argument("reader", help="the reader's name in the config")
    p.add_argument("uid", help="the card's UID in hex")
    p = _add(sim, "pull", _later("sim_cli", "cmd_sim_pull"), "take the card away")
    p.add_argument("reader", help="the reader's name in the config")
    p = _add(sim, "pin", _later("sim_cli", "cmd_sim_pin"), "type a PIN on the reader's pad")
    p.add_argument("reader", help="the reader's name in the config")
    p.add_argument("digits", help="the PIN")
    p = _add(sim, "input", _later("sim_cli", "cmd_sim_input"),
             "drive a simulated input: a door contact, exit button or fire alarm",
             "Drive a simulated input ([inputs.<name>] with driver = \"sim\"): open/on set it active\n"
             "(door open, fire alarm on), closed/off set it inactive, press is a momentary press.")
    p.add_argument("input", help="the input's name in the config")
    p.add_argument("state", choices=["open", "closed", "on", "off", "press"])


def _add_doors_and_desks(sub: Any, op: dict[str, ops.Op]) -> None:
    door = _add(sub, "door", None, "see and drive doors through the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    _add(door, "list", _later("control_cli", "cmd_door_list"), op["door.list"].summary)
    p = _add(door, "unlock", _later("control_cli", "cmd_door_unlock"), op["door.unlock"].summary)
    door_arg, seconds = op["door.unlock"].args
    p.add_argument("door", help=door_arg.help)
    p.add_argument("--seconds", type=float, help=seconds.help)
    p = _add(door, "mode", _later("control_cli", "cmd_door_mode"), op["door.mode"].summary,
             "Set a door's mode: normal; lockdown (only override levels open); free (released);\n"
             "emergency (fire exits released). Setting normal is also how a person resets an\n"
             "emergency release after a fire alarm. The mode survives a restart.")
    door_arg, mode = op["door.mode"].args
    p.add_argument("door", help=door_arg.help)
    p.add_argument("mode", choices=mode.choices)
    desk = _add(sub, "desk", None, "see desks through the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    _add(desk, "list", _later("control_cli", "cmd_desk_list"), op["desk.list"].summary)


def _add_alarms(sub: Any, op: dict[str, ops.Op]) -> None:
    p = _add(sub, "alarms", _later("records_cli", "cmd_alarms"),
             "list alarms with local times (--open: those still waiting for a person)",
             "List alarms from this node's record, oldest raised first, with local times in the site's\n"
             "time zone. Each line is an alarm id's latest life (raised, cleared, acknowledged by whom,\n"
             "closed); every earlier life and every acknowledgement is in the audit log. An alarm stays\n"
             "open until a person acknowledges it, even after its condition has cleared.\n"
             "At a recorder node: every node's alarms, from the steps the recorder stored\n"
             "(--local: this node's own).")
    p.add_argument("--open", action="store_true", help="only alarms not closed yet")
    p.add_argument("--since", metavar="TIME", help="only alarms raised from this time on (2026-11-01 or "
                                                   "2026-11-01T09:00)")
    p.add_argument("--local", action="store_true", help="at a recorder node: only this node's own store (by "
                                                        "default the whole site's, from the recorder's)")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="a JSON array on stdout")
    fmt_group.add_argument("--csv", action="store_true", help="CSV with a header row on stdout")
    alarm = _add(sub, "alarm", None, "acknowledge an alarm through the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = _add(alarm, "ack", _later("control_cli", "cmd_alarm_ack"), op["alarm.ack"].summary,
             "Acknowledge an open alarm as the user running this command: recorded in the audit log\n"
             "with the note, published on alarm/<id>. It closes once its condition has cleared (the\n"
             "door closed, the lockout ended). sekisho alarms --open lists the ids.")
    id_arg, note, _ = op["alarm.ack"].args  # raised: for a console that shows one occurrence
    p.add_argument("id", help=id_arg.help)
    p.add_argument("--note", help=note.help)


def _add_usb(sub: Any, op: dict[str, ops.Op]) -> None:
    usb = _add(sub, "usb", None, "USB device control: list, test a policy, generate one, allow a device") \
        .add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _add(usb, "list", _later("control_cli", "cmd_usb_list"),
             "devices present, the rules' decision and line, each as a rule",
             "Every USB device present: whether the kernel has it authorized, how [usb] rules decide it\n"
             "and by which line, and the device written as a rule to paste into the rules file. With\n"
             "a daemon running, also held devices and the timed exceptions in force. On a node with no\n"
             "[usb] section (nothing controls USB there), each device as the implicit target, block,\n"
             "would decide it, as usbguard list-devices does with no policy.")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p = _add(usb, "test-policy", _later("control_cli", "cmd_usb_test_policy"),
             "decide devices by a rules file, touching nothing",
             "Decide devices by RULES without writing anything: DEVICE is a sysfs path\n"
             "(/sys/bus/usb/devices/1-2) or a umockdev recording (*.umockdev); none means the\n"
             "devices present. RULES is a rules file, such as USBGuard's /etc/usbguard/rules.conf,\n"
             "or a rules folder; --rules-folder adds a folder read after the file, as USBGuard\n"
             "reads RuleFile, then RuleFolder. Each device: the decision, and the file and line of\n"
             "the rule that decided. As USBGuard's ImplicitPolicyTarget, --implicit-target stands\n"
             "in for [usb] implicit_target.")
    p.add_argument("rules", help="a rules file or a rules folder (docs/sekisho-rules.5.md)")
    p.add_argument("--rules-folder", metavar="DIR", default=None,
                   help="a rules folder read after RULES, as [usb] rules_folder (USBGuard's RuleFolder)")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="sysfs paths or .umockdev files")
    p.set_defaults(more_values="devices")
    p.add_argument("--implicit-target", choices=["allow", "block", "reject"], default=None,
                   help="what a device no rule matches gets (default: the config's, else block)")
    p.add_argument("--json", action="store_true",
                   help="a JSON list, in the order given: device, decision, rule, ..., device_rule (as\n"
                        "usbguard generate-policy writes the device)")
    p = _add(usb, "generate", _later("control_cli", "cmd_usb_generate"), "a starting policy from the devices present",
             "Print a starting rules file that allows exactly the devices present now, one rule per\n"
             "device, as `usbguard generate-policy` does. Review it before use.")
    p.add_argument("--no-hash", action="store_true", help="leave out hash and parent-hash (generate-policy -X)")
    p.add_argument("--hash-only", action="store_true",
                   help="only hash, parent-hash and, where --ports says, via-port (generate-policy -H)")
    p.add_argument("--ports", choices=["noserial", "all", "none"], default="noserial",
                   help="when to add via-port: noserial, only for devices without a serial number (the default),\n"
                        "all (generate-policy -p) or none (-P)")
    p.add_argument("--catch-all", choices=["allow", "block", "reject"],
                   help="end with this target's bare rule (generate-policy -t)")
    p = _add(usb, "allow", _later("control_cli", "cmd_usb_allow"), op["usb.allow"].summary,
             "Allow one device for N minutes through the running daemon, recorded and published:\n"
             "MATCH is vid:pid:serial (046d:c31c:ABC123, the serial may be empty: 046d:c31c:) or a\n"
             "port (1-2.3). The device must be plugged in: the exception is bound to its descriptors'\n"
             "hash, so a device that only claims the same serial, or another device in that port,\n"
             "is not let in. At expiry the device is decided by the rules again.")
    match, minutes, interfaces = op["usb.allow"].args
    p.add_argument("match", help=match.help)
    p.add_argument("--minutes", type=float, required=True, help=minutes.help)
    p.add_argument("--interfaces", choices=["rules", "all"], default=interfaces.default, help=interfaces.help)


REPLAY_HELP = """\
Publish again, through the running daemon, this node's events FROM to TO (their seq, both
included), byte for byte as they were first published: the same id, seq, ts and payload, on
the same topic. They go through the outbox, as every event does: the broker acknowledges each
one, and one not acknowledged yet goes out again after a reconnect or a restart. A replayed
event is no new event: it takes no seq and gets no audit row of its own; the replay is one
audit row (outbox.replay, with the range and how many were queued).

This is what the site recorder asks a node for, by the signed command outbox.replay, when it
finds that the node's seq skipped (docs/mqtt.md); this command is the same op on the node's
own control socket, for an installer who knows a subscriber missed something.

What the node no longer holds is said, not refused:
  purged        seqs deleted by the retention purge: events are kept [site] retention_days
                (365 by default), so a replay reaches back that far and no further
  beyond        seqs after the node's last seq: never recorded
  unreplayable  seqs recorded before the store kept each event's topic (schema 7), whose
                topic cannot be told from the row (a USB event on a node without [usb])
A range that ends before it starts, or of more than 100,000 seqs, is refused (exit 1) and
nothing is queued. Asking twice publishes twice; subscribers drop a repeat by id.

exit status: 0 the replay was queued (also when some seqs are no longer held); 1 a bad
range, or the store could not be written; 69 no daemon runs with this --data-dir.

examples:
  sekisho outbox replay 1041 1057
  sekisho outbox replay 1 500 --json
"""


def _add_print(sub: Any, op: dict[str, ops.Op]) -> None:
    printing = _add(sub, "print", None, "print jobs waiting for release, through the running daemon "
                    "(docs/printing.md)").add_subparsers(dest="action", metavar="ACTION", required=True)
    _add(printing, "list", _later("control_cli", "cmd_print_list"), op["print.list"].summary)
    for name, func in (("release", _later("control_cli", "cmd_print_release")),
                       ("cancel", _later("control_cli", "cmd_print_cancel"))):
        p = _add(printing, name, func, op[f"print.{name}"].summary)
        p.add_argument("job", type=int, help=op[f"print.{name}"].args[0].help)


def _add_outbox(sub: Any, op: dict[str, ops.Op]) -> None:
    outbox = _add(sub, "outbox", None, "the node's outbox: publish recorded events again").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = _add(outbox, "replay", _later("control_cli", "cmd_outbox_replay"), op["outbox.replay"].summary, REPLAY_HELP)
    first, last = op["outbox.replay"].args
    p.add_argument("first", metavar="FROM", type=int, help=first.help)
    p.add_argument("last", metavar="TO", type=int, help=last.help)
    p.add_argument("--json", action="store_true", help="the daemon's answer as JSON: queued, last_seq, and the "
                                                       "spans purged, beyond and unreplayable as [first, last]")


def _add_enrolment(sub: Any) -> None:
    en = _add(sub, "enrolment", None, "make and apply signed enrolment snapshots (people, cards, levels, PINs)",
              "Enrolment once, at the recorder, signed out to every node (docs/enrolment.md). A\n"
              "snapshot holds each person's id, active flag, validity, PIN hash and levels and each\n"
              "card's keyed hash, holder and validity: never a name, never a card UID, nothing\n"
              "node-local (events, audit, alarms, door modes stay as they are). It is signed with\n"
              "an Ed25519 key that each node lists in [commands.keys] with \"enrolment.snapshot\"\n"
              "among its ops, and a node takes only a higher version than the one it has."
              ).add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _add(en, "snapshot", _later("enrolment_cli", "cmd_enrolment_snapshot"),
             "write a signed snapshot of this store's enrolment to DIR",
             "Read this store's people, levels, PIN hashes and cards in one go, sign them for\n"
             "[site] id of the config with KEY (as `sekisho cmd keygen` makes it) and write them to\n"
             "DIR, a new or empty directory: manifest.json (signed) and chunk-NNNN.bin (zlib, at\n"
             "most --chunk-bytes each). Names are left out.\n\n"
             "example:\n  sekisho enrolment snapshot --out /tmp/snap-42 --key recorder.key --version 42")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the manifest and the chunks")
    p.add_argument("--key", required=True, metavar="FILE", help="the private key to sign with")
    p.add_argument("--key-name", metavar="NAME", help="its name in [commands.keys] (default: FILE's stem)")
    p.add_argument("--version", required=True, type=int, metavar="N",
                   help="the snapshot's version: above every version the nodes have (e.g. the last one + 1)")
    p.add_argument("--chunk-bytes", type=int, default=128 * 1024, metavar="N",
                   help="a chunk's data at most (default 131072)")
    _add(en, "apply", _later("enrolment_cli", "cmd_enrolment_apply"),
         "check a snapshot in DIR and make it this node's enrolment",
         "Check the snapshot in DIR (manifest.json and its chunk-*.bin) and, only if every check\n"
         "passes, replace this node's people, levels, PIN hashes and cards with it in one\n"
         "transaction, with one audit row (actor snapshot:<key>). Refused, and nothing changed,\n"
         "when: the key is not in [commands.keys] (unknown key) or its ops do not name\n"
         "enrolment.snapshot (not permitted); the signature does not verify (bad signature);\n"
         "it is for another site (other site); its version is not above this node's (older\n"
         "version); a chunk is missing, duplicated, of another snapshot or altered (chunk\n"
         "missing, chunk duplicated, chunk mismatch, hash mismatch). Exit 0 when applied, 65\n"
         "when refused.").add_argument("dir", metavar="DIR", help="a directory `sekisho enrolment snapshot` wrote")
    _add(en, "status", _later("enrolment_cli", "cmd_enrolment_status"),
         "show the enrolment snapshot this node decides with",
         "Show the version, key, times and body hash of the snapshot this node applied last,\n"
         "or say that its people and cards are its own.")


def _add_cmd(sub: Any) -> None:
    cmd = _add(sub, "cmd", None, "sign and send a command to a node through the broker",
               "Signed commands (docs/mqtt.md): an officer's key signs a command, the broker carries\n"
               "it to cmd/<node>, and the node runs it only if the key is one of its\n"
               "[commands.keys] and may run the op. Make a key with keygen, put the public key\n"
               "it prints into each node's config, then send.").add_subparsers(
                  dest="action", metavar="ACTION", required=True)
    _add(cmd, "ops", _later("commands_cli", "cmd_cmd_ops"),
         "list the ops a signed command may run, with their arguments",
         "List the ops a node runs when a signed command asks (each node only those of its\n"
         "parts: desk.list with desks, usb.* with [usb]), with their arguments; [NAME] is optional.\n"
         "A key runs only the ops its [commands.keys.<name>] ops patterns name.")
    p = _add(cmd, "keygen", _later("commands_cli", "cmd_cmd_keygen"), "make a new Ed25519 key for signing commands",
             "Write a new Ed25519 private key to FILE (PEM, PKCS #8, mode 0600; an existing file\n"
             "is never overwritten) and print the [commands.keys.<name>] section that lets it in.\n"
             "The key's name is FILE's name without its extension unless --name says otherwise.")
    p.add_argument("file", help="where to write the private key")
    p.add_argument("--name", help="the key's name in the config (default: FILE's stem)")
    p = _add(cmd, "public-key", _later("commands_cli", "cmd_cmd_public_key"),
             "print the public key of a private key file",
             "Print the public key of FILE as public_key takes it. FILE may also be a key made by\n"
             "`openssl genpkey -algorithm ed25519` or `ssh-keygen -t ed25519` (unencrypted).")
    p.add_argument("file", help="a private key file")
    sign_help = ("OP is one of the ops below (also: sekisho cmd ops); ARG is NAME=VALUE, where\n"
                 "VALUE is read as JSON when it parses (minutes=10 is a number) and as text\n"
                 "otherwise (door=entrance). The command is signed for [site] id of the config: a\n"
                 "node of another site refuses it.\n\nops a signed command may run ([optional]):\n"
                 + ops.help_text(ops.declared()) + "\n")
    for name, func, what in (("send", _later("commands_cli", "cmd_cmd_send"),
                              "sign a command, send it, and print the node's answer"),
                             ("sign", _later("commands_cli", "cmd_cmd_sign"),
                              "print a signed command as JSON, to send by other means")):
        p = _add(cmd, name, func, what, what[0].upper() + what[1:] + ".\n" + sign_help +
                 ("\nExit 0 when the node ran it, 1 when it refused or the op failed, 69 when no\n"
                  "answer came.\n\nexample:\n  sekisho cmd send usb.allow match=0781:5567:4C5300012304 minutes=10 \\\n"
                  "      --key officer-1.key --node desk-a" if name == "send" else ""))
        p.add_argument("op", help="the op, e.g. usb.allow")
        p.add_argument("arg", nargs="*", metavar="ARG", help="NAME=VALUE, e.g. minutes=10")
        p.add_argument("--key", required=True, metavar="FILE", help="the private key to sign with")
        p.add_argument("--key-name", metavar="NAME", help="its name in [commands.keys] (default: FILE's stem)")
        p.add_argument("--node", help="the node to run it (default: [site] node of the config)")
        if name == "send":
            p.add_argument("--timeout", type=float, default=10, metavar="S",
                           help="seconds to wait for the answer (default 10)")


def _add_console(sub: Any) -> None:
    from .console_server import DEFAULT_PORT, LANGUAGES
    p = _add(sub, "console", cmd_console, "serve the officer's dashboard (console/) over HTTP or HTTPS",
             "Serve the officer's web dashboard: open alarms with acknowledgement, doors, areas, desks,\n"
             "the live event stream and the nodes (docs/console.md). The page talks to the broker over\n"
             "MQTT-over-WebSockets (--broker-ws) and signs commands in the browser with the officer's\n"
             "own key; this server holds no key. It listens on 127.0.0.1 unless told otherwise; from\n"
             "another machine serve it with --tls-cert and --tls-key, since a browser signs only on\n"
             "https:// or on localhost.\n\nexample:\n"
             "  sekisho console --broker-ws ws://127.0.0.1:9001/ --port 8443")
    p.add_argument("--listen", default="127.0.0.1", metavar="ADDR",
                   help="the address to listen on (default 127.0.0.1; 0.0.0.0 for the LAN, with TLS)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port (default {DEFAULT_PORT})")
    p.add_argument("--broker-ws", metavar="URL",
                   help="the broker's WebSocket listener as the browser reaches it, e.g. wss://broker:8884/ "
                        "(default: ws:// or wss:// on port 9001 of the host the page came from)")
    p.add_argument("--lang", choices=LANGUAGES, default="auto",
                   help="the page's language until the officer switches (default auto: Japanese when the "
                        "browser asks for it)")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) for HTTPS")
    p.add_argument("--tls-key", metavar="FILE", help="its PEM private key")
    p.add_argument("--plain-http", action="store_true",
                   help="serve another machine over plain HTTP all the same: the page cannot sign there, and a "
                        "broker password typed into it crosses the network in clear")


def _add_tools(sub: Any) -> None:
    reader = _add(sub, "reader", None, "set up a configured reader").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = _add(reader, "osdp-key", cmd_reader_osdp_key, "give an OSDP reader its secure channel key (SCBK)",
             "Key an OSDP reader ([readers.<name>] driver = \"osdp\"): a new random SCBK is set in\n"
             "the reader and stored in the data dir (osdp/<reader>.scbk, mode 0600), which the daemon\n"
             "needs before it starts the reader. A new reader must be in install mode (its maker's\n"
             "manual says how; it then speaks with the default key, SCBK-D). --rotate gives a reader\n"
             "that has sekisho's key a new one instead, with the Keyset command.\n"
             "The daemon must be stopped: it holds the line. The key is never printed.\n\n"
             "examples:\n"
             "  sekisho reader osdp-key entrance-in\n"
             "  sekisho reader osdp-key entrance-in --rotate")
    p.add_argument("reader", help="the reader's name, as in [readers.<name>]")
    p.add_argument("--rotate", action="store_true", help="replace the key sekisho holds (the Keyset command)")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="how long to wait for the reader at each step (default 15 s)")
    _add(sub, "readers", cmd_readers, "list the PC/SC readers pcscd sees, and which configured reader uses each",
         "List the readers pcscd sees now, with the configured reader whose name pattern\n"
         "matches each: the way to find the name to put in [readers.<name>] name = ... .\n"
         "FeliCa readers driven by nfcpy are not listed here: `python3 -m nfc` finds those.")
    p = _add(sub, "watch", cmd_watch, "the site live: open alarms, doors, desks, events (a screen, or lines)",
             "Follow the whole site on the broker, as the officer's console does, in a terminal\n"
             "(over SSH too). It reads every node's messages, so one watch shows every door and desk\n"
             "of the site; the config gives the broker, the site, the time zone and the names of\n"
             "this node's doors, desks and areas and of the nodes it watches ([site] watch_nodes),\n"
             "listed before they have said anything.\n\n"
             "On a terminal, a full screen redrawn on every message and when the window is resized:\n"
             "  ALARMS  the open alarms, most severe first, then the earliest raised: severity,\n"
             "          kind, door/desk/input/node, raised and cleared (site time), acknowledged\n"
             "          by whom or NOT ACKED, subject. An alarm stays until a person has\n"
             "          acknowledged it (sekisho alarm ack, or the console).\n"
             "  DOORS   each door's lock, mode, contact, alarm and last event\n"
             "  DESKS   each desk's state, holder and since when\n"
             "  AREAS   how many are inside each area\n"
             "  NODES   each node online or offline, the offline ones first\n"
             "  EVENTS  door, desk and USB events, newest at the bottom: time, door, desk or USB\n"
             "          host, what happened (granted or denied and why, the desk's step, the\n"
             "          device and what became of it), the person's pseudonym\n"
             "The alarms are drawn first whatever the window's size; what does not fit below them\n"
             "is counted. q or Ctrl-C quits and gives the terminal back as it was. Colours repeat\n"
             "what the words say, and are left out with NO_COLOR set or on a terminal without\n"
             "them; TERM=dumb (a terminal that cannot place the cursor) gets lines.\n\n"
             "Piped or redirected, or with --lines: one line per message, in the same words,\n"
             "e.g.\n"
             "  2026-11-23T16:12:03+09:00  door   entrance  in granted (card_and_pin)  3f2c9a0b5e7d1c44\n"
             "A repeat of an event (QoS 1 may deliver one twice) is shown once. --raw prints each\n"
             "message's topic and payload as they came instead. In both, a line on stderr says\n"
             "when the subscription stands (# watching ...): nothing after it is missed.\n\n"
             "It connects as the config's [mqtt] says: under the site's ACL (docs/mqtt.md) only the\n"
             "officer's broker user reads the whole site, so give it a copy of the config whose\n"
             "[mqtt] username and password_file are the officer's. A connection lost meanwhile is\n"
             "retried; the screen's title line says so.\n"
             "Exit status: 0 when quit, 69 when the broker cannot be reached, 78 when the config's\n"
             "broker settings cannot be used (TLS files, password file), 1 when the broker refuses\n"
             "the connection.\n\nexamples:\n"
             "  sekisho watch\n"
             "  sekisho watch | grep -w denied\n"
             "  sekisho watch --raw --mqtt mqtts://broker.example:8883")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--lines", action="store_true", help="one line per message, also on a terminal")
    shown.add_argument("--raw", action="store_true", help="each message's topic and payload as they came")


# ----------------------------------------------------------------------------- the node's own commands
def cmd_run(args: argparse.Namespace) -> int:
    from .app import run
    cfg = _config(args)
    return run(cfg, _data_dir(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _config(args)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{cfg.path}: OK (site {cfg.site.id}, node {cfg.site.node}, "
          f"{len(cfg.readers)} readers, {len(cfg.doors)} doors)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo
    cfg = _config(args)
    data_dir = _data_dir(args)
    cli_args = ["--config", str(cfg.path), "--data-dir", str(data_dir)]
    return demo(cfg, data_dir, cli_args + (["--mqtt", args.mqtt] if args.mqtt else []))


def cmd_console(args: argparse.Namespace) -> int:
    from .console_server import serve
    return serve(_config(args), listen=args.listen, port=args.port, broker_ws=args.broker_ws, lang=args.lang,
                 tls_cert=args.tls_cert, tls_key=args.tls_key, plain_http=args.plain_http)


def cmd_readers(args: argparse.Namespace) -> int:
    import fnmatch

    from sekisho.drivers.base import DriverError
    from sekisho.drivers.pcsc import list_readers
    cfg = _config(args)
    try:
        names = list_readers()
    except DriverError as exc:
        raise Unavailable(str(exc)) from None
    if not names:
        print("pcscd sees no readers (is one plugged in? `journalctl -u pcscd` says why not)")
    patterns = {name: r.options["name"] for name, r in cfg.readers.items() if r.driver == "pcsc"}
    for name in names:
        used = [reader for reader, pattern in patterns.items() if fnmatch.fnmatchcase(name, pattern)]
        print(f"{name}" + (f"    <- {', '.join(used)}" if used else ""))
    for reader, pattern in patterns.items():
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            print(f"sekisho: readers.{reader}: no reader matches {pattern!r}", file=sys.stderr)
    return 0


def cmd_reader_osdp_key(args: argparse.Namespace) -> int:
    from sekisho.drivers.osdp_keys import KeyFileError, load_scbk, new_scbk, store_scbk

    from .instance import hold_data_dir
    cfg = _config(args)
    reader = cfg.readers.get(args.reader)
    if reader is None or reader.driver != "osdp":
        osdp_readers = sorted(n for n, r in cfg.readers.items() if r.driver == "osdp")
        raise UsageError(f"readers.{args.reader}: no OSDP reader of that name in {cfg.path} (OSDP readers: "
                         f"{', '.join(osdp_readers) or 'none'})")
    data_dir = _data_dir(args)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = hold_data_dir(data_dir)  # the daemon holds the line while it runs
    try:
        try:
            old = load_scbk(data_dir, reader.name)
        except KeyFileError as exc:
            raise SekishoError(str(exc)) from None
        if args.rotate and old is None:
            raise UsageError(f"readers.{reader.name}: sekisho holds no key for it to rotate; key it in install "
                             f"mode first: sekisho reader osdp-key {reader.name}")
        from sekisho.drivers.osdp_line import KeyingError, key_reader, libosdp, missing_libosdp
        try:
            libosdp()
        except ImportError as exc:
            raise Unavailable(missing_libosdp(exc)) from None
        new = new_scbk()
        opts = reader.options
        try:
            key_reader(opts["line"], opts["baud"], opts["address"], reader.name, new, old if args.rotate else None,
                       store=lambda: store_scbk(data_dir, reader.name, new), timeout_s=args.timeout)
        except KeyingError as exc:
            raise Unavailable(f"readers.{reader.name}: {exc}") from None
    finally:
        os.close(lock)
    print(f"readers.{reader.name}: keyed; its secure channel key is in "
          f"{data_dir / 'osdp' / (reader.name + '.scbk')}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from .watch import choose_mode, watch
    cfg = _config(args)
    return watch(cfg, choose_mode(raw=args.raw, lines=args.lines, terminal=sys.stdout.isatty(),
                                  term=os.environ.get("TERM", "")))


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports POLLERR on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (ValueError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Runs one command and maps every failure to one line and an exit status: here and only here."""
    try:
        args = build_parser().parse_args(argv)
        for name in ("config", "data_dir", "mqtt", "verbose"):
            if not hasattr(args, name):
                setattr(args, name, None)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe is found here, not at interpreter exit
        return code
    except (config_mod.ConfigError, DataErrors) as exc:
        for line in exc.problems[:PROBLEMS_SHOWN]:
            print(line, file=sys.stderr)
        if (more := len(exc.problems) - PROBLEMS_SHOWN) > 0:
            print(f"... and {more:,} more problems (fix the ones above first)", file=sys.stderr)
        if isinstance(exc, DataErrors):
            print(f"sekisho: {exc}", file=sys.stderr)
        return exc.exit_code
    except SekishoError as exc:
        print(f"sekisho: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket, not our reader: a bug to see
        # The reader had what it wanted (`| head`). Point stdout at /dev/null so the interpreter's
        # flush at exit does not fail again, and end as a command killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_STDOUT_CLOSED
    except PermissionError as exc:
        # Not wrapped where it happened (the control socket, a key file): the same line.
        print(f"sekisho: {PermissionDenied(exc.filename or exc.strerror or 'access')}", file=sys.stderr)
        return PermissionDenied.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
