"""The shared compile cache: ccache's remote storage, configured once, used by every build.

Why ccache and not sccache: ccache is already every build's compiler launcher (the plan sets
``CMAKE_<LANG>_COMPILER_LAUNCHER``), it is in Debian and every CI image, and since 4.4 it
keeps a second level of its cache on a remote storage — ``redis://``, ``http://`` (GET/PUT on
any web server or cache proxy) or ``file://`` (a shared directory) — with a ``read-only``
attribute for untrusted builds. A remote that is down or slow is ccache's own fallback: the
object is compiled here and the error counted, never a failed build. sccache would add a
second launcher and a server process per build for the same result.

What a build reports comes from ccache's stats log (``CCACHE_STATSLOG``, one record per
compilation): hits, misses and what the remote answered, for exactly this build — the local
cache's counters are shared by every build on the machine.

A URL may carry credentials (``redis://:password@host``, ``http://user:token@host``): it is
never printed, logged or written — :attr:`CompileCache.shown` is the form that is.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from buildtool.errors import BuildtoolError, ConfigError, UsageError
from buildtool.text import register_secret

SCHEMES = {"redis": 6379, "http": 80, "file": 0}  # ccache 4.7: no https backend
ENV_URL = "BUILDTOOL_COMPILE_CACHE"
ENV_READ_ONLY = "BUILDTOOL_COMPILE_CACHE_READ_ONLY"
STATS_LOG = "ccache-stats.log"  # in the build directory
PROBE_TIMEOUT = 2.0
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CompileCache:
    """A remote compile cache: its URL (secret: see ``shown``), whether this build may write
    to it, and who configured it."""

    url: str
    read_only: bool
    origin: str

    @property
    def shown(self) -> str:
        """The URL without its credentials: what output, logs and records may say."""
        return redact(self.url)

    @property
    def storage(self) -> str:
        """ccache's ``remote_storage`` value."""
        return self.url + ("|read-only=true" if self.read_only else "")

    def env(self) -> dict[str, str]:
        return {"CCACHE_REMOTE_STORAGE": self.storage}

    def describe(self) -> str:
        return f"{self.shown} ({'read-only' if self.read_only else 'read-write'}; " \
               f"{self.origin})"


def redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def parse(url: str, origin: str, *, read_only: bool = False,
          error: type[BuildtoolError] = UsageError, allow_credentials: bool = True) \
        -> CompileCache | None:
    """A configured cache (None for ``none``); a URL ccache cannot use is an ``error``
    naming ``origin`` (never the URL's credentials)."""
    url = url.strip()
    if url.lower() in ("", "none", "off"):
        return None
    parts = urllib.parse.urlsplit(url)
    shown = redact(url)
    if parts.scheme not in SCHEMES or any(c in url for c in " \t\n|"):
        raise error(f"{origin}: {shown!r} is not a compile cache URL",
                    hint="redis://HOST[:PORT], http://HOST[:PORT]/PATH (GET/PUT) or "
                         "file:///DIRECTORY (ccache remote storage), or none")
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise error(f"{origin}: {shown!r}: a file:// cache is an absolute local directory "
                        "(file:///srv/ccache)")
    elif not parts.hostname:
        raise error(f"{origin}: {shown!r} names no host")
    if not allow_credentials and (parts.username or parts.password):
        raise error(f"{origin}: the URL carries credentials; a file in the repository must "
                    "not", hint=f"put the whole URL in ${ENV_URL} (a CI secret) instead")
    if parts.username or parts.password:  # kept out of every output, log and file
        for secret in (url, parts.password or "", f"{parts.username}:{parts.password}"):
            register_secret(secret)
    return CompileCache(url=url, read_only=read_only, origin=origin)


def is_read_only(env: Mapping[str, str], configured: bool = False) -> bool:
    """Read-only when the configuration says so or ``$BUILDTOOL_COMPILE_CACHE_READ_ONLY``
    does (a pull request's CI job)."""
    return configured or env.get(ENV_READ_ONLY, "").strip().lower() in TRUE


def configure(*, matrix_url: str | None, matrix_read_only: bool, matrix_origin: str,
              env: Mapping[str, str], option: str | None, option_read_only: bool) \
        -> CompileCache | None:
    """The cache a build uses: the matrix's ``compile-cache`` < ``$BUILDTOOL_COMPILE_CACHE``
    < ``--compile-cache``; read-only when any of them says so (a pull request's CI job sets
    ``$BUILDTOOL_COMPILE_CACHE_READ_ONLY``)."""
    read_only = is_read_only(env, matrix_read_only or option_read_only)
    if option is not None:
        return parse(option, "--compile-cache", read_only=read_only)
    if env.get(ENV_URL):
        return parse(env[ENV_URL], f"${ENV_URL}", read_only=read_only, error=ConfigError)
    if matrix_url:
        return parse(matrix_url, matrix_origin, read_only=read_only, error=ConfigError,
                     allow_credentials=False)
    return None


def has_remote_storage(ccache_version: str) -> bool:
    """Whether this ccache keeps a remote storage (4.4 and newer)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(ccache_version) >= Version("4.4")
    except InvalidVersion:
        return False


def probe(cache: CompileCache, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the cache answers a connection (a directory: exists and is writable or
    read-only as configured); else why not — then the build compiles without it."""
    parts = urllib.parse.urlsplit(cache.url)
    if parts.scheme == "file":
        path = Path(urllib.parse.unquote(parts.path))
        if not path.is_dir():
            return f"{path} is not a directory"
        return None
    host = parts.hostname or ""
    try:
        port = parts.port or SCHEMES[parts.scheme]
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class CacheStats:
    """What ccache did for one build's compilations (from its stats log)."""

    calls: int = 0  # compilations ccache could cache
    hits: int = 0
    misses: int = 0
    remote_hits: int = 0
    remote_misses: int = 0
    remote_errors: int = 0  # the server failed or timed out: compiled here instead

    @property
    def hit_rate(self) -> float:
        return self.hits / self.calls if self.calls else 0.0

    def describe(self) -> str:
        text = f"{self.hits}/{self.calls} hits ({100 * self.hit_rate:.1f} %)"
        if self.remote_hits or self.remote_misses or self.remote_errors:
            text += f"; remote: {self.remote_hits} hits, {self.remote_misses} misses"
            if self.remote_errors:
                text += f", {self.remote_errors} errors"
        return text

    def to_json(self) -> dict[str, float | int]:
        return {"calls": self.calls, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hit_rate, 4), "remote_hits": self.remote_hits,
                "remote_misses": self.remote_misses, "remote_errors": self.remote_errors}


def read_stats_log(path: Path) -> CacheStats:
    """Count ccache's stats log: a ``# SOURCE`` line per compilation, then its counters."""
    records: list[set[str]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return CacheStats()
    for line in text.splitlines():
        if line.startswith("#"):
            records.append(set())
        elif records and line.strip():
            records[-1].add(line.strip())
    hits = sum(1 for r in records if r & {"direct_cache_hit", "preprocessed_cache_hit"})
    misses = sum(1 for r in records if "cache_miss" in r)
    return CacheStats(
        calls=hits + misses, hits=hits, misses=misses,
        remote_hits=sum(1 for r in records if "remote_storage_hit" in r),
        remote_misses=sum(1 for r in records if "remote_storage_miss" in r),
        remote_errors=sum(1 for r in records
                          if r & {"remote_storage_error", "remote_storage_timeout"}))
