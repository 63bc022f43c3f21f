"""One error hierarchy; each class carries the exit code the CLI returns for it.

The click layer catches :class:`BuildtoolError` in one place (``cli.main``) and prints
``message`` plus ``hint``; nothing else in the package calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Documented in the README ("Exit codes"). Never renumber: CI scripts depend on them."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    UNKNOWN_TARGET = 4
    TOOLCHAIN = 5
    SOURCE = 6
    BUILD = 7
    SMOKE = 8
    HOST_INCOMPATIBLE = 9
    AUDIT = 10
    RELEASE_REFUSED = 11
    PUBLISH = 12
    BAD_DATA = 13
    INTERRUPTED = 130


class BuildtoolError(Exception):
    """``path``/``line``: the file (and line) the error is about; the message starts with
    them, as compilers write it (``build_matrix.yaml:12: ...``)."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None,
                 path: Path | str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.message = where + message
        self.hint = hint
        self.path = path
        self.line = line

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(BuildtoolError):
    """A command line asking for something buildtool cannot do."""

    exit_code = ExitCode.USAGE


class ConfigError(BuildtoolError):
    """A malformed build_matrix.yaml, recipe or lock file."""

    exit_code = ExitCode.CONFIG


class DataError(ConfigError):
    """A data file or artifact buildtool reads but did not get from the user's configuration
    is malformed or damaged: a manifest, a smoke or lab result, a release record, SHA256SUMS,
    llama-bench's output, a tarball, wheel or OCI archive that cannot be read."""

    exit_code = ExitCode.BAD_DATA


class UnknownTargetError(BuildtoolError):
    exit_code = ExitCode.UNKNOWN_TARGET


class ToolchainError(BuildtoolError):
    """A required program is missing or has the wrong version (preflight)."""

    exit_code = ExitCode.TOOLCHAIN


class SourceError(BuildtoolError):
    """The llama.cpp source could not be fetched, verified or extracted."""

    exit_code = ExitCode.SOURCE


class CommandError(BuildtoolError):
    """An external command failed; carries the tail of its output and the full log."""

    exit_code = ExitCode.BUILD

    def __init__(
        self, argv: list[str], returncode: int, tail: list[str], log: Path | None = None,
        *, what: str | None = None,
    ) -> None:
        self.argv = argv
        self.returncode = returncode
        self.tail = tail
        self.log = log
        head = what or f"command failed: {argv[0]}"
        lines = [f"{head} (exit code {returncode})", f"  command: {' '.join(argv)}"]
        if tail:
            lines.append("  last lines of output:")
            lines.extend(f"    {t}" for t in tail)
        hint = f"full log: {log}" if log else None
        super().__init__("\n".join(lines), hint=hint)


class BuildError(CommandError):
    exit_code = ExitCode.BUILD


class SmokeError(BuildtoolError):
    exit_code = ExitCode.SMOKE


class AuditError(BuildtoolError):
    """A shipped binary uses instructions beyond the ISA level its artifact declares."""

    exit_code = ExitCode.AUDIT


class HostIncompatibleError(BuildtoolError):
    """The artifact needs something (a CPU feature, a GPU) this host lacks."""

    exit_code = ExitCode.HOST_INCOMPATIBLE


class PublishError(BuildtoolError):
    """An upload destination refused or failed (GitHub API, index, registry)."""

    exit_code = ExitCode.PUBLISH
