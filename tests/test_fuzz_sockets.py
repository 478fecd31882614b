"""Hostile frames on the local sockets (drivers/local_socket.py, daemon/control.py, drivers/sim.py):
whatever a line holds, the control socket and a sim reader answer it with one JSON object
(``ok`` and, when refused, a one-line ``error``), never an exception; and a real daemon that
is sent oversize, partial, non-UTF-8 and nested frames keeps answering.

The decoding and the ops' argument checks are fuzzed directly (the budget is the hypothesis
profile's); the real daemon gets a fixed handful of frames, since each costs a connection."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from harness import wait_for
from sekisho.daemon.control import ControlServer
from sekisho.daemon.errors import SekishoError
from sekisho.daemon.ops import Parts, Table, declared
from sekisho.drivers.local_socket import LINE_LIMIT, json_request
from sekisho.drivers.sim import SimReader
from sekisho.policies.events import CardPresented, Event, PinEntered

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300, max_value=10 ** 400)
    | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

LINES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["op", "uid", "digits", "answer", "door", "seconds", "active", "x"]), JSON,
                    max_size=4).map(lambda d: json.dumps(d).encode()))

HOSTILE = [b"[" * 60_000, b'{"a":' * 12_000, b"\xff\xfe", b'{"op": "tap", "uid": "\xed\xa0\x80"}',
           b'{"op": "door.unlock", "door": "entrance", "seconds": ' + b"9" * 400 + b"}",
           b'{"op": "door.unlock", "door": "entrance", "seconds": NaN}', b'{"op": "pin", "digits": "\\u0661\\u0662\\u0663"}',
           b'{"op": "tap", "uid": "04a1b2c3\\u0000"}', b'{"op": ["door.list"]}', b"\x00", b"null", b"{}"]


def one_line_error(answer: dict[str, Any]) -> None:
    assert isinstance(answer["ok"], bool)
    json.dumps(answer).encode()
    if not answer["ok"]:
        assert isinstance(answer["error"], str) and answer["error"] and "\n" not in answer["error"]


@given(LINES)
@example(HOSTILE[0])
@example(HOSTILE[1])
@example(HOSTILE[2])
@example(b"[" * 1_000_000)
def test_any_line_is_a_request_or_a_one_line_refusal(line):
    try:
        request = json_request(line)
    except ValueError as exc:
        assert str(exc).startswith("bad request: ") and "\n" not in str(exc)
        return
    assert isinstance(request, dict)


@given(st.sampled_from([op for op in declared() if op.args]), st.dictionaries(st.text(max_size=10), JSON, max_size=4),
       st.data())
@example(next(op for op in declared() if op.name == "door.unlock"), {"door": "x", "seconds": 10 ** 400}, None)
@example(next(op for op in declared() if op.name == "usb.allow"), {"match": "x", "minutes": 10 ** 400}, None)
@example(next(op for op in declared() if op.name == "outbox.replay"), {"from_seq": 1e300, "to_seq": -0.0}, None)
def test_any_arguments_are_checked_or_refused(op, request, data):
    if data is not None:  # one declared argument given any value, the others any
        request = {**request, data.draw(st.sampled_from([a.name for a in op.args])): data.draw(JSON)}
    try:
        args = op.check(request)
    except SekishoError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for arg in op.args:
        value = args[arg.name]
        if value is None:
            continue
        assert isinstance(value, arg.kind)
        if isinstance(value, float):
            assert math.isfinite(value)
        if arg.bounds:
            assert arg.bounds[0] <= value <= arg.bounds[1]


@given(LINES)
@example(HOSTILE[0])
@example(HOSTILE[4])
@example(HOSTILE[8])
def test_the_control_socket_answers_any_line(tmp_path_factory, line):
    server = ControlServer(tmp_path_factory.getbasetemp(), Table(Parts(), declared()))
    one_line_error(asyncio.run(server._answer(line, 0)))


class Emitted(list[Event]):
    pass


@given(LINES)
@example(HOSTILE[3])
@example(HOSTILE[6])
@example(HOSTILE[7])
@example(b'{"op": "tap", "uid": "04:a1:b2:c3"}')
def test_a_sim_reader_answers_any_line(tmp_path_factory, line):
    emitted = Emitted()
    reader = SimReader("entrance-in", {}, emitted.append, data_dir=tmp_path_factory.getbasetemp())
    answer = asyncio.run(reader._answer(line, 0))
    one_line_error(answer)
    for event in emitted:
        if isinstance(event, CardPresented):
            assert 4 <= len(event.uid) <= 10
        if isinstance(event, PinEntered):
            assert event.digits.isascii() and event.digits.isdigit()
    if not answer["ok"]:
        assert not emitted


# ----------------------------------------------------------------------------- a real daemon
def frame(path: Path, data: bytes, *, close_write: bool = True) -> bytes:
    """Send raw bytes on a local socket; what came back before the daemon closed or answered."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall(data)
            if close_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # closed on us mid-frame: the over-long line
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        return got


def test_a_real_daemon_answers_hostile_frames_and_keeps_answering(site):
    site.start()
    control = site.data_dir / "control.sock"
    sim = site.data_dir / "sim" / "entrance-in.sock"
    for path in (control, sim):
        # Each line is answered with one JSON line; a bad one with ok false.
        for line in HOSTILE:
            got = frame(path, line + b"\n")
            answers = [json.loads(x) for x in got.splitlines()]
            assert len(answers) == 1, (path.name, line[:40], got[:200])
            one_line_error(answers[0])
        # Several lines in one write, each answered, in order.
        got = frame(path, b"\xff\n" + b'{"op": "probe"}\n' + b"[1]\n")
        assert [json.loads(x)["ok"] for x in got.splitlines()] == [False, False, False]
        # Blank lines and a line cut short by the end of the connection are refused like any other.
        assert [json.loads(x)["ok"] for x in frame(path, b"\n" * 3).splitlines()] == [False] * 3
        assert [json.loads(x)["ok"] for x in frame(path, b'{"op": "door.li').splitlines()] == [False]
        # An over-long line is closed without an answer.
        assert frame(path, b"x" * (LINE_LIMIT + 10) + b"\n") == b""
    assert site.control({"op": "door.list"})["ok"] is True
    assert wait_for(lambda: site.sim_answers("entrance-in"), 5, "the sim reader to answer")
    site.tap("04a1b2c3")  # and still takes a card
    assert site.proc is not None and site.proc.poll() is None
    assert "Traceback" not in site.daemon_log()  # each refusal was an answer, not a bug caught and logged
