# Two commands do everything on a fresh Debian machine:
#   make demo   install what the demo needs, then run broker, daemon and bus monitor
#   make test   install what the tests need, then run them all
# Both are idempotent: a second run installs nothing and starts at once.
# A node in service: make install, as root (README, "Install on a node"; docs/install.md).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO := --config examples/demo.toml --data-dir .demo/data

# Debian packages: the broker, pcscd and what pyscard builds with, the virtual reader and the
# D-Bus and udev test doubles (python3-dbusmock, umockdev). gi and dbus come from Debian, so
# the venv is made from Debian's python with --system-site-packages. mosquitto also brings
# mosquitto_passwd and the mosquitto user, as which tests/test_broker_acl.py runs the shipped
# broker config. chromium is the browser the console's tests drive (tests/test_console.py),
# with a Japanese font for their screenshots.
# jinja2 renders the Home Assistant discovery's templates against what the daemon publishes
# (tests/test_home_assistant.py), as Home Assistant itself would; the daemon never imports it.
# python3-libgpiod: Debian's gpiod 1, which the config check must refuse by name
# (tests/test_driver_libraries.py); the venv's own gpiod 2 comes first for everything else.
# postgresql and python3-psycopg (psycopg 3, Debian's rather than a wheel from PyPI): the
# recorder's store on PostgreSQL, tested against a throw-away cluster (tests/postgres.py).
# systemd brings systemd-analyze, which checks the unit and scores its sandbox offline
# (tests/test_unit_file.py); nothing here needs a booted systemd. libfaketime steps the daemon's
# wall clock while it runs, leaving the monotonic one alone, as date -s or an NTP step does
# (tests/test_clock.py). libusbguard1: the library of USBGuard 1.1, the reference sekisho's USB rules
# are held to (tests/test_usb_parity.py); its programs come from the usbguard package unpacked
# under build/ (usbguard-ref below), never installed, so no usbguard-daemon service is set up.
# cups-daemon, cups-client, cups-ipp-utils (ippeveprinter, the printer) and python3-cups (pycups,
# OpenPrinting's binding, which the print driver imports): print release is tested against a
# real cupsd started in a temp dir (tests/cupsfake.py).
APT_PACKAGES := python3 python3-venv python3-dev build-essential swig libpcsclite-dev pcscd \
	mosquitto mosquitto-clients vsmartcard-vpcd python3-virtualsmartcard \
	dbus python3-dbus python3-dbusmock python3-gi umockdev gir1.2-umockdev-1.0 chromium \
	fonts-ipafont-gothic python3-jinja2 postgresql python3-psycopg python3-libgpiod systemd \
	libfaketime libusbguard1 cups-daemon cups-client cups-ipp-utils python3-cups
# What a node needs, and no more (make install): Debian's python for the venv; pcscd, and swig,
# libpcsclite-dev, python3-dev and a compiler to build pyscard (no wheel on PyPI), a compiler and
# the kernel headers (linux-libc-dev, with build-essential) for evdev (likewise); libusb for
# nfcpy's readers. The rest of the lock comes as wheels. polkitd: the unit gives the daemon no
# capabilities, so logind asks polkitd whether root may lock a seat's sessions (docs/systemd.md);
# without it every desk lock fails. python3-cups: pycups for the print driver, seen by the venv
# through --system-site-packages (a node with [print] talks to its own cupsd).
NODE_PACKAGES := python3 python3-venv python3-dev build-essential swig libpcsclite-dev pcscd libusb-1.0-0 polkitd \
	python3-cups
# Node and npm, for the tests' browser driver (playwright-core, package-lock.json) and for
# re-vendoring the console's libraries (console/vendor/update.sh): Debian's nodejs and npm unless
# a node with its npm is already installed (NodeSource's nodejs carries its own npm and conflicts
# with Debian's).
NODE_APT_PACKAGES := nodejs npm

.PHONY: test lint bench demo deps venv node vendor tap pull pin door ack clean lock install uninstall node-deps \
	usbguard-ref

# Lint first, so a finding fails the run before seven minutes of tests. Under umockdev's
# preload: the USB tests run on its simulated sysfs and uevents (and fail, never skip, without
# it). Nothing else notices the preload.
# Four workers (pytest-xdist) on two cores: most of a test is waiting for a daemon, a broker or a
# timer, not computing. --dist loadfile: each module runs whole on one worker, in order, as it was
# written to (test_console shares one daemon among its tests, which build on one another). The
# tests that start pcscd, the machine's one, take turns on fakecard.MACHINE_LOCK across workers.
test: lint node usbguard-ref
	umockdev-wrapper $(PY) -m pytest -q -n 4 --dist loadfile

# ruff and mypy, configured in pyproject.toml. mypy reads the package as Python imports it,
# sekisho.daemon and so on, through links under build/ (the folders themselves are not named so).
lint: venv
	$(VENV)/bin/ruff check .
	mkdir -p build/mypy/sekisho
	for d in daemon drivers policies; do ln -sfn ../../../$$d build/mypy/sekisho/$$d; done
	$(VENV)/bin/mypy

# Every benchmark in bench/, one after another, then the README's table of their figures, each
# beside its anchor from the same run, on stdout (bench/all.py; each benchmark's own output is kept
# in the directory it names). It takes about 20 minutes on a 2-core machine.
bench: venv node
	$(PY) bench/all.py

demo: venv
	$(VENV)/bin/sekisho demo $(DEMO)

# While make demo runs: make tap CARD=04a1b2c3d4e5f6 READER=entrance-in, make pin PIN=1234
# READER=entrance-in, make pull READER=desk-01, make door STATE=open (then closed), make ack
# ALARM=<id>. No defaults: a mistyped variable (REDAER=) must not tap somewhere else.
need = $(if $(strip $($(1))),,$(error $(1)= is missing, e.g. make $@ $(2)))
tap:
	$(call need,CARD,CARD=04a1b2c3d4e5f6 READER=entrance-in)$(call need,READER,CARD=04a1b2c3d4e5f6 READER=entrance-in)
	$(VENV)/bin/sekisho sim tap $(READER) $(CARD) $(DEMO)
pull:
	$(call need,READER,READER=desk-01)
	$(VENV)/bin/sekisho sim pull $(READER) $(DEMO)
pin:
	$(call need,PIN,PIN=1234 READER=entrance-in)$(call need,READER,PIN=1234 READER=entrance-in)
	$(VENV)/bin/sekisho sim pin $(READER) $(PIN) $(DEMO)
door:
	$(call need,STATE,STATE=open)
	$(VENV)/bin/sekisho sim input entrance-contact $(STATE) $(DEMO)
ack:
	$(call need,ALARM,ALARM=door-a.entrance.forced)
	$(VENV)/bin/sekisho alarm ack $(ALARM) $(DEMO)

# USBGuard's own programs (usbguard generate-policy, usbguard-daemon), Debian's build, unpacked
# into build/usbguard without installing the package: the tests run them on a umockdev testbed as
# the reference (tests/test_usb_parity.py); libusbguard1, which they link to, is in APT_PACKAGES.
USBGUARD_REF := build/usbguard/usr/bin/usbguard
usbguard-ref: deps $(USBGUARD_REF)

# The same version as the installed libusbguard1, which its programs link to; the package lists
# are refreshed only when that version is no longer in them.
$(USBGUARD_REF):
	rm -rf build/usbguard-deb && mkdir -p build/usbguard-deb
	version=$$(dpkg-query -W -f='$${Version}' libusbguard1) && cd build/usbguard-deb && \
		{ apt-get download -q "usbguard=$$version" || { apt-get update -qq && apt-get download -q "usbguard=$$version"; }; }
	dpkg-deb -x build/usbguard-deb/usbguard_*.deb build/usbguard
	touch $@

# Installs the Debian packages of $(1) that are missing, and those $(2) prints (as root; otherwise
# names them and fails).
apt_install = missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done; \
		$(2)); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:" $$missing; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages; run as root: apt-get install $$missing" >&2; exit 1; \
		fi; \
	fi

deps:
	@$(call apt_install,$(APT_PACKAGES),command -v npm >/dev/null || echo $(NODE_APT_PACKAGES))

venv: deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The node packages the tests use (playwright-core, exactly as package-lock.json pins it), in
# ./node_modules; no install scripts run (playwright-core has none it needs: it downloads no
# browser, the tests use Debian's chromium).
node: deps node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The console's libraries (mqtt.js, Preact, htm), fetched from npm at the versions and integrity
# console/vendor/update.sh records, into console/vendor/: by hand, when a version changes.
vendor:
	console/vendor/update.sh

# A node in service, as root, on Debian 12 or 13: the Debian packages above, then
# packaging/install.sh (the venv /opt/sekisho with every driver extra from requirements/node.lock,
# /etc/sekisho with the example config, the unit, the udev rule, the tmpfiles snippet) and what is
# left to do by hand. DESTDIR=DIR stages the files under DIR and installs no Debian package.
# Idempotent. make uninstall removes what install put there but /etc/sekisho and /var/lib/sekisho
# (the config, the store and the site key); PURGE=1 removes those too.
install: $(if $(DESTDIR),,node-deps)
	DESTDIR=$(DESTDIR) packaging/install.sh

uninstall:
	DESTDIR=$(DESTDIR) PURGE=$(PURGE) packaging/uninstall.sh

node-deps:
	@$(call apt_install,$(NODE_PACKAGES),)

# The node's venv, every version pinned with its hashes (requirements/node.lock), for Debian 12's
# Python 3.11: regenerated by hand when pyproject.toml's dependencies change (UPGRADE=1 also moves
# every pin to the newest release). pip-tools runs in a throw-away venv here and never at install.
LOCK := requirements/node.lock
NODE_EXTRAS := pcsc,nfc,udev,evdev,gpio,osdp
lock:
	rm -rf build/lock && /usr/bin/python3 -m venv build/lock
	build/lock/bin/pip install -q pip-tools
	build/lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links $(if $(UPGRADE),--upgrade) --extra $(NODE_EXTRAS) -o $(LOCK) pyproject.toml

clean:
	rm -rf node_modules $(VENV) .demo .pytest_cache .ruff_cache .mypy_cache build/mypy
