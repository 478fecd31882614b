#!/bin/bash
# make uninstall: takes away what make install put there (packaging/install.sh). The config
# (/etc/sekisho) and the data (/var/lib/sekisho: the store, the site key) stay unless PURGE=1:
# a node's record and its site key are not for an uninstall to lose. DESTDIR=DIR as for install.
set -euo pipefail

ROOT=${DESTDIR:-}
. "$(dirname "$0")/reload.sh"
VENV=/opt/sekisho
changed=0

gone() {  # gone PATH...: removed where present
	local p
	for p in "$@"; do
		if [ -e "$ROOT$p" ] || [ -L "$ROOT$p" ]; then
			rm -rf -- "$ROOT$p"
			echo "removed   $p"
			changed=1
		fi
	done
}

if [ -z "$ROOT" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ] \
	&& [ -e /etc/systemd/system/sekisho.service ]; then
	# Its program is about to go: stopped and disabled first, not left to fail.
	systemctl disable --now sekisho.service || true
fi
if [ "$(readlink "$ROOT/usr/local/bin/sekisho" 2>/dev/null)" = $VENV/bin/sekisho ]; then
	gone /usr/local/bin/sekisho
fi
gone /etc/systemd/system/sekisho.service /etc/udev/rules.d/70-sekisho-usb.rules /etc/tmpfiles.d/sekisho.conf \
	/etc/modules-load.d/sekisho.conf \
	/usr/share/doc/sekisho $VENV
if [ "${PURGE:-}" = 1 ]; then
	gone /etc/sekisho /var/lib/sekisho
else
	for p in /etc/sekisho /var/lib/sekisho; do
		if [ -e "$ROOT$p" ]; then echo "kept      $p (PURGE=1 removes it)"; fi
	done
fi
if [ -z "$ROOT" ] && [ "$changed" = 1 ]; then
	reload
fi
if [ "$changed" = 0 ]; then echo "nothing to remove"; fi
# Nothing authorizes USB devices any more: a bus left at authorized_default=0 keeps every new
# device (keyboards too) without a driver, now and, with the kernel parameter, after each boot.
cat <<'EOT'
USB: with sekisho gone, nothing authorizes new USB devices. Take usbcore.authorized_default=0 out
of GRUB_CMDLINE_LINUX in /etc/default/grub and run update-grub; until the next boot:
  for b in /sys/bus/usb/devices/usb*/{,interface_}authorized_default; do echo 1 > "$b"; done
EOT
