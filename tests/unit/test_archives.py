"""gzip tar streams whose files are deflated once (archives.GzipTar, Deflated): what tarfile
and gzip read back, the hashes an OCI layer needs, and the compression two archives share."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zlib
from pathlib import Path

import pytest

from buildtool.archives import Deflated, GzipTar, gzip_member, tar_info


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "llama-bench").write_bytes(b"\x7fELF" + bytes(range(256)) * 300)
    (root / "llama-bench").chmod(0o755)
    (root / "empty").write_bytes(b"")
    (root / "sub" / "libx.so.0.1").write_bytes(b"lib" * 5000)
    (root / "sub" / "libx.so.0").symlink_to("libx.so.0.1")
    return root


def _write(root: Path, prefix: str, deflated: Deflated) -> tuple[bytes, GzipTar]:
    out = io.BytesIO()
    tar = GzipTar(out, deflated)
    for path in [root, *sorted(root.rglob("*"))]:
        info = tar_info(path, f"{prefix}/{path.relative_to(root).as_posix()}".rstrip("/."))
        tar.add(info, path.read_bytes() if info.isreg() else None)
    tar.close()
    return out.getvalue(), tar


def test_what_tarfile_and_gzip_read_back_and_the_hashes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    blob, tar = _write(root, "pkg", Deflated())
    plain = gzip.decompress(blob)  # every member, as one stream
    assert len(plain) % tarfile.RECORDSIZE == 0
    assert tar.plain.hexdigest() == hashlib.sha256(plain).hexdigest()  # the diff_id
    assert tar.compressed.hexdigest() == hashlib.sha256(blob).hexdigest()  # the digest
    assert tar.size == len(blob)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members["pkg/llama-bench"].mode == 0o755
        assert tf.extractfile("pkg/llama-bench").read() == (root / "llama-bench").read_bytes()  # type: ignore[union-attr]
        assert tf.extractfile("pkg/empty").read() == b""  # type: ignore[union-attr]
        assert members["pkg/sub/libx.so.0"].issym()
        assert members["pkg/sub/libx.so.0"].linkname == "libx.so.0.1"
        assert members["pkg/sub"].isdir()
    # several gzip members, one of them a file's contents alone
    assert blob.count(b"\x1f\x8b\x08") >= 3


def test_two_archives_of_the_same_files_share_each_files_compression(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    deflated = Deflated()
    tarball, _ = _write(root, "llama.cpp-b1-cpu", deflated)
    assert deflated.reused == 0
    layer, _ = _write(root, "opt/llama.cpp", deflated)
    assert deflated.reused == 2  # llama-bench and libx: deflated for the tarball only
    member = deflated.member((root / "sub" / "libx.so.0.1").read_bytes())
    assert member in tarball and member in layer
    # alone, the same layer is the same bytes: sharing changes nothing in the output
    alone, _ = _write(root, "opt/llama.cpp", Deflated())
    assert alone == layer


def test_a_member_is_a_complete_gzip_stream_and_sizes_are_checked(tmp_path: Path) -> None:
    data = b"abc" * 1000
    member = gzip_member(data)
    assert gzip.decompress(member) == data
    assert member[4:8] == b"\0\0\0\0"  # no time: reproducible
    assert int.from_bytes(member[-8:-4], "little") == zlib.crc32(data)
    info = tarfile.TarInfo("x")
    info.size = 10
    with pytest.raises(ValueError, match="10 bytes announced, 3 given"):
        GzipTar(io.BytesIO(), Deflated()).add(info, b"abc")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="neither a directory"):
        tar_info(fifo, "fifo")
