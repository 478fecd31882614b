"""What every ``sekisho`` command starts from: the site's config, the node's data directory and
store, and who is acting; and the one way a command names what is not there and lays out a table,
so that all commands read alike.

The leading underscores say these are the command line's own (cli.py and the ``*_cli.py``
modules), not an API. ``_store`` with ``create=False`` is how a command that only reads refuses
a data directory without a store instead of making an empty one to list.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from . import config as config_mod
from .errors import DataError, NoInput

DEFAULT_CONFIG = "/etc/sekisho/sekisho.toml"
DEFAULT_DATA_DIR = "/var/lib/sekisho"


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
