"""What ``sekisho cmd ...`` does: make and show signing keys, and sign a command for a node and
send it through the broker (commands.py has the signing, the sending and the node's checks).

An argument is NAME=VALUE, read as JSON when it parses and as text otherwise; a float is refused,
as the node would refuse it. The arguments are declared in cli.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import ops
from .cli_site import _config
from .errors import SekishoError


def _key_name(file: str, name: str | None) -> str:
    name = name or Path(file).name.split(".")[0]
    if wrong := config_mod.topic_name(name):
        raise SekishoError(f"key name {name!r}: {wrong} (give one with --name or --key-name)")
    return name


def cmd_cmd_ops(args: argparse.Namespace) -> int:
    print(ops.help_text(ops.declared()))
    return 0


def cmd_cmd_keygen(args: argparse.Namespace) -> int:
    from .commands import keygen, public_key_text
    name = _key_name(args.file, args.name)
    key = keygen(args.file)
    print(f"# {args.file}: a new private key; keep it secret. Add this to each node's config:")
    print(f'[commands.keys.{name}]\npublic_key = "{public_key_text(key)}"\nops = ["usb.allow"]')
    return 0


def cmd_cmd_public_key(args: argparse.Namespace) -> int:
    from .commands import load_private_key, public_key_text
    print(public_key_text(load_private_key(args.file)))
    return 0


def _signed(args: argparse.Namespace) -> tuple[config_mod.Config, dict[str, Any]]:
    from .commands import load_private_key, sign
    cfg = _config(args)
    values: dict[str, Any] = {}
    for item in args.arg:
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise SekishoError(f"{item!r}: an argument is NAME=VALUE, e.g. minutes=10")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
        if isinstance(values[name], float):
            raise SekishoError(f"{item!r}: commands carry whole numbers only")
    key = load_private_key(args.key)
    return cfg, sign(args.op, values, site=cfg.site.id, node=args.node or cfg.site.node,
                     key_name=_key_name(args.key, args.key_name), key=key)


def cmd_cmd_sign(args: argparse.Namespace) -> int:
    _, message = _signed(args)
    print(json.dumps(message, ensure_ascii=False))
    return 0


def cmd_cmd_send(args: argparse.Namespace) -> int:
    from .commands import send
    cfg, message = _signed(args)
    answer = send(cfg, message, timeout=args.timeout)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    if not answer.get("ok"):
        print(f"sekisho: {message['node']} refused {message['op']}: {answer.get('error')}", file=sys.stderr)
        return 1
    return 0
