"""What ``sekisho person ...`` and ``sekisho card ...`` do: people, their access levels, PINs and
validity, and their cards, in the store of this node; and a whole roster at once (``person
import``, ``person export``, planned and written by roster.py).

A card is known only by the keyed hash of its UID; a revoke is named by a hash prefix long enough
that a slip cannot revoke someone else's card. An export holds names: written to a file, it is
mode 0600 from its first byte. The arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from .cli_site import _actor, _config, _data_dir, _no, _people, _person, _print_table, _store, _uid
from .errors import DataError, DataErrors, NoInput, SekishoError, UsageError
from .store.enrolment import CARD_SHOWN, HASH_PREFIX_MIN
from .whole_files import write_whole


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
    if args.level not in cfg.grantable_levels():
        raise _no("level", args.level, cfg.grantable_levels(), str(cfg.path))
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


def cmd_person_import(args: argparse.Namespace) -> int:
    """Read the whole roster, plan it against the store, print the plan; write it (one
    transaction) unless --dry-run. Any problem: every one printed, exit 65, nothing written."""
    from .roster import plan, read
    data, name = _read_input(args.file)
    cfg = _config(args)
    roster = read(data, name, args.encoding)
    _, people, key = _people(args, create=not args.dry_run)
    before = people.snapshot()
    result = plan(roster, before, cfg.grantable_levels(), key.card_hash, revoke_missing=args.revoke_missing,
                  deactivate_missing=args.deactivate_missing)
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    if result.problems:
        count = len(result.problems)
        raise DataErrors(list(result.problems),
                         f"{name}: {count} problem{'s' if count > 1 else ''}; nothing was imported")
    if result.changes and not args.dry_run:
        people.apply(list(result.changes), _actor(), planned_on=before)
    for change in result.changes:
        print(f"{change.source}: {change.describe()}")
    done = f"{len(result.changes)} change{'s' if len(result.changes) > 1 else ''}" if result.changes else "no changes"
    if result.changes:
        done += "; dry run: nothing was written" if args.dry_run else " made"
    count = len(roster.rows)
    print(f"{name}: {count} {'person' if count == 1 else 'people'}, read as {roster.encoding}; {done}")
    return 0


def cmd_person_export(args: argparse.Namespace) -> int:
    from .roster import codec, export_rows, write_csv
    _, people, _ = _people(args, create=False)
    rows = export_rows(people.snapshot())
    text = write_csv(rows)
    to_file = args.csv != "-"
    encoding = codec(args.encoding) if args.encoding else "utf-8-sig" if to_file else "utf-8"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise DataError(f"--encoding {args.encoding}: line {line} has {text[exc.start]!r}, which {encoding} cannot "
                        "hold; nothing was written (UTF-8 holds every name)") from None
    if not to_file:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return 0
    _write_private(Path(args.csv), data)
    print(f"exported {len(rows)} people to {args.csv} (mode 0600: it holds names)", file=sys.stderr)
    return 0


def _read_input(path: str) -> tuple[bytes, str]:
    """A file's bytes and the name its messages give it; ``-`` is standard input."""
    if path == "-":
        return sys.stdin.buffer.read(), "stdin"
    try:
        return Path(path).read_bytes(), path
    except FileNotFoundError:
        raise NoInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NoInput(f"{path}: a directory, not a file") from None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as mode 0600 from the first byte, replacing it whole: a reader
    never sees half an export, and an old file's looser mode never carries over."""
    try:
        write_whole(path, data, 0o600)
    except FileNotFoundError:
        raise NoInput(f"{path}: no directory {path.parent}") from None


def cmd_card_add(args: argparse.Namespace) -> int:
    uid = _uid(args.uid)
    valid = _validity(args)
    _, people, key = _people(args)
    card_hash = key.card_hash(uid)
    people.add_card(args.person, card_hash, _actor(), *valid)
    print(f"card {card_hash[:CARD_SHOWN]} enrolled to {args.person}")
    return 0


def cmd_card_enroll(args: argparse.Namespace) -> int:
    from . import control
    from .store.people import People
    from .tap_enrolment_offline import enroll_without_daemon
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
        if len(prefix) < HASH_PREFIX_MIN:
            raise UsageError(f"{args.hash!r} is too short to name one card: give at least {HASH_PREFIX_MIN} "
                             f"hex digits (see: sekisho card list) or --uid")
    uid = _uid(args.uid) if args.uid else None
    _, people, key = _people(args)
    card_hash = people.revoke_card(key.card_hash(uid) if uid else prefix, _actor())
    holder = people.card_holder(card_hash)
    person = people.person(holder.person_id) if holder else None
    whose = f" of {person['id']} ({person['name']})" if person else ""
    print(f"card {card_hash[:CARD_SHOWN]}{whose} revoked")
    return 0


def cmd_card_list(args: argparse.Namespace) -> int:
    _, people, _ = _people(args, create=False)
    if args.person:
        _person(people, args.person)
    rows = [{"card": r["hash"][:CARD_SHOWN], "person": r["person_id"], "state": "active" if r["active"] else "revoked",
             "created": r["created"], "revoked": r["revoked"]} for r in people.cards(args.person)]
    _print_table(rows, ["card", "person", "state", "created", "revoked"])
    return 0
