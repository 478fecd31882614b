# reload: systemd and udev read their units and rules again, where they run (not in a container
# or chroot without them). Sourced by install.sh and uninstall.sh.
reload() {
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	if command -v udevadm >/dev/null && [ -d /run/udev ]; then udevadm control --reload; fi
}
