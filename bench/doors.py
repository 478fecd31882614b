"""Door decisions at site scale: 100,000 enrolled cards, 500 access levels, 50 doors.

One run reports the figures of issue 5:
  1. decision time: ``People.card_holder(hash)`` plus ``access.decide(...)``, the way
     ``Doors.card`` makes a decision, over random taps (known and unknown cards) at random
     readers; target p99 <= 1 ms;
  2. sim tap -> strike output: the daemon as a process, every door's strike an MQTT relay
     topic, a subscriber on relays/# timestamping each unlock; target p99 <= 50 ms;
  3. the daemon's RSS with that store, idle and after the taps; target <= 60 MB;
and on the way `sekisho check-config` on the generated config and start-up to retained online.

The strike is an MQTT relay by default: of the three strike drivers it is the one whose cost is
all in the daemon (the decision, the group commit, the publish), measured where a networked
relay would see it. ``--strike command`` measures the command driver instead: the unlock
command is ``/bin/sh -c 'echo <door> ON >> <fifo>'`` (a shell built-in, no further exec) and
the benchmark timestamps the line when it reads it from the FIFO, so the figure is the
daemon's decision plus spawning a process. ``--strike gpio`` drives each door's strike on a line
of a GPIO chip through libgpiod, the chip being the tests' userspace one (tests/gpiosim.py,
the daemon under its preload): the figure is timestamped when the line's value is set, i.e. as
the kernel would take it.

The store is filled in one transaction through the same tables and columns ``People``
writes (people, cards, person_levels, the hash-chained audit rows), because 100,000
``add_person`` calls, each its own fsync'd transaction, would take most of the time budget.

``--inside N`` records N people inside areas before the daemon starts. The daemon keeps every
location in memory and rebuilds an area's occupancy on each grant, so the strike and RSS
figures depend on N; the default, 0, is the issue's figures as stated.

Run: .venv/bin/python bench/doors.py [--people 100000] [--levels 500] [--doors 50]
         [--decisions 20000] [--taps 1000] [--strike mqtt|command|gpio] [--inside 0] [--quick] [--json]

Anchors, measured in the same run: for the decision, a bare SQLite primary-key select of the
card's row on the same file (what the store costs alone); for the strike and start-up, a bare
paho publish -> subscriber and a bare paho node's exec -> retained status on the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _site import (
    Broker,
    Site,
    Subscriber,
    answers,
    bare_node,
    bare_round_trips,
    figure,
    parse,
    rss_mb,
    summary,
    wait_for,
    workdir,
)
from gpiosim import GpioSim, build
from harness import SEKISHO
from sekisho.daemon import config as config_mod
from sekisho.daemon.alarms import Alarms
from sekisho.daemon.door_states import DoorStates
from sekisho.daemon.doors import Doors
from sekisho.daemon.keys import SiteKey
from sekisho.daemon.lockouts import Lockouts
from sekisho.daemon.pins import hash_pin
from sekisho.daemon.presence import Presence
from sekisho.daemon.rules_in_force import RulesInForce
from sekisho.daemon.store.audit import GENESIS, chain_hash
from sekisho.daemon.store.database import Database
from sekisho.daemon.store.people import People
from sekisho.daemon.store.record import Record
from sekisho.daemon.timestamps import utc_now
from sekisho.daemon.topics import Topics
from sekisho.policies import access
from sekisho.policies.access import Attempt, Auth

SITE_ID = "bench"
NODE = "door-node"
TZ = "Asia/Tokyo"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS = DAYS[:5]

SCHEDULES: dict[str, dict[str, list[str]]] = {
    "office-hours": {d: ["08:00-19:00"] for d in WEEKDAYS},
    "split-shift": {d: ["08:30-12:00", "13:00-17:30"] for d in WEEKDAYS},
    "night-shift": {**{d: ["22:00-06:00"] for d in WEEKDAYS}, "holiday": ["22:00-06:00"]},
    "weekend": {"sat": ["09:00-18:00"], "sun": ["09:00-18:00"], "holiday": ["09:00-18:00"]},
    "early": {d: ["06:00-10:00"] for d in DAYS[:6]},
    "cleaning": {d: ["18:00-23:00"] for d in DAYS},
    "extended": {**{d: ["06:00-24:00"] for d in DAYS}, "holiday": ["06:00-24:00"]},
}
SCHEDULE_MIX = {"always": 35, "office-hours": 25, "extended": 10, "split-shift": 8, "night-shift": 7,
                "weekend": 5, "early": 5, "cleaning": 5}
DOORS_PER_LEVEL = {1: 30, 2: 30, 3: 20, 4: 10, 6: 6, 10: 4}
HOLIDAYS = ("2026-01-01", "2026-01-02", "2026-01-12", "2026-05-05", "2026-11-23")
KNOWN_SHARE = 0.9
"""Of the random taps in the decision benchmark, the share made with an enrolled card ..."""
OWN_DOOR_SHARE = 0.5
"""... and of those, the share made at a door one of the holder's levels names (the rest at any
reader): people mostly tap where they may pass."""


# ----------------------------------------------------------------------------- the site
@dataclass
class SiteSpec:
    doors: list[str]
    readers: dict[str, tuple[str, str]]
    """reader -> (door, direction)"""
    levels: list[str]
    toml: str


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


def make_config(url: str, n_doors: int, n_levels: int, strike: str, fifo: Path, unlock_s: float,
                rng: random.Random) -> SiteSpec:
    out = [f'[site]\nid = "{SITE_ID}"\nnode = "{NODE}"\ntimezone = "{TZ}"\n'
           f"holidays = [{', '.join(HOLIDAYS)}]\npassback_reset = \"04:00\"\n",
           f'[mqtt]\nurl = "{url}"\nreconnect_max_s = 1\nflush_timeout_s = 5\n']
    n_areas = max(4, n_doors // 4)
    areas = [f"zone-{i:02d}" for i in range(n_areas)]
    for i, area in enumerate(areas):
        stance = "hard" if i < 2 else "soft" if i < 4 else "off"
        out.append(f'[areas.{area}]\npassback = "{stance}"\n')
    for name, days in SCHEDULES.items():
        out.append(f"[schedules.{name}]\n" + "".join(f"{d} = {toml_list(r)}\n" for d, r in days.items()))

    doors = [f"d-{i:02d}" for i in range(n_doors)]
    readers: dict[str, tuple[str, str]] = {}
    perimeter = n_areas // 2
    for i, door in enumerate(doors):
        area_in = areas[i % n_areas]
        area_out = "" if i < perimeter else areas[(i // n_areas + i + 1) % n_areas]
        if area_out == area_in:
            area_out = areas[(i + 1) % n_areas]
        lines = [f"[doors.{door}]", f'area_in = "{area_in}"', f'area_out = "{area_out}"', f"unlock_s = {unlock_s}"]
        if i % 5 == 2:
            lines.append('auth = "card_and_pin"')
            if i % 10 == 2:
                lines.append('auth_out = "card"')
        elif i % 10 == 9 and i < 30:
            lines.append('auth_schedules = [{ schedule = "office-hours", auth = "free" }]')
        if i < perimeter:
            lines.append("fire_exit = true")
        if strike == "mqtt":
            lines.append(f'strike = {{ driver = "mqtt", topic = "relays/{door}" }}')
        elif strike == "gpio":
            lines.append(f'strike = {{ driver = "gpio", chip = "gpiochip0", line = {i} }}')
        else:
            on = ["/bin/sh", "-c", f"echo {door} ON >> {fifo}"]
            off = ["/bin/sh", "-c", f"echo {door} OFF >> {fifo}"]
            lines.append(f'strike = {{ driver = "command", unlock = {toml_list(on)}, lock = {toml_list(off)} }}')
        out.append("\n".join(lines) + "\n")

    levels = [f"lv-{i:03d}" for i in range(n_levels)]
    sizes, size_w = zip(*DOORS_PER_LEVEL.items(), strict=True)
    scheds, sched_w = zip(*SCHEDULE_MIX.items(), strict=True)
    for i, level in enumerate(levels):
        chosen = set(rng.sample(doors, min(n_doors, rng.choices(sizes, size_w)[0])))
        if i < n_doors:
            chosen.add(doors[i])  # every door is opened by some level
        lines = [f"[levels.{level}]", f"doors = {toml_list(sorted(chosen))}",
                 f'schedule = "{rng.choices(scheds, sched_w)[0]}"']
        if rng.random() < 0.02:
            lines.append("override = true")
        out.append("\n".join(lines) + "\n")

    for door in doors:
        for direction in ("in", "out"):
            name = f"{door}-{direction}"
            readers[name] = (door, direction)
            out.append(f'[readers.{name}]\ndriver = "sim"\ndoor = "{door}"\ndirection = "{direction}"\n')
    for door in doors:
        out.append(f'[inputs.{door}-contact]\ndriver = "sim"\nkind = "contact"\ndoor = "{door}"\n')
    out.append('[inputs.fire-panel]\ndriver = "sim"\nkind = "fire"\n')
    return SiteSpec(doors, readers, levels, "\n".join(out))


def uid_of(i: int, enrolled: bool = True) -> bytes:
    """A 7-byte ISO 14443 UID; the unknown cards come from another range."""
    return (b"\x04" if enrolled else b"\x08") + i.to_bytes(6, "big")


@dataclass
class Population:
    """The people the bench enrolled, as the taps need them back."""

    ids: list[str]
    uids: list[bytes]
    hashes: list[str]
    levels: list[list[str]]
    inside: dict[str, str] = field(default_factory=dict)


def populate(database: Database, key: SiteKey, n: int, levels: list[str], areas: list[str], n_inside: int,
             rng: random.Random) -> tuple[Population, Counter]:
    """Everything `sekisho person add / card add / person grant / person pin` would write for
    ``n`` people, in one transaction: the rows, and the audit rows chained as ``audit.append``
    chains them."""
    today = dt.date.today()
    pin = hash_pin("2468")  # one real scrypt hash, shared: hashing 100,000 PINs would take minutes
    now = utc_now()
    actor = "bench"
    people_rows, card_rows, level_rows, audit = [], [], [], []
    ids, uids, hashes, held = [], [], [], []
    mix: Counter = Counter()

    def log(action: str, detail: dict) -> None:
        audit.append((action, detail))

    for i in range(n):
        pid = f"p{i:06d}"
        valid_from = valid_until = None
        r = rng.random()
        if r < 0.05:
            valid_until = (today - dt.timedelta(days=rng.randint(1, 400))).isoformat()
            mix["person expired"] += 1
        elif r < 0.08:
            valid_from = (today + dt.timedelta(days=rng.randint(1, 60))).isoformat()
            mix["person not yet valid"] += 1
        elif r < 0.30:
            valid_until = (today + dt.timedelta(days=rng.randint(30, 700))).isoformat()
        active = 0 if rng.random() < 0.01 else 1
        mix["person disabled"] += 1 - active
        has_pin = rng.random() < 0.85
        mix["person with PIN"] += has_pin
        people_rows.append((pid, f"Person {i:06d}", active, now, valid_from, valid_until, pin if has_pin else None))
        log("person.add", {"person": pid})
        if not active:
            log("person.disable", {"person": pid})
        if has_pin:
            log("pin.set", {"person": pid})
        uid = uid_of(i)
        card = key.card_hash(uid)
        revoked = rng.random() < 0.01
        mix["card revoked"] += revoked
        card_rows.append((card, pid, 0 if revoked else 1, now, now if revoked else None, None, None))
        log("card.add", {"person": pid, "card": card[:12]})
        if revoked:
            log("card.revoke", {"card": card[:12]})
        mine = rng.sample(levels, rng.randint(1, 3))
        for level in mine:
            level_rows.append((pid, level))
            log("level.grant", {"person": pid, "level": level})
        ids.append(pid)
        uids.append(uid)
        hashes.append(card)
        held.append(mine)
    inside = {ids[i]: rng.choice(areas) for i in rng.sample(range(n), min(n, n_inside))}

    with database.transaction() as db:
        last = db.execute("SELECT n, hash FROM audit ORDER BY n DESC LIMIT 1").fetchone()
        n_audit, prev = (last[0], last[1]) if last else (0, GENESIS)
        audit_rows = []
        for action, detail in audit:
            n_audit += 1
            body = {"n": n_audit, "ts": now, "actor": actor, "action": action, "detail": detail}
            digest = chain_hash(prev, body)
            audit_rows.append((n_audit, now, actor, action, json.dumps(detail, sort_keys=True), prev, digest))
            prev = digest
        conn = db.conn
        conn.executemany("INSERT INTO people (id, name, active, created, valid_from, valid_until, pin_hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", people_rows)
        conn.executemany("INSERT INTO cards (hash, person_id, active, created, revoked, valid_from, valid_until) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", card_rows)
        conn.executemany("INSERT INTO person_levels (person_id, level) VALUES (?, ?)", level_rows)
        conn.executemany("INSERT INTO locations (person_id, area, since) VALUES (?, ?, ?)",
                         [(p, a, now) for p, a in inside.items()])
        conn.executemany("INSERT INTO audit (n, ts, actor, action, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         audit_rows)
        db.execute("INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT(key) DO UPDATE "
                   "SET value = excluded.value", [f"{n_audit}:{prev}"])
    mix["level grants"] = len(level_rows)
    mix["audit rows"] = len(audit_rows)
    return Population(ids, uids, hashes, held, inside), mix


# ----------------------------------------------------------------------------- figures
def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary_us(name: str, samples_ns: list[int]) -> str:
    us = [x / 1000 for x in samples_ns]
    return (f"{name}: n={len(us)} p50={pct(us, 0.5):.1f} us p99={pct(us, 0.99):.1f} us "
            f"max={max(us):.1f} us mean={sum(us) / len(us):.1f} us")


def vm(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name}")


def offline_doors(cfg: config_mod.Config, database: Database, key: SiteKey) -> tuple[Doors, asyncio.AbstractEventLoop]:
    """The daemon's door controller over the bench's store, on a loop that never runs: only
    its read-only helpers are used, so the attempt is built exactly as Doors.card builds it."""
    loop = asyncio.new_event_loop()
    topics, discard = Topics(cfg.site.id), lambda item: None
    people, record = People(database), Record(database, cfg.site.node)
    alarms = Alarms(cfg.site.node, record, topics, discard)
    presence = Presence(cfg, people, record, key, topics, loop, discard)
    states = DoorStates(cfg, record, topics, loop, discard, alarms, {})
    return Doors(cfg, people, topics, loop, discard, states=states, presence=presence,
                 lockouts=Lockouts(cfg.site, alarms, loop), rules=RulesInForce(cfg.rules)), loop


def attempt_for(doors: Doors, door: str, direction: str, card_hash: str) -> tuple[access.Holder | None, Attempt]:
    """Doors.card, up to the decision: the attempt built by the daemon's own code, so that the
    benchmark measures what runs and breaks (in the suite's quick run) when that changes."""
    holder = doors.people.card_holder(card_hash)
    return holder, doors._attempt(doors.config.readers[f"{door}-{direction}"], holder, card_hash)


def bench_decisions(doors: Doors, spec: SiteSpec, people: Population, key: SiteKey, n: int,
                    rng: random.Random, args: argparse.Namespace) -> None:
    readers = list(spec.readers.values())
    taps = []
    for i in range(n):
        door, direction = rng.choice(readers)
        if rng.random() < KNOWN_SHARE:
            who = rng.randrange(len(people.hashes))
            card = people.hashes[who]
            if rng.random() < OWN_DOOR_SHARE:
                door = rng.choice(sorted(doors.site_rules.current.levels[rng.choice(people.levels[who])].doors))
        else:
            card = key.card_hash(uid_of(i, enrolled=False))
        taps.append((door, direction, card))
    for door, direction, card in taps[:500]:  # warm the page cache and the code paths
        access.decide(attempt_for(doors, door, direction, card)[1], doors.site_rules.current)

    lookup, decide, both, bare = [], [], [], []
    outcomes: Counter = Counter()
    clock = time.perf_counter_ns
    plain = sqlite3.connect(doors.people.database.path)
    for _, _, card in taps[:500]:
        plain.execute("SELECT person_id FROM cards WHERE hash = ?", [card]).fetchone()
    for _, _, card in taps:
        t0 = clock()
        plain.execute("SELECT person_id FROM cards WHERE hash = ?", [card]).fetchone()
        bare.append(clock() - t0)
    plain.close()
    for door, direction, card in taps:
        t0 = clock()
        holder = doors.people.card_holder(card)
        t1 = clock()
        attempt = doors._attempt(doors.config.readers[f"{door}-{direction}"], holder, card)
        t2 = clock()
        verdict = access.decide(attempt, doors.site_rules.current)
        t3 = clock()
        lookup.append(t1 - t0)
        decide.append(t3 - t2)
        both.append(t3 - t0)
        waits = access.needs_pin(attempt, doors.site_rules.current)
        outcomes["need_pin" if waits else f"{verdict.decision.value}:{verdict.reason}"] += 1
    print(f"  {n} taps: {KNOWN_SHARE:.0%} enrolled cards (of those {OWN_DOOR_SHARE:.0%} at a door of the "
          "holder's levels, the rest at a random reader), the rest unknown; outcomes: "
          + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print("  " + summary_us("lookup + decide (card_holder, Attempt as Doors.card builds it, decide)", both))
    print("  " + summary_us("  of which People.card_holder", lookup))
    print("  " + summary_us("  of which access.decide alone", decide))
    print("  " + summary_us("  anchor: a bare SQLite select of the card's row by its hash", bare))
    figure(args, f"decision with {len(people.ids):,} cards: card_holder + Attempt + access.decide", unit="us",
           samples=[x / 1000 for x in both], anchor="a bare SQLite select of the card's row by its hash",
           anchor_samples=[x / 1000 for x in bare])
    ok = pct(both, 0.99) <= 1_000_000
    print(f"  decision p99 {pct(both, 0.99) / 1000:.1f} us: {'meets' if ok else 'MISSES'} the target p99 <= 1 ms")


def strike_candidates(doors: Doors, spec: SiteSpec, people: Population, taps: int,
                      rng: random.Random) -> dict[str, list[tuple[str, bytes, str]]]:
    """Per door, (reader, uid, person) taps that the policy grants by card alone right now, each
    person at most once (so anti-passback never sees them twice)."""
    now, rules = dt.datetime.now(doors.tz), doors.site_rules.current
    card_doors = [d for d in spec.doors if Auth.CARD in (rules.doors[d].auth_at(now, rules.holidays, way)
                                                         for way in ("in", "out"))]
    cap = math.ceil(taps / max(1, len(card_doors))) + 5
    found: dict[str, list[tuple[str, bytes, str]]] = {d: [] for d in card_doors}
    total = 0
    for i in rng.sample(range(len(people.ids)), len(people.ids)):
        if total >= taps:
            break
        doors_of = sorted({d for lv in people.levels[i] for d in rules.levels[lv].doors} & set(found))
        rng.shuffle(doors_of)
        for door in doors_of:
            if len(found[door]) >= cap:
                continue
            direction = rng.choice(("in", "out"))
            _, attempt = attempt_for(doors, door, direction, people.hashes[i])
            verdict = access.decide(attempt, doors.site_rules.current)
            if verdict.granted and verdict.reason == Auth.CARD.value:
                found[door].append((f"{door}-{direction}", people.uids[i], people.ids[i]))
                total += 1
                break
    return {d: c for d, c in found.items() if c}


# ----------------------------------------------------------------------------- the daemon
class Watch:
    """What the benchmark sees of the daemon: strike outputs, door events, node status."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.unlocks: dict[str, list[float]] = {}
        self.locked: dict[str, bool] = {}
        self.denied: set[tuple[str, str]] = set()
        self.online_at: float | None = None
        self.events = 0

    def strike(self, door: str, released: bool, at: float) -> None:
        with self.cond:
            if released:
                self.unlocks.setdefault(door, []).append(at)
            self.locked[door] = not released
            self.cond.notify_all()

    def on_relay(self, client, userdata, msg) -> None:  # noqa: ANN001
        self.strike(msg.topic.rsplit("/", 1)[1], msg.payload == b"ON", time.perf_counter())

    def on_site(self, client, userdata, msg) -> None:  # noqa: ANN001
        now = time.perf_counter()
        if not msg.payload:
            return
        body = json.loads(msg.payload)
        with self.cond:
            if msg.topic.endswith("/status") and body.get("state") == "online" and self.online_at is None:
                self.online_at = now
            elif "/door/" in msg.topic and msg.topic.endswith("/event"):
                self.events += 1
                if body["result"] == "denied":
                    self.denied.add((body["reader"], body["subject"]))
            self.cond.notify_all()


def read_fifo(path: Path, watch: Watch) -> None:
    """The command strike's output: one ``<door> ON|OFF`` line per command, timestamped on arrival."""
    fd = os.open(path, os.O_RDWR)  # read-write: never EOF, and writers never block on open
    buf = b""
    while True:
        chunk = os.read(fd, 4096)
        now = time.perf_counter()
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            door, state = line.decode().split()
            watch.strike(door, state == "ON", now)


def run_taps(site: Site, watch: Watch, candidates: dict[str, list[tuple[str, bytes, str]]], key: SiteKey,
             taps: int) -> tuple[list[float], Counter]:
    conns: dict[str, tuple[socket.socket, object]] = {}
    latencies: list[float] = []
    missed: Counter = Counter()
    doors = [d for d in candidates]
    turn = 0
    while len(latencies) + sum(missed.values()) < taps and any(candidates.values()):
        with watch.cond:  # the next door whose strike is locked again, so a grant drives it
            def ready() -> str | None:
                for k in range(len(doors)):
                    door = doors[(turn + k) % len(doors)]
                    if candidates[door] and watch.locked.get(door, True):
                        return door
                return None
            door = watch.cond.wait_for(ready, timeout=10)
        if door is None:
            raise SystemExit("no door's strike locked again within 10 s")
        turn = (doors.index(door) + 1) % len(doors)
        reader, uid, person = candidates[door].pop()
        if reader not in conns:
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(site.data_dir / "sim" / f"{reader}.sock"))
            conns[reader] = (conn, conn.makefile("rb"))
        conn, replies = conns[reader]
        subject = key.pseudonym(person)
        with watch.cond:
            before = len(watch.unlocks.get(door, []))
            watch.locked[door] = False  # until its OFF comes; an ON always precedes it
        sent = time.perf_counter()
        conn.sendall(json.dumps({"op": "tap", "uid": uid.hex()}).encode() + b"\n")
        with watch.cond:
            got = watch.cond.wait_for(lambda: len(watch.unlocks.get(door, [])) > before
                                      or (reader, subject) in watch.denied, timeout=5)
            if got and len(watch.unlocks.get(door, [])) > before:
                latencies.append((watch.unlocks[door][before] - sent) * 1000)
            else:
                missed["denied (a schedule edge passed?)" if got else "no strike output within 5 s"] += 1
                watch.locked[door] = True
        if replies.readline() != b'{"ok": true}\n':
            raise SystemExit(f"sim reader {reader} refused a tap")
    for conn, replies in conns.values():
        replies.close()
        conn.close()
    return latencies, missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strike", choices=("mqtt", "command", "gpio"), default="mqtt")
    ap.add_argument("--unlock-s", type=float, default=0.5,
                    help="each door's unlock time; short, so a door is soon locked again for the next tap")
    ap.add_argument("--inside", type=int, default=0,
                    help="people already recorded inside an area (the daemon keeps these in memory)")
    ap.add_argument("--seed", type=int, default=5)
    args = parse(ap, people=(100_000, 2000), levels=(500, 40), doors=(50, 6), decisions=(20_000, 500),
                 taps=(1000, 12))
    tmp = workdir()
    broker = Broker(tmp)
    broker.start()
    site = Site(tmp, broker)
    try:
        run(args, tmp, broker, site)
    finally:
        site.kill()
        broker.stop()


def run(args: argparse.Namespace, tmp: Path, broker: Broker, site: Site) -> None:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    fifo = tmp / "strike.fifo"
    spec = make_config(broker.url, args.doors, args.levels, args.strike, fifo, args.unlock_s, rng)
    site.config.write_text(spec.toml)
    cfg = config_mod.load(site.config)
    print(f"site: {len(cfg.doors)} doors, {len(cfg.readers)} sim readers, {len(cfg.rules.levels)} levels, "
          f"{len(cfg.areas)} areas, {len(cfg.inputs)} inputs, strike driver {args.strike}; work dir {tmp}")

    t = time.perf_counter()
    database = Database(site.data_dir)
    key = SiteKey.load_or_create(site.data_dir / "site.key")
    people, mix = populate(database, key, args.people, spec.levels, list(cfg.areas), args.inside, rng)
    size = {p.name: p.stat().st_size / 2 ** 20 for p in site.data_dir.glob("sekisho.db*")}
    print(f"store: {args.people} people and cards in {time.perf_counter() - t:.1f} s, "
          + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(size.items())) + "; "
          + ", ".join(f"{k} {v}" for k, v in sorted(mix.items())) + f", inside an area {len(people.inside)}")

    print("\n1. decision time (in this process, the daemon not running)")
    doors, loop = offline_doors(cfg, database, key)
    bench_decisions(doors, spec, people, key, args.decisions, rng, args)
    candidates = strike_candidates(doors, spec, people, args.taps, rng)
    loop.close()
    database.close()

    watch = Watch()
    env = None
    if args.strike == "mqtt":
        relays = Subscriber(broker.port, "relays/#")
        relays.client.on_message = watch.on_relay
    elif args.strike == "gpio":
        gpio = GpioSim(tmp, build(tmp), chips={0: max(64, args.doors)})
        gpio.on_output = lambda chip, line, level: watch.strike(f"d-{line:02d}", level == 1, time.perf_counter())
        env = gpio.env()
    else:
        os.mkfifo(fifo, 0o600)
        threading.Thread(target=read_fifo, args=(fifo, watch), daemon=True).start()
    bus = Subscriber(broker.port, f"sekisho/v1/{SITE_ID}/#")
    bus.client.on_message = watch.on_site

    print("\n2. start-up, check-config and RSS (the daemon as a process)")
    t0 = time.perf_counter()
    site.proc = subprocess.Popen([*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)],
                                 stdout=open(site.log, "ab"), stderr=subprocess.STDOUT, env=env)
    with watch.cond:
        if not watch.cond.wait_for(lambda: watch.online_at is not None, timeout=30):
            raise SystemExit(f"the daemon never said online; its log:\n{site.daemon_log()}")
    started_ms = (watch.online_at - t0) * 1000
    print(f"  start-up to online on the status topic: {started_ms:.0f} ms")

    def up() -> bool:
        assert site.proc.poll() is None, f"daemon exited: {site.daemon_log()}"
        return answers(site.data_dir, site.proc.pid)
    wait_for(up, 30, "the daemon to answer on its control socket")
    print(f"  start-up to ready (answering on the control socket, which opens after all "
          f"{len(cfg.readers) + len(cfg.inputs)} sim sockets): {(time.perf_counter() - t0) * 1000:.0f} ms")
    fresh = Subscriber(broker.port, f"sekisho/v1/{SITE_ID}/node/+/status")
    status = wait_for(lambda: fresh.on("/status"), 5, "the retained status")[0]
    print(f"  a fresh subscriber gets retained={status.retain} state={status.json['state']!r}")
    fresh.close()

    t = time.perf_counter()
    check = site.cli("check-config", check=False)
    print(f"  sekisho check-config (daemon running): exit {check.returncode} in "
          f"{(time.perf_counter() - t) * 1000:.0f} ms: {check.stdout.strip()}"
          + (f"\n    stderr: {check.stderr.strip()}" if check.stderr.strip() else ""))

    threading.Event().wait(2)  # let start-up garbage settle before reading idle RSS
    idle = rss_mb(site.proc.pid)
    print(f"  idle RSS: {idle:.1f} MB (peak so far {vm(site.proc.pid, 'VmHWM'):.1f} MB)")
    bare_start, bare_rss = bare_node(broker.port)
    print(f"  anchor: a bare paho node, exec -> retained status {bare_start:.0f} ms, RSS {bare_rss:.1f} MB")
    figure(args, f"start-up with {args.people:,} cards, {len(cfg.doors)} doors: exec -> retained online",
           samples=[started_ms], anchor="a bare paho node: exec -> retained status", anchor_samples=[bare_start])

    n_cand = sum(len(c) for c in candidates.values())
    print(f"\n3. sim tap -> strike output ({args.strike}), {args.taps} taps by {n_cand} granted-by-card people "
          f"over {len(candidates)} doors")
    latencies, missed = run_taps(site, watch, candidates, key, args.taps)
    threading.Event().wait(args.unlock_s + 0.5)  # the last doors lock again
    print("  " + summary("sim tap -> strike output", latencies))
    if missed:
        print("  not counted: " + ", ".join(f"{k} {v}" for k, v in missed.items()))
    bare = bare_round_trips(broker.port, len(latencies))
    print("  " + summary("anchor: bare paho publish -> bare subscriber", bare))
    figure(args, f"sim tap -> strike output ({args.strike}), {args.people:,} cards, {len(cfg.doors)} doors",
           samples=latencies, anchor="bare paho publish -> bare subscriber", anchor_samples=bare)
    ok = latencies and pct(latencies, 0.99) <= 50
    print(f"  strike p99 {pct(latencies, 0.99):.1f} ms: {'meets' if ok else 'MISSES'} the target p99 <= 50 ms")
    after = rss_mb(site.proc.pid)
    peak = vm(site.proc.pid, "VmHWM")
    print(f"\nRSS: idle {idle:.1f} MB, after {len(latencies)} taps {after:.1f} MB, peak {peak:.1f} MB: "
          f"{'meets' if max(idle, after, peak) <= 60 else 'MISSES'} the target <= 60 MB")
    figure(args, f"RSS with {args.people:,} cards, {len(cfg.doors)} doors: idle", unit="MB", value=idle,
           anchor="a bare paho node's RSS", anchor_value=bare_rss)
    figure(args, f"RSS with {args.people:,} cards, {len(cfg.doors)} doors: peak (VmHWM) after the taps", unit="MB",
           value=peak)
    rc = site.stop()
    with watch.cond:
        print(f"door events seen on the bus: {watch.events}; daemon exit {rc}; "
              f"whole run {time.perf_counter() - started:.0f} s")
    if args.strike == "mqtt":
        relays.close()
    bus.close()


if __name__ == "__main__":
    main()
