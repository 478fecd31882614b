"""What ``sekisho site ...`` does: make a site's folder, a node's bundle, and install a bundle
on its node, saying what each file is and what comes next (site_setup.py does the work,
site_bundle.py has the bundle's format; the arguments are declared in cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import site_bundle, site_setup
from .cli_site import DEFAULT_CONFIG, DEFAULT_DATA_DIR, _data_dir

BROKER_PASSWD = "/etc/mosquitto/sekisho.passwd"


def _copy_passwd(passwd: Path) -> str:
    return (f"install -o root -g mosquitto -m 0640 {passwd} {BROKER_PASSWD} && systemctl reload mosquitto")


def cmd_site_init(args: argparse.Namespace) -> int:
    folder = Path(args.dir).absolute()
    made = site_setup.init(folder, site=args.site, broker=args.broker, timezone=args.timezone,
                           ca=Path(args.ca) if args.ca else None)
    files = [(site_setup.SITE_KEY, "the site key: card hashes and pseudonyms, the same on every node"),
             (site_setup.RECORDER_KEY, f"the recorder's signing key (public {made.recorder_public})"),
             (site_setup.OFFICER_KEY, f"the officer's key for signed commands (public {made.officer_public})"),
             (site_setup.OFFICER_PASSWORD, f"the officer's broker password (user {site_setup.OFFICER})"),
             (site_setup.OFFICER_CONFIG, "the officer's config: sekisho cmd send and sekisho watch from here"),
             (site_setup.PASSWD, "the broker's password file (mosquitto_passwd format)"),
             *([(site_setup.CA, "the CA of the broker's certificate, for every node")] if made.ca else []),
             (site_setup.RECORD, f"the site record: {made.record.id}, {made.record.broker}, {made.record.timezone}")]
    print(f"site {made.record.id} made in {folder} (mode 0700: it holds the site's secrets; keep it on the "
          f"officer's machine, backed up, never on a node):")
    for name, what in files:
        print(f"  {name:<17} {what}")
    print(f"next:\n  on the broker: {_copy_passwd(folder / site_setup.PASSWD)}\n"
          f"  for each node: sekisho site join {folder} NODE --roles door,desk,usb,recorder (those it has)")
    return 0


def cmd_site_join(args: argparse.Namespace) -> int:
    folder = Path(args.dir).absolute()
    roles = site_setup.parse_roles(args.roles)
    joined = site_setup.join(folder, args.node, roles, Path(args.out).absolute() if args.out else None)
    secrets = "the site key and the node's broker password" + (", and the recorder's signing key"
                                                                if "recorder" in roles else "")
    print(f"node {args.node} joined (roles {', '.join(roles)}) with a new broker password"
          + (": its old one no longer logs in" if joined.rejoined else ""))
    print(f"  {joined.bundle}  (mode 0600)\n"
          f"  SECRET: it holds {secrets}. Copy it to that node only, and delete it there once installed.")
    print(f"next:\n  on the broker: {_copy_passwd(joined.passwd)}\n"
          f"  on the node:   sekisho site install {joined.bundle.name} --force"
          f"   (--force: over the example config make install put there)")
    if "recorder" in roles:
        site = site_setup.read_record(folder).id
        print("  in the broker's ACL, this block (it reads the whole site):\n    "
              + site_setup.recorder_acl(site, args.node).replace("\n", "\n    "))
    return 0


def cmd_site_install(args: argparse.Namespace) -> int:
    bundle = site_bundle.read(Path(args.bundle))
    etc = Path(args.etc).absolute()
    data_dir = _data_dir(args).absolute()
    done = site_setup.install(bundle, etc=etc, data_dir=data_dir, force=args.force, keep_config=args.keep_config)
    print(f"installed the bundle of node {bundle.node} (site {bundle.site}, roles {', '.join(bundle.roles)}):")
    for w in done:
        print(f"  {w.what:<9} {w.path}  ({w.mode:04o})")
    config = etc / site_setup.CONFIG
    where = ("" if (str(config), str(data_dir)) == (DEFAULT_CONFIG, DEFAULT_DATA_DIR)
             else f" --config {config} --data-dir {data_dir}")
    fill = [r for r in bundle.roles if r in site_setup.SKELETONS]
    print("next:\n"
          + (f"  fill in the commented sections for {', '.join(fill)} in {config}\n" if fill else "")
          + f"  sekisho check-config{where}\n"
          f"  systemctl enable --now sekisho\n"
          f"  shred -u {args.bundle}   (it holds the site key and this node's broker password)")
    return 0
