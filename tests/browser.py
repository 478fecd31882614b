"""A headless Chromium for tests, through playwright-core (tests/browser.mjs, one JSON line per
request): Debian's chromium, never a browser playwright would download. A failed step raises
AssertionError with what the page logged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from harness import REPO

CHROMIUM = "/usr/bin/chromium"


class Browser:
    def __init__(self, screenshots: Path, locale: str = "en-US", args: tuple[str, ...] = ()) -> None:
        """``args``: more Chromium switches (bench/console_page.py's --enable-precise-memory-info)."""
        assert os.path.exists(CHROMIUM), "Debian's chromium is not installed (make test installs it)"
        node = shutil.which("node")
        assert node, "node is not installed (make test installs it)"
        assert (REPO / "node_modules" / "playwright-core").is_dir(), "playwright-core is not installed (make node)"
        self.screenshots = screenshots
        screenshots.mkdir(parents=True, exist_ok=True)
        self.shots = 0
        self.proc = subprocess.Popen([node, str(REPO / "tests" / "browser.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO,
                                     # Never inside a umockdev testbed a test made for its daemon.
                                     env={**{k: v for k, v in os.environ.items() if k != "UMOCKDEV_DIR"},
                                          "CHROMIUM": CHROMIUM, "CHROMIUM_ARGS": "\n".join(args)},
                                     # A group of its own: close() can take Chromium down with it.
                                     start_new_session=True)
        self("open", locale=locale)

    def __call__(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the browser driver exited ({self.proc.poll()}) during {op} {args}"
        answer = json.loads(line)
        if not answer["ok"]:
            shot = self.screenshot("failed")
            raise AssertionError(f"{op} {args}: {answer['error']}\nscreenshot: {shot}\npage log:\n"
                                 + "\n".join(answer["logs"][-20:]))
        return answer["value"]

    def screenshot(self, name: str) -> Path:
        self.shots += 1
        path = self.screenshots / f"{self.shots:02d}-{name}.png"
        self.proc.stdin.write(json.dumps({"op": "screenshot", "path": str(path)}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self.proc.stdout.readline()  # type: ignore[union-attr]
        return path

    def text(self, selector: str) -> str:
        return self("text", selector=selector)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Whatever of Chromium outlived its driver (a driver killed on a busy machine left
        # renderers running for the rest of the suite).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
