"""The patch queue's applier (source/patches.py) on diffs made by difflib and by hand: exact
and shifted hunks, new and deleted files, a missing final newline, reversal, all or nothing,
and paths that leave the tree."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from buildtool.source import patches

OPS = [f"line {i}\n" for i in range(1, 40)]


def diff(path: str, before: list[str], after: list[str]) -> str:
    return "".join(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}"))


def tree_with(tmp_path: Path, files: dict[str, list[str]]) -> Path:
    tree = tmp_path / "tree"
    for rel, lines in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("".join(lines))
    return tree


def write(tmp_path: Path, text: str, name: str = "0001.patch") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_patch_applies_where_its_context_moved_and_reverses(tmp_path: Path) -> None:
    fixed = [*OPS[:10], "line 11 fixed\n", *OPS[11:30], "line 31 fixed\n", *OPS[31:]]
    patch = write(tmp_path, diff("ggml/src/ops.cpp", OPS, fixed))
    # upstream added five lines at the top since the patch was made: both hunks shift
    moved = [f"new {i}\n" for i in range(5)] + OPS
    tree = tree_with(tmp_path, {"ggml/src/ops.cpp": moved})
    (tree / "ggml/src/ops.cpp").chmod(0o755)
    assert patches.applies(tree, patch) == (True, "")
    patches.apply(tree, patch)
    text = (tree / "ggml/src/ops.cpp").read_text()
    assert text == "".join([*moved[:15], "line 11 fixed\n", *moved[16:35], "line 31 fixed\n",
                            *moved[36:]])
    assert (tree / "ggml/src/ops.cpp").stat().st_mode & 0o777 == 0o755
    # applied once, it does not apply again, and reverses cleanly (how "already upstream"
    # is told)
    ok, why = patches.applies(tree, patch)
    assert not ok and "hunk #1 (@@ -8,7 +8,7 @@) of ggml/src/ops.cpp does not match" in why
    assert patches.applies(tree, patch, reverse=True) == (True, "")
    patches.apply(tree, patch, reverse=True)
    assert (tree / "ggml/src/ops.cpp").read_text() == "".join(moved)


def test_new_and_deleted_files_and_a_missing_final_newline(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"a.txt": ["one\n", "two"], "gone.txt": ["bye\n"]})
    text = ("--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n\\ No newline at end of "
            "file\n+two\n"
            "--- /dev/null\n+++ b/new/file.h\n@@ -0,0 +1,2 @@\n+#pragma once\n+int x;\n"
            "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n")
    patches.apply(tree, write(tmp_path, text))
    assert (tree / "a.txt").read_text() == "one\ntwo\n"
    assert (tree / "new/file.h").read_text() == "#pragma once\nint x;\n"
    assert not (tree / "gone.txt").exists()
    patches.apply(tree, write(tmp_path, text), reverse=True)
    assert (tree / "a.txt").read_text() == "one\ntwo" and (tree / "gone.txt").is_file()
    assert not (tree / "new/file.h").exists()


def test_all_or_nothing(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"a.txt": OPS, "b.txt": OPS})
    good = diff("a.txt", OPS, ["changed\n", *OPS[1:]])
    bad = diff("b.txt", ["not there\n", *OPS[1:]], OPS)
    with pytest.raises(patches.PatchError, match=r"hunk #1 .* of b\.txt does not match"):
        patches.apply(tree, write(tmp_path, good + bad))
    assert (tree / "a.txt").read_text() == "".join(OPS)  # nothing written


@pytest.mark.parametrize(("text", "message"), [
    ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n", "unsafe"),
    ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-x\n+y\n", "unsafe"),
    ("just words\n", "not a unified diff"),
    ("--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n line 1\n-line 2\n", "truncated"),
    ("--- a/a.txt\n+++ b/a.txt\nGIT binary patch\nliteral 3\n", "binary patches"),
    ("--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-x\n+y\n", "does not exist"),
])
def test_hostile_or_broken_patches_are_named(tmp_path: Path, text: str, message: str) -> None:
    tree = tree_with(tmp_path, {"a.txt": OPS})
    (tmp_path / "outside").mkdir()
    with pytest.raises(patches.PatchError, match=message) as info:
        patches.apply(tree, write(tmp_path, text, "0009-evil.patch"))
    assert info.value.message.startswith("0009-evil.patch: ")
    assert (tree / "a.txt").read_text() == "".join(OPS)


def test_a_link_in_the_tree_is_not_followed(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"a.txt": OPS})
    (tmp_path / "secret.txt").write_text("line 1\n")
    (tree / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(patches.PatchError, match="leaves the tree or is a link"):
        patches.apply(tree, write(tmp_path, diff("link.txt", ["line 1\n"], ["owned\n"])))
    assert (tmp_path / "secret.txt").read_text() == "line 1\n"
