"""A command run in the background (cmd.start), for real: what the wheel's backend runs
through while the tarball is audited and packed. Its output reaches the log, redacted, and
nothing else; a failure is the same error cmd.run raises; stop() ends its process group."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from buildtool import cmd
from buildtool.errors import BuildError
from buildtool.text import MASK, forget_secrets, register_secret


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # killed, waiting for init to reap it


def test_its_output_goes_to_the_log_redacted_and_its_tail_is_returned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("s3cr3t-token")
    try:
        log = tmp_path / "build.log"
        running = cmd.start(["sh", "-c", "echo one; echo 'key s3cr3t-token'; echo two >&2"],
                            log=log)
        assert running.wait() == ["one", "key s3cr3t-token", "two"]
    finally:
        forget_secrets()
    text = log.read_text()
    assert text.startswith("$ ") and "one\n" in text and "two\n" in text
    assert f"key {MASK}\n" in text and "s3cr3t" not in text
    assert running.ended is not None and running.ended >= running.started
    assert capsys.readouterr() == ("", "")  # nothing printed while others work


def test_a_failure_is_the_error_run_raises_with_the_tail_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    running = cmd.start(["sh", "-c", "echo configuring; echo 'CMake Error: no' >&2; exit 3"],
                        log=log, what="wheel build failed", error_type=BuildError)
    with pytest.raises(BuildError) as caught:
        running.wait()
    assert caught.value.returncode == 3 and caught.value.log == log
    assert caught.value.tail == ["configuring", "CMake Error: no"]
    assert caught.value.message.startswith("wheel build failed (exit code 3)")


def test_stop_ends_its_process_group(tmp_path: Path) -> None:
    """A build that fails before it waits stops it: the command and what it started."""
    log = tmp_path / "build.log"
    running = cmd.start(["sh", "-c", "sleep 60 & echo $!; wait"], log=log)
    deadline = time.monotonic() + 10
    while not running.tail and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(running.tail[0])
    assert not _gone(child)
    running.stop()
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    running.stop()  # again: nothing left to stop
