"""The table of operations, in process: every op's arguments checked from its declaration before
its handler runs, the remote flag honoured by the signed-command runner, an op without its part
absent from a node's table, the handlers on the door node's real collaborators (test_controllers'
House), and the command line's help and docs/mqtt.md listing the table."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import REPO
from sekisho.daemon import config
from sekisho.daemon.cli import build_parser, main
from sekisho.daemon.commands import CommandRunner, public_key_text, sign
from sekisho.daemon.ops import Arg, Op, Parts, Table, declared, help_text
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.record import Record
from sekisho.daemon.tap_enrolment import TapEnrolment
from sekisho.policies.access import Mode
from test_controllers import House, until

EVERY_PART = Parts(door_states=object(), alarms=object(), desks=object(), presence=object(), usb=object(), enrolment=object(), replay=object(), printing=object())  # type: ignore[arg-type]


def recording(ops: tuple[Op, ...]) -> tuple[Table, list[tuple[str, dict[str, Any], str]]]:
    """The declared ops with handlers that record what reaches them."""
    calls: list[tuple[str, dict[str, Any], str]] = []

    def handler(name: str):  # noqa: ANN202
        async def record(parts: Parts, args: dict[str, Any], actor: str) -> dict[str, Any]:
            calls.append((name, args, actor))
            return {"ran": name}
        return record
    return Table(EVERY_PART, [dataclasses.replace(op, handler=handler(op.name)) for op in ops]), calls


def good_value(arg: Arg) -> Any:
    if arg.choices:
        return arg.choices[-1]
    if arg.kind is str:
        return "x-1"
    return arg.bounds[0] if arg.bounds else 3


def run(table: Table, op: str, request: dict[str, Any], actor: str = "cli:test") -> dict[str, Any]:
    return asyncio.run(table.run(op, request, actor))


OPS = declared()
NAMES = [op.name for op in OPS]


def test_the_table_declares_each_op_once():
    assert sorted(NAMES) == sorted(set(NAMES))
    assert {"door.list", "door.unlock", "door.mode", "desk.list", "usb.allow", "usb.list", "enroll"} <= set(NAMES)
    assert all(op.summary and all(a.help for a in op.args) for op in OPS)
    assert all(hasattr(Parts(), op.needs) for op in OPS)


@pytest.mark.parametrize("op", OPS, ids=NAMES)
def test_a_request_that_fits_reaches_the_handler_checked_and_converted(op: Op):
    table, calls = recording(OPS)
    request = {"op": op.name, "unrelated": [1], **{a.name: good_value(a) for a in op.args if a.required}}
    assert run(table, op.name, request) == {"ok": True, "ran": op.name}
    name, args, actor = calls[0]
    assert (name, actor) == (op.name, "cli:test")
    # Only the declared arguments, each of its kind; an optional one left out is its default.
    assert set(args) == {a.name for a in op.args}
    for arg in op.args:
        if arg.required:
            assert args[arg.name] == good_value(arg) and isinstance(args[arg.name], arg.kind)
        else:
            assert args[arg.name] == arg.default


@pytest.mark.parametrize("op,arg", [(op, arg) for op in OPS for arg in op.args if arg.required],
                         ids=[f"{op.name}-{arg.name}" for op in OPS for arg in op.args if arg.required])
def test_a_required_argument_left_out_or_null_never_reaches_the_handler(op: Op, arg: Arg):
    table, calls = recording(OPS)
    request = {a.name: good_value(a) for a in op.args if a.required}
    for missing in ({k: v for k, v in request.items() if k != arg.name}, {**request, arg.name: None}):
        assert run(table, op.name, missing) == {"ok": False, "error": f"bad request: {op.name} needs {arg.name!r}"}
    assert calls == []


@pytest.mark.parametrize("op,arg", [(op, arg) for op in OPS for arg in op.args],
                         ids=[f"{op.name}-{arg.name}" for op in OPS for arg in op.args])
def test_an_argument_of_the_wrong_kind_never_reaches_the_handler(op: Op, arg: Arg):
    table, calls = recording(OPS)
    request = {a.name: good_value(a) for a in op.args if a.required}
    wrong = [{"a": 1}, [1], True] + (["ten", "nan"] if arg.kind is float else []) + \
        (["ten", 2.5, "2.5", "1e3", "--1"] if arg.kind is int else [])
    for value in wrong:
        answer = run(table, op.name, {**request, arg.name: value})
        assert answer["ok"] is False and answer["error"].startswith(f"{arg.name} must be "), answer
    assert calls == []


def test_choices_and_bounds_come_from_the_declaration():
    table, calls = recording(OPS)
    assert run(table, "door.mode", {"door": "entrance", "mode": "open"}) == {
        "ok": False, "error": "unknown mode 'open' (modes: normal, lockdown, free, emergency)"}
    assert run(table, "door.unlock", {"door": "entrance", "seconds": 0.1}) == {
        "ok": False, "error": "seconds must be between 0.5 and 3600"}
    assert run(table, "enroll", {"person": "u1", "reader": "r", "timeout": 601})["error"] == \
        "timeout must be between 1 and 600"
    assert calls == []
    # A number as JSON text (the control socket's float, a signed command's integer, a string
    # a hand-written request may carry) is a number; a name that looks like a number is a name.
    assert run(table, "door.unlock", {"door": 7, "seconds": "2.5"})["ok"]
    assert calls[-1][1] == {"door": "7", "seconds": 2.5}


def test_an_unknown_op_is_answered_with_the_known_ones():
    table, calls = recording(OPS)
    assert run(table, "door.open", {}) == {"ok": False, "error": f"unknown op 'door.open' (known: {', '.join(NAMES)})"}
    assert run(table, None, {})["error"].startswith("unknown op None")
    assert calls == []


def test_a_bug_in_a_handler_is_answered_and_logged(caplog):
    async def broken(parts: Parts, args: dict[str, Any], actor: str) -> dict[str, Any]:
        return {}["missing"]
    table = Table(EVERY_PART, [Op("door.list", "x", broken, "door_states")])
    assert run(table, "door.list", {}) == {"ok": False, "error": "internal error (see the node's log)"}
    assert "door.list failed inside sekisho" in caplog.text and "KeyError" in caplog.text


def test_a_node_has_only_the_ops_of_its_parts():
    table = Table(Parts(door_states=object(), presence=object(), enrolment=object()), OPS)  # type: ignore[arg-type]
    assert "door.unlock" in table and "enroll" in table
    assert "desk.list" not in table and "usb.allow" not in table and "usb.list" not in table
    assert run(table, "usb.list", {})["error"].startswith("unknown op 'usb.list' (known: door.list,")


# ----------------------------------------------------------------------------- the command runner
NOW = dt.datetime(2026, 11, 23, 7, 0, 0, tzinfo=dt.timezone.utc)
KEY = Ed25519PrivateKey.generate()


def test_the_command_runner_runs_remote_ops_only(tmp_path):
    """A key that may run every op still cannot run one the table keeps off the bus (enroll):
    it is answered as unknown, audited as failed, and its handler never runs."""
    loop = asyncio.new_event_loop()
    database = Database(tmp_path)
    table, calls = recording(OPS)
    answers: list[Any] = []
    keys = {"officer": config.CommandKeyConfig("officer", base64.b64decode(public_key_text(KEY)), ("*",))}
    runner = CommandRunner(config.CommandsConfig(30.0, keys), site="test", node="door-a", ops=table, record=Record(database, "door-a"),
                           queue=answers.append, result_topic="r", loop=loop, clock=lambda: NOW)
    remote = [op for op in OPS if op.remote]
    try:
        for op in OPS:
            message = sign(op.name, {a.name: good_value(a) for a in op.args if a.required}, site="test",
                           node="door-a", key_name="officer", key=KEY, ts="2026-11-23T07:00:00.000Z")
            runner.receive(json.dumps(message).encode())
            loop.run_until_complete(asyncio.wait(list(runner.tasks)))
    finally:
        runner.close()
        database.close()
        loop.close()
    assert [name for name, _, actor in calls] == [op.name for op in remote]
    assert {actor for _, _, actor in calls} == {"key:officer"}
    by_op = {a.payload["op"]: a for a in answers}
    assert by_op["enroll"].action == "command.failed"
    assert by_op["enroll"].payload["error"] == f"unknown op 'enroll' (known: {', '.join(op.name for op in remote)})"
    assert all(by_op[op.name].payload["ok"] for op in remote)


# ----------------------------------------------------------------------------- what people read
def test_cmd_send_help_and_cmd_ops_list_the_remote_ops(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["cmd"]
    send = next(a for a in sub._actions if a.dest == "action").choices["send"]
    text = send.format_help()
    assert main(["cmd", "ops"]) == 0
    listed = capsys.readouterr().out
    assert help_text(OPS) in text and listed.strip() == help_text(OPS).strip()
    for op in OPS:
        block = f"  {op.usage()}\n    {op.summary}\n" + "".join(
            f"      {a.name:<{max(len(b.name) for b in op.args)}}  {a.help}\n" for a in op.args)
        assert (block in listed) is op.remote, op.name


def test_docs_mqtt_lists_the_remote_ops_with_their_arguments():
    row = next(line for line in (REPO / "docs" / "mqtt.md").read_text().splitlines() if line.startswith("| `op` |"))
    assert "daemon/ops.py" in row and "sekisho cmd ops" in row
    documented = dict(re.findall(r"`([a-z]+\.[a-z]+)`(?: \{([^}]*)\})?", row))
    assert set(documented) == {op.name for op in OPS if op.remote}
    for op in OPS:
        if op.remote:
            assert [a.name for a in op.args] == re.findall(r"(?:^|, )`(\w+)`", documented[op.name]), op.name


# ----------------------------------------------------------------------------- the real handlers
def test_the_handlers_act_on_the_parts_the_composition_root_builds(tmp_path):
    """Through the table as the control socket runs it, on the door node's real collaborators."""
    async def go() -> None:
        loop = asyncio.get_running_loop()
        house = House(tmp_path, loop)
        house.people.add_person("bob", "Bob", "test")
        enrolment = TapEnrolment(house.config, house.people, house.key, loop)
        table = Table(Parts(door_states=house.states, presence=house.presence, enrolment=enrolment), declared())
        assert "desk.list" not in table and "usb.allow" not in table
        await house.states.startup()
        listed = await table.run("door.list", {"op": "door.list"}, "cli:root")
        assert [d["door"] for d in listed["doors"]] == ["entrance", "vault"]
        assert await table.run("door.unlock", {"door": "entrance"}, "cli:root") == {"ok": True}
        # Released for its unlock_s, 0.5 s: read from the strike's history, which a busy machine
        # cannot make the test miss, as it could the release itself.
        await until(lambda: house.strikes["entrance"].told[1:], "the strike released")
        assert house.strikes["entrance"].told[:2] == [False, True]
        assert await table.run("door.unlock", {"door": "back"}, "cli:root") == {
            "ok": False, "error": "no door 'back' (doors: entrance, vault)"}
        assert await table.run("door.mode", {"door": "vault", "mode": "lockdown"}, "key:officer") == {"ok": True}
        assert house.states.mode("vault") is Mode.LOCKDOWN
        assert (await table.run("enroll", {"person": "ghost", "reader": "entrance-in", "timeout": 5}, "cli:root")
                )["error"] == "no person 'ghost' (add them first: sekisho person add)"
        assert (await table.run("enroll", {"person": "bob", "reader": "nowhere", "timeout": 5}, "cli:root")
                )["error"].startswith("no reader 'nowhere'")
        assert not enrolment.take("entrance-in", b"\x04\x01")  # nobody waits: the door has the card
        waiting = loop.create_task(table.run("enroll", {"person": "bob", "reader": "entrance-in", "timeout": 5},
                                             "cli:root"))
        await asyncio.sleep(0.01)
        assert (await table.run("enroll", {"person": "bob", "reader": "entrance-in", "timeout": 5}, "cli:root")
                )["error"] == "an enrollment is already waiting at entrance-in"
        assert enrolment.take("entrance-in", bytes.fromhex("04b0b0b0"))
        card = house.key.card_hash(bytes.fromhex("04b0b0b0"))
        assert await waiting == {"ok": True, "card": card[:12]}
        assert [c["hash"] for c in house.people.cards("bob")] == [card]
        assert (await table.run("enroll", {"person": "bob", "reader": "entrance-in", "timeout": 1}, "cli:root")
                ) == {"ok": False, "error": "no card was presented at entrance-in within 1 s"}
        assert enrolment.waiting == {}
        await house.states.shutdown()
    asyncio.run(go())
