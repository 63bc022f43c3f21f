"""Every external command goes through :func:`run` (or :func:`capture`).

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
    args = [os.fspath(a) for a in argv]
    args[0] = resolve(args[0], env=env)
    echo(f"$ {format_argv(args)}")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    log_fh: IO[str] | None = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log_fh = log.open("a", encoding="utf-8", buffering=1)  # line by line: tail -f works
        log_fh.write(redact(f"$ {format_argv(args)}\n"))
    try:
        proc = subprocess.Popen(
            args, cwd=cwd, env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", bufsize=1, start_new_session=True,
        )
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
    args = [os.fspath(a) for a in argv]
    args[0] = resolve(args[0], env=env)
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
