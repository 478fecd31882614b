"""Time to decide one USB device against a 200-rule policy (issue 7), p50/p99 over many runs.

Three policies, each timed with ``RuleSet.first_match`` on one device, one call per sample:

  generated  200 device rules as ``usbguard generate-policy`` writes them (id, serial, name,
             hash, parent-hash, via-port, with-interface, with-connect-type), then ``block``;
             the device matches the last device rule, so all 200 are tried
  sets       200 ``block with-interface one-of { 16 patterns }`` rules that a 7-interface
             device does not match: every pattern against every interface, the slowest shape
  call-centre  examples/usb/call-centre.rules (30 rules) with a headset, allowed at line 77

Pure Python, no daemon and no I/O in the timed part.
Run: .venv/bin/python bench/usb_rules.py [--runs 20000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from _site import figure, parse
from sekisho.policies.usbrules import Device, RuleSet, Target

REPO = Path(__file__).resolve().parent.parent
HEADSET = ("01:01:00", "01:02:00", "01:02:00", "01:02:00", "01:02:00", "03:00:00", "ff:00:00")


def generated_policy(rng: random.Random, n: int = 200) -> tuple[str, Device]:
    lines = []
    last = None
    for i in range(n):
        vid, pid = f"{rng.randrange(1 << 16):04x}", f"{rng.randrange(1 << 16):04x}"
        serial = f"{rng.randrange(10 ** 10):010d}"
        interfaces = tuple(rng.choice(["03:01:01", "03:00:00", "0b:00:00", "01:01:00", "01:02:00"])
                           for _ in range(rng.randrange(1, 5)))
        device = Device(id=f"{vid}:{pid}", serial=serial, name=f"Device {i}", hash=f"h{i:043d}=",
                        parent_hash=f"p{i % 8:043d}=", via_port=f"1-{i % 12 + 1}", with_connect_type="hotplug",
                        interfaces=interfaces)
        lines.append(device.as_rule(Target.ALLOW).to_text())
        last = device
    lines.append("block")
    assert last is not None
    return "\n".join(lines) + "\n", last


def sets_policy(n: int = 200) -> tuple[str, Device]:
    patterns = " ".join(f"{c:02x}:*:*" for c in range(0x40, 0x50))
    return f"block with-interface one-of {{ {patterns} }}\n" * n, Device(id="0b0e:24c8", interfaces=HEADSET)


def measure(rules: RuleSet, device: Device, runs: int) -> list[float]:
    first_match = rules.first_match
    for _ in range(min(runs, 1000)):
        first_match(device)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        first_match(device)
        samples.append((clock() - start) / 1000)
    return samples


def report(name: str, rules: RuleSet, device: Device, args: argparse.Namespace) -> None:
    verdict = rules.first_match(device)
    s = sorted(measure(rules, device, args.runs))
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    print(f"{name:12s} rules={len(rules.rules):3d} -> {verdict.decision} {verdict.rule:22s} "
          f"n={len(s)} p50={p(0.50):.1f} us p99={p(0.99):.1f} us max={s[-1]:.1f} us")
    figure(args, f"USB rules: one device against {name} ({len(rules.rules)} rules, {verdict.rule})", unit="us",
           samples=s)


def main() -> None:
    args = parse(argparse.ArgumentParser(), runs=(20000, 200))
    text, device = generated_policy(random.Random(7))
    start = time.perf_counter()
    generated = RuleSet.parse(text, "generated.rules")
    parse_ms = (time.perf_counter() - start) * 1000
    print(f"parse of the generated 201-line file: {parse_ms:.1f} ms")
    report("generated", generated, device, args)
    text, device = sets_policy()
    report("sets", RuleSet.parse(text, "sets.rules"), device, args)
    call_centre = REPO / "examples" / "usb" / "call-centre.rules"
    report("call-centre", RuleSet.parse(call_centre.read_text(), call_centre.name),
           Device(id="0d8c:0014", interfaces=HEADSET[:-1]), args)


if __name__ == "__main__":
    main()
