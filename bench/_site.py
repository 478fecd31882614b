"""Shared set-up for the benchmarks: the test harness's real broker and daemon, in a temp dir;
the ``--quick`` mode every benchmark has, in which tests/test_bench.py runs it; the ``--json``
figure lines bench/all.py collects into the README's table; and the bare MQTT clients that are
the anchors of the daemon's MQTT figures (what the broker and paho cost with no daemon at all)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import Broker, Site, Subscriber, answers, wait_for  # noqa: E402,F401 - re-exported for the benches

UID = "04a1b2c3d4e5f6"


def parse(ap: argparse.ArgumentParser, **sizes: tuple[float, float]) -> argparse.Namespace:
    """The command line with ``--quick`` and one option per size, each given as (full, quick):
    ``--quick`` takes the small value of every size not given, so that the suite can run each
    benchmark in seconds and a renamed method or a changed protocol fails there, not the next
    time someone measures. A quick run's figures are printed but judged by nobody."""
    ap.add_argument("--quick", action="store_true",
                    help="a few iterations, targets not judged: the test suite's smoke run (tests/test_bench.py)")
    ap.add_argument("--json", action="store_true",
                    help='also print each figure as one JSON line, {"figure": ...}, for bench/all.py')
    for name, (full, quick) in sizes.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(full), default=None,
                        help=f"default {full:g}; {quick:g} with --quick")
    args = ap.parse_args()
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sekisho-bench-"))


def enrolled_site(tmp: Path, broker: Broker) -> Site:
    site = Site(tmp, broker)
    site.cli("person", "add", "--id", "u1", "--name", "Bench Person")
    site.cli("card", "add", "--person", "u1", "--uid", UID)
    return site


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def summary(name: str, samples_ms: list[float]) -> str:
    s = sorted(samples_ms)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return (f"{name}: n={len(s)} p50={p(0.50):.2f} ms p99={p(0.99):.2f} ms max={s[-1]:.2f} ms "
            f"mean={statistics.fmean(s):.2f} ms")


def stats(samples: list[float]) -> dict[str, float]:
    """n, p50, p99, max and mean, with the same percentile rule as ``summary``."""
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"n": len(s), "p50": p(0.50), "p99": p(0.99), "max": s[-1], "mean": statistics.fmean(s)}


def figure(args: argparse.Namespace, name: str, *, unit: str = "ms", samples: list[float] | None = None,
           value: float | None = None, anchor: str | None = None, anchor_samples: list[float] | None = None,
           anchor_value: float | None = None) -> None:
    """With ``--json``, one figure as one line of JSON on stdout (bench/all.py reads these, never
    the human lines): samples (their n, p50, p99, max) or a single value (a rate, a size), and,
    where there is one, the anchor measured in the same run: the same path without sekisho."""
    if not args.json:
        return
    out: dict = {"figure": name, "unit": unit}
    if samples is not None:
        out |= stats(samples)
    if value is not None:
        out["value"] = value
    if anchor is not None:
        out["anchor"] = {"name": anchor, **(stats(anchor_samples) if anchor_samples is not None else {}),
                         **({"value": anchor_value} if anchor_value is not None else {})}
    print(json.dumps(out), flush=True)


def bare_client(port: int) -> mqtt.Client:
    """A paho client as the daemon's (MQTT 5), connected, its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class BareSubscriber:
    """The anchor's receiving end: a paho client subscribed at QoS 1 to one topic, noting when
    each message (its payload an integer) arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrived: dict[int, float] = {}
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the bare subscriber got no SUBACK")

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        now = time.perf_counter()
        with self.cond:
            self.arrived.setdefault(int(msg.payload), now)
            self.cond.notify_all()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class BareRoundTrip:
    """The anchor of a tap's way to a subscriber: a bare paho client publishes (QoS 1) to a bare
    subscriber through the same broker, one message at a time. ``once`` is one round trip, so
    that a benchmark can interleave them with its own taps, each anchor sample under the same
    load as the tap beside it; 20 go first, not counted (the daemon's connection has carried its
    status and more before the first tap)."""

    def __init__(self, port: int) -> None:
        self.sub, self.pub = BareSubscriber(port, "bench/bare"), bare_client(port)
        self.i = 0
        for _ in range(20):
            self.once()

    def once(self) -> float:
        """One publish -> arrival at the subscriber, in ms."""
        i, self.i = self.i, self.i + 1
        sent = time.perf_counter()
        self.pub.publish("bench/bare", str(i).encode(), qos=1)
        with self.sub.cond:
            if not self.sub.cond.wait_for(lambda: i in self.sub.arrived, timeout=10):
                raise SystemExit(f"bare message {i} never arrived")
        return (self.sub.arrived[i] - sent) * 1000

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()
        self.sub.close()


def bare_round_trips(port: int, n: int) -> list[float]:
    """``n`` bare round trips in a row (``BareRoundTrip``); ms each."""
    trips = BareRoundTrip(port)
    try:
        return [trips.once() for _ in range(n)]
    finally:
        trips.close()


PAHO_RATES = (8_000, 10_000, 12_000, 14_000)
"""Rates ``paho_ceiling`` offers at: offered much faster than it carries, one paho client
carries less (its publishing thread and its network thread share the interpreter)."""


def paho_ceiling(port: int, n: int) -> float:
    """The most QoS 1 messages a second one bare paho client carries to a bare subscriber on
    this broker, with none lost: ``n`` offered at each of ``PAHO_RATES`` (``bare_stream``), the
    best of them, counted from the first publish to the last arrival."""
    best = 0.0
    for rate in PAHO_RATES:
        sent, received, took = bare_stream(port, rate, n / rate)
        if received == sent:
            best = max(best, received / took)
    return best


def sqlite_ceiling(tmp: Path, events: int, batch: int) -> float:
    """Events a second that plain sqlite3 commits in WAL mode with ``synchronous=FULL``, writing
    what the store writes for one event (its row, an audit row, an outbox row, of the daemon's
    sizes) in transactions of ``batch`` events: the disk's ceiling under sekisho's store."""
    path = tmp / f"ceiling-{batch}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE events (id TEXT PRIMARY KEY, seq INTEGER, ts TEXT, node TEXT, kind TEXT, door TEXT, "
                 "reader TEXT, direction TEXT, person_id TEXT, result TEXT, reason TEXT, rule TEXT, card TEXT, "
                 "topic TEXT, payload TEXT)")
    conn.execute("CREATE INDEX events_ts ON events (ts)")
    conn.execute("CREATE INDEX events_person ON events (person_id, ts)")
    conn.execute("CREATE INDEX events_door ON events (door, ts)")
    conn.execute("CREATE TABLE audit (n INTEGER PRIMARY KEY, ts TEXT, actor TEXT, action TEXT, detail TEXT, prev TEXT, "
                 "hash TEXT)")
    conn.execute("CREATE TABLE outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, "
                 "topic TEXT NOT NULL, payload TEXT NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)")
    payload = json.dumps({"kind": "access", "door": "entrance", "reader": "entrance-in", "direction": "in",
                          "result": "granted", "reason": "ok", "rule": "level:staff", "subject": "0123456789abcdef",
                          "area": "operator-room", "id": str(uuid.uuid4()), "seq": 1, "node": "door-a",
                          "ts": "2026-12-05T11:00:00.000Z"})
    start = time.perf_counter()
    for first in range(0, events, batch):
        conn.execute("BEGIN IMMEDIATE")
        for seq in range(first, min(first + batch, events)):
            event_id = str(uuid.uuid4())
            conn.execute("INSERT INTO events VALUES (?, ?, ?, 'door-a', 'door', 'entrance', 'entrance-in', 'in', 'u1', "
                         "'granted', 'ok', 'level:staff', '0123456789abcdef', 'sekisho/v1/t/door/entrance/event', ?)",
                         [event_id, seq, "2026-12-05T11:00:00.000Z", payload])
            conn.execute("INSERT INTO audit VALUES (?, ?, 'daemon', 'door.granted', ?, ?, ?)",
                         [seq + 1, "2026-12-05T11:00:00.000Z", payload[:160], "0" * 64, "f" * 64])
            conn.execute("INSERT INTO outbox (event_id, topic, payload, qos, retain) VALUES (?, ?, ?, 1, 0)",
                         [event_id, "sekisho/v1/t/door/entrance/event", payload])
        conn.execute("COMMIT")
    took = time.perf_counter() - start
    conn.close()
    return events / took


def bare_stream(port: int, rate: int, seconds: float) -> tuple[int, int, float]:
    """The anchor of the throughput: a bare paho client publishes QoS 1 messages at ``rate`` a
    second for ``seconds`` to a bare subscriber through the same broker. (sent, received,
    seconds from the first publish to the last arrival)."""
    sub, pub = BareSubscriber(port, "bench/stream"), bare_client(port)
    total = int(rate * seconds)
    try:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                pub.publish("bench/stream", str(sent).encode(), qos=1)
                sent += 1
            threading.Event().wait(0.005)
        with sub.cond:
            sub.cond.wait_for(lambda: len(sub.arrived) >= total, timeout=120)
            received, last = len(sub.arrived), max(sub.arrived.values(), default=start)
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.close()
    return sent, received, last - start


BARE_NODE = """
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
c.publish(sys.argv[2], b'{"state": "online"}', qos=1, retain=True).wait_for_publish()
sys.stdin.read()
"""
"""The least a Python node on MQTT does before it says it is online: start the interpreter,
import paho, connect, publish a retained status; then it waits, so its RSS can be read."""


PYTHON_FLOORS = {"python -c pass": "pass", "python -c 'import paho.mqtt.client'": "import paho.mqtt.client"}
"""The interpreter's own start, bare and with paho imported: the floor under any Python node."""


def python_floor(code: str) -> tuple[float, float]:
    """The interpreter of the daemon running ``code`` and then waiting: (exec -> ``code`` done,
    in ms, as told by the process itself on its stdout; its RSS then, in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", f"{code}\nimport sys\nprint(flush=True)\nsys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdout.readline()
    took = (time.perf_counter() - started) * 1000
    rss = rss_mb(proc.pid)
    proc.communicate(b"")
    return took, rss


def bare_node(port: int, topic: str = "bench/bare-node/status") -> tuple[float, float]:
    """The anchor of start-up and RSS: BARE_NODE started by the same interpreter as the daemon;
    (exec -> its retained status at a subscriber, in ms; its RSS then, in MB)."""
    seen = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    watcher.on_message = lambda c, u, msg: seen.set() if msg.payload else None
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    try:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", BARE_NODE, str(port), topic], stdin=subprocess.PIPE)
        if not seen.wait(30):
            raise SystemExit("the bare node never published its status")
        took = (time.perf_counter() - started) * 1000
        threading.Event().wait(0.5)
        rss = rss_mb(proc.pid)
        proc.communicate(b"")
        watcher.publish(topic, b"", qos=1, retain=True).wait_for_publish()  # the next run's watcher starts clean
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    return took, rss
