"""Signed commands: how an officer's console makes a node act, through the site's broker.

A command is one JSON object published (QoS 1, not retained) on ``cmd/<node>``:

    {"id": "5f0c...", "ts": "2026-11-23T07:12:03.114Z", "site": "tokyo-hq", "node": "desk-01",
     "op": "usb.allow", "args": {"match": "0781:5583:4C530001", "minutes": 10}, "key": "officer-1",
     "sig": "..."}

``sig`` is the base64 Ed25519 signature of the canonical JSON of the object without ``sig``:
keys sorted, no spaces, UTF-8, integers only (RFC 8785, JCS, gives the same bytes for such an
object). The node runs it only when every check passes, in this order:

  1. it is a JSON object of exactly these fields, each of its type (``malformed``; no ``sig``:
     ``unsigned``; no ``site``: ``malformed``, with words for the officer whose console signs as
     an older release did, since such a command may be genuine and is still refused);
  2. ``key`` names a key of ``[commands.keys]`` (``unknown key``) and ``sig`` verifies with it
     (``bad signature``);
  3. ``site`` is this node's site and ``node`` is this node (``addressed to``): without both in
     the signed bytes, a command for one node could be replayed to every node that has its name,
     here or at another site that trusts the same key, within the time window;
  4. ``ts`` is within ``max_skew_s`` of this node's clock, either way (``stale``);
  5. the key may run ``op`` (``not permitted``);
  6. ``id`` was never used before on this node, also before a restart (``replayed``): the id is
     recorded in the store before the op runs.

Every command, run or refused, is answered on ``cmd/<node>/result`` with ``id``, ``ok`` and
``error`` (and ``op``, ``node``, and what the op returned under ``result``) and audited; the
answer goes through the outbox like every event, so it survives a broker outage.

The ops are those of the node's table (ops.py) declared ``remote``, their arguments checked as
declared, run with the actor ``key:<name>``; any other op is answered as unknown.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import fnmatch
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .broker_connection import make_client
from .config import CommandsConfig, Config
from .errors import SekishoError, StoreError, Unavailable
from .ops import Table
from .store.audit import canonical_json
from .store.record import CommandResult, Record
from .timestamps import utc_now
from .topics import Topics

if TYPE_CHECKING:  # cryptography is imported where a key is used (CommandsConfig.verifiers says why)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

FIELDS = {"id": str, "ts": str, "site": str, "node": str, "op": str, "args": dict, "key": str, "sig": str}
MAX_PAYLOAD = 64 * 1024
MAX_INT = 2 ** 53
"""JCS writes numbers as JavaScript does; integers up to 2**53 are the same bytes either way."""
MAX_DEPTH = 8
MAX_ERROR = 200
"""A refusal's text is at most this long, in the answer, the audit log and the journal."""
INBOX = 64
"""Messages waiting to be checked; more than this at once is a flood, dropped and counted."""
PER_TURN = 8
"""Messages checked per turn of the loop (a signature check is some 60 µs)."""
NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
"""What ``op`` and ``key`` look like: they go into the answer and the audit log as they came."""


class Refused(Exception):
    """The command is not run; the text is the ``error`` of its answer."""

    def __init__(self, error: str, message: Mapping[str, Any] | None = None) -> None:
        super().__init__(error)
        self.message = message
        """The command as far as it could be read, when its fields are fit for the answer."""


# ----------------------------------------------------------------------------- the message
def signed_bytes(message: Mapping[str, Any]) -> bytes:
    """What ``sig`` signs: the canonical JSON of the message without ``sig``."""
    return canonical_json({k: v for k, v in message.items() if k != "sig"})


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Refused("malformed: a field appears twice")
        if not k.isascii():
            raise Refused("malformed: a field name is not ASCII")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise Refused("malformed: a number is not an integer (commands carry integers only)")


def _check_values(value: Any, depth: int = 0) -> None:
    """Integers JCS writes alike, text that is UTF-8 (JSON's \\ud800 escapes are not), and a
    nesting the store and the audit log can take."""
    if depth > MAX_DEPTH:
        raise Refused(f"malformed: nested more than {MAX_DEPTH} deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("malformed: a string is not valid Unicode (a lone surrogate escape)") from None
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise Refused("malformed: an integer is larger than 2**53")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_values(k, depth + 1)
            _check_values(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_values(v, depth + 1)


def parse(payload: bytes) -> dict[str, Any]:
    """The command in a payload, its shape checked; raises ``Refused``."""
    if len(payload) > MAX_PAYLOAD:
        raise Refused(f"malformed: {len(payload)} bytes; a command is at most {MAX_PAYLOAD}")
    try:
        message = json.loads(payload.decode("utf-8"), object_pairs_hook=_object, parse_float=_no_float,
                             parse_constant=_no_float)
    except UnicodeDecodeError:
        raise Refused("malformed: not UTF-8") from None
    except ValueError as exc:
        raise Refused(f"malformed: not JSON (at character {exc.pos})" if isinstance(exc, json.JSONDecodeError)
                      else "malformed: not JSON") from None
    except RecursionError:
        raise Refused("malformed: nested too deeply") from None
    if not isinstance(message, dict):
        raise Refused("malformed: not a JSON object")
    if set(message) == set(FIELDS) - {"sig"}:
        raise Refused("unsigned: the command has no sig")
    missing, unknown = sorted(set(FIELDS) - set(message)), sorted(set(message) - set(FIELDS))
    # What a console of the first release signs: every field but site. Refused, since the same
    # bytes would run at every site that trusts the key; answered with its id, so the console
    # that sent it learns why.
    older = missing == ["site"] and not unknown
    if (missing or unknown) and not older:
        # The names of unknown fields are the sender's words: never echoed (a newline in one
        # would write a line of its own into the log).
        raise Refused("malformed: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown fields ({len(unknown)})"] if unknown
                                                                        else [])))
    for name, kind in FIELDS.items():
        if name in message and not isinstance(message[name], kind):
            raise Refused(f"malformed: {name} must be a JSON {'object' if kind is dict else 'string'}")
    _check_values(message)
    if not 1 <= len(message["id"]) <= 128 or not message["id"].isprintable():
        raise Refused("malformed: id must be 1 to 128 printable characters")
    for name in ("op", "key", "site", "node"):
        if name in message and not NAME.fullmatch(message[name]):
            raise Refused(f"malformed: {name} must be lower-case letters, digits, '.' and '-', at most 64")
    if older:
        raise Refused("malformed: missing site: the command was signed without its site (an older signer); "
                      "sign it again with a signer that signs site (sekisho cmd sign, docs/mqtt.md)", message)
    return message


def timestamp(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refused("malformed: ts is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise Refused("malformed: ts has no UTC offset")
    return when


# ----------------------------------------------------------------------------- keys
def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (PKCS #8, as ``sekisho cmd keygen`` and ``openssl
    genpkey -algorithm ed25519`` write it, or OpenSSH's)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SekishoError(f"{path}: cannot read the key: {exc.strerror or exc}") from None
    key: object
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SekishoError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SekishoError(f"{path}: an {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
    return key


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as ``[commands.keys.<name>] public_key`` takes it."""
    from cryptography.hazmat.primitives import serialization
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def keygen(path: str | Path) -> Ed25519PrivateKey:
    """Make a new key and write it, mode 0600, to a file that must not exist yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SekishoError(f"{path} exists; a key is never overwritten (choose another file)") from None
    except OSError as exc:
        raise SekishoError(f"{path}: cannot create: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def sign(op: str, args: Mapping[str, Any], *, site: str, node: str, key_name: str, key: Ed25519PrivateKey,
         ts: str | None = None, command_id: str | None = None) -> dict[str, Any]:
    """A new signed command, ready to publish as JSON."""
    message = {"id": command_id or str(uuid.uuid4()), "ts": ts or utc_now(), "site": site, "node": node, "op": op,
               "args": dict(args), "key": key_name}
    return {**message, "sig": base64.b64encode(key.sign(signed_bytes(message))).decode()}


# ----------------------------------------------------------------------------- the node's side
class Refusals:
    """How many refusals of each reason this minute. Each reason's first ``BURST`` are answered
    and audited one by one (a console learns why its command was refused); past that, a flood of
    junk writes nothing but its count: one audit row for the reason when the minute is over."""

    BURST = 5
    WINDOW_S = 60.0

    def __init__(self, record: Record, loop: asyncio.AbstractEventLoop) -> None:
        self.record = record
        self.loop = loop
        self.seen: dict[str, int] = {}
        self.since = ""

    @staticmethod
    def reason(error: str) -> str:
        """The fixed words that start a refusal's text: a handful of them, whatever was sent."""
        return error.split(":", 1)[0].split(" '", 1)[0][:40]

    def admit(self, error: str) -> bool:
        """Count one refusal; whether it is to be answered and audited on its own."""
        self.count(self.reason(error), 1)
        return self.seen[self.reason(error)] <= self.BURST

    def count(self, reason: str, n: int) -> None:
        if not self.seen:
            self.since = utc_now()
            self.loop.call_later(self.WINDOW_S, self._summarize)
        self.seen[reason] = self.seen.get(reason, 0) + n

    def _summarize(self) -> None:
        seen, self.seen = self.seen, {}
        until = utc_now()
        for reason, n in sorted(seen.items()):
            unanswered = n if reason == "flood" else n - self.BURST
            if unanswered <= 0:
                continue
            log.warning("%d more commands refused (%s) between %s and %s, not answered one by one", unanswered,
                        reason, self.since, until)
            try:
                self.record.audit("bus", "command.refused", {"reason": reason, "count": unanswered,
                                                            "since": self.since, "until": until})
            except StoreError as exc:
                log.error("%s; the count above is not in the audit log", exc)


class CommandRunner:
    """Checks each message of ``cmd/<node>``, runs what passes, answers and audits all."""

    def __init__(self, cfg: CommandsConfig, *, site: str, node: str, ops: Table, record: Record,
                 queue: Callable[[CommandResult], None], result_topic: str, loop: asyncio.AbstractEventLoop,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.cfg = cfg
        self.site = site
        self.node = node
        self.ops = ops.remote()
        """Only the ops a signed command may run: any other is answered as an unknown op."""
        self.record = record
        self.queue = queue
        self.result_topic = result_topic
        self.loop = loop
        self.clock = clock
        self.keys = cfg.verifiers()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.lock = threading.Lock()
        self.inbox: collections.deque[bytes] = collections.deque()
        self.overflow = 0
        self.draining = False
        self.refusals = Refusals(record, loop)

    def offer(self, topic: str, payload: bytes) -> None:
        """The publisher's subscription handler, in paho's network thread. A flood of junk must
        neither hold the loop (a tap waits behind every queued message) nor memory: at most
        ``INBOX`` messages wait, the rest are counted and dropped unread (QoS 1 is answered by
        paho all the same, so the broker does not send them again)."""
        with self.lock:
            if len(self.inbox) >= INBOX:
                self.overflow += 1
                return
            self.inbox.append(payload)
            if self.draining:
                return
            self.draining = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """A few messages per loop turn, so a tap between them waits for a few, not for all."""
        for _ in range(PER_TURN):
            with self.lock:
                payload = self.inbox.popleft() if self.inbox else None
                overflow, self.overflow = self.overflow, 0
                if payload is None:
                    self.draining = False
            if overflow:
                self.refusals.count("flood", overflow)
            if payload is None:
                return
            try:
                self.receive(payload)
            except Exception:  # a bug must not stop the commands after it
                log.exception("command failed inside sekisho")
        self.loop.call_soon(self._drain)

    def receive(self, payload: bytes) -> None:
        """Check one message on the loop; run it in a task of its own if it passes."""
        if self.closed:
            return
        message: dict[str, Any] = {}
        try:
            message = parse(payload)
            self.check(message)
            if not self.record.claim_command(message["id"], message["key"], message["op"]):
                raise Refused(f"replayed: id {message['id']!r} was used before")
        except Refused as exc:
            self._refuse(exc.message or message, str(exc))
            return
        except StoreError as exc:
            # Not recorded, so not run; the answer waits in memory for the disk, like any event.
            self._answer(message, {"ok": False, "error": f"not run: cannot record it ({exc})"}, "command.refused")
            return
        task = self.loop.create_task(self._run(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _refuse(self, message: Mapping[str, Any], error: str) -> None:
        """Answered and audited each, up to ``Refusals.BURST`` a minute for one reason; past
        that counted, and the count audited once the minute is over."""
        if self.refusals.admit(error):
            self._answer(message, {"ok": False, "error": error[:MAX_ERROR]}, "command.refused")

    def check(self, message: dict[str, Any]) -> None:
        """Steps 2 to 5 of the module's list; raises ``Refused``."""
        public = self.keys.get(message["key"])
        if public is None:
            raise Refused(f"unknown key {message['key']!r}: not in [commands.keys] of this node")
        from cryptography.exceptions import InvalidSignature
        try:
            signature = base64.b64decode(message["sig"], validate=True)
            public.verify(signature, signed_bytes(message))
        except (binascii.Error, ValueError, InvalidSignature):
            raise Refused(f"bad signature: sig does not verify with key {message['key']!r}") from None
        if message["site"] != self.site:
            raise Refused(f"addressed to site {message['site']!r}, not {self.site!r}")
        if message["node"] != self.node:
            raise Refused(f"addressed to node {message['node']!r}, not {self.node!r}")
        skew = (timestamp(message["ts"]) - self.clock()).total_seconds()
        if abs(skew) > self.cfg.max_skew_s:
            raise Refused(f"stale: ts is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} this node's clock "
                          f"(at most {self.cfg.max_skew_s:g} s)")
        if not any(fnmatch.fnmatchcase(message["op"], p) for p in self.cfg.keys[message["key"]].ops):
            raise Refused(f"not permitted: key {message['key']!r} may not run {message['op']!r}")

    def close(self) -> None:
        """Take no more commands (the daemon is stopping): one arriving now would act on doors
        that are being locked for the stop."""
        self.closed = True
        for task in self.tasks:
            task.cancel()

    async def _run(self, message: dict[str, Any]) -> None:
        actor = f"key:{message['key']}"
        log.info("command %s: %s by %s", message["id"], message["op"], actor)
        reply = await self.ops.run(message["op"], message["args"], actor)
        self._answer(message, reply, "command.done" if reply["ok"] else "command.failed")

    def _answer(self, message: Mapping[str, Any], reply: Mapping[str, Any], action: str) -> None:
        ok, error = bool(reply["ok"]), reply.get("error")
        command_id = message.get("id")
        if not ok:
            log.warning("command %s refused: %s", command_id or "(no id)", error)
        payload = {"id": command_id, "ok": ok, "error": error, "node": self.node, "op": message.get("op")}
        result = {k: v for k, v in reply.items() if k not in ("ok", "error")}
        if result:
            payload["result"] = result
        detail = {"id": command_id, "op": message.get("op"), "key": message.get("key"), "error": error}
        if action != "command.refused":
            detail["args"] = message.get("args")
        self.queue(CommandResult(action, f"key:{message['key']}" if action != "command.refused" else "bus",
                                 self.result_topic, payload, detail))


# ----------------------------------------------------------------------------- the console's side
def send(cfg: Config, message: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """Publish a signed command to its node and wait for the answer; raises ``Unavailable`` when
    the broker cannot be reached or no answer comes in time."""
    topics = Topics(cfg.site.id)
    node = message["node"]
    answered = threading.Event()
    subscribed = threading.Event()
    failed: list[str] = []
    answer: dict[str, Any] = {}
    client = make_client(cfg.mqtt, f"sekisho-cmd-{uuid.uuid4().hex[:8]}")

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            failed.append(f"the broker refused the connection: {reason}")
            answered.set()
            return
        c.subscribe(topics.command_result(node), qos=1)

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if any(r.is_failure for r in reasons):
            failed.append(f"the broker refused the subscription to {topics.command_result(node)}")
            answered.set()
            return
        subscribed.set()
        c.publish(topics.command(node), json.dumps(message), qos=1)

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        try:
            got = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(got, dict) and got.get("id") == message["id"]:
            answer.update(got)
            answered.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    _, host, port = cfg.mqtt.endpoint
    try:
        client.connect(host, port)
    except OSError as exc:
        raise Unavailable(f"cannot reach the broker at {cfg.mqtt.url}: {exc.strerror or exc}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            where = "no answer" if subscribed.is_set() else "could not subscribe for the answer"
            raise Unavailable(f"{where} from node {node!r} within {timeout:g} s (is its daemon running and "
                              "connected to this broker?)")
    finally:
        client.disconnect()
        client.loop_stop()
    if failed:
        raise Unavailable(failed[0])
    return answer
