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
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import select
import signal
import socket
import sys
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import __version__, ops
from . import config as config_mod
from .errors import DataError, NoInput, PermissionDenied, SekishoError, Unavailable, UsageError
from .timestamps import rfc3339

DEFAULT_CONFIG = "/etc/sekisho/sekisho.toml"
DEFAULT_DATA_DIR = "/var/lib/sekisho"
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141, what a shell reports for a command killed by SIGPIPE
PROBLEMS_SHOWN = 50
"""Config problems printed before the rest are counted: the first ones are what to fix first,
and a file of garbage must not flood a terminal or the journal with a line per key."""
ANSWER_TIMEOUT_S = 3.0
"""How long ``sim tap|pin|pull`` wait for the daemon's decision (a PIN check takes a scrypt)."""
REVOKE_PREFIX_MIN = 8
"""Hex digits that name a card to revoke: 8 make a slip onto another card about 1 in 4 billion."""

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


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="sekisho", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"sekisho {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(subparsers: Any, name: str, func: Callable[..., int] | None, help: str,
            description: str = "") -> argparse.ArgumentParser:
        p = subparsers.add_parser(name, help=help, description=description or help, formatter_class=fmt)
        _common(p, suppress=True)
        p.set_defaults(func=func)
        return p

    add(sub, "run", cmd_run, "run the daemon in the foreground",
        "Run the daemon in the foreground until SIGTERM or SIGINT: start the readers, decide,\n"
        "record every event, and publish it. Logs go to stderr (the journal under systemd).")
    add(sub, "check-config", cmd_check_config, "check the config exactly as start-up does",
        "Check the config exactly as start-up does and print every problem, one per line,\n"
        "naming the file and the key. Exit 0 when it would start, 78 when it would not.")

    person = add(sub, "person", None, "manage people").add_subparsers(dest="action", metavar="ACTION", required=True)
    p = add(person, "add", cmd_person_add, "add a person")
    p.add_argument("--id", required=True, help="the person's id, e.g. the staff number")
    p.add_argument("--name", required=True, help="full name, for the muster list and reports")
    p.add_argument("--valid-from", metavar="DATE", help="first day the person's cards open anything (YYYY-MM-DD)")
    p.add_argument("--valid-until", metavar="DATE", help="last day the person's cards open anything (YYYY-MM-DD)")
    add(person, "list", cmd_person_list, "list people")
    p = add(person, "grant", cmd_person_grant, "give a person an access level from the config")
    p.add_argument("id", help="the person's id")
    p.add_argument("level", help="a [levels.<name>] of the config")
    p = add(person, "ungrant", cmd_person_ungrant, "take an access level away from a person")
    p.add_argument("id", help="the person's id")
    p.add_argument("level", help="the level's name")
    p = add(person, "pin", cmd_person_pin, "set a person's PIN (read from the terminal, or one line of stdin)",
            "Set a person's PIN: 4 to 12 digits, typed twice at a terminal, or one line on\n"
            "standard input. Only a salted scrypt hash is stored. --clear removes it.")
    p.add_argument("id", help="the person's id")
    p.add_argument("--clear", action="store_true", help="remove the PIN instead")
    p = add(person, "disable", cmd_person_disable, "disable a person: their cards stop opening anything")
    p.add_argument("id", help="the person's id")
    p = add(person, "enable", cmd_person_enable, "enable a disabled person again")
    p.add_argument("id", help="the person's id")

    card = add(sub, "card", None, "manage cards").add_subparsers(dest="action", metavar="ACTION", required=True)
    p = add(card, "add", cmd_card_add, "enroll a card by its UID",
            "Enroll a card by its UID. Only a keyed hash of the UID is stored.")
    p.add_argument("--person", required=True, help="the holder's person id")
    p.add_argument("--uid", required=True, help="the card's UID in hex, e.g. 04a1b2c3d4e5f6")
    p.add_argument("--valid-from", metavar="DATE", help="first day the card opens anything (YYYY-MM-DD)")
    p.add_argument("--valid-until", metavar="DATE", help="last day the card opens anything (YYYY-MM-DD)")
    p = add(card, "enroll", cmd_card_enroll, "enroll a card by tapping it on a reader",
            "Wait for one card at a reader and enroll it to a person; the tap opens nothing.\n"
            "Goes through the running daemon if there is one; otherwise opens the reader itself\n"
            "(stop the daemon first if it holds the reader).")
    p.add_argument("--person", required=True, help="the holder's person id")
    p.add_argument("--reader", required=True, help="the reader's name in the config")
    p.add_argument("--timeout", type=float, default=60, metavar="S", help="seconds to wait for the card (default 60)")
    p = add(card, "revoke", cmd_card_revoke, "revoke a card",
            f"Revoke a card, named by the start of its hash as card list shows it (at least\n"
            f"{REVOKE_PREFIX_MIN} hex digits, so that a slip cannot revoke someone else's card) or by --uid.\n"
            "Prints the card revoked and its holder.")
    p.add_argument("hash", nargs="?", help=f"the start of the card's hash ({REVOKE_PREFIX_MIN}+ hex digits)")
    p.add_argument("--uid", help="the card's UID in hex, instead of its hash")
    p = add(card, "list", cmd_card_list, "list cards (hash prefixes, never UIDs)")
    p.add_argument("--person", help="only this person's cards")

    p = add(sub, "muster", cmd_muster, "who is inside now, by area, with names (for the fire drill)",
            "List everyone recorded inside an area now, with names from the store: the roll call\n"
            "for an evacuation. Entry and exit both need the card, so the list is what the\n"
            "readers saw.")
    p.add_argument("--area", help="only this area")
    p.add_argument("--csv", action="store_true", help="CSV with a header row, for a printout")
    p = add(sub, "events", cmd_events, "list recorded events",
            "List recorded events, oldest first. Times without a zone are in the site's time zone.")
    p.add_argument("--since", metavar="TIME", help="from this time on (2026-11-01 or 2026-11-01T09:00)")
    p.add_argument("--until", metavar="TIME", help="before this time")
    p.add_argument("--door", help="only this door")
    p.add_argument("--person", help="only this person's id")
    p.add_argument("--result", choices=["granted", "denied"], help="only this result")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="a JSON array on stdout")
    fmt_group.add_argument("--csv", action="store_true", help="CSV with a header row on stdout")

    add(sub, "purge", cmd_purge, "delete events and audit rows older than the site's retention_days",
        "Delete events and audit rows older than [site] retention_days now (the daemon also\n"
        "does it daily). The audit chain stays verifiable from an anchor; the purge is audited.")
    audit = add(sub, "audit", None, "check the audit log").add_subparsers(dest="action", metavar="ACTION",
                                                                          required=True)
    add(audit, "verify", cmd_audit_verify, "walk the hash chain; name the first altered or missing row",
        "Walk the audit log's hash chain from its first row. Exit 0 when every row is intact;\n"
        "otherwise print the first row that was altered or removed and exit 65.")

    sim = add(sub, "sim", None, "drive a simulated reader (driver = \"sim\") of the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = add(sim, "tap", cmd_sim_tap, "present a card; it stays until pull or the next tap")
    p.add_argument("reader", help="the reader's name in the config")
    p.add_argument("uid", help="the card's UID in hex")
    p = add(sim, "pull", cmd_sim_pull, "take the card away")
    p.add_argument("reader", help="the reader's name in the config")
    p = add(sim, "pin", cmd_sim_pin, "type a PIN on the reader's pad")
    p.add_argument("reader", help="the reader's name in the config")
    p.add_argument("digits", help="the PIN")
    p = add(sim, "input", cmd_sim_input, "drive a simulated input: a door contact, exit button or fire alarm",
            "Drive a simulated input ([inputs.<name>] with driver = \"sim\"): open/on set it active\n"
            "(door open, fire alarm on), closed/off set it inactive, press is a momentary press.")
    p.add_argument("input", help="the input's name in the config")
    p.add_argument("state", choices=["open", "closed", "on", "off", "press"])

    # What goes through the running daemon says what its op declares (ops.py), in the same words.
    op = {o.name: o for o in ops.declared()}
    door = add(sub, "door", None, "see and drive doors through the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add(door, "list", cmd_door_list, op["door.list"].summary)
    p = add(door, "unlock", cmd_door_unlock, op["door.unlock"].summary)
    door_arg, seconds = op["door.unlock"].args
    p.add_argument("door", help=door_arg.help)
    p.add_argument("--seconds", type=float, help=seconds.help)
    p = add(door, "mode", cmd_door_mode, op["door.mode"].summary,
            "Set a door's mode: normal; lockdown (only override levels open); free (released);\n"
            "emergency (fire exits released). Setting normal is also how a person resets an\n"
            "emergency release after a fire alarm. The mode survives a restart.")
    door_arg, mode = op["door.mode"].args
    p.add_argument("door", help=door_arg.help)
    p.add_argument("mode", choices=mode.choices)

    add(sub, "demo", cmd_demo, "run a private broker, the daemon and a bus monitor, for a first look",
        "Start a private mosquitto on the port in the config's [mqtt] url, enroll two demo\n"
        "people, run the daemon and print every message on the bus. `make demo` runs this on\n"
        "examples/demo.toml; tap cards from a second terminal with `sekisho sim tap`.")
    desk = add(sub, "desk", None, "see desks through the running daemon").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add(desk, "list", cmd_desk_list, op["desk.list"].summary)
    usb = add(sub, "usb", None, "USB device control: list, test a policy, generate one, allow a device").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    p = add(usb, "list", cmd_usb_list, "devices present, the rules' decision and line, each as a rule",
            "Every USB device present: whether the kernel has it authorized, how [usb] rules decide it\n"
            "and by which line, and the device written as a rule to paste into the rules file. With\n"
            "a daemon running, also held devices and the timed exceptions in force.")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p = add(usb, "test-policy", cmd_usb_test_policy, "decide devices by a rules file, touching nothing",
            "Decide devices by RULES without writing anything: DEVICE is a sysfs path\n"
            "(/sys/bus/usb/devices/1-2) or a umockdev recording (*.umockdev); none means the\n"
            "devices present. As USBGuard's ImplicitPolicyTarget, --implicit-target stands in for\n"
            "[usb] implicit_target.")
    p.add_argument("rules", help="a rules file (docs/sekisho-rules.5.md)")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="sysfs paths or .umockdev files")
    p.add_argument("--implicit-target", choices=["allow", "block", "reject"], default=None,
                   help="what a device no rule matches gets (default: the config's, else block)")
    p.add_argument("--json", action="store_true", help="a JSON list, in the order given: device, decision, rule, ...")
    p = add(usb, "generate", cmd_usb_generate, "a starting policy from the devices present",
            "Print a starting rules file that allows exactly the devices present now, one rule per\n"
            "device, as `usbguard generate-policy` does. Review it before use.")
    p.add_argument("--no-hash", action="store_true", help="leave out hash and parent-hash")
    p.add_argument("--ports", choices=["noserial", "all", "none"], default="noserial",
                   help="when to add via-port (default: only for devices without a serial number)")
    p.add_argument("--catch-all", choices=["allow", "block", "reject"], help="end with this target's bare rule")
    p = add(usb, "allow", cmd_usb_allow, op["usb.allow"].summary,
            "Allow one device for N minutes through the running daemon, recorded and published:\n"
            "MATCH is vid:pid:serial (046d:c31c:ABC123, the serial may be empty: 046d:c31c:) or a\n"
            "port (1-2.3). The device must be plugged in: the exception is bound to its descriptors'\n"
            "hash, so a device that only claims the same serial, or another device in that port,\n"
            "is not let in. At expiry the device is decided by the rules again.")
    match, minutes, interfaces = op["usb.allow"].args
    p.add_argument("match", help=match.help)
    p.add_argument("--minutes", type=float, required=True, help=minutes.help)
    p.add_argument("--interfaces", choices=["rules", "all"], default=interfaces.default, help=interfaces.help)
    cmd = add(sub, "cmd", None, "sign and send a command to a node through the broker",
              "Signed commands (docs/mqtt.md): an officer's key signs a command, the broker carries\n"
              "it to cmd/<node>, and the node runs it only if the key is one of its\n"
              "[commands.keys] and may run the op. Make a key with keygen, put the public key\n"
              "it prints into each node's config, then send.").add_subparsers(
                  dest="action", metavar="ACTION", required=True)
    add(cmd, "ops", cmd_cmd_ops, "list the ops a signed command may run, with their arguments",
        "List the ops a node runs when a signed command asks (each node only those of its\n"
        "parts: desk.list with desks, usb.* with [usb]), with their arguments; [NAME] is optional.\n"
        "A key runs only the ops its [commands.keys.<name>] ops patterns name.")
    p = add(cmd, "keygen", cmd_cmd_keygen, "make a new Ed25519 key for signing commands",
            "Write a new Ed25519 private key to FILE (PEM, PKCS #8, mode 0600; an existing file\n"
            "is never overwritten) and print the [commands.keys.<name>] section that lets it in.\n"
            "The key's name is FILE's name without its extension unless --name says otherwise.")
    p.add_argument("file", help="where to write the private key")
    p.add_argument("--name", help="the key's name in the config (default: FILE's stem)")
    p = add(cmd, "public-key", cmd_cmd_public_key, "print the public key of a private key file",
            "Print the public key of FILE as public_key takes it. FILE may also be a key made by\n"
            "`openssl genpkey -algorithm ed25519` or `ssh-keygen -t ed25519` (unencrypted).")
    p.add_argument("file", help="a private key file")
    sign_help = ("OP is one of the ops below (also: sekisho cmd ops); ARG is NAME=VALUE, where\n"
                 "VALUE is read as JSON when it parses (minutes=10 is a number) and as text\n"
                 "otherwise (door=entrance). The command is signed for [site] id of the config: a\n"
                 "node of another site refuses it.\n\nops a signed command may run ([optional]):\n"
                 + ops.help_text(ops.declared()) + "\n")
    for name, func, what in (("send", cmd_cmd_send, "sign a command, send it, and print the node's answer"),
                             ("sign", cmd_cmd_sign, "print a signed command as JSON, to send by other means")):
        p = add(cmd, name, func, what, what[0].upper() + what[1:] + ".\n" + sign_help +
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
    add(sub, "readers", cmd_readers, "list the PC/SC readers pcscd sees, and which configured reader uses each",
        "List the readers pcscd sees now, with the configured reader whose name pattern\n"
        "matches each: the way to find the name to put in [readers.<name>] name = ... .\n"
        "FeliCa readers driven by nfcpy are not listed here: `python3 -m nfc` finds those.")
    add(sub, "watch", cmd_watch, "print every message on the site's topics as it arrives",
        "Subscribe to the site's topic tree and print each message, retained ones first,\n"
        "until interrupted.")
    return parser


# ----------------------------------------------------------------------------- helpers
def _config(args: argparse.Namespace) -> config_mod.Config:
    path = args.config or os.environ.get("SEKISHO_CONFIG") or DEFAULT_CONFIG
    return config_mod.load(path, mqtt_url=args.mqtt)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("SEKISHO_DATA_DIR") or DEFAULT_DATA_DIR)


def _store(args: argparse.Namespace, *, create: bool = True):  # noqa: ANN202 - returns (Config, Database, SiteKey)
    """The config, the store's file and the site key. A command that only reads passes
    ``create=False``: a data directory without a store is then an error, never a new empty store
    to list."""
    from .app import open_store
    from .store.database import DB_NAME
    cfg = _config(args)
    data_dir = _data_dir(args)
    if not create and not (data_dir / DB_NAME).exists():
        what = "no data directory" if not data_dir.exists() else "no store in"
        raise NoInput(f"{what} {data_dir} (is --data-dir right? `sekisho run` or `sekisho person add` "
                      f"creates it)")
    database, key = open_store(cfg, data_dir)
    return cfg, database, key


def _people(args: argparse.Namespace, *, create: bool = True):  # noqa: ANN202 - returns (Config, People, SiteKey)
    """The config, the enrolment data and the site key, as ``_store`` opens them."""
    from .store.people import People
    cfg, database, key = _store(args, create=create)
    return cfg, People(database), key


def _record(args: argparse.Namespace, *, create: bool = True):  # noqa: ANN202 - returns (Config, Record)
    """The config and the node's record, as ``_store`` opens them."""
    from .store.record import Record
    cfg, database, _ = _store(args, create=create)
    return cfg, Record(database, cfg.site.node)


def _actor() -> str:
    return f"cli:{os.environ.get('SUDO_USER') or os.environ.get('USER') or os.getuid()}"


def _uid(text: str) -> bytes:
    from sekisho.drivers.sim import parse_uid
    try:
        return parse_uid(text)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _no(kind: str, name: str, known: Any, where: str = "") -> DataError:
    """The one wording for a name that names nothing, with what would be accepted."""
    listed = ", ".join(known) or "none"
    return DataError(f"no {kind} {name!r}{f' in {where}' if where else ''} ({kind}s: {listed})")


def _person(people: Any, person_id: str) -> None:
    if people.person(person_id) is None:
        raise DataError(f"no person {person_id!r} (see: sekisho person list)")


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "-")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c) if r.get(c) is not None else "-").ljust(widths[c]) for c in columns).rstrip())


# ----------------------------------------------------------------------------- commands
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


def _date(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise DataError(f"{flag}: {text!r} is not a date like 2026-04-01") from None


def _validity(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--valid-from and --valid-until; a range that ends before it starts would silently open
    nothing, so it is refused."""
    start, end = _date(args.valid_from, "--valid-from"), _date(args.valid_until, "--valid-until")
    if start and end and end < start:
        raise DataError(f"--valid-until {end} is before --valid-from {start}; nothing changed")
    return start, end


def cmd_person_add(args: argparse.Namespace) -> int:
    valid = _validity(args)
    _, people, _ = _people(args)
    people.add_person(args.id, args.name, _actor(), *valid)
    print(f"added {args.id}")
    return 0


def cmd_person_list(args: argparse.Namespace) -> int:
    _, people, _ = _people(args, create=False)
    rows = [{**r, "state": "active" if r["active"] else "disabled", "pin": "yes" if r["pin"] else "no"}
            for r in people.people()]
    _print_table(rows, ["id", "name", "state", "levels", "pin", "cards", "valid_from", "valid_until"])
    return 0


def cmd_person_disable(args: argparse.Namespace) -> int:
    _, people, _ = _people(args)
    people.set_person_active(args.id, False, _actor())
    print(f"disabled {args.id}")
    return 0


def cmd_person_enable(args: argparse.Namespace) -> int:
    _, people, _ = _people(args)
    people.set_person_active(args.id, True, _actor())
    print(f"enabled {args.id}")
    return 0


def cmd_person_grant(args: argparse.Namespace) -> int:
    cfg, people, _ = _people(args)
    if args.level not in cfg.rules.levels:
        raise _no("level", args.level, cfg.rules.levels, str(cfg.path))
    people.grant_level(args.id, args.level, _actor())
    print(f"{args.id} now holds {args.level}")
    return 0


def cmd_person_ungrant(args: argparse.Namespace) -> int:
    _, people, _ = _people(args)
    people.grant_level(args.id, args.level, _actor(), revoke=True)
    print(f"{args.id} no longer holds {args.level}")
    return 0


def cmd_person_pin(args: argparse.Namespace) -> int:
    from .pins import hash_pin, valid_pin
    _, people, _ = _people(args)
    _person(people, args.id)
    if args.clear:
        people.set_pin_hash(args.id, None, _actor())
        print(f"PIN of {args.id} removed")
        return 0
    if sys.stdin.isatty():
        import getpass
        pin = getpass.getpass(f"new PIN for {args.id}: ")
        if getpass.getpass("again: ") != pin:
            raise DataError("the two PINs differ; nothing changed")
    else:
        pin = sys.stdin.readline().strip()
    if wrong := valid_pin(pin):
        raise DataError(f"{wrong}; nothing changed")
    people.set_pin_hash(args.id, hash_pin(pin), _actor())
    print(f"PIN of {args.id} set")
    return 0


def cmd_muster(args: argparse.Namespace) -> int:
    cfg, record = _record(args, create=False)
    if args.area and args.area not in cfg.areas:
        raise _no("area", args.area, cfg.areas, str(cfg.path))
    rows = record.muster(args.area)
    tz = zoneinfo.ZoneInfo(cfg.site.timezone)
    for r in rows:
        r["since"] = dt.datetime.fromisoformat(r["since"]).astimezone(tz).strftime(
            "%Y-%m-%d %H:%M")
    columns = ["area", "person_id", "name", "since"]
    if args.csv:
        writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    areas = [args.area] if args.area else list(cfg.areas)
    for area in areas:
        inside = [r for r in rows if r["area"] == area]
        print(f"{area}: {len(inside)} inside")
        for r in inside:
            print(f"  {r['name']:<30} {r['person_id']:<12} since {r['since']}")
    return 0


def cmd_card_add(args: argparse.Namespace) -> int:
    uid = _uid(args.uid)
    valid = _validity(args)
    _, people, key = _people(args)
    card_hash = key.card_hash(uid)
    people.add_card(args.person, card_hash, _actor(), *valid)
    print(f"card {card_hash[:12]} enrolled to {args.person}")
    return 0


def cmd_card_enroll(args: argparse.Namespace) -> int:
    from . import control
    from .enrollment import enroll_without_daemon
    from .store.people import People
    cfg = _config(args)
    if args.reader not in cfg.readers:
        raise _no("reader", args.reader, cfg.readers, str(cfg.path))
    if not 1 <= args.timeout <= 3600:
        raise UsageError("--timeout must be between 1 and 3600 seconds")
    _, database, _ = _store(args, create=False)
    _person(People(database), args.person)  # before anyone waits at the reader
    database.close()
    print(f"present the card at {args.reader} (waiting up to {args.timeout:g} s) ...", file=sys.stderr, flush=True)
    request = {"op": "enroll", "person": args.person, "reader": args.reader, "timeout": args.timeout}
    reply = control.call(_data_dir(args), request, timeout=args.timeout + 10)
    if reply is None:
        card = enroll_without_daemon(cfg, _data_dir(args), args.person, args.reader, args.timeout, _actor())
    elif reply["ok"]:
        card = reply["card"]
    else:
        raise SekishoError(reply["error"])
    print(f"card {card} enrolled to {args.person}")
    return 0


def cmd_card_revoke(args: argparse.Namespace) -> int:
    if bool(args.hash) == bool(args.uid):
        raise UsageError("name the card by the start of its hash or by --uid (one of them)")
    prefix = (args.hash or "").lower()
    if args.hash:
        if any(c not in "0123456789abcdef" for c in prefix):
            raise DataError(f"{args.hash!r} is not the start of a card hash (hex digits, as card list shows)")
        if len(prefix) < REVOKE_PREFIX_MIN:
            raise UsageError(f"{args.hash!r} is too short to name one card: give at least {REVOKE_PREFIX_MIN} "
                             f"hex digits (see: sekisho card list) or --uid")
    uid = _uid(args.uid) if args.uid else None
    _, people, key = _people(args)
    card_hash = people.revoke_card(key.card_hash(uid) if uid else prefix, _actor())
    holder = people.card_holder(card_hash)
    person = people.person(holder.person_id) if holder else None
    whose = f" of {person['id']} ({person['name']})" if person else ""
    print(f"card {card_hash[:12]}{whose} revoked")
    return 0


def cmd_card_list(args: argparse.Namespace) -> int:
    _, people, _ = _people(args, create=False)
    if args.person:
        _person(people, args.person)
    rows = [{"card": r["hash"][:12], "person": r["person_id"], "state": "active" if r["active"] else "revoked",
             "created": r["created"], "revoked": r["revoked"]} for r in people.cards(args.person)]
    _print_table(rows, ["card", "person", "state", "created", "revoked"])
    return 0


def _instant(text: str | None, tz: str, flag: str) -> str | None:
    """A user's time as the store's UTC timestamp text."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{flag}: {text!r} is not a date or time (example: 2026-11-01 or 2026-11-01T09:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return rfc3339(t)


EVENT_COLUMNS = ["ts", "seq", "kind", "door", "reader", "direction", "result", "reason", "rule", "person_id", "id"]


def cmd_events(args: argparse.Namespace) -> int:
    from .store.people import People
    from .store.record import Record
    cfg, database, _ = _store(args, create=False)
    record = Record(database, cfg.site.node)
    if args.person:
        _person(People(database), args.person)
    # A door this node no longer has still has its record; only a name found nowhere is a slip.
    if args.door and args.door not in cfg.doors and not record.events(door=args.door):
        raise _no("door", args.door, cfg.doors, str(cfg.path))
    rows = record.events(since=_instant(args.since, cfg.site.timezone, "--since"),
                         until=_instant(args.until, cfg.site.timezone, "--until"),
                         door=args.door, person=args.person, result=args.result)
    rows = [{c: r.get(c) for c in EVENT_COLUMNS} for r in rows]
    if args.json:
        json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
        print()
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, EVENT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _print_table(rows, ["ts", "door", "reader", "direction", "result", "reason", "person_id", "rule"])
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from .app import purge_before
    cfg, record = _record(args)
    before = purge_before(cfg)
    events, audit_rows = record.purge(before, _actor())
    print(f"deleted {events} events and {audit_rows} audit rows from before {before}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .store.audit import verify
    _, database, _ = _store(args, create=False)
    # The whole file first: a damaged page can hide rows from the chain walk, or stop it.
    problems = database.integrity()
    if problems:
        print(f"store damaged: {database.path}:", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
        return EX_DATAERR
    report = verify(database.db)
    if report.ok:
        print(f"audit log intact: {report.rows} rows")
        return 0
    print(f"audit log altered: {report.problem} ({report.rows} rows before it are intact)", file=sys.stderr)
    return EX_DATAERR


def _sim(args: argparse.Namespace, request: dict[str, Any], name: str | None = None) -> int:
    from sekisho.drivers.sim import socket_path
    cfg = _config(args)
    known: Mapping[str, Any]
    if name is None:
        name, kind, known = args.reader, "reader", cfg.readers
    else:
        kind, known = "input", cfg.inputs
    item = known.get(name)
    if item is None:
        raise _no(kind, name, known, str(cfg.path))
    if item.driver != "sim":
        raise DataError(f"{kind} {name!r} is a {item.driver} {kind}, not a sim one")
    path = socket_path(item.name, item.options, _data_dir(args))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(ANSWER_TIMEOUT_S + 5)
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(s.makefile("rb").readline() or b"{}")
    except (FileNotFoundError, ConnectionRefusedError):
        raise Unavailable(f"no daemon is listening at {path}; is `sekisho run` running with this "
                          f"--config and --data-dir?") from None
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise SekishoError(f"{path}: {exc}") from None
    if not reply.get("ok"):
        raise SekishoError(reply.get("error") or "the reader gave no answer")
    for d in reply.get("decided") or []:
        print(f"{name}: {d.get('result')} ({d.get('reason')}, rule {d.get('rule')})")
    if reply.get("waiting") == "pin":
        print(f"{name}: waiting for the PIN (sekisho sim pin {name} DIGITS)")
    return 0


def cmd_sim_tap(args: argparse.Namespace) -> int:
    _uid(args.uid)
    return _sim(args, {"op": "tap", "uid": args.uid, "answer": ANSWER_TIMEOUT_S})


def cmd_sim_pull(args: argparse.Namespace) -> int:
    return _sim(args, {"op": "pull", "answer": ANSWER_TIMEOUT_S})


def cmd_sim_pin(args: argparse.Namespace) -> int:
    return _sim(args, {"op": "pin", "digits": args.digits, "answer": ANSWER_TIMEOUT_S})


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo
    cfg = _config(args)
    data_dir = _data_dir(args)
    cli_args = ["--config", str(cfg.path), "--data-dir", str(data_dir)]
    return demo(cfg, data_dir, cli_args + (["--mqtt", args.mqtt] if args.mqtt else []))


def cmd_sim_input(args: argparse.Namespace) -> int:
    request = {"op": "press"} if args.state == "press" else {"op": "set", "active": args.state in ("open", "on")}
    return _sim(args, request, args.input)


def _daemon(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    from . import control
    reply = control.call(_data_dir(args), request, timeout=10)
    if reply is None:
        raise Unavailable("no daemon is running with this --data-dir (start it: sekisho run)")
    if not reply["ok"]:
        raise SekishoError(reply["error"])
    return reply


def cmd_door_list(args: argparse.Namespace) -> int:
    _config(args)
    _print_table(_daemon(args, {"op": "door.list"})["doors"], ["door", "lock", "mode", "contact", "alarm"])
    return 0


def _door(args: argparse.Namespace) -> None:
    cfg = _config(args)
    if args.door not in cfg.doors:
        raise _no("door", args.door, cfg.doors, str(cfg.path))


def cmd_door_unlock(args: argparse.Namespace) -> int:
    _door(args)
    _daemon(args, {"op": "door.unlock", "door": args.door, "seconds": args.seconds})
    print(f"{args.door} released")
    return 0


def cmd_door_mode(args: argparse.Namespace) -> int:
    _door(args)
    _daemon(args, {"op": "door.mode", "door": args.door, "mode": args.mode})
    print(f"{args.door} is now in {args.mode} mode")
    return 0


def cmd_desk_list(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if not cfg.desks:
        raise SekishoError(f"{cfg.path} has no [desks.<name>] section")
    _print_table(_daemon(args, {"op": "desk.list"})["desks"], ["desk", "state", "person_id", "since_s", "sessions"])
    return 0


def _usb_config(args: argparse.Namespace) -> config_mod.UsbConfig:
    cfg = _config(args)
    if cfg.usb is None:
        raise SekishoError(f"{cfg.path} has no [usb] section: this node does not control USB")
    return cfg.usb


def cmd_usb_list(args: argparse.Namespace) -> int:
    from . import control
    from .usb_cli import usb_list
    u = _usb_config(args)
    reply = control.call(_data_dir(args), {"op": "usb.list"}, timeout=10)
    status = reply if reply and reply.get("ok") else None
    return usb_list(u.rules, as_json=args.json, status=status)


def cmd_usb_test_policy(args: argparse.Namespace) -> int:
    from .usb_cli import usb_test_policy
    implicit = args.implicit_target
    if implicit is None:
        try:
            cfg = _config(args)
            implicit = cfg.usb.implicit_target if cfg.usb else "block"
        except (config_mod.ConfigError, PermissionDenied):
            implicit = "block"  # testing a policy needs no site config
    return usb_test_policy(args.rules, args.devices, implicit_target=implicit, as_json=args.json)


def cmd_usb_generate(args: argparse.Namespace) -> int:
    from .usb_cli import usb_generate
    return usb_generate(with_hash=not args.no_hash, ports=args.ports, catch_all=args.catch_all)


def cmd_usb_allow(args: argparse.Namespace) -> int:
    from .usb_cli import allow_request, format_allow_reply
    _usb_config(args)
    print(format_allow_reply(_daemon(args, allow_request(args.match, args.minutes, args.interfaces))))
    return 0


def _key_name(file: str, name: str | None) -> str:
    name = name or Path(file).name.split(".")[0]
    if wrong := config_mod.topic_name(name):
        raise SekishoError(f"key name {name!r}: {wrong} (give one with --name or --key-name)")
    return name


def cmd_cmd_ops(args: argparse.Namespace) -> int:
    print(ops.help_text(ops.declared()))
    return 0


def cmd_cmd_keygen(args: argparse.Namespace) -> int:
    from .commands import keygen, public_key_text
    name = _key_name(args.file, args.name)
    key = keygen(args.file)
    print(f"# {args.file}: a new private key; keep it secret. Add this to each node's config:")
    print(f'[commands.keys.{name}]\npublic_key = "{public_key_text(key)}"\nops = ["usb.allow"]')
    return 0


def cmd_cmd_public_key(args: argparse.Namespace) -> int:
    from .commands import load_private_key, public_key_text
    print(public_key_text(load_private_key(args.file)))
    return 0


def _signed(args: argparse.Namespace) -> tuple[config_mod.Config, dict[str, Any]]:
    from .commands import load_private_key, sign
    cfg = _config(args)
    values: dict[str, Any] = {}
    for item in args.arg:
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise SekishoError(f"{item!r}: an argument is NAME=VALUE, e.g. minutes=10")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
        if isinstance(values[name], float):
            raise SekishoError(f"{item!r}: commands carry whole numbers only")
    key = load_private_key(args.key)
    return cfg, sign(args.op, values, site=cfg.site.id, node=args.node or cfg.site.node,
                     key_name=_key_name(args.key, args.key_name), key=key)


def cmd_cmd_sign(args: argparse.Namespace) -> int:
    _, message = _signed(args)
    print(json.dumps(message, ensure_ascii=False))
    return 0


def cmd_cmd_send(args: argparse.Namespace) -> int:
    from .commands import send
    cfg, message = _signed(args)
    answer = send(cfg, message, timeout=args.timeout)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    if not answer.get("ok"):
        print(f"sekisho: {message['node']} refused {message['op']}: {answer.get('error')}", file=sys.stderr)
        return 1
    return 0


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


def cmd_watch(args: argparse.Namespace) -> int:
    from .watch import watch
    return watch(_config(args))


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
    except config_mod.ConfigError as exc:
        for line in exc.problems[:PROBLEMS_SHOWN]:
            print(line, file=sys.stderr)
        if (more := len(exc.problems) - PROBLEMS_SHOWN) > 0:
            print(f"... and {more:,} more problems (fix the ones above first)", file=sys.stderr)
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
