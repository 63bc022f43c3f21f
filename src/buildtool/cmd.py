"""Every external command goes through :func:`run` (or :func:`capture`, or :func:`start` for
one that runs in the background).

The helper resolves the program first (a missing program is a :class:`ToolchainError`,
not a ``FileNotFoundError``), echoes the command line, streams output line by line to a
callback and an optional log file, and turns a non-zero exit into a :class:`CommandError`
that carries the command, the exit code, the tail of the output and the log path.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from buildtool.errors import CommandError, ToolchainError
from buildtool.text import redact

TAIL_LINES = 40

Echo = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def which(program: str, path: str | None = None) -> str | None:
    return shutil.which(program, path=path)


def resolve(program: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> str:
    text = os.fspath(program)
    if os.sep in text:
        if os.access(text, os.X_OK):
            return text
        raise ToolchainError(f"program not found or not executable: {text}")
    found = which(text, path=(env or os.environ).get("PATH"))
    if found is None:
        raise ToolchainError(
            f"required program '{text}' was not found on PATH",
            hint="run `buildtool doctor` to see what was found and how to install what is missing",
        )
    return found


def format_argv(argv: Sequence[str | os.PathLike[str]]) -> str:
    return shlex.join(os.fspath(a) for a in argv)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    echo: Echo = _noop,
    what: str | None = None,
    error_type: type[CommandError] = CommandError,
) -> list[str]:
    """Run a command to completion, streaming its merged stdout/stderr.

    Returns the tail of the output. Raises ``error_type`` on a non-zero exit.
    On KeyboardInterrupt the child's process group is terminated before re-raising.
    """
    args = _resolved(argv, env)
    echo(f"$ {format_argv(args)}")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    log_fh = _open_log(log, args)
    try:
        proc = _popen(args, cwd, env)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                if log_fh is not None:
                    log_fh.write(redact(raw))
                if on_line is not None:
                    on_line(line)
            rc = proc.wait()
        except BaseException:
            _terminate(proc)
            raise
    finally:
        if log_fh is not None:
            log_fh.close()
    if rc != 0:
        raise error_type(args, rc, list(tail), log, what=what)
    return list(tail)


class Started:
    """A command running in the background (:func:`start`). Its merged output goes to the
    log (redacted, line by line) and into a tail, read by a thread of its own: nothing is
    printed while the caller does other work."""

    def __init__(self, args: list[str], proc: subprocess.Popen[str], log_fh: IO[str] | None,
                 log: Path | None, what: str | None, error_type: type[CommandError]) -> None:
        self.args = args
        self._proc = proc
        self._log_fh = log_fh
        self._log = log
        self._what = what
        self._error_type = error_type
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.started = time.monotonic()
        self.ended: float | None = None  # when its output ended (it exited)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        with out:
            for raw in out:
                self.tail.append(raw.rstrip("\n"))
                log_fh = self._log_fh
                if log_fh is not None:
                    with contextlib.suppress(ValueError):  # closed by stop() meanwhile
                        log_fh.write(redact(raw))
        self.ended = time.monotonic()

    def wait(self) -> list[str]:
        """Wait for it to end; its tail, or ``error_type`` on a non-zero exit (as
        :func:`run`). Interrupted, it terminates the command first."""
        try:
            rc = self._proc.wait()
            self._reader.join()
        except BaseException:
            self.stop()
            raise
        self._close()
        if rc != 0:
            raise self._error_type(self.args, rc, list(self.tail), self._log, what=self._what)
        return list(self.tail)

    @property
    def seconds(self) -> float:
        """How long it ran (once :meth:`wait` returned)."""
        return (self.ended or time.monotonic()) - self.started

    def stop(self) -> None:
        """Terminate its process group, if it still runs (the caller failed or was
        interrupted and will not wait for it)."""
        _terminate(self._proc)
        self._reader.join(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


def start(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    what: str | None = None,
    error_type: type[CommandError] = CommandError,
) -> Started:
    """Start a command in the background (see :class:`Started`); :meth:`Started.wait`
    ends it as :func:`run` would have."""
    args = _resolved(argv, env)
    log_fh = _open_log(log, args)
    try:
        proc = _popen(args, cwd, env)
    except BaseException:
        if log_fh is not None:
            log_fh.close()
        raise
    return Started(args, proc, log_fh, log, what, error_type)


def _resolved(argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None,
              ) -> list[str]:
    args = [os.fspath(a) for a in argv]
    args[0] = resolve(args[0], env=env)
    return args


def _open_log(log: Path | None, args: list[str]) -> IO[str] | None:
    """The log, opened to append (line by line: tail -f works), the command line written."""
    if log is None:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    log_fh = log.open("a", encoding="utf-8", buffering=1)
    log_fh.write(redact(f"$ {format_argv(args)}\n"))
    return log_fh


def _popen(args: list[str], cwd: Path | None, env: Mapping[str, str] | None,
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, cwd=cwd, env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", bufsize=1, start_new_session=True,
    )


def capture(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60,
    check: bool = True,
) -> str:
    """Run a short command and return its stdout (stderr is folded in on failure)."""
    done = capture_all(argv, cwd=cwd, env=env, timeout=timeout)
    if check and done.returncode != 0:
        lines = (done.stdout + done.stderr).splitlines()[-TAIL_LINES:]
        raise CommandError(done.argv, done.returncode, lines)
    return done.stdout


@dataclass(frozen=True)
class Captured:
    argv: list[str]  # as it ran (the program resolved on PATH)
    returncode: int
    stdout: str
    stderr: str


def capture_all(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60,
) -> Captured:
    """Run a short command and return its exit status, stdout and stderr (never raises for
    a failing command: the caller judges; a timeout is CommandError)."""
    args = _resolved(argv, env)
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=dict(env) if env is not None else None, capture_output=True,
            text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, [f"timed out after {timeout} s"]) from exc
    return Captured(args, proc.returncode, proc.stdout, proc.stderr)


def _terminate(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


SIGILL_HINT = ("a CPU feature the build enabled is not usable on this host: build for a lower "
               "--cpu level or --cpu all-variants; if the host really has the feature, the "
               "pinned llama.cpp may be at fault (see avoid-cpu-features in recipes/common.yaml)")


def describe_exit(returncode: int) -> str:
    """An exit status in words; SIGILL gets the explanation users need."""
    if returncode in (-4, 128 + 4):
        return ("killed by SIGILL, an illegal instruction: the binary uses an instruction this "
                "CPU, its OS or its hypervisor does not allow")
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
