"""Hostile signed commands (commands.py): whatever arrives on cmd/<node>, the checks answer with a
``Refused`` (a clean refusal with its one-line text) or let a command through that is signed,
addressed to this node, fresh and permitted; no other exception ever leaves them, and an id runs
at most once.

The budget is the hypothesis profile's (conftest.py): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz``
for a long hand run."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.daemon import config
from sekisho.daemon.commands import MAX_ERROR, CommandRunner, Refused, parse, public_key_text, sign
from sekisho.daemon.ops import Parts, Table
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.record import Record

NOW = dt.datetime(2026, 11, 23, 7, 0, 0, tzinfo=dt.timezone.utc)
TS = "2026-11-23T07:00:00.000Z"
OFFICER = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
KEYS = {"officer": config.CommandKeyConfig("officer", base64.b64decode(public_key_text(OFFICER)), ("door.*",))}
SKEW_S = 30.0


def runner(**kw: Any) -> CommandRunner:
    return CommandRunner(config.CommandsConfig(SKEW_S, KEYS), site="test", node="door-a", ops=Table(Parts(), ()),
                         result_topic="r", clock=lambda: NOW, **{"record": None, "queue": None, "loop": None, **kw})


def verdict(payload: bytes, r: CommandRunner | None = None) -> str:
    """'' when the command passes every check, else the refusal's text; any other exception fails."""
    try:
        (r or runner()).check(parse(payload))
    except Refused as exc:
        text = str(exc)
        assert text and "\n" not in text[:MAX_ERROR], f"a refusal is one line: {text!r}"
        return text
    return ""


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
"""Any JSON value (NaN and Infinity included, which Python writes and reads)."""

FIELD = st.sampled_from(["id", "ts", "site", "node", "op", "args", "key", "sig"])

TIMES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda d, zone: d.isoformat() + zone,
              st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
              st.sampled_from(["Z", "+23:59", "-23:59", "", "+00:00", "+05:30"])),
    st.datetimes(min_value=NOW.replace(tzinfo=None) - dt.timedelta(minutes=2),
                 max_value=NOW.replace(tzinfo=None) + dt.timedelta(minutes=2)).map(lambda d: d.isoformat() + "Z"))
"""ts values: junk, any zone, the edges of the calendar (an offset there leaves datetime's range)."""


def good(**fields: Any) -> dict[str, Any]:
    message = sign("door.unlock", {"door": "entrance"}, site="test", node="door-a", key_name="officer", key=OFFICER,
                   ts=TS, command_id="c1")
    return {**message, **fields}


def resign(message: dict[str, Any], key: Ed25519PrivateKey = OFFICER) -> dict[str, Any]:
    """The message signed again, so that the checks after the signature's are reached."""
    from sekisho.daemon.commands import signed_bytes
    body = {k: v for k, v in message.items() if k != "sig"}
    return {**body, "sig": base64.b64encode(key.sign(signed_bytes(body))).decode()}


def test_the_good_command_passes():
    assert verdict(json.dumps(good()).encode()) == ""


@given(st.binary(max_size=2048))
@example(b"\xff\xfe{}")
@example(b"[" * 100_000)
@example(b'{"id": "\\ud800"}')
@example(json.dumps(good()).encode()[:-1])
@example(json.dumps(good()).encode().replace(b'"door.unlock"', b'"door.unlock\\u0000"'))
def test_any_bytes_are_a_command_or_a_refusal(payload):
    verdict(payload)


@given(JSON)
def test_any_json_value_is_refused(value):
    text = json.dumps(value).encode()
    assert verdict(text) != ""


@given(FIELD, JSON, st.booleans())
@example("args", {"n": 2 ** 53 + 1}, True)
@example("args", {"n": -(2 ** 64)}, True)
@example("args", {"n": 1.5}, True)
@example("args", {"deep": [[[[[[[[[[["x"]]]]]]]]]]]}, True)
@example("id", "x" * 129, True)
@example("id", "\x00", True)
@example("op", "door.unlock\x00", True)
@example("op", "shutdown", True)
@example("key", "stranger", True)
@example("node", "door-a\n", True)
@example("site", "test ", True)
@example("sig", "", False)
@example("sig", "!!!!", False)
@example("sig", base64.b64encode(b"\x00" * 64).decode(), False)
def test_a_field_of_any_value_is_refused_cleanly(name, value, signed):
    message = good(**{name: value})
    payload = resign(message) if signed and name != "sig" else message
    text = verdict(json.dumps(payload).encode())
    # Any id and any args may pass these checks (the op checks its args), nothing else but the good value.
    if name not in ("id", "args") and value != good()[name]:
        assert text, f"{name}={value!r} passed"


@given(st.lists(FIELD, unique=True), st.dictionaries(st.text(max_size=8), JSON, max_size=3))
def test_missing_and_unknown_fields_are_refused(drop, extra):
    message = {k: v for k, v in good().items() if k not in drop}
    message.update({k: v for k, v in extra.items() if k not in good()})
    text = verdict(json.dumps(resign(message) if "sig" not in drop else message).encode())
    assert text or (not drop and not set(extra) - set(good()))


@given(TIMES)
@example("0001-01-01T00:00:00+23:59")
@example("9999-12-31T23:59:59-23:59")
def test_a_timestamp_of_any_shape_or_distance_is_refused_unless_near(ts):
    text = verdict(json.dumps(resign(good(ts=ts))).encode())
    try:
        when = dt.datetime.fromisoformat(ts)
        near = when.tzinfo is not None and abs((when - NOW).total_seconds()) <= SKEW_S
    except (ValueError, OverflowError):
        near = False
    assert (text == "") is near, text


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-*0123456789", min_size=1, max_size=30))
@example("door.unlock")
@example("usb.allow")
@example("enroll")
def test_unknown_ops_are_refused_or_answered_as_unknown(op):
    text = verdict(json.dumps(resign(good(op=op))).encode())
    if text:
        return
    # Permitted by the key's pattern: the node's table answers an op it does not have as unknown.
    reply = asyncio.run(runner().ops.run(op, {}, "key:officer"))
    assert reply["ok"] is False and "unknown op" in reply["error"]


async def settle(r: CommandRunner) -> None:
    await asyncio.gather(*r.tasks)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One store for every example (a new one each costs more than the example); each example's
    ids are its own, so that they meet only each other."""
    db = Database(tmp_path_factory.mktemp("replay") / "data")
    yield db
    db.close()


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([OFFICER, STRANGER]),
                          st.sampled_from([TS, "2026-11-23T09:00:00Z"])), max_size=12))
def test_each_id_runs_at_most_once(database, sends):
    """Replays, through the runner's whole receive with a real store: a valid id runs once,
    every repetition is answered ``replayed``, and nothing raises."""
    answers: list[Any] = []
    loop = asyncio.new_event_loop()
    mine = uuid.uuid4().hex
    try:
        r = runner(record=Record(database, "door-a"), queue=answers.append, loop=loop)
        for command_id, key, ts in sends:
            r.receive(json.dumps(resign(good(id=f"{mine}-{command_id}", ts=ts), key)).encode())
        loop.run_until_complete(settle(r))
        valid = [i for i, k, t in sends if k is OFFICER and t == TS]
        # The node has no doors, so each op that runs is answered as failed; refusals never run.
        ran = [a for a in answers if a.action != "command.refused"]
        assert len(ran) == len(set(valid))
        replayed = [a for a in answers if str(a.payload["error"]).startswith("replayed")]
        assert len(replayed) == min(len(valid) - len(set(valid)), 5)  # Refusals.BURST answered one by one
    finally:
        loop.close()
