"""Every example site's golden cases, replayed through the policy the daemon uses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import REPO
from sekisho.daemon import config
from sekisho.policies.access import Attempt, Holder, Mode, Pin, decide, needs_pin

CASE_KEYS = {"name", "who", "reader", "when", "pin", "location", "mode", "locked_out", "expect", "rule", "reason"}
PERSON_KEYS = {"levels", "pin", "card", "active", "valid_from", "valid_until"}


def golden_cases():
    for path in sorted((REPO / "examples").glob("*.cases.toml")):
        data = tomllib.loads(path.read_text())
        for i, case in enumerate(data.get("case", [])):
            yield pytest.param(path, data.get("people", {}), case, id=f"{path.name}:{i + 1}:{case.get('name', '')}")


def test_every_example_site_has_golden_cases():
    sites = {p.name.removesuffix(".toml") for p in (REPO / "examples").glob("*.toml")
             if not p.name.endswith(".cases.toml")}
    cases = {p.name.removesuffix(".cases.toml") for p in (REPO / "examples").glob("*.cases.toml")}
    assert sites == cases, f"sites without golden cases: {sites - cases}; cases without a site: {cases - sites}"


def holder(people: dict, who: str) -> Holder | None:
    if who == "unknown":
        return None
    p = people[who]
    assert set(p) <= PERSON_KEYS, f"unknown keys in people.{who}: {set(p) - PERSON_KEYS}"
    return Holder(person_id=who, card_active=p.get("card", "active") == "active", person_active=p.get("active", True),
                  levels=frozenset(p.get("levels", [])), has_pin=p.get("pin", False),
                  valid_from=p.get("valid_from"), valid_until=p.get("valid_until"))


@pytest.mark.parametrize("path, people, case", list(golden_cases()))
def test_golden_case(path: Path, people: dict, case: dict):
    assert set(case) <= CASE_KEYS, f"unknown keys: {set(case) - CASE_KEYS}"
    cfg = config.load(path.with_name(path.name.replace(".cases.toml", ".toml")))
    reader = cfg.readers[case["reader"]]
    when: dt.datetime = case["when"]
    attempt = Attempt(door=reader.door, direction=reader.direction, local=when.replace(tzinfo=ZoneInfo(cfg.site.timezone)),
                      holder=holder(people, case["who"]), pin=Pin(case.get("pin", "not_given")),
                      locked_out=case.get("locked_out", False), location=case.get("location"),
                      mode=Mode(case.get("mode", "normal")))
    # As the door runs it: a PIN is waited for only where needs_pin says so; decide once after.
    if case["expect"] == "pin":
        assert needs_pin(attempt, cfg.rules)
        assert decide(dataclasses.replace(attempt, pin=Pin.OK), cfg.rules).rule == case["rule"]
        return
    assert not needs_pin(attempt, cfg.rules)
    verdict = decide(attempt, cfg.rules)
    assert (verdict.decision.value, verdict.rule) == (case["expect"], case["rule"])
    if "reason" in case:
        assert verdict.reason == case["reason"]
