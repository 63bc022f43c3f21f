"""The numerics check (verify/numerics.py): the NumPy reference against logits llama.cpp
really computed (captured), the measures, the tolerances, and hostile results files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from buildtool.errors import SmokeError
from buildtool.records import NumericsVerdict
from buildtool.verify import numerics
from buildtool.verify.synthetic import ModelParams, cached_model, write_model

DATA = Path(__file__).parent.parent / "data" / "llama-results"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_model(ModelParams(), tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("capture", ["synthetic-F32.gguf", "synthetic-F32-vulkan-lavapipe.gguf"])
def test_the_reference_agrees_with_what_llama_cpp_computed(model: Path, capture: str) -> None:
    # llama-results of the b11312 cpu build (x86-64) and of the vulkan build on lavapipe,
    # on the default synthetic model; the reference shares no code with either
    got = numerics.read_results(DATA / capture)
    assert got.tokens[0] == 1 and got.values.shape == (got.tokens.size, 277)
    ref = numerics.reference(model, got.tokens)
    run = numerics.judge("F32", ref, got.values)
    assert run.ok and run.top1 == 1.0
    assert run.nmse < 1e-6 and run.kl < 1e-5  # measured: 5.5e-08 (CPU), 6.8e-07 (lavapipe)
    assert run.nmse < run.max_nmse / 100
    assert ref.std() > 1.5  # the output is peaked enough for KL to measure something


def test_a_wrong_answer_fails_by_orders_of_magnitude(model: Path) -> None:
    got = numerics.read_results(DATA / "synthetic-F32.gguf")
    ref = numerics.reference(model, got.tokens)
    # a kernel that drops the last block of each row / one layer's contribution / noise
    for wrong in (np.roll(got.values, 1, axis=1), got.values * 0.8,
                  got.values + np.random.default_rng(0).normal(0, 0.1, got.values.shape)):
        run = numerics.judge("F32", ref, wrong)
        assert not run.ok and run.nmse > 5 * run.max_nmse
    # the same deviation is within a quantized type's tolerance only when small
    assert numerics.judge("Q4_0", ref, got.values * 1.01).ok
    assert not numerics.judge("Q4_0", ref, got.values * 1.2).ok


def test_nan_logits_fail_with_a_value_json_can_hold(model: Path) -> None:
    got = numerics.read_results(DATA / "synthetic-F32.gguf")
    ref = numerics.reference(model, got.tokens)
    values = got.values.copy()
    values[3, 7] = np.nan
    run = numerics.judge("F32", ref, values)
    assert not run.ok and run.nmse == run.kl == numerics.DEVIATION_CAP and run.top1 == 0.0


def test_another_tokenization_is_not_compared_as_if_it_were_the_same(model: Path) -> None:
    got = numerics.read_results(DATA / "synthetic-F32.gguf")
    refs = numerics.References(description="x", tokens=got.tokens,
                               logits={"F32": numerics.reference(model, got.tokens)})
    assert refs.record({"F32": got}).verdict is NumericsVerdict.PASS
    shifted = numerics.Logits(tokens=got.tokens[::-1], values=got.values)
    record = refs.record({"F32": shifted})
    assert record.verdict is NumericsVerdict.FAIL and not record.runs[0].ok
    # a type without a reference is not judged: nothing compared is "missing", not "pass"
    assert refs.record({"Q4_0": got}).verdict is NumericsVerdict.MISSING


def test_quantized_weights_are_the_reference_of_a_quantized_run(tmp_path: Path) -> None:
    """The reference reads a quantized model's weights as the kernels do (gguf-py's
    dequantization), so a quantized run is judged on arithmetic, not on what quantization
    costs: a Q8_0 copy made here gives the same reference as its dequantized F32 twin."""
    import gguf
    import gguf.quants

    params = ModelParams(n_layer=1)
    f32 = tmp_path / "f32.gguf"
    write_model(f32, params)
    reader = gguf.GGUFReader(f32)
    q8 = tmp_path / "q8.gguf"
    writer = gguf.GGUFWriter(str(q8), "llama")
    for field in reader.fields.values():
        if field.name.startswith(("GGUF.", "general.architecture")):
            continue
        value = field.contents()
        if isinstance(value, list):
            writer.add_array(field.name, value)
        elif isinstance(value, str):
            writer.add_string(field.name, value)
        elif isinstance(value, float):
            writer.add_float32(field.name, value)
        else:
            writer.add_uint32(field.name, int(value))
    twin = tmp_path / "twin.gguf"
    twin_writer = gguf.GGUFWriter(str(twin), "llama")
    for t in reader.tensors:
        data = np.asarray(t.data)
        if t.name.endswith(".weight") and data.ndim == 2:
            quant = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(t.name, quant, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            twin_writer.add_tensor(t.name, gguf.quants.dequantize(
                quant, gguf.GGMLQuantizationType.Q8_0).astype(np.float32))
        else:
            writer.add_tensor(t.name, data)
            twin_writer.add_tensor(t.name, data)
    for field in reader.fields.values():
        if field.name.startswith("llama."):
            value = field.contents()
            (twin_writer.add_float32 if isinstance(value, float) else twin_writer.add_uint32)(
                field.name, value)
    for w in (writer, twin_writer):
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    tokens = np.array([1, 5, 200, 42, 270, 2])
    with pytest.raises(numerics.NoReference, match=r"outside f32\.gguf's vocabulary of 277"):
        numerics.reference(f32, np.array([1, 277]))
    ref_q8, ref_twin = numerics.reference(q8, tokens), numerics.reference(twin, tokens)
    ref_f32 = numerics.reference(f32, tokens)
    assert numerics.measure(ref_twin, ref_q8).nmse < 1e-12
    assert 1e-7 < numerics.measure(ref_f32, ref_q8).nmse < 1e-2  # Q8_0 costs something


@pytest.mark.parametrize("content, message", [
    (b"", "not a llama-results file"),
    (b"GGUF\x03\x00\x00\x00garbage", "not a llama-results file"),
])
def test_a_damaged_results_file_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "results-1.gguf"
    path.write_bytes(content)
    with pytest.raises(SmokeError, match=rf"results-1\.gguf: {message}"):
        numerics.read_results(path)


def test_a_results_file_of_the_wrong_shape_is_named(tmp_path: Path, model: Path) -> None:
    import gguf

    path = tmp_path / "results-2.gguf"
    writer = gguf.GGUFWriter(str(path), "x")
    writer.add_tensor("tokens", np.arange(5, dtype=np.float32))
    writer.add_tensor("logits", np.zeros((5, 3), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(SmokeError, match=r"results-2\.gguf: tokens must be I32"):
        numerics.read_results(path)
    # a model the NumPy forward pass does not compute is said so, not guessed at
    with pytest.raises(numerics.NoReference, match="not a llama-architecture model"):
        numerics.reference(path, np.arange(5))
    assert numerics.model_type(model) == "F32" and numerics.model_type(path) == "unknown"


def test_tolerances_per_type() -> None:
    assert numerics.tolerance("F32").nmse == 3e-4
    assert numerics.tolerance("Q4_0") == numerics.tolerance("Q4_K_M") \
        == numerics.QUANTIZED_TOLERANCE
    # every tolerance sits at least 10x above what correct kernels measured here and far
    # below an unrelated answer (NMSE about 1)
    assert all(t.nmse <= 1e-2 for t in (*numerics.TOLERANCES.values(),
                                        numerics.QUANTIZED_TOLERANCE))
