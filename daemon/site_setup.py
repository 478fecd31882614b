"""Setting up a site (docs/site.md): ``init`` makes the site's folder once, ``join`` makes one
node's bundle, ``install`` puts a bundle in place on the node.

The site folder (mode 0700, on the officer's machine, never on a node) holds what every node
shares and what only the officer keeps:

| file | what |
|---|---|
| site.toml | the site record: id, broker URL, time zone |
| site.key | the site key: every node's card hashes and pseudonyms are made with it |
| recorder.key | the recorder's Ed25519 key: it signs enrolment and replay requests |
| officer.key | the officer's Ed25519 key, for signed commands from the console or ``sekisho cmd`` |
| officer.password | the officer's broker password (user ``officer``) |
| officer.toml | the officer's config, for ``sekisho cmd send`` and ``sekisho watch`` here |
| mosquitto.passwd | the broker's password file: the officer and every node joined |
| ca.crt | the CA of the broker's certificate, when ``--ca`` gave one |
| NODE.sekisho-bundle | each node's bundle (site_bundle.py) |

Failure model: ``init`` builds the folder under a temporary name and renames it into place, so a
site is made whole or not at all, and never over an existing one. ``join`` writes the bundle
before the password file, each whole (whole_files.py); a join that fails between them leaves a
bundle whose password the broker does not know, and joining again mends it. ``install`` checks
the bundle and every file it would replace before it writes the first: a config, password or
key that differs is replaced only with ``force`` (or, but for the config, with ``keep_config``,
which keeps a config only if it is the same node's), and a different site key never (every card
hash in the node's store was made with the one it has).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .broker_passwords import PasswordFile, new_password
from .commands import keygen, load_private_key, public_key_text
from .config.mqtt import MQTT
from .config.site import ROLES, SITE
from .errors import DataError, NoInput, PermissionDenied, SekishoError
from .keys import SiteKey
from .site_bundle import SUFFIX, Bundle, dumps
from .timestamps import utc_now
from .whole_files import write_whole

RECORD = "site.toml"
SITE_KEY = "site.key"
RECORDER_KEY = "recorder.key"
OFFICER_KEY = "officer.key"
OFFICER = "officer"
"""The officer's broker user (the ACL's), and so a name no node may take."""
OFFICER_PASSWORD = "officer.password"
OFFICER_CONFIG = "officer.toml"
PASSWD = "mosquitto.passwd"
CA = "ca.crt"
RECORD_FORMAT = 1

ETC = "/etc/sekisho"
"""Where a bundle's config expects its files; ``install --etc`` moves them."""
CONFIG = "sekisho.toml"
NODE_PASSWORD = "mqtt.password"

RECORDER_OPS = ("enrolment.*", "outbox.replay")
"""What every node lets the recorder's key do (docs/recorder.md, docs/enrolment.md)."""
OFFICER_OPS = ("door.*", "desk.*", "alarm.*", "usb.*")
"""What every node lets the officer's key do: the console's ops, never enrolment or replay."""


@dataclass(frozen=True)
class SiteRecord:
    id: str
    broker: str
    timezone: str
    made: str


@dataclass(frozen=True)
class Made:
    """What ``init`` made: the folder, and the public halves to show."""

    folder: Path
    record: SiteRecord
    recorder_public: str
    officer_public: str
    ca: bool


@dataclass(frozen=True)
class Joined:
    bundle: Path
    rejoined: bool
    """The node had a password already: the old one no longer opens the broker."""
    passwd: Path


@dataclass(frozen=True)
class Written:
    """One file ``install`` handled: ``what`` is written, replaced or unchanged."""

    path: Path
    what: str
    mode: int


def _check(flag: str, wrong: str | None) -> None:
    if wrong:
        raise DataError(f"{flag}: {wrong}")


# ----------------------------------------------------------------------------- init
def init(folder: Path, *, site: str, broker: str, timezone: str, ca: Path | None = None) -> Made:
    """Make the site's folder, whole, where none is."""
    # The config's own checks, so that a site is never made with a value a node would refuse.
    for flag, option, value in (("--site", SITE["id"], site), ("--broker", MQTT["url"], broker),
                                ("--timezone", SITE["timezone"], timezone)):
        assert option.check is not None
        _check(flag, option.check(value))
    ca_text = _read_ca(ca) if ca else None
    if (folder / RECORD).exists():
        raise SekishoError(f"{folder} already holds a site ({_record_line(folder)}); a site is made once: "
                           f"add nodes with `sekisho site join {folder} NODE --roles ...`")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SekishoError(f"{folder} exists and is not an empty folder; name a new one")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))  # mode 0700
    try:
        record = SiteRecord(site, broker, timezone, utc_now())
        SiteKey.load_or_create(work / SITE_KEY)
        recorder, officer = keygen(work / RECORDER_KEY), keygen(work / OFFICER_KEY)
        password = new_password()
        write_whole(work / OFFICER_PASSWORD, f"{password}\n".encode(), 0o600)
        write_whole(work / PASSWD, PasswordFile().with_user(OFFICER, password).text().encode(), 0o600)
        if ca_text is not None:
            write_whole(work / CA, ca_text.encode(), 0o644)
        write_whole(work / OFFICER_CONFIG, _officer_config(record, folder, ca_text is not None).encode(), 0o600)
        write_whole(work / RECORD, _record_text(record).encode(), 0o600)
        os.rename(work, folder)  # onto nothing, or onto an empty folder: both atomic
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Made(folder, record, public_key_text(recorder), public_key_text(officer), ca_text is not None)


def _read_ca(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"--ca: cannot read {path}: {exc.strerror or exc}") from None
    try:
        x509.load_pem_x509_certificate(data)
        return data.decode()
    except ValueError:
        raise DataError(f"--ca: {path} is not a PEM certificate (the CA that signed the broker's)") from None


def _officer_config(r: SiteRecord, folder: Path, ca: bool) -> str:
    """The officer's own config, for ``sekisho cmd send --key officer.key`` and ``sekisho watch``
    from this machine: the site, and the broker as the officer (docs/mqtt.md); its paths are the
    site folder's."""
    q = json.dumps
    return (f"# The officer's config: sekisho cmd send OP --key {folder / OFFICER_KEY} --node NODE "
            f"--config {folder / OFFICER_CONFIG}\n"
            f"[site]\nid = {q(r.id)}\nnode = {q(OFFICER)}\ntimezone = {q(r.timezone)}\n\n"
            f"[mqtt]\nurl = {q(r.broker)}\nusername = {q(OFFICER)}\n"
            f"password_file = {q(str(folder / OFFICER_PASSWORD))}\n"
            + (f"ca_file = {q(str(folder / CA))}\n" if ca else ""))


def _record_text(r: SiteRecord) -> str:
    return ("# The site record `sekisho site init` made; `sekisho site join` reads it.\n"
            f"format = {RECORD_FORMAT}\nid = {json.dumps(r.id)}\nbroker = {json.dumps(r.broker)}\n"
            f"timezone = {json.dumps(r.timezone)}\nmade = {json.dumps(r.made)}\n")


def _record_line(folder: Path) -> str:
    try:
        r = read_record(folder)
    except SekishoError:
        return "its site.toml does not read"
    return f"site {r.id}, made {r.made}"


def read_record(folder: Path) -> SiteRecord:
    path = folder / RECORD
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        what = "no such folder" if not folder.exists() else f"no {RECORD}"
        raise NoInput(f"{folder}: not a site folder ({what}; `sekisho site init` makes one)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not a site record ({exc})") from None
    if raw.get("format") != RECORD_FORMAT or not all(isinstance(raw.get(k), str)
                                                     for k in ("id", "broker", "timezone", "made")):
        raise DataError(f"{path}: not a site record of format {RECORD_FORMAT}")
    return SiteRecord(raw["id"], raw["broker"], raw["timezone"], raw["made"])


# ----------------------------------------------------------------------------- join
def parse_roles(text: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    if not roles:
        raise DataError(f"--roles: name at least one of {', '.join(ROLES)}")
    assert SITE["roles"].check is not None
    _check("--roles", SITE["roles"].check(list(roles)))
    return roles


def join(folder: Path, node: str, roles: tuple[str, ...], out: Path | None = None) -> Joined:
    """A new broker password for ``node`` in the site's password file, and its bundle."""
    record = read_record(folder)
    assert SITE["node"].check is not None
    _check("NODE", SITE["node"].check(node))
    if node == OFFICER:
        raise DataError(f"NODE: {OFFICER!r} is the officer's broker user; name the node otherwise")
    passwd = folder / PASSWD
    try:
        users = PasswordFile.parse(passwd.read_text())
        site_key = (folder / SITE_KEY).read_text().strip()
        ca = (folder / CA).read_text() if (folder / CA).exists() else None
        recorder_key = (folder / RECORDER_KEY).read_text()
    except OSError as exc:
        raise SekishoError(f"{folder}: cannot read the site: {exc.strerror or exc} ({exc.filename})") from None
    config = node_config(record, node, roles, ca=ca is not None,
                         recorder_public=public_key_text(load_private_key(folder / RECORDER_KEY)),
                         officer_public=public_key_text(load_private_key(folder / OFFICER_KEY)))
    password = new_password()
    bundle = Bundle(site=record.id, node=node, roles=roles, made=utc_now(), etc=ETC, config=config,
                    broker_password=password, site_key=site_key, ca=ca,
                    recorder_key=recorder_key if "recorder" in roles else None)
    path = out or folder / f"{node}{SUFFIX}"
    try:
        write_whole(path, dumps(bundle), 0o600)
    except FileNotFoundError:
        raise NoInput(f"--out: no folder {path.parent}") from None
    except IsADirectoryError:
        raise DataError(f"--out: {path} is a folder; name the bundle's file") from None
    write_whole(passwd, users.with_user(node, password).text().encode(), 0o600)
    return Joined(path, node in users.users(), passwd)


SKELETONS = {
    "door": """\
# door: the door, its readers and inputs (examples/sekisho.toml explains every key).
# [areas.operator-room]
# [levels.staff]
# doors = ["entrance"]
# [doors.entrance]
# area_in = "operator-room"
# strike = { driver = "gpio", chip = "gpiochip0", line = 17 }
# [readers.entrance-in]
# driver = "pcsc"
# name = "ACS ACR122U PICC Interface 00 00"
# door = "entrance"
# direction = "in"
# [inputs.entrance-contact]
# driver = "gpio"
# kind = "contact"
# door = "entrance"
# line = 22
""",
    "desk": """\
# desk: the desk, its card slot and seat (docs/desks.md).
# [desks.desk-01]
# seat = "seat0"
# area = "operator-room"
# [readers.desk-01]
# driver = "pcsc"
# name = "SONY FeliCa RC-S300/P*"
# desk = "desk-01"
""",
    "usb": """\
# usb: USB device control (docs/usb.md); the rules file beside this one.
# [usb]
# rules = "usb/site.rules"
""",
    "print": """\
# print: print release at CUPS (docs/printing.md sets up the queues and their policies).
# [readers.printer]
# driver = "pcsc"
# [print]
# hold_queue = "office-hold"
# printer = "office-printer"
# reader = "printer"
# area = "operator-room"
# supervisor_levels = ["security"]
""",
}


RECORDER_TOPICS = (("read", "#"), ("write", "alarm/+"), ("write", "cmd/+"), ("write", "area/+/occupancy"),
                   ("write", "enrolment/snapshot/manifest"), ("write", "enrolment/snapshot/chunk/+"),
                   ("write", "enrolment/delta"))
"""What a recorder's broker user may do beyond the pattern lines every node has: the example ACL's
``user recorder`` block, which a test holds equal to this."""


def recorder_acl(site: str, node: str) -> str:
    """The ACL block a recorder node needs: unlike a door's or a desk's, it names nothing the
    installer fills in later, so ``site join`` can print it whole."""
    return "\n".join([f"user {node}", *(f"topic {how} sekisho/v1/{site}/{topic}" for how, topic in RECORDER_TOPICS)])


def node_config(record: SiteRecord, node: str, roles: tuple[str, ...], *, recorder_public: str,
                officer_public: str, ca: bool) -> str:
    """The config stub of one node: all that the site decides, and a commented skeleton of what
    the installer fills in at the node (its doors, desks, USB rules)."""
    q = json.dumps
    parts = [
        f"# The config of node {node} of site {record.id}, made by `sekisho site join` on {utc_now()}.\n"
        f"# Fill in the commented sections of this node's roles, then: sekisho check-config\n\n"
        f"[site]\nid = {q(record.id)}\nnode = {q(node)}\ntimezone = {q(record.timezone)}\n"
        f"roles = [{', '.join(q(r) for r in roles)}]\n\n"
        f"[mqtt]\nurl = {q(record.broker)}\nusername = {q(node)}\npassword_file = {q(f'{ETC}/{NODE_PASSWORD}')}\n"
        + (f"ca_file = {q(f'{ETC}/{CA}')}\n" if ca else "")
        + "\n# The recorder signs enrolment snapshots, deltas and replay requests; the officer's key\n"
        f"# signs commands from the console and `sekisho cmd send`.\n"
        f"[commands.keys.recorder]\npublic_key = {q(recorder_public)}\nops = [{', '.join(map(q, RECORDER_OPS))}]\n\n"
        f"[commands.keys.officer]\npublic_key = {q(officer_public)}\nops = [{', '.join(map(q, OFFICER_OPS))}]\n",
    ]
    if "recorder" in roles:
        parts.append(f"\n[recorder]\n# The recorder's private key, beside this file (mode 0600).\n"
                     f"signing_key = {q(RECORDER_KEY)}\n"
                     "# The site's access levels, which people are enrolled with here; what each opens is\n"
                     "# each door and desk node's own [levels.<name>].\n"
                     '# levels = ["operators", "security"]\n')
    parts += [f"\n{SKELETONS[r]}" for r in roles if r in SKELETONS]
    return "".join(parts)


# ----------------------------------------------------------------------------- install
def install(bundle: Bundle, *, etc: Path, data_dir: Path, force: bool = False,
            keep_config: bool = False) -> list[Written]:
    """Put the bundle's files in place: every check first, then the writes. ``keep_config``
    leaves a config that is there (filled in at the node) and replaces the rest: a re-join's
    bundle brings a new password to a node already set up."""
    config = bundle.config
    if str(etc) != bundle.etc:
        config = config.replace(f'"{bundle.etc}/', f'"{etc}/')
    plan = [(etc / CONFIG, config, 0o640), (etc / NODE_PASSWORD, f"{bundle.broker_password}\n", 0o600)]
    if bundle.ca is not None:
        plan.append((etc / CA, bundle.ca, 0o644))
    if bundle.recorder_key is not None:
        plan.append((etc / RECORDER_KEY, bundle.recorder_key, 0o600))
    plan.append((data_dir / SITE_KEY, f"{bundle.site_key}\n", 0o600))

    done: list[Written] = []
    refused = []
    for path, text, mode in plan:
        old = _existing(path)
        if old is None:
            done.append(Written(path, "written", mode))
        elif old == text.encode():
            done.append(Written(path, "unchanged", mode))
        elif path == etc / CONFIG and keep_config:
            _same_node(path, old, bundle)
            done.append(Written(path, "kept", mode))
        elif path.name == SITE_KEY and path.parent == data_dir:
            raise SekishoError(f"{path}: this node has another site key, and every card hash in its store was made "
                               f"with it; never replaced (a node of another site? move the data dir away first)")
        elif not (force or keep_config):
            refused.append(str(path))
        else:
            done.append(Written(path, "replaced", mode))
    if refused:
        raise SekishoError(f"{', '.join(refused)} exist{'s' if len(refused) == 1 else ''} and differ from the "
                           f"bundle's; nothing was installed (--force replaces them; --keep-config keeps a "
                           f"filled-in config and replaces the rest)")
    for folder in (etc, data_dir):
        # Refused here, not at the second file: a node half-installed is worse than none.
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionDenied(str(existing))
    for folder, mode in ((etc, 0o755), (data_dir, 0o700)):
        if folder.is_dir():
            continue
        try:
            folder.mkdir(parents=True)
            folder.chmod(mode)
        except OSError as exc:
            raise SekishoError(f"{folder}: cannot create: {exc.strerror or exc}") from None
    texts = {path: text for path, text, _ in plan}
    for w in done:
        if w.what in ("written", "replaced"):
            write_whole(w.path, texts[w.path].encode(), w.mode)
    return done


def _same_node(path: Path, text: bytes, bundle: Bundle) -> None:
    """A config kept must be this node's, or the password installed beside it opens nothing."""
    try:
        site = tomllib.loads(text.decode()).get("site", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        site = {}
    if not isinstance(site, dict) or (site.get("id"), site.get("node")) != (bundle.site, bundle.node):
        raise SekishoError(f"{path} is not the config of node {bundle.node} of site {bundle.site} (its [site] says "
                           f"{site.get('node') if isinstance(site, dict) else None!r}); not kept, nothing was "
                           f"installed")


def _existing(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SekishoError(f"{path}: cannot read: {exc.strerror or exc}") from None
