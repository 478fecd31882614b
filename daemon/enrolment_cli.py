"""What ``sekisho enrolment ...`` does: make a signed enrolment snapshot from this store, and
check and apply one on a node, for a site without a broker or an installer
(enrolment_snapshot.py has the format and the checks; the arguments are declared in cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_site import _people, _store
from .commands import load_private_key
from .commands_cli import _key_name


def cmd_enrolment_snapshot(args: argparse.Namespace) -> int:
    from . import enrolment_snapshot as es
    cfg, people, _ = _people(args, create=False)
    key = load_private_key(args.key)
    snapshot = es.build(people, cfg.site.id, args.version, policy=es.site_policy(cfg))
    signed = es.sign(snapshot, key, _key_name(args.key, args.key_name), args.chunk_bytes)
    files = es.write_dir(Path(args.out), signed)
    size = sum(len(c) for c in signed.chunks)
    print(f"enrolment snapshot {snapshot.version} of site {snapshot.site}: {len(snapshot.people)} people, "
          f"{len(snapshot.cards)} cards; {size:,} bytes in {len(signed.chunks)} chunks, "
          f"{len(files)} files in {args.out}")
    return 0


def cmd_enrolment_apply(args: argparse.Namespace) -> int:
    from . import enrolment_snapshot as es
    cfg, database, _ = _store(args)
    signed = es.read_dir(Path(args.dir))
    keys, permitted = es.trusted(cfg.commands)
    verified = es.verify(signed, site=cfg.site.id, keys=keys, permitted=permitted,
                         current=es.current_version(database, cfg.site.id))
    done = es.apply(database, verified, cfg.rules.schedules)
    print(f"enrolment snapshot {done.version} of site {cfg.site.id} applied (was {done.previous or 'none'}), "
          f"signed by {verified.key}: {done.people} people, {done.cards} cards, {done.levels} level grants, "
          f"{done.pins} PINs, {done.schedules} schedules, {done.holidays} holidays; {done.removed} people no "
          f"longer enrolled removed" + (f"; this config's own {', '.join(done.shadowed)} decide"
                                        if done.shadowed else ""))
    return 0


def cmd_enrolment_status(args: argparse.Namespace) -> int:
    from . import enrolment_snapshot as es
    cfg, database, _ = _store(args, create=False)
    if "recorder" in cfg.site.roles:
        sent = database.db.execute("SELECT value FROM meta WHERE key = 'enrolment.version'").fetchall()
        print(f"site {cfg.site.id}: recorder, enrolment version {sent[0][0] if sent else 0} sent last"
              + ("" if cfg.recorder and cfg.recorder.signing_key else " (no [recorder] signing_key: nothing is sent)"))
        return 0
    row = database.db.execute("SELECT version, key, created, applied, sha256 FROM enrolment_version WHERE site = ?",
                              [cfg.site.id]).fetchone()
    if row is None:
        print(f"site {cfg.site.id}: no enrolment snapshot applied (people and cards are this node's own)")
    else:
        kept = es.kept(database.path.parent)
        print(f"site {cfg.site.id}: enrolment snapshot {row[0]}, signed by {row[1]}, made {row[2]}, applied {row[3]}, "
              f"body sha256 {row[4][:16]}; " + ("its bytes kept in " + str(database.path.parent / es.KEPT)
                                               if kept else "its bytes are not kept in the data dir"))
    return 0
