"""What ``sekisho door ...``, ``desk list``, ``print ...`` and ``usb ...`` do: see and drive the parts of the
running daemon.

What acts goes through the daemon's control socket (``_daemon``), as an op of ops.py: the daemon
decides, records and publishes it as it would a signed command, and a command never drives a
strike or writes sysfs behind its back. ``usb list|test-policy|generate`` read sysfs themselves
through usb_cli.py, imported only when they run, so other commands start without it. The
arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import config as config_mod
from .cli_site import _config, _data_dir, _no, _print_table, _record
from .errors import PermissionDenied, SekishoError, Unavailable


def _daemon(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    from . import control
    reply = control.call(_data_dir(args), request, timeout=10)
    if reply is None:
        raise Unavailable("no daemon is running with this --data-dir (start it: sekisho run)")
    if not reply["ok"]:
        raise SekishoError(reply["error"])
    return reply


def cmd_door_list(args: argparse.Namespace) -> int:
    _config(args)
    _print_table(_daemon(args, {"op": "door.list"})["doors"], ["door", "lock", "mode", "contact", "alarm"])
    return 0


def _door(args: argparse.Namespace) -> None:
    cfg = _config(args)
    if args.door not in cfg.doors:
        raise _no("door", args.door, cfg.doors, str(cfg.path))


def cmd_door_unlock(args: argparse.Namespace) -> int:
    _door(args)
    _daemon(args, {"op": "door.unlock", "door": args.door, "seconds": args.seconds})
    print(f"{args.door} released")
    return 0


def cmd_door_mode(args: argparse.Namespace) -> int:
    _door(args)
    _daemon(args, {"op": "door.mode", "door": args.door, "mode": args.mode})
    print(f"{args.door} is now in {args.mode} mode")
    return 0


def cmd_alarm_ack(args: argparse.Namespace) -> int:
    cfg, record = _record(args, create=False)
    open_ids = [row["id"] for row in record.alarms(open_only=True)]
    if args.id not in open_ids:
        raise _no("open alarm", args.id, open_ids, f"the record of {cfg.site.node}")
    reply = _daemon(args, {"op": "alarm.ack", "id": args.id, "note": args.note})
    if reply["closed"]:
        print(f"{reply['id']} acknowledged by {reply['acked_by']} and closed (its condition had cleared)")
    else:
        print(f"{reply['id']} acknowledged by {reply['acked_by']}; open until its condition clears")
    return 0


def cmd_desk_list(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if not cfg.desks:
        raise SekishoError(f"{cfg.path} has no [desks.<name>] section")
    _print_table(_daemon(args, {"op": "desk.list"})["desks"], ["desk", "state", "person_id", "since_s", "sessions"])
    return 0


def _print_node(args: argparse.Namespace) -> None:
    cfg = _config(args)
    if cfg.print is None:
        raise SekishoError(f"{cfg.path} has no [print] section")


def cmd_print_list(args: argparse.Namespace) -> int:
    _print_node(args)
    reply = _daemon(args, {"op": "print.list"})
    _print_table([{**j, "document": next(iter(j["document"].values()))} for j in reply["jobs"]],
                 ["job", "subject", "pages", "document", "submitted", "expires"])
    for warning in reply["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_print_release(args: argparse.Namespace) -> int:
    _print_node(args)
    reply = _daemon(args, {"op": "print.release", "job": args.job})
    print(f"job {reply['job']} released to {reply['printer']}")
    return 0


def cmd_print_cancel(args: argparse.Namespace) -> int:
    _print_node(args)
    _daemon(args, {"op": "print.cancel", "job": args.job})
    print(f"job {args.job} cancelled")
    return 0


def _usb_config(args: argparse.Namespace) -> config_mod.UsbConfig:
    cfg = _config(args)
    if cfg.usb is None:
        raise SekishoError(f"{cfg.path} has no [usb] section: this node does not control USB")
    return cfg.usb


def cmd_usb_list(args: argparse.Namespace) -> int:
    from . import control
    from .usb_cli import no_rules, usb_list
    cfg = _config(args)
    if cfg.usb is None:
        # As `usbguard list-devices` answers on a machine with no policy: the devices and what the
        # kernel has authorized, each decided as the implicit target (block) would decide it.
        print(f"{cfg.path} has no [usb] section: nothing controls USB on this node; each device is shown "
              f"as the implicit target (block) would decide it", file=sys.stderr)
        return usb_list(no_rules(), as_json=args.json)
    u = cfg.usb
    reply = control.call(_data_dir(args), {"op": "usb.list"}, timeout=10)
    status = reply if reply and reply.get("ok") else None
    return usb_list(u.rules, as_json=args.json, status=status)


def cmd_usb_test_policy(args: argparse.Namespace) -> int:
    from .usb_cli import usb_test_policy
    implicit = args.implicit_target
    if implicit is None:
        try:
            cfg = _config(args)
            implicit = cfg.usb.implicit_target if cfg.usb else "block"
        except (config_mod.ConfigError, PermissionDenied):
            implicit = "block"  # testing a policy needs no site config
    return usb_test_policy(args.rules, args.devices, implicit_target=implicit, rules_folder=args.rules_folder,
                           as_json=args.json)


def cmd_usb_generate(args: argparse.Namespace) -> int:
    from .usb_cli import usb_generate
    return usb_generate(with_hash=not args.no_hash, ports=args.ports, hash_only=args.hash_only,
                        catch_all=args.catch_all)


def cmd_usb_allow(args: argparse.Namespace) -> int:
    from .usb_cli import allow_request, format_allow_reply
    _usb_config(args)
    print(format_allow_reply(_daemon(args, allow_request(args.match, args.minutes, args.interfaces))))
    return 0


def _spans(spans: list[list[int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    _config(args)
    reply = _daemon(args, {"op": "outbox.replay", "from_seq": args.first, "to_seq": args.last})
    if args.json:
        print(json.dumps({k: v for k, v in reply.items() if k != "ok"}, indent=2))
        return 0
    n = reply["queued"]
    print(f"{n} event{'' if n == 1 else 's'} of seq {reply['from_seq']} to {reply['to_seq']} queued to publish again "
          f"(the node's last seq is {reply['last_seq']})")
    for key, what in (("purged", "no longer held (past [site] retention_days)"),
                      ("beyond", "never recorded (after the last seq)"),
                      ("unreplayable", "held, but from before the store kept topics, and the topic cannot be told")):
        if reply[key]:
            print(f"{what}: {_spans(reply[key])}")
    return 0
