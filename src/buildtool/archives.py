"""Zip archives unpacked without leaving their directory — the pinned source's zip and the
wheels a toolchain is assembled from (tar archives of sources: :mod:`buildtool.source.vendor`)
— and copied with a few members replaced, the rest as they are compressed; gzip tar streams
whose files are deflated once per build however many artifacts ship them.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO


def unzip(archive: Path, dest: Path, *, refuse: Callable[[str], Exception],
          name: Callable[[str], str | None] = lambda n: n, keep_modes: bool) -> None:
    """Extract a zip archive into ``dest``: ``name`` maps member names (None skips one),
    a member that would land outside ``dest`` raises ``refuse(member)``. Unix modes from the
    entries are kept as recorded (``keep_modes``) or normalized to 0755/0644 (installers)."""
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = name(info.filename)
            if rel is None:
                continue
            target = (dest / rel).resolve()
            if not target.is_relative_to(root):
                raise refuse(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            if keep_modes and mode:
                target.chmod(mode)
            elif not keep_modes:
                target.chmod(0o755 if mode & 0o111 else 0o644)


_LOCAL_HEADER = b"PK\x03\x04"
_UTF8_NAME = 0x800  # the one general-purpose flag a copied entry keeps


def copy_zip(src: Path, dest: Path, replace: Mapping[str, bytes]) -> None:
    """Write ``dest``: the members of the zip archive ``src`` in their order, those named in
    ``replace`` with those bytes (deflated), every other one's compressed bytes copied as
    they are — not inflated and deflated again (a wheel's 20 MB of libraries: 0.8 s less).
    Names, times and modes are kept. ValueError: a member is not where the archive's
    directory says, or is encrypted."""
    with zipfile.ZipFile(src) as zin, src.open("rb") as raw, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            new = zipfile.ZipInfo(info.filename, info.date_time)
            new.external_attr, new.create_system = info.external_attr, info.create_system
            if info.filename in replace:
                zout.writestr(new, replace[info.filename], compress_type=zipfile.ZIP_DEFLATED)
                continue
            if info.flag_bits & 0x1:
                raise ValueError(f"{src.name}: {info.filename} is encrypted")
            big = max(info.file_size, info.compress_size) >= zipfile.ZIP64_LIMIT
            if big:  # its header needs ZIP64 fields: through zipfile's own writer
                zout.writestr(new, zin.read(info), compress_type=info.compress_type)
                continue
            raw.seek(info.header_offset)
            head = raw.read(30)
            if len(head) != 30 or head[:4] != _LOCAL_HEADER:
                raise ValueError(f"{src.name}: no local header for {info.filename}")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            data = raw.read(info.compress_size)
            if len(data) != info.compress_size:
                raise ValueError(f"{src.name}: {info.filename} is cut short")
            new.compress_type, new.CRC = info.compress_type, info.CRC
            new.compress_size, new.file_size = info.compress_size, info.file_size
            new.flag_bits = info.flag_bits & _UTF8_NAME  # sizes known: no data descriptor
            # zipfile's writer keeps the next header's place in start_dir and writes the
            # central directory from filelist on close
            zout.fp.seek(zout.start_dir)  # type: ignore[union-attr]
            new.header_offset = zout.fp.tell()  # type: ignore[union-attr]
            zout.fp.write(new.FileHeader(False))  # type: ignore[union-attr]
            zout.fp.write(data)  # type: ignore[union-attr]
            zout.start_dir = zout.fp.tell()  # type: ignore[union-attr]
            zout.filelist.append(new)
            zout.NameToInfo[new.filename] = new


# ------------------------------------------------------------------ gzip tar streams

GZIP_LEVEL = 6
# a gzip member's header: deflate, no flags, no time (reproducible), no extra flags, OS unknown
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_BLOCK = tarfile.BLOCKSIZE


def gzip_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """``data`` as one complete gzip member (RFC 1952): header, raw deflate, CRC-32, size."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


class Deflated:
    """Files' bytes as gzip members, each deflated once by content for as long as one build
    lives: the tarball and the image layer ship the same programs and libraries, so a
    file's compression is shared (``reused`` counts how often)."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._members: dict[bytes, bytes] = {}
        self.level = level
        self.reused = 0

    def member(self, data: bytes) -> bytes:
        key = hashlib.sha256(data).digest()
        found = self._members.get(key)
        if found is not None:
            self.reused += 1
            return found
        made = self._members[key] = gzip_member(data, self.level)
        return made


class GzipTar:
    """A tar archive (PAX format) written as a series of gzip members — the headers between
    two files' contents as one member, each file's contents as another, from ``deflated``.
    Concatenated members are one gzip stream (RFC 1952 2.2: gzip, GNU tar, Python's gzip and
    tarfile, Go's compress/gzip that container engines use all read them so). ``plain``
    hashes the tar (an OCI layer's diff_id), ``compressed`` what was written (its digest),
    ``size`` its length."""

    def __init__(self, out: BinaryIO, deflated: Deflated) -> None:
        self._out = out
        self._deflated = deflated
        self._pending = bytearray()
        self._offset = 0
        self.plain = hashlib.sha256()
        self.compressed = hashlib.sha256()
        self.size = 0

    def _tar(self, data: bytes) -> None:
        self._pending += data
        self.plain.update(data)
        self._offset += len(data)

    def _emit(self, member: bytes) -> None:
        self._out.write(member)
        self.compressed.update(member)
        self.size += len(member)

    def _flush(self) -> None:
        if self._pending:
            self._emit(gzip_member(bytes(self._pending), self._deflated.level))
            self._pending.clear()

    def add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        """One entry: ``data`` is a regular file's contents (``info.size`` bytes)."""
        self._tar(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        if not info.isreg() or info.size == 0:
            return
        if data is None or len(data) != info.size:
            raise ValueError(f"{info.name}: {info.size} bytes announced, "
                             f"{0 if data is None else len(data)} given")
        self._flush()
        self.plain.update(data)
        self._offset += len(data)
        self._emit(self._deflated.member(data))
        self._tar(b"\0" * (-len(data) % _BLOCK))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record as tarfile does."""
        self._tar(b"\0" * (2 * _BLOCK))
        self._tar(b"\0" * (-self._offset % tarfile.RECORDSIZE))
        self._flush()


def tar_info(path: Path, arcname: str) -> tarfile.TarInfo:
    """A tar entry for ``path`` as it is (a directory, a regular file or a symbolic link),
    named ``arcname``, its time in whole seconds."""
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    else:
        raise ValueError(f"{path} is neither a directory, a regular file nor a link")
    return info
