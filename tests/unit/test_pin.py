"""`buildtool vendor lock`: a lock for another version from loopback stand-ins that serve
a tarball the way GitHub's archive URLs do and llama-cpp-python's sdist the way PyPI does."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from buildtool.errors import ExitCode, SourceError, UsageError
from buildtool.source import pin, vendor
from tests.standins import static_routes
from tests.unit.helpers import run_cli

COMMIT = "ab" * 20


REPO = "https://github.com/ggml-org/llama.cpp"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
CMAKE = 'option(LLAMA_BUILD_TOOLS "tools" ON)\noption(LLAMA_CURL "curl" OFF)\n'
# the lines around ggml's git lookup are as in ggml's CMakeLists: the current lock's patch
# (vendor/patches/0001-ggml-build-commit-from-llama.patch) applies to every tree moved to
GGML = ('set(GGML_VERSION_MAJOR 0)\nset(GGML_VERSION_MINOR 26)\nset(GGML_VERSION_PATCH 1)\n'
        'list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_SOURCE_DIR}/cmake/")\n\n'
        'find_program(GIT_EXE NAMES git git.exe NO_CMAKE_FIND_ROOT_PATH)\nif(GIT_EXE)\n'
        '    # Get current git commit hash\n'
        '    execute_process(COMMAND ${GIT_EXE} rev-parse --short HEAD\n'
        '        WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}\n'
        '    )\nendif()\n'
        'option(GGML_NATIVE "native" ON)\noption(GGML_NEW_THING "new" OFF)\n')
VARIANTS = "ggml_add_cpu_backend_variant(x64)\nggml_add_cpu_backend_variant(haswell AVX2)\n" \
           "ggml_add_cpu_backend_variant(novalake AVX10)\n"


def tree_files(extra: str = "") -> dict[str, bytes]:
    return {"CMakeLists.txt": CMAKE.encode(), "ggml/CMakeLists.txt": GGML.encode(),
            "ggml/src/CMakeLists.txt": VARIANTS.encode(),
            "src/llama.cpp": f"// llama{extra}\n".encode()}


def tarball(files: dict[str, bytes], top: str, *, comment: str | None = None) -> bytes:
    buf = io.BytesIO()
    headers = {"comment": comment} if comment else {}
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT,
                      pax_headers=headers) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sdist(version: str, tree: dict[str, bytes], commit: str = COMMIT) -> bytes:
    top = f"llama_cpp_python-{version}"
    files = {f"vendor/llama.cpp/{k}": v for k, v in tree.items()}
    files["vendor/llama.cpp/.git"] = b"gitdir: ../../.git/modules/vendor/llama.cpp\n"
    files[".git/modules/vendor/llama.cpp/HEAD"] = f"{commit}\n".encode()
    files["pyproject.toml"] = b"[project]\nname = 'llama_cpp_python'\n"
    return tarball(files, top)


def pypi_routes(base: str, versions: dict[str, bytes]) -> dict[str, bytes]:
    doc = {"releases": {v: [{"packagetype": "sdist", "url": f"../../files/{v}.tar.gz",
                             "digests": {"sha256": sha256_bytes(data)}}]
                        for v, data in versions.items()}}
    routes = {"/pypi/llama-cpp-python/json": json.dumps(doc).encode()}
    routes.update({f"/files/{v}.tar.gz": data for v, data in versions.items()})
    return routes


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def previous_lock(tmp_path: Path) -> tuple[vendor.Lock, Path]:
    """The lock being moved and its tree (one option and one CPU variant fewer)."""
    old_tree = tmp_path / "old"
    for name, data in {**tree_files(), "ggml/CMakeLists.txt": GGML.replace(
            'option(GGML_NEW_THING "new" OFF)\n', 'option(GGML_GONE "gone" OFF)\n').encode(),
                       "ggml/src/CMakeLists.txt": VARIANTS.replace(
                           "ggml_add_cpu_backend_variant(novalake AVX10)\n", "").encode()
                       }.items():
        (old_tree / name).parent.mkdir(parents=True, exist_ok=True)
        (old_tree / name).write_bytes(data)
    path = tmp_path / "vendor" / "llama.cpp.lock.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(pin.lock_document("https://github.com/ggml-org/llama.cpp",
                                                 "cd" * 20, 800, vendor.tree_digest(old_tree),
                                                 [])))
    return vendor.load_lock(path), old_tree


def test_a_lock_from_the_upstream_tag_and_a_pypi_sdist(tmp_path: Path, cache: Path) -> None:
    tree = tree_files()
    archive = tarball(tree, "llama.cpp-b900", comment=COMMIT)
    previous, old_tree = previous_lock(tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "cpu.yaml").write_text("cmake-defines:\n  GGML_GONE: ON\n")
    with static_routes({"/ggml-org/llama.cpp/archive/b900.tar.gz": archive}) as github, \
            static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree)})) as pypi:
        out = pin.make_lock(lock_path=previous.path, repository=f"{github}/ggml-org/llama.cpp",
                            upstream="b900", pypi="0.3.40", pypi_index=f"{pypi}/pypi",
                            previous=previous, previous_tree=old_tree, recipes_dir=recipes)
    written = vendor.load_lock(previous.path)
    # the build number from the tag, the commit from GitHub's pax header and the sdist's
    # submodule, the tree digest both sources agree on
    assert (written.build_number, written.commit) == (900, COMMIT)
    assert written.tree_sha256 == out.tree_sha256
    assert [s.name for s in written.sources] == ["local", "upstream", "pypi-sdist"]
    by_name = {s.name: s for s in written.sources}
    assert by_name["upstream"].sha256 == sha256_bytes(archive)
    assert by_name["pypi-sdist"].subdir == "llama_cpp_python-0.3.40/vendor/llama.cpp"
    assert by_name["pypi-sdist"].url.endswith("/files/0.3.40.tar.gz")  # resolved
    # what a release engineer looks at
    assert out.changes == [
        "version: b800 -> b900", f"commit: {'cd' * 4}c -> {COMMIT[:9]}",
        "new CMake option GGML_NEW_THING",
        "removed CMake option GGML_GONE: named in recipes/cpu.yaml",
        "new CPU variant novalake (data/cpu.yaml, recipes/cpu.yaml)"]
    # and `buildtool vendor` materializes the new pin from what it lists
    made = vendor.materialize(written, tmp_path / "tree")
    assert made.tree_sha256 == written.tree_sha256 and made.commit == COMMIT


def test_github_unreachable_is_reported_and_pypi_still_works(tmp_path: Path,
                                                             cache: Path) -> None:
    with static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi:
        out = pin.make_lock(lock_path=tmp_path / "lock.json", upstream="b900",
                            repository="http://127.0.0.1:9/ggml-org/llama.cpp",
                            pypi="0.3.40", pypi_index=f"{pypi}/pypi")
    (gone,) = out.unreachable
    assert gone.name == "upstream" and gone.url.endswith("/archive/b900.tar.gz")
    assert "download failed" in gone.why
    lock = vendor.load_lock(tmp_path / "lock.json")
    assert [s.name for s in lock.sources] == ["local", "pypi-sdist"]
    assert "unreachable" in pin.report(out) and "left out of the lock" in pin.report(out)


def test_sources_holding_different_trees_are_refused(tmp_path: Path, cache: Path) -> None:
    with static_routes({"/o/r/archive/b900.tar.gz": tarball(tree_files(" patched"), "r-b900",
                                                    comment=COMMIT)}) as github, \
            static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi, \
            pytest.raises(SourceError, match="the sources hold different trees"):
        pin.make_lock(lock_path=tmp_path / "lock.json", repository=f"{github}/o/r",
                      upstream="b900", pypi="0.3.40", pypi_index=f"{pypi}/pypi")
    assert not (tmp_path / "lock.json").exists()


def test_what_cannot_be_known_here_is_asked_for(tmp_path: Path, cache: Path) -> None:
    with static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi:
        with pytest.raises(UsageError, match="build number of commit ababababa is not in"):
            pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, pypi="0.3.40",
                          pypi_index=f"{pypi}/pypi")
        with pytest.raises(SourceError, match=r"llama-cpp-python 0\.1\.0 is not on"):
            pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, pypi="0.1.0",
                          pypi_index=f"{pypi}/pypi", build_number=1)
        with pytest.raises(UsageError, match="contradicts the tag b900"):
            pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, upstream="b900",
                          build_number=901)
    tree = tmp_path / "t"
    for name, data in tree_files().items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    with pytest.raises(UsageError, match="--repository: 'x': expected an http"):
        pin.make_lock(lock_path=tmp_path / "l.json", repository="x", local=tree)
    with pytest.raises(UsageError, match="no source says which commit"):
        pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, local=tree,
                      build_number=5)
    out = pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, local=tree,
                        build_number=5, commit=COMMIT)
    assert out.tree_sha256 == vendor.tree_digest(tree)
    assert [s.name for s in vendor.load_lock(tmp_path / "l.json").sources] == ["local"]


def test_a_hostile_sdist_is_refused(tmp_path: Path, cache: Path) -> None:
    evil = sdist("0.3.41", {**tree_files(), "../../escape": b"x"})
    with static_routes(pypi_routes("", {"0.3.41": evil})) as pypi, \
            pytest.raises(SourceError, match="unsafe path"):
        pin.make_lock(lock_path=tmp_path / "l.json", repository=REPO, pypi="0.3.41",
                      pypi_index=f"{pypi}/pypi", build_number=1)
    assert not (tmp_path / "l.json").exists() and not (tmp_path / "escape").exists()


def test_cli(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "vendor", "--force", "lock", "b1")
    assert code == ExitCode.USAGE and "belong after 'lock'" in err
    code, _, err = run_cli(capsys, "vendor", "lock", "main")
    assert code == ExitCode.USAGE and "neither a build tag" in err
    code, _, err = run_cli(capsys, "vendor", "lock", "--commit", "abc", "--local",
                           str(tmp_path))
    assert code == ExitCode.USAGE and "40 lower-case hex digits" in err
    # a lock below a regular file is refused before anything is fetched or hashed
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "vendor", "lock", "--local", str(tmp_path), "--commit",
                           COMMIT, "--build-number", "1", "--out",
                           str(tmp_path / "file" / "l.json"))
    assert code == ExitCode.USAGE and "is not a directory" in err and "hashing" not in err
    precious = tmp_path / "notes.json"
    precious.write_text('{"mine": true}')
    code, _, err = run_cli(capsys, "vendor", "lock", "b1", "--out", str(precious))
    assert code == ExitCode.USAGE and "exists and is not a llama.cpp lock" in err
    assert precious.read_text() == '{"mine": true}'
    # an index pointing the sdist at a local file is refused before anything is read
    routes = pypi_routes("", {"0.3.40": b""})
    routes["/pypi/llama-cpp-python/json"] = routes["/pypi/llama-cpp-python/json"].replace(
        b"../../files/0.3.40.tar.gz", b"file:///etc/shadow")
    with static_routes(routes) as evil, pytest.raises(SourceError, match="is not http"):
        pin.pypi_sdist("0.3.40", f"{evil}/pypi")
    with static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi:
        out = tmp_path / "new.lock.json"
        code, stdout, err = run_cli(capsys, "vendor", "lock", "--pypi", "0.3.40",
                                    "--build-number", "900", "--pypi-index", f"{pypi}/pypi",
                                    "--out", str(out), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["version"] == "b900" and doc["commit"] == COMMIT and doc["written"] is True
    assert doc["ggml_version"] == "0.26.1"
    # every workaround of recipes/common.yaml is re-judged for the new build
    assert "workaround avoid-cpu-features amx_tile, amx_int8, amx_bf16: still applies (open " \
        "upstream: check its report)" in doc["changes"]
    assert vendor.load_lock(out).tree_sha256 == doc["tree_sha256"]


def test_vendor_lock_rechecks_the_patch_queue(tmp_path: Path, cache: Path) -> None:
    """Each patch of the current lock against the new tree: kept when it applies, dropped
    when its change is already upstream, and a conflict stops the lock (shown by --dry-run)."""
    import difflib

    def diff(path: str, before: str, after: str) -> str:
        return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                            f"a/{path}", f"b/{path}"))

    previous, old_tree = previous_lock(tmp_path)
    queue = {
        "0001-fix-llama.patch": ("a fix upstream lacks", diff(
            "src/llama.cpp", "// llama\n", "// llama, fixed\n")),
        "0002-curl.patch": ("merged upstream since", diff(
            "CMakeLists.txt", CMAKE.replace('option(LLAMA_CURL "curl" OFF)\n', ""), CMAKE)),
        "0003-old-api.patch": ("rewritten upstream", diff(
            "ggml/CMakeLists.txt", "set(GGML_VERSION_MAJOR 9)\n", "set(GGML_VERSION_MAJOR 10)\n")),
    }
    (tmp_path / "vendor" / "patches").mkdir()
    doc = json.loads(previous.path.read_text())
    doc["patches"] = []
    for name, (reason, text) in queue.items():
        (tmp_path / "vendor" / "patches" / name).write_text(text)
        doc["patches"].append({"file": f"patches/{name}", "sha256": sha256_bytes(text.encode()),
                               "reason": reason})
    previous.path.write_text(json.dumps(doc))
    previous = vendor.load_lock(previous.path)
    before = previous.path.read_text()
    with static_routes(pypi_routes("", {"0.3.40": sdist("0.3.40", tree_files())})) as pypi:
        def run(dry_run: bool) -> pin.Outcome:
            return pin.make_lock(lock_path=previous.path, repository=REPO, pypi="0.3.40",
                                 build_number=900, pypi_index=f"{pypi}/pypi", previous=previous,
                                 previous_tree=old_tree, dry_run=dry_run)

        shown = run(True)
        with pytest.raises(SourceError, match=r"patches of the current lock conflict with "
                                              r"b900: patch patches/0003-old-api\.patch"):
            run(False)
        assert previous.path.read_text() == before  # nothing written
        assert [c for c in shown.changes if c.startswith("patch ")] == [
            "patch patches/0001-fix-llama.patch: applies (kept)",
            "patch patches/0002-curl.patch: already upstream (dropped)",
            "patch patches/0003-old-api.patch: conflicts (0003-old-api.patch: hunk #1 "
            "(@@ -1 +1 @@) of ggml/CMakeLists.txt does not match the tree)"]
        # the conflicting one rebased away: the lock keeps the fix that still applies
        doc["patches"].pop()
        previous.path.write_text(json.dumps(doc))
        previous = vendor.load_lock(previous.path)
        run(False)
    written = vendor.load_lock(previous.path)
    assert [p.file for p in written.patches] == ["patches/0001-fix-llama.patch"]
    made = vendor.materialize(written, tmp_path / "vendor" / "llama.cpp")
    assert (tmp_path / "vendor" / "llama.cpp" / "src" / "llama.cpp").read_text() == \
        "// llama, fixed\n"
    assert made.patches == (written.patches[0].pinned,)
