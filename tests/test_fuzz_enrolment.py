"""Hostile signed enrolment messages (enrolment_delta.verify, enrolment_snapshot.check_manifest,
the receiver's ``_peek``): whatever arrives on the enrolment topics is refused with a
``SnapshotRefused`` (a reason and one line of text) or passes as what a trusted key signed for
this site and the next version; no other exception leaves the checks.

The budget is the hypothesis profile's (conftest.py)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from sekisho.daemon import enrolment_delta as ed
from sekisho.daemon import enrolment_snapshot as es
from sekisho.daemon.enrolment_receiver import _peek
from sekisho.daemon.store.audit import canonical_json

RECORDER = Ed25519PrivateKey.generate()
KEYS = {"recorder": RECORDER.public_key()}
CURRENT = 1

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

DEEP = b"[" * 100_000
SURROGATE = "\ud800"


def delta(**fields: Any) -> dict[str, Any]:
    return {**json.loads(ed.sign("test", CURRENT + 1, [], RECORDER, "recorder", created="2026-12-05T00:00:00Z")),
            **fields}


def resign(message: dict[str, Any]) -> dict[str, Any]:
    import base64
    body = {k: v for k, v in message.items() if k != "sig"}
    try:
        sig = base64.b64encode(RECORDER.sign(canonical_json(body))).decode()
    except (UnicodeEncodeError, ValueError, RecursionError):
        sig = message.get("sig", "")  # a body no signer can sign: sent with the old signature
    return {**message, "sig": sig}


def check_delta(payload: bytes) -> ed.VerifiedDelta | None:
    try:
        return ed.verify(payload, site="test", keys=KEYS, permitted=["recorder"], current=CURRENT)
    except es.SnapshotRefused as exc:
        assert exc.reason and "\n" not in str(exc)
        return None


def check_manifest(payload: bytes) -> dict[str, Any] | None:
    try:
        return es.check_manifest(payload, site="test", keys=KEYS, permitted=["recorder"], current=CURRENT)
    except es.SnapshotRefused as exc:
        assert exc.reason and "\n" not in str(exc)
        return None


@given(st.binary(max_size=1024) | JSON.map(lambda v: json.dumps(v).encode()))
@example(DEEP)
@example(b'{"version": ' + b"[" * 5000)
@example(json.dumps(delta(created=SURROGATE)).encode())
def test_any_message_is_refused_cleanly(payload):
    assert check_delta(payload) is None
    assert check_manifest(payload) is None
    version = _peek(payload, "version")
    assert version is None or isinstance(version, int)


@given(st.sampled_from(["format", "site", "version", "created", "changes", "key", "sig"]), JSON, st.booleans())
@example("created", SURROGATE, True)
@example("changes", [{"op": SURROGATE}], True)
@example("changes", [{"op": "person.remove", "id": SURROGATE}], True)
@example("version", 10 ** 400, True)
@example("version", CURRENT + 1.0, True)
@example("changes", [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]], True)
def test_a_delta_field_of_any_value_is_refused_or_passes_as_signed(name, value, signed):
    message = delta(**{name: value})
    verified = check_delta(json.dumps(resign(message) if signed else message).encode())
    if verified is not None:
        assert verified.site == "test" and verified.version == CURRENT + 1 and verified.key == "recorder"


def test_the_good_delta_passes():
    assert check_delta(json.dumps(delta()).encode()) is not None
