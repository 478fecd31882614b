"""The dependency direction holds: policies import only the standard library; drivers import
policies and, inside functions only, their own hardware library; config checking loads no
hardware library at all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

STDLIB = sys.stdlib_module_names


def imports(path: Path, top_level_only: bool = False):
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, node.lineno


def test_policies_import_only_stdlib():
    bad = [(str(p.relative_to(REPO)), name, line) for p in (REPO / "policies").rglob("*.py")
           for name, line in imports(p)
           if name.split(".")[0] not in STDLIB and not name.startswith("sekisho.policies")]
    assert not bad, bad


def test_drivers_import_only_policies_and_stdlib_at_module_level():
    bad = [(str(p.relative_to(REPO)), name, line) for p in (REPO / "drivers").rglob("*.py")
           for name, line in imports(p, top_level_only=True)
           if name.split(".")[0] not in STDLIB and not name.startswith(("sekisho.policies", "sekisho.drivers"))]
    assert not bad, bad


def test_check_config_loads_no_hardware_library(tmp_path):
    probe = ("import sys; from sekisho.daemon.cli import main; rc = main(['check-config', '--config', sys.argv[1]]); "
             "print(sorted(m for m in ('smartcard', 'nfc', 'pyudev', 'gi', 'gpiod', 'evdev') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe, str(REPO / "examples" / "sekisho.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("[]"), r.stdout


def test_import_policies_pulls_nothing_outside_stdlib():
    probe = ("import sys; before = set(sys.modules); import sekisho.policies.access, sekisho.policies.events; "
             "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
             "print(sorted(new - set(sys.stdlib_module_names) - {'sekisho'}))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
