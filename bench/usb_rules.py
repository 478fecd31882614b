"""Time to decide one USB device against a 200-rule policy (issue 7), p50/p99 over many runs,
and to parse and decide with a 1,000-rule file (issue 17).

Three policies, each timed with ``RuleSet.first_match`` on one device, one call per sample:

  generated  200 device rules as ``usbguard generate-policy`` writes them (id, serial, name,
             hash, parent-hash, via-port, with-interface, with-connect-type), then ``block``;
             the device matches the last device rule, so all 200 are tried
  sets       200 ``block with-interface one-of { 16 patterns }`` rules that a 7-interface
             device does not match: every pattern against every interface, the slowest shape
  call-centre  examples/usb/call-centre.rules (30 rules) with a headset, allowed at line 77

And a 1,000-line file of every shape a site writes (``thousand``): 850 device rules as generated,
100 class rules (interface sets, ``match-all``, ``block-interface``, names, ports), 49 id rules, then
``block``; parsed 20 times (p50/p99 of the whole file), then 1,000 devices decided, half of them
ones the file names (at random lines) and half unknown (every rule tried, then ``block``): the
time per device, p50/p99 over every device of several rounds. ``thousand-if`` is the same file
with an ``if`` on each class rule (localtime, allowed-matches, rule-applied, random, true).

Pure Python, no daemon and no I/O in the timed part.
Run: .venv/bin/python bench/usb_rules.py [--runs 20000] [--parses 20] [--rounds 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from _site import figure, parse
from sekisho.policies.usbrules import ConditionContext, Device, RuleSet, Target

REPO = Path(__file__).resolve().parent.parent
HEADSET = ("01:01:00", "01:02:00", "01:02:00", "01:02:00", "01:02:00", "03:00:00", "ff:00:00")


def generated_policy(rng: random.Random, n: int = 200) -> tuple[str, Device]:
    lines, devices = generated_rules(rng, n)
    return "\n".join([*lines, "block"]) + "\n", devices[-1]


def random_device(rng: random.Random, i: int) -> Device:
    interfaces = tuple(rng.choice(["03:01:01", "03:00:00", "0b:00:00", "01:01:00", "01:02:00", "08:06:50", "e0:01:01"])
                       for _ in range(rng.randrange(1, 5)))
    return Device(id=f"{rng.randrange(1 << 16):04x}:{rng.randrange(1 << 16):04x}",
                  serial=f"{rng.randrange(10 ** 10):010d}", name=f"Device {i}", hash=f"h{i:043d}=",
                  parent_hash=f"p{i % 8:043d}=", via_port=f"1-{i % 12 + 1}", with_connect_type="hotplug",
                  interfaces=interfaces)


def generated_rules(rng: random.Random, n: int) -> tuple[list[str], list[Device]]:
    lines = []
    devices = []
    for i in range(n):
        vid, pid = f"{rng.randrange(1 << 16):04x}", f"{rng.randrange(1 << 16):04x}"
        serial = f"{rng.randrange(10 ** 10):010d}"
        interfaces = tuple(rng.choice(["03:01:01", "03:00:00", "0b:00:00", "01:01:00", "01:02:00"])
                           for _ in range(rng.randrange(1, 5)))
        device = Device(id=f"{vid}:{pid}", serial=serial, name=f"Device {i}", hash=f"h{i:043d}=",
                        parent_hash=f"p{i % 8:043d}=", via_port=f"1-{i % 12 + 1}", with_connect_type="hotplug",
                        interfaces=interfaces)
        lines.append(device.as_rule(Target.ALLOW).to_text())
        devices.append(device)
    return lines, devices


CLASS_RULES = (
    "allow with-interface equals {{ 03:01:01 03:00:00 }} name \"Keyboard {i}\"",
    "block with-interface one-of {{ 08:*:* 06:*:* e0:*:* {c:02x}:*:* }} via-port \"2-{p}\"",
    "allow id {v:04x}:* with-interface match-all {{ 01:*:* 03:00:00 }}",
    "allow id {v:04x}:{q:04x} block-interface {{ 08:*:* e0:*:* }}",
    "reject name one-of {{ \"Rubber Ducky {i}\" \"Bash Bunny {i}\" }}",
    "allow via-port \"3-{p}\" with-connect-type \"hardwired\" with-interface none-of {{ 08:*:* }}",
    "block serial equals-ordered {{ \"{i:012d}\" }} name all-of {{ \"Stick {i}\" }}",
)


CONDITIONS = (
    " if localtime(08:00-18:00)",
    " if allowed-matches(with-interface 03:*:*)",
    " if !rule-applied",
    " if one-of { false random(0.5) }",
    " if all-of { true !false }",
)


def thousand_policy(rng: random.Random, conditional: bool = False) -> tuple[str, list[Device]]:
    """The 1,000-line file and the devices to decide with it (see the module docstring); with
    ``conditional``, each class rule has an ``if``."""
    lines, known = generated_rules(rng, 850)
    for i in range(100):
        lines.append(CLASS_RULES[i % len(CLASS_RULES)].format(
            i=i, c=0x40 + i % 16, p=i % 9 + 1, v=rng.randrange(1 << 16), q=rng.randrange(1 << 16))
            + (CONDITIONS[i % len(CONDITIONS)] if conditional else ""))
    for i in range(49):
        lines.append(f"allow id {rng.randrange(1 << 16):04x}:{rng.randrange(1 << 16):04x} serial \"S{i:08d}\"")
    rng.shuffle(lines)
    lines.append("block")
    devices = rng.sample(known, 500) + [random_device(rng, 10_000 + i) for i in range(500)]
    rng.shuffle(devices)
    return "\n".join(lines) + "\n", devices


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


def report_thousand(args: argparse.Namespace, conditional: bool) -> None:
    text, devices = thousand_policy(random.Random(17), conditional)
    name = "thousand-if" if conditional else "thousand"
    parses = []
    for _ in range(args.parses):
        start = time.perf_counter_ns()
        rules = RuleSet.parse(text, "thousand.rules")
        parses.append((time.perf_counter_ns() - start) / 1e6)
    parses.sort()
    pick = lambda s, q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    print(f"{name:12s} parse of the {len(rules.rules)}-rule file: n={len(parses)} p50={pick(parses, 0.5):.1f} ms "
          f"p99={pick(parses, 0.99):.1f} ms max={parses[-1]:.1f} ms")
    figure(args, f"USB rules: parse a {len(rules.rules)}-rule file{' with conditions' if conditional else ''}",
           samples=parses)
    # What the daemon gives the conditions (conditions_now): ten devices allowed, one draw source.
    context = ConditionContext(10 * 3600, tuple(devices[:10]), random.Random(3).random) if conditional else None
    last = rules.rules[-1].line
    to_the_end = sum(rules.first_match(d, context).line == last for d in devices)
    samples = []
    clock = time.perf_counter_ns
    first_match = rules.first_match
    for _ in range(args.rounds):
        for device in devices:
            start = clock()
            first_match(device, context)
            samples.append((clock() - start) / 1000)
    samples.sort()
    print(f"{name:12s} one device against {len(rules.rules)} rules ({len(devices) - to_the_end} named, "
          f"{to_the_end} to the final block): n={len(samples)} p50={pick(samples, 0.5):.1f} us "
          f"p99={pick(samples, 0.99):.1f} us max={samples[-1]:.1f} us")
    figure(args, f"USB rules: one device against {len(rules.rules)} rules{' with conditions' if conditional else ''}, "
           f"per device", unit="us", samples=samples)


def main() -> None:
    args = parse(argparse.ArgumentParser(), runs=(20000, 200), parses=(20, 3), rounds=(5, 1))
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
    report_thousand(args, conditional=False)
    report_thousand(args, conditional=True)


if __name__ == "__main__":
    main()
