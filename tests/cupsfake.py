"""A real cupsd in a temp dir, with CUPS's own ``ippeveprinter`` as the printer, set up as
docs/printing.md tells a site to: a holding queue (accepting, stopped) and the printer's queue
(enabled, not shared), under the operation policies ``sekisho`` and ``sekisho-printer`` read from
examples/cupsd-policy-sekisho.conf, so the shipped policies are the ones tested. The printer keeps each job it prints in ``printed_dir`` (``-k``); its print command is
``/bin/true``, since without one ippeveprinter takes 5 to 15 s over each job to look busy.

cupsd listens on a Unix socket (what the daemon uses, ``server``) and on a loopback port, over
which ``submit`` prints as any user name (CUPS believes the name a request gives; the socket would
make every job root's). ippeveprinter registers with DNS-SD through Avahi's client, which needs a
system bus even when no Avahi daemon answers: it gets a private dbus-daemon of its own.

Everything comes from Debian: cups-daemon, cups-client, cups-bsd, cups-ipp-utils (the Makefile's
test packages); nothing here is skipped when one is missing, it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "examples" / "cupsd-policy-sekisho.conf"
HOLD, PRINTER = "office-hold", "office-printer"

# Debian's default policy (/etc/cups/cupsd.conf), which the holding queue does NOT use: jobs'
# owners may move them. Kept so a test can show why the sekisho policy is needed.
DEFAULT_POLICY = """<Policy default>
  JobPrivateAccess default
  JobPrivateValues default
  SubscriptionPrivateAccess default
  SubscriptionPrivateValues default
  <Limit Create-Job Print-Job Print-URI Validate-Job>
    Order deny,allow
  </Limit>
  <Limit Send-Document Send-URI Hold-Job Release-Job Restart-Job Purge-Jobs Set-Job-Attributes Create-Job-Subscription Renew-Subscription Cancel-Subscription Get-Notifications Reprocess-Job Cancel-Current-Job Suspend-Current-Job Resume-Job Cancel-My-Jobs Close-Job CUPS-Move-Job>
    Require user @OWNER @SYSTEM
    Order deny,allow
  </Limit>
  <Limit CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class CUPS-Set-Default CUPS-Get-Devices Pause-Printer Resume-Printer Enable-Printer Disable-Printer Pause-Printer-After-Current-Job Hold-New-Jobs Release-Held-New-Jobs Deactivate-Printer Activate-Printer Restart-Printer Shutdown-Printer Startup-Printer Promote-Job Schedule-Job-After Cancel-Jobs CUPS-Accept-Jobs CUPS-Reject-Jobs CUPS-Get-Document CUPS-Authenticate-Job>
    AuthType Default
    Require user @SYSTEM
    Order deny,allow
  </Limit>
  <Limit Cancel-Job>
    Require user @OWNER @SYSTEM
    Order deny,allow
  </Limit>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""


class Cups:
    def __init__(self) -> None:
        # Not under pytest's tmp_path: its folders are 0700, and CUPS's backends run as lp.
        self.dir = Path(tempfile.mkdtemp(prefix="sekisho-cups-"))
        for sub in ("spool", "tmp", "state", "cache", "log", "printed", "printer-spool"):
            (self.dir / sub).mkdir(parents=True)
        # cupsd drops to lp for its helpers and refuses a world-writable or foreign root.
        os.chmod(self.dir, 0o755)
        self.socket = str(self.dir / "cups.sock")
        self.port = free_port()
        self.printer_port = free_port()
        self.printed_dir = self.dir / "printer-spool"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._write_config()

    @property
    def server(self) -> str:
        """What ``[print] server`` names: cupsd's socket."""
        return self.socket

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CUPS_SERVER": self.socket}

    def _write_config(self) -> None:
        d = self.dir
        user = "" if os.geteuid() else "User lp\nGroup lp\n"
        (d / "cups-files.conf").write_text(
            f"ServerRoot {d}\nRequestRoot {d}/spool\nTempDir {d}/tmp\nStateDir {d}/state\nCacheDir {d}/cache\n"
            f"AccessLog {d}/log/access_log\nErrorLog {d}/log/error_log\nPageLog {d}/log/page_log\n"
            f"{user}SystemGroup root\nPeerCred on\n")
        (d / "cupsd.conf").write_text(
            f"Listen {self.socket}\nListen 127.0.0.1:{self.port}\nLogLevel debug\nWebInterface No\nBrowsing Off\n"
            "DefaultAuthType Basic\nPreserveJobHistory Yes\n<Location />\n  Order allow,deny\n  Allow all\n"
            f"</Location>\n{DEFAULT_POLICY}\n{POLICY.read_text()}\n")

    # ------------------------------------------------------------------------- processes
    def start(self) -> None:
        """The bus, the printer, cupsd; then the two queues, as docs/printing.md sets them up."""
        bus = self.dir / "bus"
        self._spawn("dbus", ["dbus-daemon", "--session", f"--address=unix:path={bus}", "--nofork"])
        wait_for(bus.exists, what="ippeveprinter's private bus")
        self._spawn("printer", ["ippeveprinter", "-p", str(self.printer_port), "-n", "localhost", "-r", "off",
                                "-d", str(self.printed_dir), "-k", "-c", "/bin/true", "-f",
                                "application/pdf,text/plain,application/octet-stream", "Office Printer"],
                    env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"})
        wait_for(lambda: _listening(self.printer_port), what="ippeveprinter listening")
        self.start_cupsd()
        self.lpadmin("-p", PRINTER, "-E", "-v", f"ipp://localhost:{self.printer_port}/ipp/print",
                     "-o", "printer-is-shared=false", "-o", "printer-op-policy=sekisho-printer")
        self.lpadmin("-p", HOLD, "-E", "-v", f"ipp://localhost:{self.printer_port}/ipp/print",
                     "-o", "printer-op-policy=sekisho")
        self.run("cupsdisable", "-r", "held for a supervisor's release", HOLD)

    def start_cupsd(self) -> None:
        self._spawn("cupsd", ["cupsd", "-f", "-c", str(self.dir / "cupsd.conf"), "-s",
                              str(self.dir / "cups-files.conf")])
        wait_for(lambda: "scheduler is running" in self.run("lpstat", "-r", check=False).stdout, what="cupsd answering")

    def stop_cupsd(self) -> None:
        self._end("cupsd")

    def stop(self) -> None:
        for name in reversed(list(self.procs)):  # the bus last: ippeveprinter exits when it goes
            self._end(name)
        if not os.environ.get("KEEP_CUPS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.dir / "log" / f"{name}.out", "ab")  # noqa: SIM115  (the process keeps it)
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        log.close()

    def _end(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # ------------------------------------------------------------------------- CUPS's own tools
    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def lpadmin(self, *args: str) -> None:
        self.run("lpadmin", *args)

    def submit(self, user: str = "tanaka", title: str = "customer list", text: str = "confidential\n",
               queue: str = HOLD, options: tuple[str, ...] = ()) -> int:
        """Print ``text`` as ``user`` (over the loopback port, where CUPS takes the name given);
        the job's id."""
        doc = self.dir / "tmp" / f"doc-{time.monotonic_ns()}.txt"
        doc.write_text(text)
        opts = [a for o in options for a in ("-o", o)]
        done = self.run("lp", "-h", f"127.0.0.1:{self.port}", "-U", user, "-d", queue, "-t", title, *opts, str(doc))
        match = re.search(r"request id is \S+-(\d+)", done.stdout)
        assert match, done.stdout
        return int(match.group(1))

    def as_user(self, user: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """A CUPS command as ``user`` would send it over the network: unauthenticated, the name given."""
        return self.run(argv[0], "-h", f"127.0.0.1:{self.port}", "-U", user, *argv[1:], check=False)

    def printed(self) -> list[Path]:
        """What the printer has printed: one file per job (the print command's output, .prn, aside)."""
        return sorted(p for p in self.printed_dir.iterdir() if p.is_file() and p.suffix != ".prn")

    def job_state(self, job: int) -> str:
        """``lpstat``'s word for the job's queue and state: ``office-hold``, ``office-printer`` or ``done``."""
        listing = self.run("lpstat", "-o").stdout
        for line in listing.splitlines():
            if re.match(rf"\S+-{job}\s", line):
                return line.split()[0].rpartition("-")[0]
        return "done"


def _listening(port: int) -> bool:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
