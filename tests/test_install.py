"""make install into a staging root (DESTDIR, so no Debian package and nothing of this machine is
touched): every file with its mode and owner, the venv built from requirements/node.lock, whose
sekisho checks the staged example config; a second install changes nothing and keeps a config
that was edited; a site bundle replaces the example config with --force, as the README says;
make uninstall keeps the config and the data, and PURGE=1 takes them too.

The venv is really built, by pip from the lock with hashes (about 40 s with pip's cache warm):
that is what proves the installed venv runs, and a faked one would prove nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import REPO

DOCS = sorted(f"/usr/share/doc/sekisho/docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
FILES = {  # everything outside the venv, with its mode
    "/usr/local/bin/sekisho": 0o777,  # a symbolic link, to /opt/sekisho/bin/sekisho
    "/etc/sekisho": 0o755,
    "/etc/sekisho/sekisho.toml": 0o640,
    "/etc/sekisho/usb": 0o755,
    "/etc/sekisho/usb/call-centre.rules": 0o640,
    "/etc/systemd/system/sekisho.service": 0o644,
    "/etc/udev/rules.d/70-sekisho-usb.rules": 0o644,
    "/etc/tmpfiles.d/sekisho.conf": 0o644,
    "/etc/modules-load.d/sekisho.conf": 0o644,
    "/usr/share/doc/sekisho": 0o755,
    "/usr/share/doc/sekisho/README.md": 0o644,
    "/usr/share/doc/sekisho/docs": 0o755,
    **dict.fromkeys(DOCS, 0o644),
}
SOURCES = {  # what each installed file is a copy of
    "/etc/sekisho/sekisho.toml": "examples/sekisho.toml",
    "/etc/sekisho/usb/call-centre.rules": "examples/usb/call-centre.rules",
    "/etc/systemd/system/sekisho.service": "systemd/sekisho.service",
    "/etc/udev/rules.d/70-sekisho-usb.rules": "systemd/70-sekisho-usb.rules",
    "/etc/tmpfiles.d/sekisho.conf": "packaging/tmpfiles-sekisho.conf",
    "/etc/modules-load.d/sekisho.conf": "packaging/modules-load-sekisho.conf",
    "/usr/share/doc/sekisho/README.md": "README.md",
    **{d: f"docs/{Path(d).name}" for d in DOCS},
}
PARENTS = {"/usr/local", "/usr/local/bin", "/etc", "/etc/systemd", "/etc/systemd/system", "/etc/udev", "/etc/udev/rules.d", "/etc/tmpfiles.d", "/etc/modules-load.d", "/usr",
           "/usr/share", "/usr/share/doc", "/opt"}


def make(target: str, root: Path, *extra: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), target, f"DESTDIR={root}", *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def staged(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root but the venv's insides: its mode, owner and group."""
    out = {}
    for p in root.rglob("*"):
        rel = "/" + str(p.relative_to(root))
        if rel.startswith("/opt/sekisho/"):
            continue
        st = p.lstat()
        out[rel] = (st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


def locked() -> dict[str, str]:
    text = (REPO / "requirements/node.lock").read_text()
    return {name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_make_install_into_a_staging_root_and_back(tmp_path):
    root = tmp_path / "root"
    venv = root / "opt/sekisho"
    out = make("install", root).stdout
    assert "installing Debian packages" not in out and "apt-get" not in out
    assert "usbcore.authorized_default=0" in out and "update-grub" in out and "systemctl enable --now sekisho" in out
    assert "sekisho site install" in out

    files = staged(root)
    assert {k: v for k, v in files.items() if k not in PARENTS | {"/opt/sekisho"}} == \
        {path: (mode, 0, 0) for path, mode in FILES.items()}
    assert (root / "usr/local/bin/sekisho").readlink() == Path("/opt/sekisho/bin/sekisho")
    for path, source in SOURCES.items():
        assert (root / path.lstrip("/")).read_bytes() == (REPO / source).read_bytes(), path

    # The venv: every package of the lock at its pinned version, in the venv itself (not Debian's
    # copy through the system site-packages), and its scripts name /opt/sekisho, not the stage.
    python = venv / "bin/python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert site.startswith(f"{venv}/lib/")
    listing = subprocess.run([python, "-c", "import importlib.metadata as m, json, sys; print(json.dumps("
                              "{d.metadata['Name'].lower().replace('_', '-'): d.version "
                              "for d in m.distributions(path=[sys.argv[1]])}))", site],
                             capture_output=True, text=True, check=True)
    installed = json.loads(listing.stdout)
    assert {k: installed.get(k) for k in locked()} == locked()
    assert "sekisho" in installed
    script = (venv / "bin/sekisho").read_text()
    assert script.startswith("#!/opt/sekisho/bin/python\n")
    for f in [*(venv / "bin").glob("*"), venv / "pyvenv.cfg"]:
        if not f.is_symlink():
            assert str(root) not in f.read_text(errors="replace"), f
    assert (venv / "sekisho-install.sha256").stat().st_mode & 0o777 == 0o644

    # The installed sekisho, on the installed example config.
    config = root / "etc/sekisho/sekisho.toml"
    r = subprocess.run([python, venv / "bin/sekisho", "check-config", "--config", config],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "OK (site tokyo-hq, node door-a" in r.stdout

    # Again: nothing changes, and a config someone edited stays as it is.
    config.write_text(config.read_text() + "\n# edited at the node\n")
    edited = config.read_bytes()
    again = make("install", root).stdout
    assert "nothing changed" in again and "installed" not in again, again
    assert config.read_bytes() == edited
    assert staged(root) == files

    # The README's next step: the node's bundle replaces the example config with --force, and
    # only with it; check-config then asks for the sections of the node's roles.
    sekisho = [python, venv / "bin/sekisho"]
    site = tmp_path / "site"
    subprocess.run([*sekisho, "site", "init", site, "--site", "tokyo-hq", "--broker", "mqtts://broker.example:8883"],
                   capture_output=True, text=True, check=True, cwd=tmp_path)
    subprocess.run([*sekisho, "site", "join", site, "desk-017", "--roles", "desk"], capture_output=True, text=True,
                   check=True, cwd=tmp_path)
    where = ["--etc", root / "etc/sekisho", "--data-dir", root / "var/lib/sekisho"]
    bundle = site / "desk-017.sekisho-bundle"
    r = subprocess.run([*sekisho, "site", "install", bundle, *where], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and "--force replaces them" in r.stderr, r.stderr
    assert config.read_bytes() == edited
    r = subprocess.run([*sekisho, "site", "install", bundle, "--force", *where], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*sekisho, "check-config", "--config", config], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 78 and "site.roles: names desk, and the config has no [desks.<name>]" in r.stderr, r.stderr
    edited = config.read_bytes()

    # Uninstall keeps the config and the data (and says so); PURGE=1 takes them too.
    out = make("uninstall", root).stdout
    assert "kept      /etc/sekisho" in out and "kept      /var/lib/sekisho" in out
    left = {k for k in staged(root) if k not in PARENTS}
    assert left == {"/etc/sekisho", "/etc/sekisho/sekisho.toml", "/etc/sekisho/usb",
                    "/etc/sekisho/usb/call-centre.rules", "/etc/sekisho/mqtt.password", "/var", "/var/lib",
                    "/var/lib/sekisho", "/var/lib/sekisho/site.key"}
    assert config.read_bytes() == edited
    assert "nothing to remove" not in make("uninstall", root, "PURGE=1").stdout
    assert {k for k in staged(root) if k not in PARENTS | {"/var", "/var/lib"}} == set()
    assert "nothing to remove" in make("uninstall", root, "PURGE=1").stdout
