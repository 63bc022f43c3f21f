"""Text on its way out: credentials redacted, terminal controls neutralized, Markdown escaped.

Values in buildtool's output often come from elsewhere — a device name from llama-bench, a
reason from a lab result file, a message from a GitHub API server. Before such text reaches a
terminal, a log, a Markdown summary or an HTML page it passes through here:

* :func:`redact` replaces every registered credential (and its URL-encoded form) with
  ``***``. :func:`register_secret` is called as soon as a credential is read; the CLI's
  output, the reporter, ``--json`` and every file buildtool writes go through :func:`redact`,
  so no server's echo can carry a token out.
* :func:`for_terminal` turns control characters (ESC sequences, carriage returns, NUL)
  into visible ``\\x1b`` escapes: a result file cannot rewrite the user's terminal.
* :func:`md` / :func:`md_code` / :func:`md_url` escape Markdown (tables, links, inline HTML).
  HTML is escaped with :func:`html.escape` where it is written (lab_report).
"""

from __future__ import annotations

import re
from urllib.parse import quote

_SECRETS: set[str] = set()
MIN_SECRET = 8  # shorter values would redact ordinary words
MASK = "***"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
_MD_SPECIAL = re.compile(r"([\\*_{}\[\]()#+!|~])")


def register_secret(value: str) -> None:
    """From now on, ``value`` never appears in anything buildtool prints or writes."""
    if len(value) >= MIN_SECRET:
        _SECRETS.add(value)
        _SECRETS.add(quote(value, safe=""))


def forget_secrets() -> None:
    """For tests: start from no registered credential."""
    _SECRETS.clear()


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def for_terminal(text: str) -> str:
    """Redacted, with control characters (but newline and tab) shown as escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", redact(text))


def one_line(text: str, limit: int = 300) -> str:
    """Untrusted text (a server's message) reduced to one printable line of bounded length."""
    flat = " ".join(for_terminal(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def cmake_string(value: str) -> str:
    """A CMake quoted argument: no variable references, no escapes left to interpret."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def md(text: object) -> str:
    """Inline Markdown text: no table breaks, links, emphasis, inline HTML or headings
    (``<``, ``>``, ``&`` and backticks become entities, the rest is backslash-escaped)."""
    flat = " ".join(_CONTROL.sub(" ", redact(str(text))).split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("`", "&#96;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def md_code(text: object) -> str:
    """Inline code that cannot be closed early: backticks become ', pipes are escaped."""
    flat = " ".join(_CONTROL.sub(" ", redact(str(text))).split())
    return "`" + flat.replace("`", "'").replace("|", "\\|") + "`"


def md_url(text: object) -> str:
    """A URL inside ``(<...>)``: nothing that ends the link target."""
    return quote(redact(str(text)), safe=":/?#[]@!$&'*+,;=%-._~")
