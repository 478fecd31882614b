"""USB control in the running daemon (a separate process under the same umockdev testbed):
the root hub guarded at start, the devices present decided by the rules (a keyboard allowed, a
flash drive blocked), a timed exception through `sekisho usb allow`, `sekisho usb list` against
the daemon. Plugs after start are covered in-process by test_usb.py, where the fake kernel's
uevent can be held until its descriptors are written (umockdev sends the add uevent first; a
daemon in another process may read the device in between, which no real kernel allows); the
exception tests that must plug a device while the daemon runs report it again once its
descriptors are written (``replug``), and wait for the decision made on the whole device."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, wait_for
from usbfake import Kernel, Spec, read

CALL_CENTRE = REPO / "examples" / "usb" / "call-centre.rules"
KEYBOARD = Spec("1-1", 0x046D, 0xC31C, ("03:01:01", "03:00:00"), name="USB Keyboard", connect_type="hotplug")
FLASH = Spec("1-2", 0x0781, 0x5567, ("08:06:50",), name="Cruzer Blade", serial="4C530001230417116225")


def test_daemon_guards_decides_and_allows_for_a_while(site, subscribe, testbed):
    kernel = Kernel(testbed)
    hub = kernel.root_hub()
    kernel.plug(KEYBOARD, authorized="1", with_interfaces=True)  # present and live before the daemon
    kernel.plug(FLASH)  # present, and dead as authorized_default 0 left it
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731 - a probe for wait_for
    wait_for(lambda: len([e for e in usb() if e["cause"] == "present"]) >= 2, what="the present devices decided")
    assert read(f"{hub}/authorized_default") == "0"
    keyboard = [e for e in usb() if e["device"]["pid"] == "c31c"][0]
    assert keyboard["action"] == "allowed" and keyboard["rule"].startswith(f"{CALL_CENTRE}:")
    flash = [e for e in usb() if e["device"]["pid"] == "5567"][0]
    assert flash["action"] == "blocked" and read(f"{kernel.devices['1-2']}/authorized") == "0"
    r = site.cli("usb", "allow", "0781:5567:4C530001230417116225", "--minutes", "5")
    assert r.stdout.startswith("exception ") and "1-2" in r.stdout
    wait_for(lambda: any(e["action"] == "exception_granted" for e in usb()), what="exception_granted")
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"
    listed = json.loads(site.cli("usb", "list", "--json").stdout)
    assert {d["port"] for d in listed["devices"]} >= {"1-1", "1-2"} and listed["exceptions"]
    # The exceptions in force are retained: a console that subscribes now learns the one granted.
    in_force = lambda s: [m for m in s.on("/usb/door-a/exceptions")]  # noqa: E731
    assert in_force(sub)[0].json["exceptions"] == []  # at start: none (a restart forgets them)
    wait_for(lambda: len(in_force(sub)) == 2, what="the exceptions in force after the grant")
    late = subscribe()
    said = wait_for(lambda: in_force(late), what="the retained exceptions at a late subscriber")[0]
    assert said.retain and said.qos == 1
    (exc,) = said.json["exceptions"]
    assert exc == listed["exceptions"][0] and exc["match"] == "0781:5567:4C530001230417116225"
    assert exc["actor"].startswith("cli:") and exc["until"].endswith("Z") and exc["interfaces"] == "rules"
    site.stop()
    # Exceptions are never kept: stopping ended it, recorded, and the rules decided again.
    wait_for(lambda: any(e["action"] == "exception_expired" for e in usb()), what="the exception ended at stop")
    wait_for(lambda: in_force(late)[-1].json["exceptions"] == [], what="no exception in force, retained")


def test_signed_usb_allow_command(site, subscribe, testbed, tmp_path):
    """The third way to grant an exception: a usb.allow command signed by an officer's key,
    through the broker; the answer names the exception, and the event its signer."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)
    key = tmp_path / "officer-1.key"
    section = site.cli("cmd", "keygen", str(key)).stdout.split("\n", 1)[1]
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n\n{section}')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731
    wait_for(lambda: any(e["cause"] == "present" and e["action"] == "blocked" for e in usb()), what="flash blocked")
    r = site.cli("cmd", "send", "usb.allow", "match=0781:5567:4C530001230417116225", "minutes=5", "--key", str(key))
    answer = json.loads(r.stdout)
    assert answer["ok"] is True and answer["result"]["devices"] == ["1-2"]
    granted = wait_for(lambda: [e for e in usb() if e["action"] == "exception_granted"], what="granted")[0]
    assert granted["exception"]["actor"] == "key:officer-1"
    assert granted["exception"]["id"] == answer["result"]["exception"]
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"
    site.stop()


# The flash drive's id, serial and name, with a keyboard interface added: a BadUSB that copies
# what `sekisho usb list` shows of the stick it impersonates.
CLONE = Spec("1-2", 0x0781, 0x5567, ("08:06:50", "03:01:01"), name="Cruzer Blade", serial="4C530001230417116225")
HEADSET = Spec("1-4", 0x0B0E, 0x24C8, ("01:01:00", "01:02:00", "01:02:00", "03:00:00", "ff:00:00"),
               name="Jabra Evolve", serial="70BF92E1A2")


def replug(kernel: Kernel, testbed, spec: Spec) -> str:
    """Plug ``spec`` while the daemon runs, then report it again once its descriptors are written:
    umockdev sends the add uevent before they are, and the daemon, another process, may read the
    device in between (no real kernel allows that; see this module's docstring)."""
    path = kernel.plug(spec)
    testbed.uevent(path, "add")
    return path


def test_an_exception_by_serial_refuses_a_clone_with_other_descriptors(site, subscribe, testbed):
    """Issue 11, item 9, through the daemon: the stick allowed by `sekisho usb allow` is taken out
    and a clone with its id, serial and name but other descriptors (a keyboard added) goes into
    the same port: the rules decide it, not the exception. The real stick, back, is let in."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731
    wait_for(lambda: any(e["cause"] == "present" and e["action"] == "blocked" for e in usb()), what="flash blocked")
    r = site.cli("usb", "allow", "0781:5567:4C530001230417116225", "--minutes", "5")
    assert "authorized now: 1-2" in r.stdout
    granted = wait_for(lambda: [e for e in usb() if e["action"] == "exception_granted"], what="granted")[0]
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"
    kernel.unplug("1-2")
    clone = replug(kernel, testbed, CLONE)
    read_whole = lambda: [e for e in usb() if e["device"]["interfaces"] == ["08:06:50", "03:01:01"]]  # noqa: E731
    decided = wait_for(read_whole, what="the clone decided with its descriptors")[-1]
    assert read(f"{clone}/authorized") == "0"
    assert (decided["action"], decided["rule"], decided["exception"]) == ("blocked", f"{CALL_CENTRE}:17", None)
    assert granted["exception"]["hash"] and granted["exception"]["interfaces"] == "rules"
    kernel.unplug("1-2")
    genuine = replug(kernel, testbed, FLASH)
    wait_for(lambda: [e for e in usb()[usb().index(decided) + 1:] if e["rule"] == "EXCEPTION"], what="the stick back")
    assert read(f"{genuine}/authorized") == "1"
    site.stop()


def test_an_exception_keeps_the_interfaces_its_rule_blocks_unless_it_says_all(site, subscribe, testbed, tmp_path):
    """The headset's rule blocks its vendor-specific interface: a signed usb.allow leaves it
    blocked; `sekisho usb allow --interfaces all` authorizes it too."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(HEADSET, authorized="1", with_interfaces=True)
    vendor = f"{kernel.devices['1-4']}/1-4:1.4/authorized"
    key = tmp_path / "officer-1.key"
    section = site.cli("cmd", "keygen", str(key)).stdout.split("\n", 1)[1]
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n\n{section}')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731
    present = wait_for(lambda: [e for e in usb() if e["cause"] == "present"], what="the headset decided")[0]
    assert present["blocked_interfaces"] == ["ff:00:00"] and read(vendor) == "0"
    r = site.cli("cmd", "send", "usb.allow", "match=0b0e:24c8:70BF92E1A2", "minutes=5", "--key", str(key))
    wait_for(lambda: [e for e in usb() if e["action"] == "exception_granted"], what="granted")
    assert read(vendor) == "0"
    assert json.loads(r.stdout)["result"]["interfaces"] == "rules"
    r = site.cli("usb", "allow", "0b0e:24c8:70BF92E1A2", "--minutes", "5", "--interfaces", "all")
    lifted = wait_for(lambda: [e for e in usb() if e["rule"] == "EXCEPTION" and e["action"] == "allowed"],
                      what="the headset allowed whole")[0]
    assert lifted["blocked_interfaces"] == [] and lifted["exception"]["interfaces"] == "all"
    assert read(vendor) == "1"
    site.stop()
    # Stopping ended the exception: the rules decide again, and the interface is blocked again.
    assert read(vendor) == "0"


SUPERVISED = """\
[site]
id = "test"
node = "door-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]
desks = ["desk-01"]

[levels.supervisor]
doors = ["entrance"]
desks = ["desk-01"]

[doors.entrance]
area_in = "room"

[desks.desk-01]
area = "room"
lock_confirm_s = 5.0
lock_retries = 1

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[readers.desk-01]
driver = "sim"
desk = "desk-01"

[usb]
rules = "{rules}"
supervisor_levels = ["supervisor"]
approval_confirm = "{confirm}"
"""
SUE, BOB = "05050505", "04b0b0b0"


@pytest.fixture
def supervised(site, subscribe, testbed, logind):
    """A desk node with USB control: a flash drive blocked at start, Sue a supervisor, Bob staff."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)
    logind.add_session("c1", seat="seat0", user="bob")
    logind.patch_lock()
    site.config.write_text(SUPERVISED.format(url=site.broker.url, rules=CALL_CENTRE, confirm="card"))
    site.enroll("sue", SUE, level="supervisor")
    site.enroll("bob", BOB)

    def start(confirm: str, site_extra: str = "", desk_extra: str = ""):
        text = SUPERVISED.format(url=site.broker.url, rules=CALL_CENTRE, confirm=confirm)
        text = text.replace("[desks.desk-01]\n", f"[desks.desk-01]\n{desk_extra}")
        site.config.write_text(text.replace('node = "door-a"\n', f'node = "door-a"\n{site_extra}'))
        sub = subscribe()
        site.start()
        wait_for(lambda: any(e["action"] == "blocked" for e in usb_events(sub)), what="the flash drive blocked")
        return sub
    yield site, kernel, start
    if site.proc is not None:
        site.stop()


def usb_events(sub) -> list[dict]:
    return [m.json for m in sub.on("/usb/door-a/event")]


def desk_kinds(sub) -> list[str]:
    return [m.json["kind"] for m in sub.on("/desk/desk-01/event")]


def actions(sub) -> list[str]:
    return [e["action"] for e in usb_events(sub) if e["action"] not in ("allowed", "blocked")]


def bob_steps_away(site, sub) -> None:
    """Bob works at the desk, then takes his card out: the desk is locked and waits for him."""
    site.tap(BOB)
    site.tap(BOB, "desk-01")
    wait_for(lambda: "card_inserted" in desk_kinds(sub), what="bob's card at the desk")
    site.sim("desk-01", {"op": "pull"})
    wait_for(lambda: desk_state(sub) == "locked", what="the desk locked for bob")


def desk_state(sub) -> str | None:
    msgs = sub.on("/desk/desk-01/state")
    return msgs[-1].json["state"] if msgs else None


def test_supervisor_card_out_and_in_allows_the_blocked_device(supervised):
    site, kernel, start = supervised
    sub = start("card")
    bob_steps_away(site, sub)
    # Sue is not yet inside the room: refused, and the card is the desk's (a tailgating alarm).
    site.tap(SUE, "desk-01")
    wait_for(lambda: "tailgating" in desk_kinds(sub), what="the desk's tailgating event")
    refused = [e for e in usb_events(sub) if e["action"] == "approval_refused"]
    assert [e["reason"] for e in refused] == ["not_in_area"] and refused[0]["device"]["port"] == "1-2"
    site.sim("desk-01", {"op": "pull"})
    # Sue's card out, and the desk's lock after it confirmed: on a loaded machine the lock comes
    # later, and must not be counted as part of the approval below.
    wait_for(lambda: desk_kinds(sub).count("card_removed") == 2 and desk_kinds(sub)[-1] == "session_locked",
             what="sue's card out and the session locked again")
    before = desk_kinds(sub)
    site.tap(SUE)
    site.tap(SUE, "desk-01")
    pending = wait_for(lambda: [e for e in usb_events(sub) if e["action"] == "approval_pending"], what="pending")[0]
    assert pending["confirm"] == "card" and pending["device"]["port"] == "1-2" and pending["desk"] == "desk-01"
    assert read(f"{kernel.devices['1-2']}/authorized") == "0"
    site.sim("desk-01", {"op": "pull"})
    site.tap(SUE, "desk-01")
    granted = wait_for(lambda: [e for e in usb_events(sub) if e["action"] == "exception_granted"], what="granted")[0]
    assert granted["exception"]["actor"] == f"supervisor:{pending['subject']}"
    assert granted["exception"]["minutes"] == 15.0 and granted["exception"]["match"].startswith("0781:5567:")
    # Bound to the stick Sue saw, not to whatever claims its serial; its rule's blocks kept.
    assert granted["exception"]["hash"] and granted["exception"]["interfaces"] == "rules"
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"
    site.sim("desk-01", {"op": "pull"})
    site.stop()
    # Every step of Sue's approval was the approval's: the desk saw none of it, and stayed Bob's.
    assert desk_kinds(sub) == before and desk_state(sub) == "locked"
    wait_for(lambda: "exception_expired" in actions(sub), what="the exception ended at stop")
    assert actions(sub) == ["approval_refused", "approval_pending", "exception_granted", "exception_expired"]


def test_supervisor_pin_confirms_and_a_wrong_pin_refuses(supervised):
    site, kernel, start = supervised
    site.cli("person", "pin", "sue", input_text="2468\n")
    sub = start("pin")
    bob_steps_away(site, sub)
    site.tap(SUE)
    site.tap(SUE, "desk-01")
    wait_for(lambda: "approval_pending" in actions(sub), what="pending")
    site.sim("desk-01", {"op": "pin", "digits": "1111"})
    wait_for(lambda: "approval_refused" in actions(sub), what="refused")
    assert [e["reason"] for e in usb_events(sub) if e["action"] == "approval_refused"] == ["pin_wrong"]
    assert read(f"{kernel.devices['1-2']}/authorized") == "0"
    site.sim("desk-01", {"op": "pull"})
    site.tap(SUE, "desk-01")
    wait_for(lambda: actions(sub).count("approval_pending") == 2, what="pending again")
    site.sim("desk-01", {"op": "pin", "digits": "2468"})
    wait_for(lambda: "exception_granted" in actions(sub), what="granted")
    assert read(f"{kernel.devices['1-2']}/authorized") == "1"


def test_wrong_approval_pins_count_toward_the_cards_lockout(supervised):
    site, kernel, start = supervised
    site.cli("person", "pin", "sue", input_text="2468\n")
    sub = start("pin", site_extra="pin_max_wrong = 2\n")
    bob_steps_away(site, sub)
    site.tap(SUE)
    for attempt in (1, 2):
        site.tap(SUE, "desk-01")
        wait_for(lambda: actions(sub).count("approval_pending") == attempt, what=f"pending {attempt}")
        site.sim("desk-01", {"op": "pin", "digits": "0000"})
        wait_for(lambda: actions(sub).count("approval_refused") == attempt, what=f"refused {attempt}")
        site.sim("desk-01", {"op": "pull"})
    alarm = wait_for(lambda: [m.json for m in sub.messages if "/alarm/" in m.topic and m.payload
                              and m.json["kind"] == "pin_lockout"], what="the lockout alarm")
    assert alarm[0]["source"] == "desk-01"
    site.tap(SUE, "desk-01")
    wait_for(lambda: actions(sub).count("approval_refused") == 3, what="refused while locked out")
    reasons = [e["reason"] for e in usb_events(sub) if e["action"] == "approval_refused"]
    assert reasons == ["pin_wrong", "pin_wrong", "locked_out"]
    assert read(f"{kernel.devices['1-2']}/authorized") == "0"


def test_an_approval_offers_only_a_device_blocked_on_the_desks_own_ports(supervised):
    """The flash drive is blocked on port 1-2, and the desk's ports are 1-3 only (another desk's
    drive is not this desk's to approve): the supervisor's card is no approval and goes to the desk."""
    site, kernel, start = supervised
    sub = start("card", desk_extra='usb_ports = ["1-3"]\n')
    bob_steps_away(site, sub)
    site.tap(SUE)
    before = len(desk_kinds(sub))
    site.tap(SUE, "desk-01")
    wait_for(lambda: len(desk_kinds(sub)) > before, what="sue's card taken by the desk")
    assert actions(sub) == [] and read(f"{kernel.devices['1-2']}/authorized") == "0"


def test_alarm_on_block_raises_usb_blocked_for_a_device_plugged_not_one_found_at_start(site, subscribe, testbed):
    """``[usb] alarm_on_block``: the flash drive present at start is blocked quietly (every
    restart would raise it again); the same kind of drive plugged while the daemon runs raises
    ``usb_blocked``, an incident that waits for a person, naming the device, port and rule."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(FLASH)
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\nalarm_on_block = true\n')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731
    alarms = lambda: [m.json for m in sub.on("/alarm/door-a.door-a.usb-blocked") if m.payload]  # noqa: E731
    wait_for(lambda: any(e["cause"] == "present" and e["action"] == "blocked" for e in usb()), what="flash blocked")
    other = Spec("1-3", 0x0781, 0x5583, ("08:06:50",), name="Ultra Fit", serial="4C530001")
    replug(kernel, testbed, other)
    alarm = wait_for(alarms, what="the usb_blocked alarm")[-1]
    assert (alarm["kind"], alarm["source"], alarm["device"], alarm["port"]) == (
        "usb_blocked", "door-a", "0781:5583 Ultra Fit", "1-3")
    assert alarm["rule"].startswith(f"{CALL_CENTRE}:") and alarm["cleared"] and alarm["acked_by"] is None
    assert {a["port"] for a in alarms()} == {"1-3"}  # the drive found at start raised nothing
    site.cli("alarm", "ack", "door-a.door-a.usb-blocked")
    wait_for(lambda: sub.on("/alarm/door-a.door-a.usb-blocked")[-1].payload == b"", what="the alarm closed")
    site.stop()


def test_a_device_whose_name_and_serial_are_not_utf8_is_recorded_listed_and_can_be_allowed(site, subscribe, testbed):
    """Found by tests/test_fuzz_usb.py: such a device was decided, but its event never recorded
    (SQLite refused the text), `sekisho usb list` failed printing it, and no serial typed from
    the list matched it. Its words are now shown with \\xHH for each byte that is not UTF-8."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    path = kernel.plug(FLASH)
    testbed.set_attribute_binary(path, "product", b"Cruzer \xed\xa0\x80\n")  # a lone UTF-16 surrogate, as the kernel writes it
    testbed.set_attribute_binary(path, "serial", b"4C53\xff01\n")
    site.config.write_text(site.config.read_text() + f'\n[usb]\nrules = "{CALL_CENTRE}"\n')
    sub = subscribe()
    site.start()
    usb = lambda: [m.json for m in sub.on("/usb/door-a/event")]  # noqa: E731 - a probe for wait_for
    blocked = wait_for(lambda: [e for e in usb() if e["device"]["pid"] == "5567"], what="the device decided")[0]
    assert blocked["action"] == "blocked"
    assert (blocked["device"]["name"], blocked["device"]["serial"]) == ("Cruzer \\xed\\xa0\\x80", "4C53\\xff01")
    assert "Cruzer \\xed\\xa0\\x80" in site.cli("usb", "list").stdout
    site.cli("usb", "allow", "0781:5567:4C53\\xff01", "--minutes", "5")
    granted = wait_for(lambda: [e for e in usb() if e["action"] == "exception_granted"], what="exception_granted")[0]
    assert granted["exception"]["match"] == "0781:5567:4C53\\xff01" and read(f"{path}/authorized") == "1"


def test_usb_list_on_a_node_with_no_usb_section_shows_the_implicit_targets_decision(site, testbed):
    """As `usbguard list-devices` answers with no policy: nothing controls USB here, and the
    listing says so, showing each device as the implicit target (block) would decide it."""
    kernel = Kernel(testbed)
    kernel.root_hub()
    kernel.plug(KEYBOARD, authorized="1", with_interfaces=True)
    assert "[usb]" not in site.config.read_text()
    r = site.cli("usb", "list", "--json")
    assert "has no [usb] section: nothing controls USB on this node" in r.stderr
    (keyboard,) = [d for d in json.loads(r.stdout)["devices"] if d["port"] == "1-1"]
    assert keyboard["authorized"] == "1" and keyboard["decision"] == "block" and keyboard["line"] is None
    assert keyboard["as_rule"].startswith("block id 046d:c31c")
    text = site.cli("usb", "list").stdout
    assert "1-1  046d:c31c" in text and "  block  " in text
