from __future__ import annotations

import io

from buildtool.progress import Reporter


def test_plain_lines_every_ten_percent() -> None:
    out = io.StringIO()
    rep = Reporter(out, interactive=False)
    for i in range(1, 101):
        rep.ninja_line(f"[{i}/100] Building CXX object x{i}.o")
        rep.ninja_line("some compiler warning")  # not progress: ignored
    lines = out.getvalue().splitlines()
    assert lines[0] == "    build 1/100 (1%)"
    assert lines[-1] == "    build 100/100 (100%)"
    assert len(lines) == 11


def test_bar_on_a_terminal() -> None:
    out = io.StringIO()
    rep = Reporter(out, interactive=True)
    rep.ninja_line("[5/10] Linking CXX executable bin/llama-bench")
    text = out.getvalue()
    assert text.startswith("\r    [###############...............] 5/10 Linking")
    rep.step("packaging")
    assert out.getvalue().endswith("\n==> packaging\n")


def test_github_log_groups(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = io.StringIO()
    rep = Reporter(out, interactive=False)
    rep.group("build cpu")
    rep.endgroup()
    assert out.getvalue() == "::group::build cpu\n::endgroup::\n"
