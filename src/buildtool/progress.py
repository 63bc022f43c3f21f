"""Progress and messages: a bar on a terminal, plain lines (and log groups) in CI."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import TextIO

from buildtool.text import for_terminal

NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")


class Reporter:
    """Writes human-facing output to stderr (stdout is kept for --json)."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None,
                 quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        if interactive is None:
            interactive = self.stream.isatty() and not os.environ.get("CI")
        self.interactive = interactive
        self.github = os.environ.get("GITHUB_ACTIONS") == "true"
        self.quiet = quiet
        self._bar_open = False
        self._last_plain = 0.0
        self._last_pct = -1

    def _write(self, text: str) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(for_terminal(text) + "\n")  # no credential, no escape sequence
        self.stream.flush()

    def step(self, text: str) -> None:
        self._write(f"==> {text}")

    def info(self, text: str) -> None:
        if not self.quiet:
            self._write(f"    {text}")

    def warn(self, text: str) -> None:
        self._write(f"warning: {text}")

    def command(self, text: str) -> None:
        if not self.quiet:
            self._write(f"    {text}")

    def group(self, title: str) -> None:
        if self.github:
            self._write(f"::group::{title}")

    def endgroup(self) -> None:
        if self.github:
            self._write("::endgroup::")

    def progress(self, done: int, total: int, label: str, what: str = "build") -> None:
        """``done`` of ``total`` (steps, MiB, ...) of ``what``: a bar on a terminal, a plain
        line every 10 % or 30 s elsewhere."""
        if total <= 0:
            return
        pct = done * 100 // total
        if self.interactive:
            width = 30
            filled = width * done // total
            cols = 100
            text = f"\r    [{'#' * filled}{'.' * (width - filled)}] {done}/{total} " \
                + for_terminal(label)
            self.stream.write(text[:cols].ljust(cols))
            self.stream.flush()
            self._bar_open = True
            if done == total:
                self.stream.write("\n")
                self._bar_open = False
            return
        now = time.monotonic()
        # Plain lines: every 10 % or every 30 s, whichever comes first, and at the end.
        if done == total or pct // 10 != self._last_pct // 10 or now - self._last_plain > 30:
            self._last_plain = now
            self._last_pct = pct
            self._write(f"    {what} {done}/{total} ({pct}%)")

    def ninja_line(self, line: str) -> None:
        m = NINJA_PROGRESS.match(line)
        if m:
            self.progress(int(m.group(1)), int(m.group(2)), m.group(3))
