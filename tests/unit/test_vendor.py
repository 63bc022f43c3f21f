"""The pin: lock parsing, verification, refusal of mismatches, safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from buildtool.errors import ConfigError, SourceError
from buildtool.source import vendor
from tests.unit.helpers import ROOT


def make_tree(root: Path) -> Path:
    (root / "ggml").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text("project(llama)\n")
    (root / "ggml" / "CMakeLists.txt").write_text("# ggml\n")
    (root / "LICENSE").write_text("MIT\n")
    return root


def make_archive(path: Path, tree: Path, prefix: str) -> str:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tree, arcname=prefix)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_lock(path: Path, *, tree_sha: str, sources: list[dict[str, str]]) -> vendor.Lock:
    path.write_text(json.dumps({
        "upstream": {"repository": "https://example.invalid/llama.cpp", "commit": "a" * 40,
                     "build-number": 42},
        "tree-sha256": tree_sha, "sources": sources}))
    return vendor.load_lock(path)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BUILDTOOL_LLAMA_SOURCE", raising=False)


def test_real_lock_pins_commit_and_sources() -> None:
    lock = vendor.load_lock(ROOT / "vendor" / "llama.cpp.lock.json")
    assert lock.commit.startswith("0c1e57098") and len(lock.commit) == 40
    assert lock.version == "b11312"
    names = [s.name for s in lock.sources]
    assert names == ["local", "upstream", "pypi-sdist"]
    sdist = lock.sources[2]
    assert sdist.sha256 == "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
    assert sdist.subdir == "llama_cpp_python-0.3.36/vendor/llama.cpp"


def test_malformed_lock(tmp_path: Path) -> None:
    bad = tmp_path / "lock.json"
    bad.write_text('{"upstream": {')
    with pytest.raises(ConfigError) as info:
        vendor.load_lock(bad)
    assert info.value.line == 1
    bad.write_text(json.dumps({"upstream": {"repository": "https://example.invalid/x",
                                            "commit": "a" * 40, "build-number": 1},
                               "tree-sha256": "0" * 64,
                               "sources": [{"name": "s", "kind": "archive"}]}))
    with pytest.raises(ConfigError, match="needs 'url' and 'sha256'"):
        vendor.load_lock(bad)


def test_tree_digest_is_content_sensitive(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    first = vendor.tree_digest(tree)
    assert vendor.tree_digest(tree) == first
    (tree / ".git").write_text("gitdir: elsewhere\n")  # excluded, like the sdist's gitlink
    assert vendor.tree_digest(tree) == first
    (tree / "LICENSE").write_text("MIT!\n")
    assert vendor.tree_digest(tree) != first


def test_local_directory_verified_and_copied(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local"}])
    dest = tmp_path / "vendor" / "llama.cpp"
    made = vendor.materialize(lock, dest, local=tree)
    assert (dest / "CMakeLists.txt").is_file()
    assert made.source == f"local:{tree}" and vendor.current(lock, dest) == vendor.read_marker(dest)
    assert not list(dest.parent.glob(".llama.cpp.tmp-*"))


def test_verify_rehashes_the_materialized_tree(tmp_path: Path) -> None:
    """`buildtool vendor --verify`: the tree must still be what the lock pinned."""
    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local"}])
    dest = tmp_path / "vendor" / "llama.cpp"
    with pytest.raises(SourceError, match="missing or not from this lock"):
        vendor.verify(lock, dest)
    made = vendor.materialize(lock, dest, local=tree)
    assert vendor.verify(lock, dest) == made
    (dest / "ggml" / "CMakeLists.txt").write_text("# edited by hand\n")
    with pytest.raises(SourceError, match="modified since it was fetched") as info:
        vendor.verify(lock, dest)
    assert "vendor --force" in (info.value.hint or "")


def test_modified_local_directory_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local"}])
    (tree / "ggml" / "CMakeLists.txt").write_text("# tampered\n")
    dest = tmp_path / "vendor" / "llama.cpp"
    with pytest.raises(SourceError) as info:
        vendor.materialize(lock, dest, local=tree)
    assert "tree digest mismatch" in info.value.message and "refused" in info.value.message
    assert not dest.exists()


def test_archive_fetched_verified_and_cached(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    archive = tmp_path / "up.tar.gz"
    sha = make_archive(archive, tree, "llama.cpp-aaaa")
    lock = write_lock(tmp_path / "lock.json", tree_sha="0" * 64, sources=[
        {"name": "mirror", "kind": "archive", "url": archive.as_uri(), "sha256": sha,
         "subdir": "llama.cpp-aaaa"}])
    dest = tmp_path / "vendor" / "llama.cpp"
    made = vendor.materialize(lock, dest)
    assert made.archive_sha256 == sha and (dest / "ggml" / "CMakeLists.txt").is_file()
    assert (tmp_path / "cache" / "sources" / sha).is_file()
    assert vendor.materialize(lock, dest) == vendor.read_marker(dest)  # already current


def test_checksum_mismatch_refused_then_next_source_used(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    archive = tmp_path / "up.tar.gz"
    sha = make_archive(archive, tree, "top")
    lock = write_lock(tmp_path / "lock.json", tree_sha="0" * 64, sources=[
        {"name": "tampered", "kind": "archive", "url": archive.as_uri(), "sha256": "f" * 64},
        {"name": "good", "kind": "archive", "url": archive.as_uri(), "sha256": sha}])
    messages: list[str] = []
    made = vendor.materialize(lock, tmp_path / "out", progress=messages.append)
    assert made.source == "good"
    assert not (tmp_path / "cache" / "sources" / ("f" * 64)).exists()
    assert not list((tmp_path / "cache" / "sources").glob(".part-*"))


def test_all_sources_failing_lists_each(tmp_path: Path) -> None:
    lock = write_lock(tmp_path / "lock.json", tree_sha="0" * 64, sources=[
        {"name": "local", "kind": "local", "path-env": "NOPE_ENV"},
        {"name": "gone", "kind": "archive", "url": (tmp_path / "missing.tgz").as_uri(),
         "sha256": "0" * 64}])
    with pytest.raises(SourceError) as info:
        vendor.materialize(lock, tmp_path / "out")
    text = info.value.message
    assert "local: not given" in text and "gone: download failed" in text
    assert info.value.hint and "--source" in info.value.hint


def _evil_tar(path: Path, name: str, *, symlink_to: str | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        if symlink_to is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = symlink_to
            tf.addfile(info)
        else:
            payload = b"pwned"
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize(("name", "link"), [
    ("top/../../escape.txt", None),
    ("/abs/escape.txt", None),
    ("top/link", "/etc/passwd"),
    ("top/link", "../../outside"),
])
def test_extract_refuses_unsafe_members(tmp_path: Path, name: str, link: str | None) -> None:
    archive = tmp_path / "evil.tar.gz"
    _evil_tar(archive, name, symlink_to=link)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SourceError, match="unsafe"):
        vendor.extract(archive, dest, "")
    assert not (tmp_path / "escape.txt").exists()


def test_local_archive_must_be_pinned(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    archive = tmp_path / "some.tar.gz"
    make_archive(archive, tree, "top")
    lock = write_lock(tmp_path / "lock.json", tree_sha="0" * 64, sources=[
        {"name": "local", "kind": "local"}])
    with pytest.raises(SourceError, match="matches no source pinned"):
        vendor.materialize(lock, tmp_path / "out", local=archive)


def test_local_source_named_by_the_locks_environment_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_tree(tmp_path / "src")
    lock = write_lock(tmp_path / "lock.json", tree_sha=vendor.tree_digest(tree),
                      sources=[{"name": "local", "kind": "local", "path-env": "MY_LLAMA_TREE"}])
    monkeypatch.setenv("MY_LLAMA_TREE", str(tree))
    made = vendor.materialize(lock, tmp_path / "out")
    assert made.source == f"local:{tree}"


# ------------------------------------------------------------------------- the patch queue

FIX = """--- a/ggml/CMakeLists.txt
+++ b/ggml/CMakeLists.txt
@@ -1 +1,2 @@
 # ggml
+# fixed: the AMX tile configuration per thread
"""
STALE = """--- a/CMakeLists.txt
+++ b/CMakeLists.txt
@@ -1 +1 @@
-project(llama-old)
+project(llama-new)
"""


def patched_lock(tmp_path: Path, patches: dict[str, str], *,
                 reasons: dict[str, str] | None = None) -> tuple[vendor.Lock, Path]:
    tree = make_tree(tmp_path / "src")
    (tmp_path / "vendor" / "patches").mkdir(parents=True)
    entries = []
    for name, text in patches.items():
        (tmp_path / "vendor" / "patches" / name).write_text(text)
        entries.append({"file": f"patches/{name}", "sha256": hashlib.sha256(
            text.encode()).hexdigest(), "reason": (reasons or {}).get(name, "a fix")})
    path = tmp_path / "vendor" / "llama.cpp.lock.json"
    path.write_text(json.dumps({
        "upstream": {"repository": "https://example.invalid/llama.cpp", "commit": "a" * 40,
                     "build-number": 42},
        "tree-sha256": vendor.tree_digest(tree),
        "sources": [{"name": "local", "kind": "local"}], "patches": entries}))
    return vendor.load_lock(path), tree


def test_patches_are_applied_in_order_and_recorded(tmp_path: Path) -> None:
    lock, tree = patched_lock(tmp_path, {"0001-amx.patch": FIX})
    dest = tmp_path / "vendor" / "llama.cpp"
    said: list[str] = []
    made = vendor.materialize(lock, dest, local=tree, progress=said.append)
    assert "applied patches/0001-amx.patch (a fix)" in said
    assert "fixed: the AMX" in (dest / "ggml" / "CMakeLists.txt").read_text()
    assert not list(dest.rglob("*.orig")) and not list(dest.rglob("*.rej"))
    # the tree that was built (and keyed) is the patched one, and the marker says so
    assert made.tree_sha256 == vendor.tree_digest(dest) != lock.tree_sha256
    assert made.patches == (f"patches/0001-amx.patch:{lock.patches[0].sha256}",)
    assert vendor.verify(lock, dest).tree_sha256 == made.tree_sha256
    # a lock whose queue changed materializes again
    unpatched = vendor.Lock(**{**lock.__dict__, "patches": ()})
    assert vendor.current(unpatched, dest) is None


def test_a_patch_that_does_not_apply_names_itself_and_its_hunk(tmp_path: Path) -> None:
    lock, tree = patched_lock(tmp_path, {"0001-amx.patch": FIX, "0002-stale.patch": STALE})
    dest = tmp_path / "vendor" / "llama.cpp"
    with pytest.raises(SourceError) as info:
        vendor.materialize(lock, dest, local=tree)
    message = info.value.message
    assert "patch patches/0002-stale.patch does not apply to llama.cpp b42" in message
    assert "hunk #1 (@@ -1 +1 @@) of CMakeLists.txt does not match the tree" in message
    assert not dest.exists()  # nothing half-made
    assert not list((tmp_path / "vendor").glob(".llama.cpp.tmp-*"))


def test_a_changed_or_escaping_patch_is_refused(tmp_path: Path) -> None:
    lock, tree = patched_lock(tmp_path, {"0001-amx.patch": FIX})
    (tmp_path / "vendor" / "patches" / "0001-amx.patch").write_text(FIX + " \n")
    with pytest.raises(SourceError, match=r"patch patches/0001-amx\.patch has sha256 .* pins"):
        vendor.materialize(lock, tmp_path / "vendor" / "llama.cpp", local=tree)
    doc = json.loads(lock.path.read_text())
    doc["patches"][0]["file"] = "../outside.patch"
    lock.path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"patches\[0\]\.file"):
        vendor.load_lock(lock.path)
