#!/bin/bash
# make install: the node's venv, config folder, unit, udev rule and tmpfiles snippet, then what
# is left to do by hand. Run as root (make install); DESTDIR=DIR stages it all under DIR instead
# and touches nothing of the running system. Idempotent: what is in place is left alone and said
# to be, and a config that exists is never overwritten.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
VENV=/opt/sekisho
ETC=/etc/sekisho
# A local install is the administrator's: /etc, not /usr/lib (dpkg's, for packaged units).
UNIT=/etc/systemd/system/sekisho.service
UDEV_RULE=/etc/udev/rules.d/70-sekisho-usb.rules
TMPFILES=/etc/tmpfiles.d/sekisho.conf
MODULES=/etc/modules-load.d/sekisho.conf
DOC=/usr/share/doc/sekisho
STAMP=$VENV/sekisho-install.sha256
changed=0
owner=()
if [ "$(id -u)" = 0 ]; then owner=(-o root -g root); fi
. "$SRC/packaging/reload.sh"

same() {  # same FILE MODE SOURCE: the file has the source's content and the mode
	[ -f "$ROOT$1" ] && [ "$(stat -c %a "$ROOT$1")" = "$2" ] && cmp -s "$3" "$ROOT$1"
}

put() {  # put MODE SOURCE TARGET: installed unless already there
	if same "$3" "$1" "$2"; then
		echo "unchanged $3"
	else
		install -D -m "$1" "${owner[@]}" "$2" "$ROOT$3"
		echo "installed $3"
		changed=1
	fi
}

keep() {  # keep MODE SOURCE TARGET: installed only where nothing is (a config someone fills in)
	if [ -e "$ROOT$3" ]; then
		echo "kept      $3 (exists: never overwritten)"
	else
		install -D -m "$1" "${owner[@]}" "$2" "$ROOT$3"
		echo "installed $3"
		changed=1
	fi
}

link() {  # link TARGET LINK: a symbolic link
	if [ "$(readlink "$ROOT$2" 2>/dev/null)" = "$1" ]; then
		echo "unchanged $2 -> $1"
	else
		mkdir -p "$(dirname "$ROOT$2")"
		ln -sfn "$1" "$ROOT$2"
		echo "installed $2 -> $1"
		changed=1
	fi
}

folder() {  # folder MODE DIR
	if [ -d "$ROOT$2" ] && [ "$(stat -c %a "$ROOT$2")" = "$1" ]; then
		echo "unchanged $2/"
	else
		install -d -m "$1" "${owner[@]}" "$ROOT$2"
		echo "installed $2/"
		changed=1
	fi
}

# What goes into the venv: the lock, and the package's own source. Each part is installed again
# only when it changed since the last install (STAMP records both), so an upgrade of sekisho alone
# does not fetch its dependencies again.
PACKAGE=(pyproject.toml README.md daemon drivers policies)  # what the package is built from
hash_of() {
	(cd "$SRC" && find "$@" -type f ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
		| sha256sum | cut -d' ' -f1
}

venv() {
	local lock source py dir=$ROOT$VENV
	# Debian's python's version too: after an upgrade of Debian (3.11 to 3.13) the venv's python is
	# the new one, and its packages sit under the old one's lib/: made again, not taken as unchanged.
	py=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	lock="lock $(hash_of requirements/node.lock) python $py"
	source="source $(hash_of "${PACKAGE[@]}")"
	if [ "$(cat "$ROOT$STAMP" 2>/dev/null)" = "$lock"$'\n'"$source" ] && "$dir/bin/python" -c '' 2>/dev/null; then
		echo "unchanged $VENV/ (the lock and the source are those it was built from)"
		return
	fi
	# Debian's python, so that the venv follows Debian's security updates of the interpreter.
	if [ -x "$dir/bin/python" ] && [ "$(head -n1 "$ROOT$STAMP" 2>/dev/null | sed 's/.* python //')" != "$py" ]; then
		/usr/bin/python3 -m venv --clear --system-site-packages "$dir"
	fi
	[ -x "$dir/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$dir"
	if [ "$(head -n1 "$ROOT$STAMP" 2>/dev/null)" != "$lock" ]; then
		# Every dependency from the lock, each file checked against its hashes; --ignore-installed so
		# that a Debian package of the same version (system site-packages) does not stand in for it.
		"$dir/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --ignore-installed \
			-r "$SRC/requirements/node.lock"
		echo "installed $VENV/: requirements/node.lock, every file checked against its hashes"
	fi
	# The package itself, nothing more: its dependencies are the lock's. Built from a copy of its
	# source alone: an in-tree build would leave build/lib behind, whose stale files (a module
	# since removed) the next build would package.
	local copy
	copy=$(mktemp -d)
	(cd "$SRC" && cp -r "${PACKAGE[@]}" "$copy"/)
	find "$copy" -name __pycache__ -prune -exec rm -rf {} +
	"$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$copy"
	rm -rf "$copy"
	if [ -n "$ROOT" ]; then
		# The scripts pip wrote name the staging path; on the node they run from /opt/sekisho.
		grep -rlF "$dir" "$dir/bin" "$dir/pyvenv.cfg" | xargs -r sed -i "s|$dir|$VENV|g"
	fi
	printf '%s\n%s\n' "$lock" "$source" > "$ROOT$STAMP"
	echo "installed $VENV/: sekisho $("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("sekisho"))')"
	changed=1
}

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
	echo "make install: run it as root (or stage it: make install DESTDIR=DIR)" >&2
	exit 1
fi
venv
# On root's PATH, so that the commands the docs give (sekisho site install, check-config) work.
link $VENV/bin/sekisho /usr/local/bin/sekisho
folder 755 $ETC
keep 640 "$SRC/examples/sekisho.toml" $ETC/sekisho.toml
keep 640 "$SRC/examples/usb/call-centre.rules" $ETC/usb/call-centre.rules
put 644 "$SRC/systemd/sekisho.service" $UNIT
put 644 "$SRC/systemd/70-sekisho-usb.rules" $UDEV_RULE
put 644 "$SRC/packaging/tmpfiles-sekisho.conf" $TMPFILES
put 644 "$SRC/packaging/modules-load-sekisho.conf" $MODULES
put 644 "$SRC/README.md" $DOC/README.md
for f in "$SRC"/docs/*.md; do put 644 "$f" "$DOC/docs/${f##*/}"; done

if [ -z "$ROOT" ] && [ "$changed" = 1 ]; then
	if command -v systemd-tmpfiles >/dev/null; then systemd-tmpfiles --create "$TMPFILES"; fi
	reload
fi

if [ "$changed" = 0 ]; then
	echo "nothing changed: everything was in place"
	exit 0
fi
cat <<NEXT

sekisho is installed${ROOT:+ under $ROOT}. What is left to do by hand (README.md, "Install on a node"):
  1. USB control from boot: add usbcore.authorized_default=0 to GRUB_CMDLINE_LINUX in
     /etc/default/grub, run update-grub and reboot (the udev rule covers buses that appear later).
  2. The site: sekisho site install NODE.sekisho-bundle --force (the bundle from sekisho site join
     brings the config, the broker password and the site key; --force replaces the example config
     this install put in $ETC). Without a site: edit $ETC/sekisho.toml, whose [mqtt] names the
     broker and its user (password_file).
  3. Fill in the node's sections in $ETC/sekisho.toml, then: sekisho check-config
  4. systemctl enable --now sekisho
  5. After an upgrade (make install again): systemctl restart sekisho.
NEXT
