"""What ``sekisho sim ...`` does: drive a simulated reader or input of the running daemon through
its Unix socket (drivers/sim.py), and print the decision the daemon answers with.

Only a reader or input whose config says ``driver = "sim"`` can be driven, so a real door is never
opened from here. The arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Mapping
from typing import Any

from .cli_site import _config, _data_dir, _no, _uid
from .errors import DataError, PermissionDenied, SekishoError, Unavailable

ANSWER_TIMEOUT_S = 3.0
"""How long ``sim tap|pin|pull`` wait for the daemon's decision (a PIN check takes a scrypt)."""


def _sim(args: argparse.Namespace, request: dict[str, Any], name: str | None = None) -> int:
    from sekisho.drivers.sim import socket_path
    cfg = _config(args)
    known: Mapping[str, Any]
    if name is None:
        name, kind, known = args.reader, "reader", cfg.readers
    else:
        kind, known = "input", cfg.inputs
    item = known.get(name)
    if item is None:
        raise _no(kind, name, known, str(cfg.path))
    if item.driver != "sim":
        raise DataError(f"{kind} {name!r} is a {item.driver} {kind}, not a sim one")
    path = socket_path(item.name, item.options, _data_dir(args))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(ANSWER_TIMEOUT_S + 5)
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(s.makefile("rb").readline() or b"{}")
    except (FileNotFoundError, ConnectionRefusedError):
        raise Unavailable(f"no daemon is listening at {path}; is `sekisho run` running with this "
                          f"--config and --data-dir?") from None
    except PermissionError:
        raise PermissionDenied(str(path)) from None
    except OSError as exc:
        raise SekishoError(f"{path}: {exc}") from None
    if not reply.get("ok"):
        raise SekishoError(reply.get("error") or "the reader gave no answer")
    for d in reply.get("decided") or []:
        print(f"{name}: {d.get('result')} ({d.get('reason')}, rule {d.get('rule')})")
    if reply.get("waiting") == "pin":
        print(f"{name}: waiting for the PIN (sekisho sim pin {name} DIGITS)")
    return 0


def cmd_sim_tap(args: argparse.Namespace) -> int:
    _uid(args.uid)
    return _sim(args, {"op": "tap", "uid": args.uid, "answer": ANSWER_TIMEOUT_S})


def cmd_sim_pull(args: argparse.Namespace) -> int:
    return _sim(args, {"op": "pull", "answer": ANSWER_TIMEOUT_S})


def cmd_sim_pin(args: argparse.Namespace) -> int:
    return _sim(args, {"op": "pin", "digits": args.digits, "answer": ANSWER_TIMEOUT_S})


def cmd_sim_input(args: argparse.Namespace) -> int:
    request = {"op": "press"} if args.state == "press" else {"op": "set", "active": args.state in ("open", "on")}
    return _sim(args, request, args.input)
