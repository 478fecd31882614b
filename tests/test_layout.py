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


def calls(path: Path, name: str):
    """Every call of a function or method called ``name`` in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)) == name:
                yield node


def sources():
    for folder in ("daemon", "drivers", "policies", "bench"):
        yield from sorted((REPO / folder).rglob("*.py"))


def test_every_logger_is_named_after_its_module():
    """One scheme: logging.getLogger(__name__), so a log line names the module it came from."""
    bad = [(str(p.relative_to(REPO)), c.lineno) for p in sources() for c in calls(p, "getLogger")
           if not (len(c.args) == 1 and isinstance(c.args[0], ast.Name) and c.args[0].id == "__name__")]
    assert not bad, bad


def test_timestamps_are_written_in_one_place():
    """RFC 3339 text is made by daemon/timestamps.py only (rfc3339, utc_now): the store compares
    timestamps as text, which orders them only if every one has the same form."""
    bad = [(str(p.relative_to(REPO)), c.lineno) for p in sources() if p.name != "timestamps.py"
           for c in calls(p, "isoformat") if any(k.arg == "timespec" for k in c.keywords)]
    assert not bad, bad
