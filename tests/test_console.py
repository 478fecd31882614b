"""The officer's console (issue 14, items 2 and 3) in Debian's headless Chromium, against a real
mosquitto with its WebSockets listener, the daemon on sim readers with a sim door contact, and
``sekisho console``: what the page shows comes from the bus, and what it does is signed in the
browser with an imported key, runs on the node, and is on the bus and in the audit log as that
key's. Screenshots of every step are kept under the test's tmp dir (screenshots/)."""

from __future__ import annotations

import json
import sqlite3
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from browser import Browser
from harness import SEKISHO, Broker, Site, Subscriber, free_port, wait_for

CONFIG = """\
[site]
id = "test"
node = "door-a"
timezone = "Asia/Tokyo"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[areas.lobby]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"
area_out = "lobby"
unlock_s = 1.0

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[inputs.entrance-contact]
driver = "sim"
kind = "contact"
door = "entrance"

[commands.keys.officer]
public_key = "{officer}"
ops = ["alarm.*", "door.*"]
"""
FORCED = "door-a.entrance.forced"


class Console:
    """Everything the tests share: one broker, daemon, console server and browser for the module."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.broker = Broker(tmp, websockets=True)
        self.broker.start()
        self.site = Site(tmp, self.broker)
        self.officer_key = tmp / "officer.key"
        out = self.site.cli("cmd", "keygen", str(self.officer_key)).stdout
        officer = out.split('public_key = "')[1].split('"')[0]
        self.site.config.write_text(CONFIG.format(url=self.broker.url, officer=officer))
        self.bus = Subscriber(self.broker.port, "sekisho/#")
        self.site.start()
        port = free_port()
        self.server_log = tmp / "console.log"
        self.server = subprocess.Popen([*SEKISHO, "console", "--port", str(port), "--broker-ws", self.broker.ws_url,
                                        "--config", str(self.site.config), "--data-dir", str(self.site.data_dir)],
                                       stdout=open(self.server_log, "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://localhost:{port}/"
        wait_for(self._serves, 15, "sekisho console to serve")
        self.browser = Browser(tmp / "screenshots")

    def _serves(self) -> bool:
        assert self.server.poll() is None, f"sekisho console exited: {self.server_log.read_text()}"
        try:
            with urllib.request.urlopen(self.url + "config.json", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def open_page(self, locale: str = "en-US") -> None:
        b = self.browser
        b("open", locale=locale)
        assert b("goto", url=self.url) == 200
        b("wait", selector='[data-test=conn][data-state=connected]')
        # The retained door state has arrived: the page shows the bus, not a blank.
        b("wait", selector='[data-test=door][data-door=entrance] [data-test=lock][data-lock=locked]')

    def import_key(self) -> None:
        b = self.browser
        b("upload", selector="[data-test=key-file]", path=str(self.officer_key))
        b("until", expression="document.querySelector('[data-test=key-name]').value === 'officer'")  # from the file's name
        b("click", selector="[data-test=key-import]")
        b("wait", selector="[data-test=key-name-shown]")

    def commands(self) -> list[dict]:
        return [m.json for m in self.bus.on("/cmd/door-a")]

    def results(self) -> list[dict]:
        return [m.json for m in self.bus.on("/cmd/door-a/result")]

    def audit(self, action: str) -> list[dict]:
        with sqlite3.connect(self.site.data_dir / "sekisho.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) | {"detail": json.loads(r["detail"])}
                    for r in db.execute("SELECT * FROM audit WHERE action = ? ORDER BY n", [action])]

    def close(self) -> None:
        self.browser.close()
        self.server.terminate()
        assert self.server.wait(10) == 0, self.server_log.read_text()
        self.bus.close()
        if self.site.proc is not None:
            self.site.stop()
        self.broker.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = Console(tmp_path_factory.mktemp("console"))
    yield c
    c.close()


def test_a_tap_appears_in_the_event_stream(console):
    b = console.browser
    console.open_page()
    assert "Read-only" in b.text("[data-test=readonly]")
    console.site.tap("0411223344")  # an unknown card: denied
    b("wait", selector='[data-test=event][data-group=door]:has-text("unknown_card")')
    assert "denied" in b.text("[data-test=event][data-group=door]")
    assert "online" in b.text("[data-test=node][data-node=door-a]")
    b.screenshot("tap")


def test_a_door_mode_change_is_refused_without_a_key_and_runs_with_one(console):
    b = console.browser
    console.open_page()
    tile = "[data-test=door][data-door=entrance]"
    b("select", selector=f"{tile} [data-test=mode-select]", value="lockdown")
    b("click", selector=f"{tile} [data-test=mode-set]")
    b("click", selector="[data-test=confirm-ok]")
    b("wait", selector='[data-test=result][data-op="door.mode"][data-state=refused]:has-text("no signing key")')
    b.screenshot("mode-refused-without-key")
    assert console.commands() == []  # nothing went on the bus

    console.import_key()
    b("select", selector=f"{tile} [data-test=mode-select]", value="lockdown")
    b("click", selector=f"{tile} [data-test=mode-set]")
    b("click", selector="[data-test=confirm-ok]")
    b("wait", selector=f'{tile} [data-test=mode][data-mode=lockdown]')
    b("wait", selector='[data-test=result][data-op="door.mode"][data-state=ok]')
    b.screenshot("mode-lockdown-with-key")
    # The page saw the answer; the test's own subscriber may still be reading it on its thread.
    sent = wait_for(lambda: console.commands(), what="the command on the bus")[-1]
    assert (sent["site"], sent["node"], sent["op"], sent["args"], sent["key"]) == (
        "test", "door-a", "door.mode", {"door": "entrance", "mode": "lockdown"}, "officer")
    answer = wait_for(lambda: [r for r in console.results() if r["id"] == sent["id"]], what="its answer")[0]
    assert answer["ok"] is True
    assert console.audit("command.done")[-1]["actor"] == "key:officer"
    # Back to normal for the tests after this one.
    b("select", selector=f"{tile} [data-test=mode-select]", value="normal")
    b("click", selector=f"{tile} [data-test=mode-set]")
    b("click", selector="[data-test=confirm-ok]")
    b("wait", selector=f'{tile} [data-test=mode][data-mode=normal]')


def test_a_forced_door_alarm_stays_after_the_door_closes_until_acknowledged_in_the_page(console):
    b = console.browser
    console.open_page()  # a new browser context: the key is imported again
    console.import_key()
    row = f'[data-test=alarm][data-id="{FORCED}"]'
    console.site.sim("entrance-contact", {"op": "set", "active": True})
    b("wait", selector=row)
    assert "critical" in b.text(row) and "forced" in b.text(row)
    b.screenshot("alarm-raised")
    console.site.sim("entrance-contact", {"op": "set", "active": False})
    b("wait", selector=f'{row} [data-test=cleared]:not(:text("—"))')
    b.screenshot("alarm-cleared-still-open")
    assert b("count", selector=row) == 1  # the door closed; the alarm waits for a person

    b("click", selector=f"{row} [data-test=ack]")
    b("fill", selector="[data-test=note]", value="checked: a courier (宅配便)")
    b("click", selector="[data-test=confirm-ok]")
    b("wait", selector=row, state="detached")
    b("wait", selector='[data-test=result][data-op="alarm.ack"][data-state=ok]')
    b.screenshot("alarm-acknowledged")

    sent = wait_for(lambda: [c for c in console.commands() if c["op"] == "alarm.ack"], what="the ack on the bus")[-1]
    assert sent["args"]["raised"] and sent["key"] == "officer"  # the occurrence the officer saw
    assert {k: v for k, v in sent["args"].items() if k != "raised"} == {"id": FORCED, "note": "checked: a courier (宅配便)"}
    wait_for(lambda: console.bus.on(f"/alarm/{FORCED}")[-1].payload == b"", what="the alarm emptied on the bus")
    said = [m.json for m in console.bus.on(f"/alarm/{FORCED}") if m.payload][-1]
    assert (said["acked_by"], said["ack_note"]) == ("key:officer", "checked: a courier (宅配便)")
    acked = console.audit("alarm.ack")
    assert [(a["actor"], a["detail"]["alarm"], a["detail"]["note"]) for a in acked] == [
        ("key:officer", FORCED, "checked: a courier (宅配便)")]
    assert console.site.cli("audit", "verify").returncode == 0


def test_the_page_speaks_japanese_by_default_to_a_japanese_browser_and_switches(console):
    b = console.browser
    console.open_page(locale="ja-JP")
    assert "関所" in b.text("header h1") and b("eval", expression="document.documentElement.lang") == "ja"
    assert "閲覧のみ" in b.text("[data-test=readonly]")
    b.screenshot("japanese-default")
    b("click", selector="[data-test=lang-en]")
    b("wait", selector='header h1:has-text("officer console")')
    assert b("eval", expression="document.documentElement.lang") == "en"
    b("click", selector="[data-test=lang-ja]")
    b("wait", selector='header h1:has-text("関所")')
    assert "施錠" in b.text("[data-test=door][data-door=entrance] [data-test=lock]")
    b("reload")
    b("wait", selector='header h1:has-text("関所")')  # the choice is kept
    b("wait", selector='[data-test=conn][data-state=connected]')
    b.screenshot("japanese-switched")
    console.open_page(locale="en-US")
    assert "officer console" in b.text("header h1")


def test_the_console_server_serves_only_the_page_and_its_config(console):
    with urllib.request.urlopen(console.url + "config.json") as r:
        layout = json.load(r)
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert layout["site"] == "test" and layout["broker"] == console.broker.ws_url
    assert layout["doors"] == {"entrance": {"node": "door-a", "area_in": "room", "area_out": "lobby"}}
    for path in ("../daemon/cli.py", "vendor/update.sh", "vendor/", "nothing.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(console.url + path)
        assert err.value.code == 404


def test_sekisho_console_serves_https_with_a_certificate_and_says_one_line_when_it_cannot(console, tmp_path):
    cert, key = tmp_path / "console.crt", tmp_path / "console.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    port = free_port()
    common = ["--config", str(console.site.config), "--data-dir", str(console.site.data_dir)]
    server = subprocess.Popen([*SEKISHO, "console", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key),
                               *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = wait_for(lambda: server.stdout.readline(), timeout=30, what="the console's first line")
        assert line.startswith(f"sekisho console: https://localhost:{port}/"), line
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://localhost:{port}/", context=context, timeout=5) as r:
            assert b'src="app.js"' in r.read()
    finally:
        server.terminate()
        assert server.wait(10) == 0
    for args, error in ((["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
                        (["--tls-cert", str(key), "--tls-key", str(key)], "cannot load"),
                        (["--broker-ws", "http://x/"], "a ws:// or wss:// URL"),
                        (["--listen", "0.0.0.0"], "--listen 0.0.0.0 without --tls-cert and --tls-key")):
        r = subprocess.run([*SEKISHO, "console", "--port", str(free_port()), *args, *common], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and error in r.stderr, r.stderr
