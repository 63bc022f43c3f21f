"""Credentials, paths and hostile content, end to end against loopback stand-ins.

A GitHub API stand-in that echoes the token in its errors (with terminal escapes), one that
redirects to a second loopback host, one that names an upload URL on another host; release
tags and output directories that point outside; result files and smoke results carrying
markup. In every case: the token is never printed, written or sent to another host, nothing
outside the given directory is written or deleted, and no value becomes markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from buildtool.errors import ExitCode
from buildtool.text import forget_secrets
from tests.standins import fake_github, recording_server
from tests.unit import release_data as data
from tests.unit.helpers import ROOT, run_cli

TOKEN = "ghp_" + "T0pS3cr3t" * 4


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


run = run_cli


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    d = tmp_path / "dist"
    d.mkdir()
    data.tarball(d, "cpu")
    data.wheel(d, "cpu")
    return d


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------------------------
# Credentials


def test_a_server_that_echoes_the_token_cannot_print_it(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with fake_github(token=TOKEN) as (api, gh):
        gh.echo_credentials = True
        code, out, err = run(capsys, "publish", str(dist), "--github", gh.repo,
                             "--github-api", api, "--json")
    assert code == ExitCode.PUBLISH
    assert "credentials: Bearer ***" in err  # the server's words, redacted
    assert TOKEN not in out + err
    assert "\x1b" not in err and "\\x1b[2J" in err  # its escape sequences are shown, not run
    release_dir = dist / "release-b11312"
    written = b"".join(_files(release_dir).values())
    assert TOKEN.encode() not in written


def test_the_token_is_not_forwarded_on_a_redirect_to_another_host(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with recording_server("127.0.0.2") as (other, elsewhere), \
            fake_github(token=TOKEN) as (api, gh):
        gh.redirect_to = other
        code, _, err = run(capsys, "publish", str(dist), "--github", gh.repo,
                           "--github-api", api)
    assert code == ExitCode.PUBLISH  # the other host answered 404 (and got no token)
    assert gh.calls and gh.calls[0].headers.get("Authorization") == f"Bearer {TOKEN}"
    assert elsewhere.calls, "the redirect was followed"
    assert all("Authorization" not in c.headers and TOKEN.encode() not in c.body
               for c in elsewhere.calls)
    assert TOKEN not in err


def test_the_token_is_not_sent_to_an_upload_url_on_another_host(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with recording_server("127.0.0.3") as (other, elsewhere), \
            fake_github(token=TOKEN) as (api, gh):
        gh.upload_base = other
        code, _, err = run(capsys, "publish", str(dist), "--github", gh.repo,
                           "--github-api", api)
    assert code == ExitCode.PUBLISH
    assert "refusing to send the token to 127.0.0.3" in err
    assert elsewhere.calls == []


@pytest.mark.parametrize(("api", "fragment"), [
    ("http://api.example.com", "the token would travel unencrypted"),
    ("https://user:pw@api.example.com", "must not carry credentials"),
    ("ftp://api.example.com", "is not an http(s) URL"),
])
def test_unsafe_api_urls_are_refused_before_anything(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        api: str, fragment: str) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    code, _, err = run(capsys, "publish", str(dist), "--github", "o/r", "--github-api", api)
    assert code == ExitCode.USAGE and fragment in err
    assert not (dist / "release-b11312").exists()


# ---------------------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize("tag", ["../outside", "../../..", "a/b", ".hidden", "x\ny", ""])
def test_a_tag_cannot_leave_the_directory(dist: Path, tmp_path: Path, tag: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    before = _files(tmp_path)
    code, _, err = run(capsys, "publish", str(dist), "--tag", tag)
    assert code == ExitCode.USAGE and "is not a release tag" in err
    assert _files(tmp_path) == before  # nothing written, nothing deleted


def test_out_refuses_a_directory_buildtool_did_not_write(
        dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "Documents"
    docs.mkdir()
    (docs / "thesis.tex").write_text("years of work")
    code, _, err = run(capsys, "publish", str(dist), "--out", str(docs))
    assert code == ExitCode.USAGE and "refusing to replace it" in err
    assert (docs / "thesis.tex").read_text() == "years of work"
    # a release directory it wrote itself may be replaced
    code, _, err = run(capsys, "publish", str(dist), "--out", str(tmp_path / "rel"))
    assert code == 0, err
    code, _, err = run(capsys, "publish", str(dist), "--out", str(tmp_path / "rel"))
    assert code == 0, err


def test_github_argument_is_checked_before_anything_is_written(
        dist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    for repo in ("noslash", "a/b/c", "../x", "o/.."):
        code, _, err = run(capsys, "publish", str(dist), "--github", repo)
        assert code == ExitCode.USAGE and "is not OWNER/REPO" in err
    assert not (dist / "release-b11312").exists()


def test_index_out_refuses_a_foreign_directory_and_links_stay_inside(
        dist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "index", str(dist), "--out", str(docs))
    assert code == ExitCode.USAGE and (docs / "notes.txt").read_text() == "keep"
    out = tmp_path / "served"
    code, _, err = run(capsys, "index", str(dist), "--out", str(out))
    assert code == 0, err
    for page in out.rglob("index.html"):
        for href in HrefParser.hrefs(page.read_text()):
            target = (page.parent / href.split("#")[0]).resolve()
            assert target.is_relative_to(out.resolve()), (page, href)
            assert target.exists(), (page, href)


@pytest.mark.parametrize("args", [["bake", "--out"], ["build", "--target", "cpu", "--cpu",
                                                      "x86-64-v3", "--artifact", "wheel",
                                                      "--emit"]])
def test_bake_and_emit_refuse_a_foreign_directory(tmp_path: Path, args: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "--matrix", str(ROOT / "build_matrix.yaml"), *args, str(docs))
    assert code == ExitCode.USAGE and "refusing to replace it" in err
    assert (docs / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("option", ["--dist", "--build-root"])
def test_output_below_a_regular_file_is_refused_before_work(
        tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "--matrix", str(ROOT / "build_matrix.yaml"), "build",
                       "--target", "cpu", option, str(blocker / "sub"))
    assert code == ExitCode.USAGE and f"{blocker} is not a directory" in err


def test_a_cache_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BUILDTOOL_CACHE", raising=False)
    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run(capsys, "--matrix", str(ROOT / "build_matrix.yaml"), "build",
                       "--target", "cpu", "--dist", str(tmp_path / "d"))
    assert code == ExitCode.USAGE and "the cache (XDG_CACHE_HOME)" in err


@pytest.mark.parametrize("epoch", ["99999999999999999999", "-5", "soon"])
def test_source_date_epoch_out_of_range(dist: Path, epoch: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    code, _, err = run(capsys, "publish", str(dist), "--dry-run")
    assert code == ExitCode.USAGE and "SOURCE_DATE_EPOCH" in err


# ---------------------------------------------------------------------------------------
# Content that must not become markup


class HrefParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.tags: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self.found += [v for k, v in attrs if k in ("href", "src") and v]

    @classmethod
    def hrefs(cls, page: str) -> list[str]:
        p = cls()
        p.feed(page)
        return p.found


EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>|`*_[x](javascript:y)'


def test_lab_report_escapes_every_value(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"schema": "buildtool-lab/1", "buildtool_version": EVIL, "started_at": EVIL,
           "finished_at": None,
           "settings": {"n_prompt": [64], "n_gen": [16], "repetitions": 1, "model": EVIL},
           "host": {"id": EVIL, "hostname": EVIL, "os": EVIL, "kernel": EVIL,
                    "cpu": {"model": EVIL, "arch": EVIL, "level": EVIL, "ggml_features": [EVIL]},
                    "gpus": [{"vendor": EVIL, "name": EVIL, "driver": EVIL}],
                    "vulkan_icds": [EVIL], "engines": [EVIL]},
           "results": [{"artifact": EVIL, "kind": "tarball", "target": EVIL, "status": status,
                        "reason": EVIL,
                        "bench": [{"test": "pp64", "avg_ts": 1.0, "gpu_info": EVIL,
                                   "model_type": EVIL}]}
                       for status in ("pass", "fail", "error")]}
    results = tmp_path / "r.json"
    results.write_text(json.dumps(doc))
    page, summary = tmp_path / "r.html", tmp_path / "r.md"
    code, _, err = run(capsys, "lab", "report", str(results), "--out", str(page),
                       "--markdown", str(summary))
    assert code == 0, err
    parser = HrefParser()
    parser.feed(page.read_text())
    assert "script" not in parser.tags and "img" not in parser.tags
    assert parser.handlers == [] and parser.found == []
    md = summary.read_text()
    outside_code = re.sub(r"`[^`\n]*`", "", md)  # code spans show their text literally
    assert "<" not in outside_code and "](javascript" not in outside_code
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len({ln.replace("\\|", "").count("|") for ln in rows}) == 1  # no cell broke out


@pytest.mark.parametrize("status", ["<script>alert(1)</script>", "PASS", "", None])
def test_lab_report_refuses_an_unknown_status(tmp_path: Path, status: object,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"schema": "buildtool-lab/1", "buildtool_version": "0.1.0",
           "started_at": "2026-12-01T00:00:00+00:00",
           "settings": {"n_prompt": [64], "n_gen": [16], "repetitions": 1, "model": "s"},
           "host": {"id": "h", "cpu": {"arch": "x86_64"}},
           "results": [{"artifact": "a.tar.gz", "status": status}]}
    results = tmp_path / "r.json"
    results.write_text(json.dumps(doc))
    code, _, err = run(capsys, "lab", "report", str(results), "--out", str(tmp_path / "x.html"))
    assert code == ExitCode.BAD_DATA and "results[0].status" in err
    assert not (tmp_path / "x.html").exists()


def test_release_notes_escape_what_artifacts_say(dist: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    smoke = json.loads(data.sidecar_path(dist, "smoke").read_text())
    for t in smoke["tests"]:
        t["gpu_info"] = EVIL
    data.sidecar_path(dist, "smoke").write_text(json.dumps(smoke))
    code, _, err = run(capsys, "publish", str(dist), "--out", str(tmp_path / "rel"))
    assert code == 0, err
    notes = (tmp_path / "rel" / "RELEASE_NOTES.md").read_text()
    row = next(ln for ln in notes.splitlines() if "cpu-linux-x86_64.tar.gz" in ln)
    assert row.replace("\\|", "").count("|") == 11 and "<script" not in row


@pytest.mark.parametrize("args", [
    ["publish", "{dist}", "--out", "{blocked}/rel"],
    ["publish", "{dist}", "--index", "{blocked}/idx", "--dry-run"],
    ["lab", "run", "{dist}", "--out", "{blocked}/r.json"],
    ["lab", "report", "{dist}/results.json", "--out", "{blocked}/r.html"],
    ["lab", "report", "{dist}/results.json", "--out", "{dist}"],
    ["index", "{dist}", "--out", "{blocked}/whl"],
])
def test_every_output_below_a_regular_file_is_a_usage_error(
        dist: Path, tmp_path: Path, args: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    (dist / "results.json").write_text("{}")
    before = _files(tmp_path)
    code, _, err = run(capsys, *(a.format(dist=dist, blocked=blocked) for a in args))
    assert code == ExitCode.USAGE, err
    assert "is not a directory" in err or "is a directory" in err
    assert _files(tmp_path) == before


def test_the_pinned_tree_is_readable_by_everyone(tmp_path: Path) -> None:
    """mkdtemp makes 0700 directories: the tree renamed into place must not stay that way."""
    import os

    from buildtool.source import vendor
    from tests.unit.test_vendor import make_tree, write_lock

    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local"}])
    old = os.umask(0o022)
    try:
        dest = tmp_path / "vendor" / "llama.cpp"
        vendor.materialize(lock, dest, local=tree)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o755


def test_the_vendor_tree_of_a_user_is_not_replaced(tmp_path: Path) -> None:
    from buildtool.errors import SourceError
    from buildtool.source import vendor
    from tests.unit.test_vendor import make_tree, write_lock

    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local"}])
    mine = make_tree(tmp_path / "vendor" / "llama.cpp")
    (mine / "my-patch.diff").write_text("work in progress")
    with pytest.raises(SourceError, match="was not made by buildtool"):
        vendor.materialize(lock, mine, local=tree)
    assert (mine / "my-patch.diff").read_text() == "work in progress"
