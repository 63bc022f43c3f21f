"""The wheel repair cache (artifacts/repairs.py): what its key follows and what it ignores,
entries checked before use, damaged ones dropped, old ones pruned."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from buildtool.artifacts import repairs
from buildtool.records import RepairRecord

MANIFEST = "pkg/manifest.json"


def _wheel(path: Path, members: dict[str, bytes], mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


BASE = {"pkg/bin/llama-bench": b"\x7fELF bench", MANIFEST: b'{"built_at": "1"}',
        "pkg-1.dist-info/RECORD": b"pkg/manifest.json,sha256=aaa,16\n"}


@pytest.fixture
def libdir(tmp_path: Path) -> Path:
    d = tmp_path / "lib"
    d.mkdir()
    (d / "libgomp.so.1").write_bytes(b"gomp 1")
    return d


def _key(raw: Path, libdir: Path, **over: object) -> str:
    kw: dict[str, object] = {"manifest_member": MANIFEST, "argv": ["repair", "--plat", "auto"],
                             "system_libraries": ("libgomp.so.1",), "patchelf": None,
                             "env": {}, "dirs": [libdir]}
    kw.update(over)
    return repairs.key(raw, **kw)  # type: ignore[arg-type]


def test_the_key_ignores_the_stamped_manifest_and_follows_everything_else(
        tmp_path: Path, libdir: Path) -> None:
    raw = _wheel(tmp_path / "a" / "pkg-1-py3-none-linux_x86_64.whl", BASE)
    first = _key(raw, libdir)
    # another build time, so another manifest and RECORD: the same repair
    restamped = _wheel(tmp_path / "b" / raw.name, {
        **BASE, MANIFEST: b'{"built_at": "2"}',
        "pkg-1.dist-info/RECORD": b"pkg/manifest.json,sha256=bbb,16\n"})
    assert _key(restamped, libdir) == first
    # a program's bytes, a member's mode, the options, SOURCE_DATE_EPOCH, the library the
    # loader would give it: each a new key
    changed = _wheel(tmp_path / "c" / raw.name, {**BASE, "pkg/bin/llama-bench": b"\x7fELF 2"})
    assert _key(changed, libdir) != first
    assert _key(_wheel(tmp_path / "d" / raw.name, BASE, mode=0o644), libdir) != first
    assert _key(raw, libdir, argv=["repair", "--plat", "auto", "--exclude", "libx.so"]) != first
    assert _key(raw, libdir, env={"SOURCE_DATE_EPOCH": "1700000000"}) != first
    (libdir / "libgomp.so.1").write_bytes(b"gomp 2")
    assert _key(raw, libdir) != first


def test_every_candidate_of_a_library_and_what_it_loads_is_followed(tmp_path: Path) -> None:
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir()
    late.mkdir()
    (late / "libgomp.so.1").write_bytes(b"gomp")
    found = repairs.libraries(["libgomp.so.1", "libmissing.so"], [early, late])
    assert list(found) == ["libgomp.so.1", "libmissing.so"]
    assert len(found["libgomp.so.1"]) == 1 and found["libmissing.so"] == []
    # a copy appearing earlier on the search path is another candidate: another key
    (early / "libgomp.so.1").write_bytes(b"other gomp")
    assert len(repairs.libraries(["libgomp.so.1"], [early, late])["libgomp.so.1"]) == 2


def test_search_dirs_follow_ld_library_path_and_ld_so_conf_includes(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n# a comment\n/opt/a\n")
    (etc / "ld.so.conf.d" / "x.conf").write_text("/opt/b  # trailing comment\n")
    (etc / "ld.so.conf.d" / "loop.conf").write_text("include /etc/ld.so.conf\n")
    dirs = repairs.search_dirs(tmp_path, env={"LD_LIBRARY_PATH": "/env/lib:"})
    assert dirs[0] == Path("/env/lib")
    assert tmp_path / "opt/b" in dirs and tmp_path / "opt/a" in dirs
    assert tmp_path / "usr/lib/x86_64-linux-gnu" in dirs
    assert len(dirs) == len(set(dirs))  # the include loop ends


def test_an_entry_is_stored_found_and_checked(tmp_path: Path, libdir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    repaired = _wheel(tmp_path / "out" / "pkg-1-py3-none-manylinux_2_35_x86_64.whl", BASE)
    record = RepairRecord(tool="auditwheel", tag="manylinux_2_35_x86_64", show="ok")
    assert repairs.lookup("k1") is None
    repairs.store("k1", repaired, record)
    hit = repairs.lookup("k1")
    assert hit is not None
    path, got = hit
    assert path.name == repaired.name and path.read_bytes() == repaired.read_bytes()
    assert got == record
    # the wheel changed in the cache: not used, and the entry is gone
    path.write_bytes(b"tampered")
    assert repairs.lookup("k1") is None
    assert not (tmp_path / "cache" / "repairs" / "k1").exists()


@pytest.mark.parametrize("record", ["not json", '{"schema": 1}',
                                    '{"schema": 1, "wheel": "../x.whl", "sha256": "0", '
                                    '"repair": {}}'])
def test_a_damaged_record_is_a_miss_not_an_error(tmp_path: Path, record: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    entry = tmp_path / "cache" / "repairs" / "k"
    entry.mkdir(parents=True)
    (entry / repairs.RECORD_FILE).write_text(record)
    (tmp_path / "cache" / "repairs" / "x.whl").write_bytes(b"outside the entry")
    assert repairs.lookup("k") is None
    assert not entry.exists()
    assert (tmp_path / "cache" / "repairs" / "x.whl").exists()  # nothing outside touched


def test_only_the_most_recently_used_entries_are_kept(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    repaired = _wheel(tmp_path / "out" / "pkg-1-py3-none-manylinux_2_35_x86_64.whl", BASE)
    record = RepairRecord(tool="auditwheel", tag="manylinux_2_35_x86_64")
    for i in range(repairs.KEEP + 2):
        repairs.store(f"k{i}", repaired, record)
        os.utime(tmp_path / "cache" / "repairs" / f"k{i}", (1000 + i, 1000 + i))
    assert repairs.lookup("k0") is None  # pruned when k{KEEP} was stored
    kept = sorted(p.name for p in (tmp_path / "cache" / "repairs").iterdir())
    assert len(kept) == repairs.KEEP
    assert f"k{repairs.KEEP + 1}" in kept
    data = json.loads((tmp_path / "cache" / "repairs" / kept[-1] / "repair.json").read_text())
    assert data["wheel"] == repaired.name and data["repair"]["tag"] == record.tag


def test_a_result_stored_twice_at_once_keeps_one_entry(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # two builds of the same wheel finish together: the second's rename finds the first's
    # entry in place; it keeps it and leaves nothing of its own behind
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    repaired = _wheel(tmp_path / "out" / "pkg-1-py3-none-manylinux_2_35_x86_64.whl", BASE)
    record = RepairRecord(tool="auditwheel", tag="manylinux_2_35_x86_64")
    real_rename = Path.rename

    def racing(self: Path, target: Path) -> Path:
        if not Path(target).exists():  # the other build gets there first
            Path(target).mkdir()
            (Path(target) / "theirs").write_text("")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", racing)
    repairs.store("k", repaired, record)
    entries = list((tmp_path / "cache" / "repairs").iterdir())
    assert [e.name for e in entries] == ["k"] and (entries[0] / "theirs").exists()


def test_a_candidate_that_cannot_be_read_is_named_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "libgomp.so.1"
    lib.write_bytes(b"gomp")

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(repairs, "sha256_file", denied)
    assert repairs.libraries(["libgomp.so.1"], [tmp_path]) == {
        "libgomp.so.1": ["unreadable: Permission denied"]}


def test_marks_that_cannot_be_written_leave_the_build_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from buildtool.artifacts import image

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "file" / "cache"))  # under a file
    image.remember_nothing_in_programs_dir(["sha256:" + "a" * 64])
    assert image.nothing_in_programs_dir() == frozenset()
    monkeypatch.setenv("BUILDTOOL_CACHE", str(tmp_path / "cache"))
    image.remember_nothing_in_programs_dir(["sha256:" + "a" * 64, "sha256:../x", "md5:ab"])
    assert image.nothing_in_programs_dir() == {"sha256:" + "a" * 64}
    assert [p.name for p in (tmp_path / "cache" / "images").iterdir()] == [
        "nothing-in-opt-llama.cpp"]
