"""The officer's console in Debian's headless Chromium (issue 14, "Figures"): sim tap -> the
event's row in the page, page weight, and the page's memory after a long run of events.

1. Tap -> drawn: a real mosquitto with its WebSockets listener, the daemon on sim readers,
   ``sekisho console`` and the page in Chromium (playwright-core, tests/browser.mjs). One tap at
   a time on the sim reader's socket, time.time() just before the send; in the page, a
   MutationObserver on the page's root records performance.timeOrigin + performance.now() when
   a row with the event's id (``data-id``) first appears in the DOM, and again once the frame
   that follows has been painted (requestAnimationFrame, then a task: the frame is done). The
   next tap goes once the event has reached a subscriber of our own and the spacing has passed,
   so that neither the daemon nor the page's 30 ms redraw batching joins two taps.
2. Page weight: every file the page loaded (the navigation and resource timing entries), as
   served and each gzipped (sekisho console serves them uncompressed), and what console/ holds.
3. Memory: a fresh page, then events published straight to the broker as a fake node's door,
   desk and USB events in the contract's shapes (docs/mqtt.md), distinct ids, at a steady
   ``--rate`` for ``--duration`` seconds; the page's JS heap (performance.memory with
   --enable-precise-memory-info), the renderer's RSS (/proc) and the DOM's element count
   sampled every ``--every`` seconds. The stream keeps 200 events: all three should stay flat.

Run: .venv/bin/python bench/console_page.py [--taps 200] [--duration 3600] [--rate 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from _site import UID, Broker, Subscriber, enrolled_site, figure, parse, summary, wait_for, workdir
from browser import Browser
from harness import SEKISHO, free_port
from sekisho.daemon.timestamps import utc_now

# Installed in the page for the taps only (page.evaluate runs it through DevTools, which the
# page's Content-Security-Policy does not govern): first sight of each row id, and the end of
# the frame painted after it. Removed again before the memory run, which loads a fresh page.
OBSERVER = """(() => {
  const now = () => performance.timeOrigin + performance.now();
  const drawn = new Map();
  const after = new MessageChannel();
  const painted = [];
  after.port1.onmessage = () => { const t = now(); for (const r of painted.splice(0)) r.frame = t; };
  const saw = (id) => {
    if (!id || drawn.has(id)) return;
    const r = { dom: now(), frame: null };
    drawn.set(id, r);
    requestAnimationFrame(() => { painted.push(r); after.port2.postMessage(0); });
  };
  const look = (node) => {
    if (node.nodeType !== 1) return;
    if (node.matches('[data-test=event]')) saw(node.getAttribute('data-id'));
    for (const row of node.querySelectorAll('[data-test=event]')) saw(row.getAttribute('data-id'));
  };
  const observer = new MutationObserver((records) => {
    for (const m of records) {
      if (m.type === 'attributes') look(m.target);
      else for (const node of m.addedNodes) look(node);
    }
  });
  look(document.body);
  observer.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-id'] });
  globalThis.benchDrawn = { drawn, stop: () => { observer.disconnect(); drawn.clear(); } };
  return true;
})()"""
NOW = "performance.timeOrigin + performance.now()"
SAMPLE = """({heap: performance.memory.usedJSHeapSize, total: performance.memory.totalJSHeapSize,
  nodes: document.getElementsByTagName('*').length, events: sekishoConsole.site.events.length,
  seen: sekishoConsole.site.seen.size, sent: sekishoConsole.site.sent.size,
  doors: sekishoConsole.site.doors.size})"""
MB = 1024 * 1024
STREAM_MAX = 200
"""console/state.js's STREAM_MAX: the events the page keeps."""
CHROMIUM_ARGS = ("--enable-precise-memory-info",  # performance.memory exact, not bucketed
                 "--disable-features=SpareRendererForSitePerProcess")  # one renderer: the page's


def main() -> None:
    args = parse(argparse.ArgumentParser(), taps=(200, 20), duration=(3600, 12), every=(60, 3),
                 spacing_ms=(100, 100), rate=(10.0, 40.0))
    tmp = workdir()
    broker = Broker(tmp, websockets=True)
    broker.start()
    site = enrolled_site(tmp, broker)
    parts = Parts(tmp, broker, site)
    try:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        parts.start()
        gzipped = page_weight(parts)
        dom, frame, bus = tap_to_drawn(parts, args.taps, args.spacing_ms / 1000)
        heap, rss = memory(parts, args.duration, args.every, args.rate)
        anchor = "sim tap -> the event at a Python subscriber on the same broker"
        figure(args, "console: sim tap -> row in the DOM (Chromium)", samples=dom, anchor=anchor, anchor_samples=bus)
        figure(args, "console: sim tap -> frame painted (Chromium)", samples=frame, anchor=anchor, anchor_samples=bus)
        figure(args, "console: page weight, gzipped", unit="bytes", value=gzipped)
        figure(args, f"console: JS heap used, max over {args.duration:g} s of events at {args.rate:g}/s", unit="MB",
               value=max(heap))
        figure(args, f"console: renderer RSS, max over {args.duration:g} s of events at {args.rate:g}/s", unit="MB",
               value=max(rss))
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        parts.close()


class Parts:
    """The daemon, sekisho console, Chromium, and a subscriber of our own to the site's bus."""

    def __init__(self, tmp: Path, broker: Broker, site: Any) -> None:
        self.tmp, self.broker, self.site = tmp, broker, site
        self.server: subprocess.Popen | None = None
        self.browser: Browser | None = None
        self.bus: Subscriber | None = None

    def start(self) -> None:
        self.site.start()
        port = free_port()
        self.server = subprocess.Popen([*SEKISHO, "console", "--port", str(port), "--broker-ws", self.broker.ws_url,
                                        "--config", str(self.site.config), "--data-dir", str(self.site.data_dir)],
                                       stdout=open(self.tmp / "console.log", "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://localhost:{port}/"
        wait_for(self._serves, 15, "sekisho console to serve")
        with urllib.request.urlopen(self.url + "config.json") as r:
            self.base = json.loads(r.read())["base"]
        self.bus = Subscriber(self.broker.port, f"{self.base}/door/+/event")
        self.browser = Browser(self.tmp / "screenshots", args=CHROMIUM_ARGS)

    def _serves(self) -> bool:
        assert self.server is not None and self.server.poll() is None, (self.tmp / "console.log").read_text()
        try:
            with urllib.request.urlopen(self.url + "config.json", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def open_page(self) -> None:
        """A new browser context (nothing kept from an earlier page), loaded and connected."""
        b = self.browser
        assert b is not None
        b("open", locale="en-US")
        assert b("goto", url=self.url) == 200
        b("wait", selector="[data-test=conn][data-state=connected]")

    def renderer_rss_mb(self) -> float:
        """The RSS of the page's renderer: the one renderer under our Chromium that is not its
        own UI's (--top-chrome-webui); the spare renderer is switched off at launch."""
        assert self.browser is not None
        parents: dict[int, int] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        ours = {self.browser.proc.pid}
        while more := {pid for pid, ppid in parents.items() if ppid in ours} - ours:
            ours |= more
        found = {}
        for pid in ours:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # one string: chromium sets its title
                if b"--type=renderer" in cmdline and b"--top-chrome-webui" not in cmdline:
                    found[pid] = rss_kb(pid) / 1024
            except OSError:
                pass
        assert len(found) == 1, f"not one page renderer under our chromium: {found}"
        return next(iter(found.values()))

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(10)
        if self.bus is not None:
            self.bus.close()
        self.site.kill()
        self.broker.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def page_weight(parts: Parts) -> int:
    from sekisho.daemon.console_server import CONSOLE_DIR, load_page

    b = parts.browser
    assert b is not None
    parts.open_page()
    entries = b("eval", expression="[...performance.getEntriesByType('navigation'), "
                "...performance.getEntriesByType('resource')].map((e) => ({name: e.name, "
                "transfer: e.transferSize, body: e.decodedBodySize}))")
    files = [e for e in entries if e["name"].startswith(parts.url)]
    served = sum(e["body"] for e in files)
    transferred = sum(e["transfer"] for e in files)
    zipped = 0
    for e in files:
        with urllib.request.urlopen(e["name"]) as r:
            zipped += len(gzip.compress(r.read(), 6))
    everything = load_page(CONSOLE_DIR, {})
    print(f"page weight: {len(files)} files, {served:,} bytes as served ({transferred:,} bytes with headers); "
          f"{zipped:,} bytes gzipped (-6, each file)")
    print(f"console/ as sekisho console holds it: {len(everything.files) - 1} paths, {everything.weight:,} bytes "
          "(licences and unused vendor files included)")
    return zipped


def clock_offset_ms(parts: Parts) -> tuple[float, float]:
    """The page's clock minus time.time(), from the tightest of 20 round trips: (offset, +-)."""
    b = parts.browser
    assert b is not None
    best = None
    for _ in range(20):
        t0 = time.time()
        page = b("eval", expression=NOW) / 1000
        t1 = time.time()
        if best is None or t1 - t0 < best[1] * 2 / 1000:
            best = ((page - (t0 + t1) / 2) * 1000, (t1 - t0) / 2 * 1000)
    assert best is not None
    return best


def tap_to_drawn(parts: Parts, n: int, spacing: float) -> tuple[list[float], list[float], list[float]]:
    """(tap -> row in the DOM, tap -> frame painted, and the anchor: tap -> the event at our own
    subscriber on the same broker, which the page's MQTT client also subscribes to), in ms."""
    b, bus = parts.browser, parts.bus
    assert b is not None and bus is not None
    assert b("eval", expression=OBSERVER) is True
    offset, within = clock_offset_ms(parts)
    ids: dict[int, str] = {}
    on_bus: dict[int, float] = {}
    got = threading.Condition()

    def on_message(client, userdata, msg):  # noqa: ANN001
        now = time.time()
        event = json.loads(msg.payload)
        with got:
            ids[event["seq"]] = event["id"]
            on_bus[event["seq"]] = now
            got.notify_all()
    bus.client.on_message = on_message

    conn = socket.socket(socket.AF_UNIX)
    conn.connect(str(parts.site.data_dir / "sim" / "entrance-in.sock"))
    replies = conn.makefile("rb")
    line = json.dumps({"op": "tap", "uid": UID}).encode() + b"\n"
    sent: dict[int, float] = {}
    for seq in range(1, n + 1):
        sent[seq] = time.time()
        conn.sendall(line)
        if replies.readline() != b'{"ok": true}\n':
            raise SystemExit(f"tap {seq}: the sim reader refused it")
        with got:
            if not got.wait_for(lambda: seq in ids, timeout=10):
                raise SystemExit(f"event {seq} never reached the bus")
        rest = sent[seq] + spacing - time.time()
        if rest > 0:
            time.sleep(rest)
    conn.close()
    wanted = json.dumps(list(ids.values()))
    b("until", expression=f"{wanted}.every((id) => (benchDrawn.drawn.get(id) || {{}}).frame)", timeout=90000)
    drawn = b("eval", expression=f"Object.fromEntries({wanted}.map((id) => [id, benchDrawn.drawn.get(id)]))")
    b("eval", expression="benchDrawn.stop()")
    dom = [drawn[ids[s]]["dom"] - sent[s] * 1000 for s in sorted(ids)]
    frame = [drawn[ids[s]]["frame"] - sent[s] * 1000 for s in sorted(ids)]
    print(summary("sim tap -> row in the DOM", dom))
    print(summary("sim tap -> frame painted", frame))
    bus_ms = [(on_bus[s] - sent[s]) * 1000 for s in sorted(ids)]
    print(summary("  anchor: sim tap -> the event at our own subscriber", bus_ms))
    print(f"clocks: time.time() at send, performance.timeOrigin + now() in the page, one wall clock; "
          f"page minus Python measured {offset:+.2f} ms (+-{within:.2f} ms), not subtracted; "
          "the page's clock is coarsened to 0.1 ms")
    return dom, frame, bus_ms


def event_payloads() -> Any:
    """A fake node's door, desk and USB events in turn, each with a new id and the next seq."""
    seq = 0
    while True:
        seq += 1
        ts = utc_now()
        common = {"id": str(uuid.uuid4()), "seq": seq, "node": "bench-node", "ts": ts}
        kind = seq % 3
        if kind == 0:
            yield "door/bench-door/event", common | {
                "kind": "access", "door": "bench-door", "reader": "bench-in", "direction": "in",
                "result": "denied", "reason": "unknown_card", "rule": "card.unknown", "subject": None}
        elif kind == 1:
            yield "desk/bench-desk/event", common | {
                "desk": "bench-desk", "kind": "card_inserted", "subject": f"{seq:016x}", "reason": "card",
                "rule": "desk.card", "latency_ms": None}
        else:
            yield "usb/bench-node/event", common | {
                "action": "blocked", "device": {"vid": "0781", "pid": "5581", "class": "08", "interfaces": ["08:06:50"],
                                                "name": "Bench Storage", "serial": f"S{seq}", "port": "1-1"},
                "rule": "block", "decision": "block", "reason": "rule"}


def memory(parts: Parts, duration: float, every: float, rate: float) -> tuple[list[float], list[float]]:
    b = parts.browser
    assert b is not None
    parts.open_page()  # fresh: nothing of the taps' observer or rows
    empty = b("eval", expression=SAMPLE)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", parts.broker.port)
    client.loop_start()
    stop = threading.Event()
    published = [0, ""]

    def publish() -> None:
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(event_payloads()):
            if stop.wait(max(0.0, t0 + i / rate - time.monotonic())):
                return
            client.publish(f"{parts.base}/{topic}", json.dumps(payload), qos=1)
            published[0], published[1] = i + 1, payload["id"]

    def sample() -> tuple[float, dict[str, Any], float]:
        return time.monotonic() - began, b("eval", expression=SAMPLE), parts.renderer_rss_mb()

    def gc_heap() -> float:
        b("cdp", method="HeapProfiler.collectGarbage")
        return b("eval", expression="performance.memory.usedJSHeapSize") / MB

    publisher = threading.Thread(target=publish, daemon=True)
    began = time.monotonic()
    publisher.start()
    # The start is the page with a full stream (200 events), not the empty page: from there on
    # nothing should grow.
    b("until", expression=f"sekishoConsole.site.events.length >= {STREAM_MAX}",
      timeout=int((STREAM_MAX / rate + 90) * 1000))
    start_gc = gc_heap()
    samples = [sample()]
    while (left := duration - (time.monotonic() - began)) > 0:
        time.sleep(min(every, left))
        samples.append(sample())
    stop.set()
    publisher.join()
    elapsed = time.monotonic() - began
    b("until", expression=f"(sekishoConsole.site.events[0] || {{}}).id === {json.dumps(published[1])}")
    client.loop_stop()
    client.disconnect()
    # The last one drawn, not only known to the page's state.
    b("until", expression=f"document.querySelector('[data-test=event][data-id={json.dumps(published[1])}]') !== null")
    samples.append(sample())
    end_gc = gc_heap()

    heap = [s["heap"] / MB for _, s, _ in samples]
    rss = [r for _, _, r in samples]
    first, last = samples[0][1], samples[-1][1]
    print(f"published {published[0]} events (door, desk, USB in turn) straight to the broker in {elapsed:.0f} s: "
          f"{published[0] / elapsed:.1f}/s; the page showed the last one")
    print(f"start = {samples[0][0]:.0f} s in, the stream full; {len(samples)} samples, every {every:g} s")
    print(f"JS heap used: start {heap[0]:.2f} MB, max {max(heap):.2f} MB, end {heap[-1]:.2f} MB "
          f"(median {statistics.median(heap):.2f} MB; empty page {empty['heap'] / MB:.2f} MB)")
    print(f"JS heap after a forced GC: start {start_gc:.2f} MB, end {end_gc:.2f} MB")
    print(f"renderer RSS: start {rss[0]:.1f} MB, max {max(rss):.1f} MB, end {rss[-1]:.1f} MB")
    print(f"DOM nodes: start {first['nodes']}, end {last['nodes']} (empty page {empty['nodes']}); "
          f"stream {first['events']} -> {last['events']} events, seen ids {first['seen']} -> {last['seen']}, "
          f"sent {first['sent']} -> {last['sent']}, doors {first['doors']} -> {last['doors']}")
    with open(parts.tmp / "memory-samples.json", "w") as f:
        json.dump([{"t": t, **s, "rss_mb": r} for t, s, r in samples], f, indent=1)
    print(f"samples: {parts.tmp / 'memory-samples.json'}")
    return heap, rss


if __name__ == "__main__":
    main()
