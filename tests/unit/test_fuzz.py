"""Every reader driven with generated and mutated input (hypothesis).

The property, for each reader: it returns a typed result or raises the error documented for
that input (a BuildtoolError with the reader's exit code) — never another exception, never
a hang, never unbounded memory. Inputs are mutations of real files (the matrix, a recipe, the
lock, the CPU data file, manifests, smoke and lab results, llama-bench output, captured
/proc/cpuinfo), random
JSON of every shape (huge numbers, deep nesting, wrong types), YAML built from anchors and
aliases, and raw bytes.

The default test run uses the ``ci`` profile (derandomized, a bounded number of examples per
reader); ``nox -s fuzz`` runs the ``fuzz`` profile (random, thousands of examples each).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from buildtool import inputs, records
from buildtool.artifacts import oci, wheel
from buildtool.config.project import load_project
from buildtool.detect import host as host_record
from buildtool.detect.cpu import parse_proc_cpuinfo, parse_sysctl
from buildtool.detect.host import parse_nvidia_smi
from buildtool.errors import BuildtoolError, ExitCode
from buildtool.lab import runner as lab
from buildtool.outputs import read_sums
from buildtool.records import LabResults, Manifest, ReleaseRecord, SmokeRecord
from buildtool.source import vendor
from buildtool.verify import smoke
from tests.unit import release_data as data
from tests.unit.helpers import ROOT, copy_project, manifest_data

DATA = ROOT / "tests" / "data"
SLOW = 5.0  # seconds: more than this for one input is a hang
SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow], deadline=None)


@contextlib.contextmanager
def documented(*codes: ExitCode) -> Iterator[None]:
    """The body may succeed or raise a BuildtoolError with one of ``codes``; anything else
    (a TypeError, a RecursionError, a KeyError…) or a slow answer fails the property."""
    started = time.monotonic()
    try:
        yield
    except BuildtoolError as exc:
        assert exc.exit_code in codes, f"exit code {exc.exit_code} for: {exc}"
        assert exc.message.strip(), "an error must say what is wrong"
    assert time.monotonic() - started < SLOW, "too slow: a hang or an unbounded expansion"


# ---------------------------------------------------------------------------------------
# Strategies

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4),
                           max_leaves=20)
# JSON text that Python's json module would accept but a careful reader must refuse
hostile_json = st.sampled_from([
    "NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "-1e400", "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000, "9" * 5000, '"\\ud800"', "\ufeff{}", "", "{", "[1,]",
    '{"a": 1, "a": 2}', "\x00",
])


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` (plain JSON data) with a few values replaced, deleted or retyped."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        spots = paths_of(doc)
        where = draw(st.sampled_from(spots))
        if not where:
            return draw(json_values)
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(where[-1], None)
        else:
            parent[where[-1]] = draw(json_values)
    return doc


def mutated_text(base: str) -> st.SearchStrategy[str]:
    """Byte-level damage: truncation, a flipped character, a spliced-in fragment."""
    n = len(base)
    cut = st.integers(min_value=0, max_value=n).map(lambda i: base[:i])
    flip = st.tuples(st.integers(min_value=0, max_value=max(n - 1, 0)),
                     st.characters()).map(lambda t: base[:t[0]] + t[1] + base[t[0] + 1:])
    splice = st.tuples(st.integers(min_value=0, max_value=n),
                       st.sampled_from(["&a ", "*a", "!!binary ", "\t", "'", ": [", "{", "\\u00",
                                        "\x1b", "\x00", "--- ", "<<: *a\n"])).map(
        lambda t: base[:t[0]] + t[1] + base[t[0]:])
    return cut | flip | splice


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


# ---------------------------------------------------------------------------------------
# Configuration: build_matrix.yaml, recipes, the lock


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"))


MATRIX = (ROOT / "build_matrix.yaml").read_text()
CUDA_RECIPE = (ROOT / "recipes" / "cuda.yaml").read_text()


@st.composite
def alias_yaml(draw: st.DrawFn) -> str:
    """Anchors and aliases, nested and recursive, around a valid matrix."""
    width = draw(st.integers(min_value=1, max_value=12))
    depth = draw(st.integers(min_value=1, max_value=12))
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, depth)]
    if draw(st.booleans()):
        lines.append("loop: &loop [*loop]")
    return "\n".join(lines) + "\n" + MATRIX


@SETTINGS
@given(text=mutated_text(MATRIX) | alias_yaml()
       | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_matrix(project: Path, text: str) -> None:
    write(project / "build_matrix.yaml", text)
    with documented(ExitCode.CONFIG, ExitCode.UNKNOWN_TARGET):
        load_project(project)


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_matrix_bytes(project: Path, raw: bytes) -> None:
    write(project / "build_matrix.yaml", raw)
    with documented(ExitCode.CONFIG, ExitCode.UNKNOWN_TARGET):
        load_project(project)


@SETTINGS
@given(text=mutated_text(CUDA_RECIPE))
def test_recipe(project: Path, text: str) -> None:
    write(project / "build_matrix.yaml", MATRIX)
    write(project / "recipes" / "cuda.yaml", text)
    try:
        with documented(ExitCode.CONFIG):
            load_project(project)
    finally:
        write(project / "recipes" / "cuda.yaml", CUDA_RECIPE)


CPU_DATA = (ROOT / "src" / "buildtool" / "data" / "cpu.yaml").read_text()


@SETTINGS
@given(text=mutated_text(CPU_DATA))
def test_cpu_data(tmp_path: Path, text: str) -> None:
    """The CPU data file, damaged: a CpuData that answers, or a ConfigError naming it."""
    from buildtool.cpudata import load

    path = write(tmp_path / "cpu.yaml", text)
    with documented(ExitCode.CONFIG):
        data = load(path)
        for arch in ("x86_64", "aarch64"):
            for level in data.levels_of(arch):
                data.level_features(level)
            data.select(arch, frozenset(data.features), None) if data.levels_of(arch) else None


LOCK = json.loads((ROOT / "vendor" / "llama.cpp.lock.json").read_text())


@SETTINGS
@given(doc=mutated(LOCK) | json_values)
def test_lock_shapes(tmp_path: Path, doc: Any) -> None:
    path = write(tmp_path / "lock.json", json.dumps(doc))
    with documented(ExitCode.CONFIG):
        lock = vendor.load_lock(path)
        assert isinstance(lock.commit, str) and isinstance(lock.build_number, int)


@SETTINGS
@given(text=hostile_json | mutated_text(json.dumps(LOCK)))
def test_lock_text(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "lock.json", text)
    with documented(ExitCode.CONFIG):
        vendor.load_lock(path)


# ---------------------------------------------------------------------------------------
# Records


def _records(tmp: Path) -> dict[type[Any], Any]:
    dist = tmp / "dist"
    dist.mkdir(exist_ok=True)
    tgz = data.tarball(dist, "cpu")
    return {
        Manifest: json.loads(data.sidecar_path(dist, "manifest").read_text()),
        SmokeRecord: json.loads(data.sidecar_path(dist, "smoke").read_text()),
        LabResults: {"schema": "buildtool-lab/1", "buildtool_version": "0.1.0",
                     "started_at": "2026-12-01T00:00:00+00:00", "finished_at": None,
                     "settings": {"n_prompt": [64], "n_gen": [16], "repetitions": 3,
                                  "model": "synthetic"},
                     "host": {"id": "h", "cpu": {"arch": "x86_64", "cores": 2}, "gpus": [
                         {"vendor": "NVIDIA", "name": "H100", "driver": "580"}]},
                     "results": [{"artifact": tgz.name, "kind": "tarball", "target": "cpu",
                                  "status": "pass", "bench": [{"test": "pp64",
                                                               "avg_ts": 10.0}]}]},
        ReleaseRecord: {"schema": 1, "tag": "b1", "released_at": "x",
                        "buildtool_version": "0.1.0",
                        "artifacts": [{"file": tgz.name, "kind": "tarball", "target": "cpu",
                                       "size": 1, "sha256": "0" * 64, "smoke": {}}]},
    }


RECORDS = _records(Path(__import__("tempfile").mkdtemp(prefix="buildtool-fuzz-")))


def test_the_seed_records_are_valid() -> None:
    """The mutations start from records that read back (else the property is vacuous)."""
    for tp, seed in RECORDS.items():
        assert isinstance(records.from_data(tp, seed, "seed"), tp)


@SETTINGS
@pytest.mark.parametrize("tp", list(RECORDS), ids=lambda t: t.__name__)
@given(change=st.data())
def test_record_shapes(tmp_path: Path, tp: type[Any], change: st.DataObject) -> None:
    doc = change.draw(mutated(RECORDS[tp]) | json_values)
    path = write(tmp_path / "record.json", json.dumps(doc))
    with documented(ExitCode.BAD_DATA):
        record = records.load(tp, path)
        assert isinstance(record, tp)
        records.to_json(record)  # what was read can be written again


@SETTINGS
@pytest.mark.parametrize("tp", list(RECORDS), ids=lambda t: t.__name__)
@given(change=st.data())
def test_record_text(tmp_path: Path, tp: type[Any], change: st.DataObject) -> None:
    text = change.draw(hostile_json | mutated_text(json.dumps(RECORDS[tp])))
    path = write(tmp_path / "record.json", text)
    with documented(ExitCode.BAD_DATA):
        records.load(tp, path)


@SETTINGS
@given(doc=mutated(RECORDS[LabResults]) | json_values, text=hostile_json)
def test_lab_results(tmp_path: Path, doc: Any, text: str) -> None:
    for content in (json.dumps(doc), text):
        path = write(tmp_path / "lab.json", content)
        with documented(ExitCode.BAD_DATA):
            (loaded,) = lab.load_results([path])
            assert isinstance(loaded, LabResults)


BENCH = (DATA / "llama-bench" / "cpu-host.json").read_text()


@SETTINGS
@given(text=mutated_text(BENCH) | hostile_json
       | st.lists(json_values, max_size=4).map(json.dumps)
       | st.lists(mutated(json.loads(BENCH)[0]), max_size=3).map(json.dumps))
def test_llama_bench_output(text: str) -> None:
    with documented(ExitCode.SMOKE):
        for t in smoke.parse_bench("llama-bench log\n" + text):
            assert t.test and (t.avg_ts is None or isinstance(t.avg_ts, float))
            smoke.verdict([t], backend="CPU", family="cpu", gpu=False)


@SETTINGS
@given(text=st.text(max_size=400) | mutated_text(f"{'0' * 64}  a.tar.gz\n{'1' * 64} *b.whl\n"))
def test_sha256sums(tmp_path: Path, text: str) -> None:
    write(tmp_path / "SHA256SUMS", text)
    with documented(ExitCode.BAD_DATA):
        for name, digest in read_sums(tmp_path).items():
            assert "/" not in name and len(digest) == 64


# ---------------------------------------------------------------------------------------
# Artifacts: wheels and OCI archives carrying damaged metadata


@SETTINGS
@given(doc=mutated(manifest_data(kind="wheel", artifact="x", wheel={"module": "m"}))
       | json_values, text=hostile_json)
def test_wheel_manifest(tmp_path: Path, doc: Any, text: str) -> None:
    for content in (json.dumps(doc), text):
        path = tmp_path / "m-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("m/manifest.json", content)
        with documented(ExitCode.BAD_DATA):
            assert isinstance(wheel.read_manifest(path), Manifest)


@SETTINGS
@given(raw=st.binary(max_size=400))
def test_wheel_bytes(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path / "m-1.0-py3-none-any.whl", raw)
    with documented(ExitCode.BAD_DATA):
        wheel.read_manifest(path)


def _oci(path: Path, index: str, manifest: str | None = None) -> None:
    with tarfile.open(path, "w") as tf:
        for name, content in (("index.json", index), ("blobs/sha256/" + "a" * 64,
                                                      manifest or "{}")):
            raw = content.encode("utf-8", "surrogatepass")
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))


INDEX = {"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "sha256:" + "a" * 64,
                                            "size": 2}]}
IMAGE_MANIFEST = {"config": {"digest": "sha256:" + "a" * 64, "size": 2},
                  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                              "digest": "sha256:" + "a" * 64, "size": 2}]}


@SETTINGS
@given(index=mutated(INDEX) | json_values, manifest=mutated(IMAGE_MANIFEST) | json_values,
       text=hostile_json)
def test_oci_archive(tmp_path: Path, index: Any, manifest: Any, text: str) -> None:
    path = tmp_path / "x.oci.tar"
    for idx, man in ((json.dumps(index), json.dumps(manifest)), (text, None),
                     (json.dumps(INDEX), text)):
        _oci(path, idx, man)
        with documented(ExitCode.BAD_DATA):
            oci.inspect(path)


# ---------------------------------------------------------------------------------------
# Source archives: whatever they hold, nothing lands outside the destination


Member = tuple[str, bytes, str, int]  # name, tar type, link name, mode

members = st.lists(st.tuples(
    st.sampled_from(["top/a", "top/../../escape", "/abs", "top/./b", "top/dir/",
                     "top/CMakeLists.txt", "top/ggml/x", "../x", "top/" + "d/" * 40, "top/link"]),
    st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE,
                     tarfile.CHRTYPE, tarfile.FIFOTYPE]),
    st.sampled_from(["/etc/passwd", "../../x", "a", "top/a", "top/../../../etc", "top/link"]),
    st.sampled_from([0o644, 0o4755, 0o777])), min_size=1, max_size=6)


def tar_of(spec: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, linkname, mode in spec:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = linkname
            payload = b"x" if kind == tarfile.REGTYPE else b""
            info.size = len(payload)
            info.mode = mode
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@SETTINGS
@given(spec=members)
def test_source_extraction_stays_inside(tmp_path_factory: pytest.TempPathFactory,
                                        spec: list[Member]) -> None:
    root = tmp_path_factory.mktemp("x")
    src = write(root / "a.tar", tar_of(spec))
    dest = root / "out"
    dest.mkdir()
    with documented(ExitCode.SOURCE):
        vendor.extract(src, dest)
    outside = [p for p in root.rglob("*") if p not in (src, dest)
               and not p.is_relative_to(dest)]
    assert outside == []
    for p in dest.rglob("*"):
        if p.is_symlink():  # realpath: a link to itself is a loop, not an escape
            target = os.path.realpath(p.parent / p.readlink())
            assert Path(target).is_relative_to(dest.resolve())
        elif p.is_file():
            assert not p.stat().st_mode & 0o6000  # no setuid/setgid


# ---------------------------------------------------------------------------------------
# Host facts: captured text from the machine, damaged


CPUINFO = (DATA / "cpuinfo" / "linux-x86_64-xeon-sapphirerapids-vm.txt").read_text()
SYSCTL = (DATA / "cpuinfo" / "macos-rosetta2-apple-m1-sysctl.txt").read_text()

PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "proc-cpuinfo": (lambda t: parse_proc_cpuinfo(t, "x86_64"), CPUINFO),
    "sysctl": (lambda t: parse_sysctl(t, "x86_64"), SYSCTL),
    "nvidia-smi": (parse_nvidia_smi, "NVIDIA H100 80GB HBM3, 580.95.05, 81559 MiB\n"),
    "os-release": (host_record.parse_os_release, 'PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\n'),
    "meminfo": (host_record.parse_meminfo, "MemTotal:       24609636 kB\n"),
    "auditwheel show": (wheel.parse_show, 'is consistent with the following platform tag: '
                                          '"manylinux_2_35_x86_64"'),
}


@SETTINGS
@pytest.mark.parametrize("name", list(PARSERS))
@given(change=st.data())
def test_host_text_parsers(name: str, change: st.DataObject) -> None:
    parse, sample = PARSERS[name]
    text = change.draw(mutated_text(sample) | st.text(max_size=300))
    with documented():
        parse(text)


@SETTINGS
@given(text=st.text(max_size=2000))
def test_inputs_decode_any_bytes(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    with documented(ExitCode.CONFIG):
        inputs.decode(raw, "x")
