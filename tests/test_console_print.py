"""The console's Printing panel (issue 19) in Debian's headless Chromium, against a real mosquitto
with its WebSockets listener and ``sekisho console``. The print node is played by the test: it
publishes the contract's own ``print/<node>/queue`` (retained) and ``print/<node>/event``
messages (docs/mqtt.md), so the page is held to the contract, not to one controller. What the
page sends is read on the bus and its signature checked with the officer's public key, as a node
checks it. Screenshots are kept under the test's tmp dir (screenshots/)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from browser import Browser
from harness import SEKISHO, Broker, Site, Subscriber, free_port, wait_for
from sekisho.daemon.commands import load_private_key, signed_bytes

NODE = "print-1"
QUEUE = f"sekisho/v1/test/print/{NODE}/queue"
EVENT = f"sekisho/v1/test/print/{NODE}/event"
OPERATOR = "3f2c9a0b5e7d1c44"
OTHER = "a90e11d2c3b4f5a6"


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job(n: int, minutes_ago: float, subject: str | None, pages: int | None, expire_minutes: float = 60) -> dict:
    now = dt.datetime.now(dt.UTC)
    submitted = now - dt.timedelta(minutes=minutes_ago)
    return {"job": n, "subject": subject, "pages": pages, "document": {"hash": "9d1e" * 8},
            "submitted": iso(submitted), "expires": iso(submitted + dt.timedelta(minutes=expire_minutes))}


class PrintConsole:
    """One broker, console server and browser for the module; what started is stopped again,
    also after a set-up that failed half-way."""

    def __init__(self, tmp: Path) -> None:
        self.browser: Browser | None = None
        self.server: subprocess.Popen | None = None
        self.bus: Subscriber | None = None
        self.broker: Broker | None = None
        try:
            self._start(tmp)
        except BaseException:
            self.close()
            raise

    def _start(self, tmp: Path) -> None:
        self.broker = Broker(tmp, websockets=True)
        self.broker.start()
        self.site = Site(tmp, self.broker)
        self.key = tmp / "officer.key"
        self.site.cli("cmd", "keygen", str(self.key))
        self.bus = Subscriber(self.broker.port, "sekisho/#")
        port = free_port()
        self.log = tmp / "console.log"
        self.server = subprocess.Popen([*SEKISHO, "console", "--port", str(port), "--broker-ws", self.broker.ws_url,
                                        "--config", str(self.site.config), "--data-dir", str(self.site.data_dir)],
                                       stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://localhost:{port}/"
        wait_for(self._serves, 15, "sekisho console to serve")
        self.tmp = tmp
        self.browser = Browser(tmp / "screenshots")

    def _serves(self) -> bool:
        assert self.server.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(self.url + "config.json", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def publish(self, topic: str, payload: dict | None, retain: bool = False) -> None:
        body = json.dumps(payload) if payload is not None else b""
        self.bus.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(10)

    def queue(self, jobs: list[dict], chosen: int | None = None) -> None:
        self.publish(QUEUE, {"jobs": jobs, "printer": "office-laser", "chosen": chosen,
                             "ts": iso(dt.datetime.now(dt.UTC))}, retain=True)

    def open_page(self, locale: str = "en-US", **context) -> Browser:
        """The console in a new context; the browser to drive it with (a new one, see below)."""
        b = self.browser
        b("open", locale=locale, **context)
        try:
            assert b("goto", url=self.url) == 200
        except AssertionError:
            # On a busy 2-core machine this module's Chromium once stopped loading anything (five
            # navigations in a row timed out, nothing in the page's log): a new one, once.
            self.browser.close()
            self.browser = b = Browser(self.tmp / "screenshots")
            b("open", locale=locale, **context)
            assert b("goto", url=self.url) == 200
        b("wait", selector="[data-test=conn][data-state=connected]")
        return b

    def import_key(self) -> None:
        b = self.browser
        b("upload", selector="[data-test=key-file]", path=str(self.key))
        b("until", expression="document.querySelector('[data-test=key-name]').value === 'officer'")
        b("click", selector="[data-test=key-import]")
        b("wait", selector="[data-test=key-name-shown]")

    def commands(self) -> list[dict]:
        return [m.json for m in self.bus.on(f"/cmd/{NODE}")]

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.server is not None:
            self.server.terminate()
            assert self.server.wait(10) == 0, self.log.read_text()
        if self.bus is not None:
            self.bus.close()
        if self.broker is not None:
            self.broker.stop()


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    c = PrintConsole(tmp_path_factory.mktemp("console-print"))
    yield c
    c.close()


def rows(b: Browser) -> list[list[str]]:
    return b("eval", expression="[...document.querySelectorAll('[data-test=print-job]')].map((tr) => "
                                "[...tr.querySelectorAll('td')].slice(0, 6).map((td) => td.innerText))")


def test_a_retained_queue_is_drawn_oldest_first_and_a_job_gone_from_it_leaves_the_page(pc):
    # Retained before the page opens: a page opened later knows what waits. Listed newest first
    # here, to show the page orders by the time submitted.
    pc.queue([job(12, 3, OTHER, None), job(11, 25, OPERATOR, 4), job(10, 70, None, 2, expire_minutes=60)])
    b = pc.open_page()
    b("until", expression="document.querySelectorAll('[data-test=print-job]').length === 3")
    assert "office-laser" in b.text(f"[data-test=print-queue][data-node={NODE}]")
    shown = rows(b)
    assert [r[0] for r in shown] == ["10", "11", "12"]
    assert shown[0][1] == "unknown user" and shown[1][1] == OPERATOR  # a user no person matches
    assert shown[0][2] == "#9d1e9d1e9d1e" and shown[1][3] == "4" and shown[2][3] == "—"
    assert shown[0][4].startswith("1 h 1") and shown[0][5] == "due now"  # waited past its expiry
    assert shown[1][4] in ("25 min", "26 min") and shown[1][5] in ("34 min", "35 min")
    b.screenshot("print-queue")
    # The node says job 11 is no longer waiting: its row goes, the others stay.
    pc.queue([job(12, 3, OTHER, None), job(10, 70, None, 2)])
    b("wait", selector="[data-test=print-job][data-job='11']", state="detached")
    assert [r[0] for r in rows(b)] == ["10", "12"]
    pc.queue([])
    b("wait", selector="[data-test=print-job]", state="detached")
    assert "no job waiting" in b.text(f"[data-test=print-queue][data-node={NODE}]")
    # Emptied retained topic (the node is gone): the queue is no longer shown.
    pc.publish(QUEUE, None, retain=True)
    b("wait", selector="[data-test=no-print]")


def test_release_and_cancel_publish_signed_commands_to_the_jobs_node(pc):
    pc.queue([job(20, 5, OPERATOR, 1), job(21, 2, OPERATOR, 3)])
    b = pc.open_page()
    b("wait", selector="[data-test=print-job][data-job='20']")
    # Without a key: refused in the page, nothing on the bus.
    b("click", selector="[data-test=print-job][data-job='20'] [data-test=print-release]")
    b("click", selector="[data-test=confirm-ok]")
    b("wait", selector='[data-test=result][data-op="print.release"][data-state=refused]')
    assert pc.commands() == []
    pc.import_key()
    b("click", selector="[data-test=print-job][data-job='20'] [data-test=print-release]")
    assert "Release job 20 at print-1?" in b.text("[data-test=confirm]")
    b("click", selector="[data-test=confirm-ok]")
    b("click", selector="[data-test=print-job][data-job='21'] [data-test=print-cancel]")
    b("click", selector="[data-test=confirm-ok]")
    sent = wait_for(lambda: len(pc.commands()) == 2 and pc.commands(), what="both commands on the bus")
    public = load_private_key(pc.key).public_key()
    for message in sent:
        public.verify(base64.b64decode(message["sig"]), signed_bytes(message))  # raises if it does not hold
        assert (message["site"], message["node"], message["key"]) == ("test", NODE, "officer")
    assert [(m["op"], m["args"]) for m in sent] == [("print.release", {"job": 20}), ("print.cancel", {"job": 21})]
    # A changed byte breaks it: the check above is a real one.
    forged = {**sent[0], "args": {"job": 21}}
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(forged["sig"]), signed_bytes(forged))
    # The node's answer reaches the command log.
    pc.publish(f"sekisho/v1/test/cmd/{NODE}/result", {"id": sent[0]["id"], "ok": True, "error": None,
                                                      "ts": iso(dt.datetime.now(dt.UTC))})
    b("wait", selector='[data-test=result][data-op="print.release"][data-state=ok]')
    b.screenshot("print-release-sent")

    # "Next for the card": no confirmation (it releases nothing), signed like the others; the
    # node's queue then marks the job, which has no such button any more.
    b("click", selector="[data-test=print-job][data-job='21'] [data-test=print-choose]")
    chosen = wait_for(lambda: len(pc.commands()) == 3 and pc.commands()[2], what="print.choose on the bus")
    public.verify(base64.b64decode(chosen["sig"]), signed_bytes(chosen))
    assert (chosen["op"], chosen["args"], chosen["node"]) == ("print.choose", {"job": 21}, NODE)
    pc.queue([job(20, 5, OPERATOR, 1), job(21, 2, OPERATOR, 3)], chosen=21)
    b("wait", selector="[data-test=print-job][data-job='21'][data-chosen=yes] [data-test=chosen]")
    assert b("count", selector="[data-test=print-job][data-job='21'] [data-test=print-choose]") == 0
    assert b("count", selector="[data-test=print-job][data-chosen=yes]") == 1


def test_print_events_in_the_stream_a_refusal_and_an_expiry_marked_and_in_japanese(pc):
    b = pc.open_page()
    now = dt.datetime.now(dt.UTC)
    base = {"node": NODE, "subject": OPERATOR, "user_known": True, "pages": 3, "document": {"hash": "ab" * 16},
            "submitted": iso(now)}
    events = [{"action": "held", "job": 30},
              {"action": "release_refused", "job": 30, "by": "card", "actor": f"supervisor:{OTHER}",
               "reason": "not_supervisor"},
              {"action": "released", "job": 30, "by": "command", "actor": "key:officer"},
              {"action": "expired", "job": 31, "by": "expiry"}]
    for seq, e in enumerate(events, 1):
        pc.publish(EVENT, {"id": f"p-{seq}", "seq": seq, "ts": iso(now), **base, **e})
    pc.publish(EVENT, {"id": "p-2", "seq": 2, "ts": iso(now), **base, **events[1]})  # a QoS 1 repeat: once
    b("until", expression="document.querySelectorAll('[data-test=event][data-group=print]').length === 4")
    marks = b("eval", expression="Object.fromEntries([...document.querySelectorAll('[data-test=event]"
                                 "[data-group=print]')].map((li) => [li.dataset.action, li.className]))")
    assert marks == {"held": "", "release_refused": "denied", "released": "", "expired": "notable"}
    refused = b.text("[data-test=event][data-action=release_refused]")
    assert "release refused" in refused and "not_supervisor" in refused and NODE in refused
    assert "key:officer" in b.text("[data-test=event][data-action=released]")
    b("select", selector="[data-test=filter-group]", value="print")
    b("click", selector="[data-test=filter-denied]")
    b("until", expression="document.querySelectorAll('[data-test=event]').length === 1")
    assert b("eval", expression="document.querySelector('[data-test=event]').dataset.action") == "release_refused"
    b.screenshot("print-events")
    pc.queue([job(40, 1, OPERATOR, 2)])
    b = pc.open_page(locale="ja-JP")
    b("wait", selector="[data-test=print-job][data-job='40']")
    assert "監督者の承認待ち" in b.text("[data-test=printing]")
    assert b.text("[data-test=print-job] [data-test=print-release]") == "印刷を許可"
    pc.publish(EVENT, {"id": "p-9", "seq": 9, "ts": iso(now), **base, "action": "expired", "job": 41, "by": "expiry"})
    b("wait", selector="[data-test=event][data-action=expired]")
    assert "期限切れで取消" in b.text("[data-test=event][data-action=expired]")
    b.screenshot("print-japanese")


@pytest.mark.parametrize("width, height, tablet", [(820, 1180, True), (1366, 768, False)],
                         ids=["tablet-portrait", "desktop"])
def test_the_printing_panel_fits_a_tablet_and_a_desktop_with_touch_sized_buttons(pc, width, height, tablet):
    pc.queue([job(50, 12, OPERATOR, 120), {**job(51, 2, OTHER, None), "document": {"name": "給与明細_2026年11月分.pdf"}}])
    b = pc.open_page(viewport={"width": width, "height": height}, touch=tablet)
    b("wait", selector="[data-test=print-job][data-job='51']")
    assert "給与明細_2026年11月分.pdf" in b.text("[data-test=print-job][data-job='51']")  # a site that allows names
    b.screenshot(f"print-fits-{width}x{height}")
    assert b("eval", expression="document.documentElement.scrollWidth <= window.innerWidth"), \
        b("eval", expression="[document.documentElement.scrollWidth, window.innerWidth]")
    for button in ("[data-test=print-job][data-job='51'] [data-test=print-release]",
                   "[data-test=print-job][data-job='51'] [data-test=print-cancel]"):
        assert b("visible", selector=button), button
        box = b("box", selector=button)
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (button, box)  # no scrolling to reach it
        if tablet:
            assert box["height"] >= 40, (button, box)  # a finger's size
