"""The door's GPIO hardware through the daemon and libgpiod: a strike relay on an output line, a
door contact, an exit button and a fire input on input lines with kernel debounce. The chip is
gpiosim.py's, reached through the GPIO character device API, so libgpiod runs unchanged."""

from __future__ import annotations

import subprocess

import pytest

from conftest import SEKISHO, wait_for

CONFIG = """\
[site]
id = "test"
node = "door-a"

[mqtt]
url = "{url}"
reconnect_max_s = 1

[areas.room]

[levels.staff]
doors = ["entrance"]

[doors.entrance]
area_in = "room"
unlock_s = 1.0
fire_exit = true
strike = {{ driver = "gpio", chip = "{chip}", line = 17 }}

[readers.entrance-in]
driver = "sim"
door = "entrance"
direction = "in"

[inputs.contact]
driver = "gpio"
kind = "contact"
door = "entrance"
line = 27
debounce_ms = 30

[inputs.exit]
driver = "gpio"
kind = "exit"
door = "entrance"
line = 22
active_low = true
bias = "pull-up"

[inputs.fire]
driver = "gpio"
kind = "fire"
chip = "/dev/gpiochip0"
line = 5
"""
ALICE = "04a1a1a1"
STRIKE, CONTACT, EXIT, FIRE = 17, 27, 22, 5


@pytest.fixture
def door(site, subscribe, gpiosim):
    site.config.write_text(CONFIG.format(url=site.broker.url, chip="gpiochip0"))
    site.enroll("alice", ALICE)
    gpiosim.drive(0, CONTACT, 0)  # closed
    gpiosim.drive(0, EXIT, 1)     # not pressed: pulled up
    gpiosim.drive(0, FIRE, 0)
    sub = subscribe()
    site.start(env=gpiosim.env())
    wait_for(lambda: state(sub) and state(sub)["contact"] == "closed", what="the contact read at start")
    yield site, sub, gpiosim
    if site.proc is not None:
        site.stop()


def state(sub) -> dict | None:
    msgs = sub.on("/door/entrance/state")
    return msgs[-1].json if msgs else None


def alarms(sub, kind: str) -> list:
    return [m for m in sub.messages if "/alarm/" in m.topic and (not m.payload or m.json["kind"] == kind)]


def test_strike_line_is_held_locked_released_on_a_grant_and_locked_again(door):
    site, sub, sim = door
    assert sim.level(0, STRIKE) == 0 and sim.consumer(0, STRIKE) == "sekisho"
    assert {sim.consumer(0, line) for line in (CONTACT, EXIT, FIRE)} == {"sekisho"}
    site.tap(ALICE)
    # Released for unlock_s (1 s), which a busy machine may not let the test see while it lasts.
    wait_for(lambda: 1 in sim.outputs(0, STRIKE), what="the strike released")
    wait_for(lambda: sim.outputs(0, STRIKE)[-1] == 0, what="the strike locked after unlock_s")
    assert [e["result"] for e in sub.events()] == ["granted"]


def test_a_bouncing_contact_is_one_forced_door_then_closes(door):
    site, sub, sim = door
    sim.bounce(0, CONTACT, [1, 0, 1, 0, 1])  # opened without a grant, bouncing as a reed switch does
    raised = wait_for(lambda: [m for m in alarms(sub, "forced") if m.payload], what="forced door")
    assert wait_for(lambda: state(sub)["contact"] == "open", what="contact open")
    sim.bounce(0, CONTACT, [0, 1, 0])
    wait_for(lambda: [m for m in alarms(sub, "forced") if m.payload and m.json["cleared"]], what="alarm cleared")
    assert len(raised) == 1 and len([m for m in alarms(sub, "forced") if m.payload and not m.json["cleared"]]) == 1
    assert [m.json["contact"] for m in sub.on("/door/entrance/state")].count("open") == 1
    assert sim.level(0, STRIKE) == 0


def test_exit_button_active_low_releases_and_records_an_exit(door):
    site, sub, sim = door
    sim.drive(0, EXIT, 0)  # pressed: the button pulls the line to ground
    wait_for(lambda: 1 in sim.outputs(0, STRIKE), what="released by the exit button")
    sim.drive(0, EXIT, 1)
    event = wait_for(lambda: sub.events(), what="the exit event")[0]
    assert (event["direction"], event["result"], event["reason"]) == ("out", "granted", "exit_button")


def test_fire_input_releases_the_fire_exit_until_reset(door):
    site, sub, sim = door
    sim.drive(0, FIRE, 1)
    wait_for(lambda: state(sub)["mode"] == "emergency", what="emergency mode")
    # The state is queued as the strike's drive starts, so on a busy machine it can arrive first.
    wait_for(lambda: sim.level(0, STRIKE) == 1, what="the fire exit released")
    sim.drive(0, FIRE, 0)
    site.cli("door", "mode", "entrance", "normal")
    wait_for(lambda: sim.level(0, STRIKE) == 0, what="locked after the reset")


def test_stop_locks_the_door_and_lets_go_of_every_line(door):
    site, sub, sim = door
    site.cli("door", "unlock", "entrance", "--seconds", "60")
    wait_for(lambda: sim.level(0, STRIKE) == 1, what="released for a minute")
    assert site.stop() == 0
    assert sim.level(0, STRIKE) == 0
    # The simulator sees a release when the connection closes, on a thread of its own.
    wait_for(lambda: [sim.consumer(0, line) for line in (STRIKE, CONTACT, EXIT, FIRE)] == [None] * 4,
             what="every line released")


def test_a_missing_chip_or_a_busy_line_stops_the_start_with_a_clear_error(site, gpiosim, subscribe):
    site.config.write_text(CONFIG.format(url=site.broker.url, chip="gpiochip7"))
    r = subprocess.run([*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)],
                       env=gpiosim.env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "no GPIO chip /dev/gpiochip7 (gpiodetect lists the chips)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    site.config.write_text(CONFIG.format(url=site.broker.url, chip="gpiochip0"))
    holder = subprocess.Popen(
        [*SEKISHO[:1], "-c", "import gpiod, sys; from gpiod.line import Direction; "
         "r = gpiod.request_lines('/dev/gpiochip0', consumer='other', config={27: gpiod.LineSettings("
         "direction=Direction.INPUT)}); print('held', flush=True); sys.stdin.read()"],
        env=gpiosim.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([*SEKISHO, "run", "--config", str(site.config), "--data-dir", str(site.data_dir)],
                           env=gpiosim.env(), capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "line 27 (input contact): the line is in use by another program" in r.stderr, \
            r.stderr
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert gpiosim.level(0, STRIKE) == 0  # the strike it had requested was never driven


def test_check_config_refuses_a_line_used_twice(site):
    site.config.write_text(CONFIG.format(url=site.broker.url, chip="gpiochip0").replace("line = 5", "line = 17"))
    r = site.cli("check-config", check=False)
    assert r.returncode == 78
    assert "inputs.fire.line: /dev/gpiochip0 line 17 is already doors.entrance.strike's" in r.stderr, r.stderr
