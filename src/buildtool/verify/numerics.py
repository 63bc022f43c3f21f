"""Whether an artifact computes the right thing, not only that it runs.

Every artifact ships llama.cpp's ``llama-results``, which writes a model's logits for a
prompt into a GGUF file (tensors ``tokens`` and ``logits``). The smoke runs it for the
synthetic model in F32 and in the types the artifact's own ``llama-quantize`` makes (Q4_0 and
the K-quant Q4_K_M), on the artifact's device (a GPU backend with every layer offloaded; the
CPU variant its loader chose), and on each emulated CPU model. buildtool reads the logits
and holds them against a reference:

* **the synthetic model** (any type): a float64 NumPy forward pass of the same llama
  architecture, computed here from the GGUF's weights, dequantized by gguf-py exactly as
  the kernels see them. It shares no code with ggml, so it judges the CPU build as much as
  a GPU one, and because it uses the *same* weights the tolerance measures kernel
  arithmetic only, not what quantization costs (that is recorded too, as ``nmse_f32``:
  the deviation from the F32 model's reference, not judged);
* **a ``--model``** (any architecture): a GPU artifact's own CPU path (``--device none``),
  as llama.cpp's ``test-backend-ops`` holds a backend against the CPU; a CPU artifact's
  emulated runs are held against its main run. A CPU artifact without emulated models has
  nothing independent to compare with: ``missing``.

Two measures, both from llama.cpp's own tools: the normalized mean squared error of the
logits (``llama-results --check``, ``sum((run-ref)^2) / sum(ref^2)``), and the mean KL
divergence of the next-token distributions (``llama-perplexity --kl-divergence``). The
tolerances (:data:`TOLERANCES`) are at least six times what correct kernels measure here,
and two to four orders below what a broken one gives (an unrelated answer: NMSE
about 1 or more). README: "What the smoke proves".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from buildtool import cmd
from buildtool.errors import CommandError, SmokeError
from buildtool.records import NumericsRecord, NumericsRun, NumericsVerdict

if TYPE_CHECKING:
    import numpy as np

    from buildtool.artifacts.base import Subject

# about 60 tokens of the synthetic vocabulary's word pieces and byte fallbacks
PROMPT = "the llama build is a smoke test of the build and it is the test"
QUANTIZED = ("Q4_0", "Q4_K_M")  # what the smoke quantizes the synthetic model to
# a run with NaN or infinite logits reads this deviation (JSON has no infinity)
DEVIATION_CAP = 1e30


@dataclasses.dataclass(frozen=True)
class Tolerance:
    nmse: float
    kl: float


# Measured against the NumPy reference of the same weights: F32 about 5e-8 NMSE / 1e-7 KL on
# the x86-64 CPU variants (float32 sums, the F16 KV cache), 7e-7 on lavapipe, 5e-5 / 8e-5 on
# OpenVINO's CPU device (its plugin computes F32 models in reduced precision on BF16/AMX
# hosts); quantized about 2e-4 NMSE / 3e-4 KL (the kernels quantize activations to 8 bits:
# Q8_0, Q8_K, Q8_1 on GPUs), 4e-4 / 7e-4 for Q6_K on OpenVINO. A wrong kernel: NMSE ~ 1.
TOLERANCES: Mapping[str, Tolerance] = {
    "F32": Tolerance(nmse=3e-4, kl=3e-4),
    "F16": Tolerance(nmse=3e-4, kl=3e-4),
    "BF16": Tolerance(nmse=1e-3, kl=1e-3),
}
QUANTIZED_TOLERANCE = Tolerance(nmse=3e-3, kl=5e-3)


def tolerance(model_type: str) -> Tolerance:
    return TOLERANCES.get(model_type.upper(), QUANTIZED_TOLERANCE)


def model_type(model: Path) -> str:
    """A GGUF's file type as llama.cpp names it (``F32``, ``Q4_K_M``), from
    ``general.file_type``; ``unknown`` when it has none buildtool can read."""
    import gguf

    try:
        field = gguf.GGUFReader(model).fields.get("general.file_type")
        number = int(field.parts[field.data[0]][0]) if field is not None else None
        name = gguf.LlamaFileType(number).name if number is not None else "unknown"
    except (OSError, ValueError, KeyError, IndexError):
        return "unknown"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


@dataclasses.dataclass(frozen=True)
class Logits:
    """What llama-results wrote: the prompt's tokens and a (tokens, vocabulary) matrix."""

    tokens: np.ndarray
    values: np.ndarray


def read_results(path: Path) -> Logits:
    """A llama-results file, checked: an int32 ``tokens`` vector and a float32 ``logits``
    tensor of tokens x vocabulary; anything else is a SmokeError naming the file."""
    import gguf
    import numpy as np

    try:
        reader = gguf.GGUFReader(path)
        tensors = {t.name: t for t in reader.tensors}
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise SmokeError(f"{path.name}: not a llama-results file ({exc})") from exc
    tokens, logits = tensors.get("tokens"), tensors.get("logits")
    if tokens is None or logits is None:
        raise SmokeError(f"{path.name}: llama-results wrote no tokens or logits tensor")
    if tokens.tensor_type != gguf.GGMLQuantizationType.I32 or \
            logits.tensor_type != gguf.GGMLQuantizationType.F32:
        raise SmokeError(f"{path.name}: tokens must be I32 and logits F32")
    ids = np.asarray(tokens.data, dtype=np.int64).reshape(-1)
    values = np.asarray(logits.data, dtype=np.float64)
    if ids.size == 0 or values.size % ids.size:
        raise SmokeError(f"{path.name}: {values.size} logits for {ids.size} tokens")
    return Logits(tokens=ids, values=values.reshape(ids.size, -1))


class NoReference(Exception):
    """The model is not one the NumPy forward pass computes."""


def reference(model: Path, tokens: np.ndarray) -> np.ndarray:
    """The logits of a llama-architecture GGUF for ``tokens``, in float64: embedding, per
    layer RMS norm, rotary (NORM mode) multi-head attention with a causal mask, SwiGLU
    feed-forward, final norm and output projection. Quantized weights are dequantized as
    the kernels read them. Raises NoReference for any other architecture or option."""
    import gguf
    import gguf.quants
    import numpy as np

    reader = gguf.GGUFReader(model)

    def value(key: str, default: float | None = None) -> float:
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise NoReference(f"{model.name} has no {key}")
            return default
        return float(f.parts[f.data[0]][0])

    arch = reader.fields.get("general.architecture")
    if arch is None or bytes(arch.parts[arch.data[0]]).decode() != "llama":
        raise NoReference(f"{model.name} is not a llama-architecture model")
    if any(k.startswith("llama.rope.scaling") for k in reader.fields):
        raise NoReference(f"{model.name} scales its rotary embedding")
    weights = {t.name: gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
               .astype(np.float64) for t in reader.tensors}
    if any(name.endswith(".bias") for name in weights):
        raise NoReference(f"{model.name} has bias tensors")
    n_layer = int(value("llama.block_count"))
    n_head = int(value("llama.attention.head_count"))
    n_head_kv = int(value("llama.attention.head_count_kv", n_head))
    eps = value("llama.attention.layer_norm_rms_epsilon")
    base = value("llama.rope.freq_base", 10000.0)
    embd = weights["token_embd.weight"]
    if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= embd.shape[0]:
        raise NoReference(f"token ids outside {model.name}'s vocabulary of {embd.shape[0]}")
    x = embd[tokens]
    n, d = x.shape
    hd = d // n_head
    if int(value("llama.rope.dimension_count", hd)) != hd or hd % 2:
        raise NoReference(f"{model.name} rotates part of each head")
    angle = np.arange(n)[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]

    def rms(v: np.ndarray, w: np.ndarray) -> np.ndarray:
        out: np.ndarray = v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w
        return out

    def heads(v: np.ndarray, count: int) -> np.ndarray:
        return v.reshape(n, count, hd)

    def rope(v: np.ndarray) -> np.ndarray:
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(n_layer):
        w = {k.removeprefix(f"blk.{i}."): v for k, v in weights.items()
             if k.startswith(f"blk.{i}.")}
        h = rms(x, w["attn_norm.weight"])
        q = rope(heads(h @ w["attn_q.weight"].T, n_head))
        k = np.repeat(rope(heads(h @ w["attn_k.weight"].T, n_head_kv)),
                      n_head // n_head_kv, axis=1)
        v = np.repeat(heads(h @ w["attn_v.weight"].T, n_head_kv), n_head // n_head_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", s, v).reshape(n, d) @ w["attn_output.weight"].T
        h = rms(x, w["ffn_norm.weight"])
        gate = h @ w["ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w["ffn_up.weight"].T)) \
            @ w["ffn_down.weight"].T
    out = weights.get("output.weight", weights["token_embd.weight"])
    logits: np.ndarray = rms(x, weights["output_norm.weight"]) @ out.T
    return logits


@dataclasses.dataclass(frozen=True)
class Measured:
    nmse: float
    kl: float
    kl_max: float
    top1: float


def measure(ref: np.ndarray, got: np.ndarray) -> Measured:
    """NMSE of the logits, KL(ref || got) of their softmax per position (mean and max),
    and the share of positions whose argmax agrees. Non-finite logits read DEVIATION_CAP."""
    import numpy as np

    if ref.shape != got.shape:
        raise SmokeError(f"logits of shape {got.shape}, the reference has {ref.shape}")
    if not np.isfinite(got).all():
        return Measured(nmse=DEVIATION_CAP, kl=DEVIATION_CAP, kl_max=DEVIATION_CAP, top1=0.0)

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(-1, keepdims=True)
        out: np.ndarray = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return out

    nmse = float(((got - ref) ** 2).sum() / max((ref ** 2).sum(), 1e-300))
    lp, lq = log_softmax(ref), log_softmax(got)
    kl = np.maximum((np.exp(lp) * (lp - lq)).sum(-1), 0.0)
    return Measured(nmse=min(nmse, DEVIATION_CAP), kl=min(float(kl.mean()), DEVIATION_CAP),
                    kl_max=min(float(kl.max()), DEVIATION_CAP),
                    top1=float((ref.argmax(-1) == got.argmax(-1)).mean()))


def judge(model_type: str, ref: np.ndarray, got: np.ndarray,
          f32: np.ndarray | None = None) -> NumericsRun:
    m = measure(ref, got)
    tol = tolerance(model_type)
    return NumericsRun(
        model_type=model_type, nmse=m.nmse, kl=m.kl, kl_max=m.kl_max, top1=m.top1,
        max_nmse=tol.nmse, max_kl=tol.kl, ok=m.nmse <= tol.nmse and m.kl <= tol.kl,
        nmse_f32=measure(f32, got).nmse if f32 is not None and model_type != "F32" else None)


def describe(runs: Sequence[NumericsRun]) -> str:
    """``F32 NMSE 5.4e-08, KL 8.3e-08; Q4_0 NMSE 1.2e+00 > 3e-03, KL ...``"""
    parts = []
    for r in runs:
        nmse = f"NMSE {r.nmse:.1e}" + (f" > {r.max_nmse:.0e}" if r.nmse > r.max_nmse else "")
        kl = f"KL {r.kl:.1e}" + (f" > {r.max_kl:.0e}" if r.kl > r.max_kl else "")
        parts.append(f"{r.model_type} {nmse}, {kl}")
    return "; ".join(parts)


class Runner:
    """Runs the subject's llama-results on a model: through the subject (its container, its
    emulator) or, for an emulated CPU model, under that model's emulator command. Each run
    writes its own file in ``work``; a failure is a SmokeError with llama-results' words."""

    def __init__(self, subject: Subject, work: Path, *, inside: Mapping[str, str],
                 run_env: Mapping[str, str], threads: int) -> None:
        assert subject.results is not None
        self.subject, self.work, self.inside = subject, work, inside
        self.run_env, self.threads = run_env, threads
        self.count = 0

    def __call__(self, model: Path, *, offload: bool, emulator: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, threads: int | None = None) -> Logits:
        subject = self.subject
        assert subject.results is not None
        self.count += 1
        out = self.work / f"results-{self.count}.gguf"
        args = ["-m", str(model), "-o", str(out), "-p", PROMPT,
                "-t", str(threads or self.threads), "-s", "0",
                *(["-ngl", "99"] if offload else ["-ngl", "0", "--device", "none"])]
        if emulator is None:
            argv = subject.command([str(subject.results), *args], self.inside)
        else:  # the program itself (a wheel's console script is a launcher) under QEMU
            argv = [*emulator, str(subject.lib_dir / subject.results.name), *args]
        try:
            cmd.capture(argv, cwd=self.work, env=env or self.run_env, timeout=1800)
        except CommandError as exc:
            raise SmokeError(f"llama-results on {model.name} failed "
                             f"({cmd.describe_exit(exc.returncode)}):\n    "
                             + "\n    ".join(exc.tail[-8:]), hint=cmd.SIGILL_HINT
                             if exc.returncode in (-4, 132) else None) from exc
        try:
            return read_results(out)
        finally:
            out.unlink(missing_ok=True)


@dataclasses.dataclass
class References:
    """The reference logits per model type, made once per smoke and shared by the main run
    and each emulated CPU model."""

    description: str
    tokens: np.ndarray
    logits: dict[str, np.ndarray]
    f32: np.ndarray | None = None

    def hold(self, runs: Mapping[str, Logits]) -> tuple[NumericsRun, ...]:
        import numpy as np

        held = []
        for model_type, got in runs.items():
            ref = self.logits.get(model_type)
            if ref is None:
                continue
            if not np.array_equal(got.tokens, self.tokens) or got.values.shape != ref.shape:
                # another tokenization or vocabulary: nothing to compare, and wrong
                held.append(NumericsRun(model_type=model_type, nmse=DEVIATION_CAP,
                                        kl=DEVIATION_CAP, kl_max=DEVIATION_CAP, top1=0.0,
                                        max_nmse=tolerance(model_type).nmse,
                                        max_kl=tolerance(model_type).kl, ok=False))
                continue
            held.append(judge(model_type, ref, got.values, self.f32))
        return tuple(held)

    def record(self, runs: Mapping[str, Logits]) -> NumericsRecord:
        held = self.hold(runs)
        if not held:
            return NumericsRecord(verdict=NumericsVerdict.MISSING,
                                  reference=self.description, reason="no run had a reference")
        return NumericsRecord(verdict=NumericsVerdict.PASS if all(r.ok for r in held)
                              else NumericsVerdict.FAIL, reference=self.description,
                              tokens=int(self.tokens.size), runs=held)


def references(models: Mapping[str, Path], main: Mapping[str, Logits], run: Runner, *,
               synthetic: bool, gpu: bool) -> References | None:
    """What the runs are held against (see the module's docstring); None: nothing
    independent (a CPU artifact's main run on a --model)."""
    first = next(iter(main.values()))
    if synthetic:
        try:
            logits = {t: reference(path, first.tokens) for t, path in models.items()}
        except (NoReference, NotImplementedError, KeyError, ValueError) as exc:
            raise SmokeError(f"no reference for the synthetic model: {exc}") from exc
        return References(description="NumPy float64 forward pass of the same weights",
                          tokens=first.tokens, logits=logits, f32=logits.get("F32"))
    if gpu:
        cpu = {t: run(path, offload=False) for t, path in models.items()}
        return References(description="the artifact's own CPU path (--device none)",
                          tokens=cpu[next(iter(cpu))].tokens,
                          logits={t: got.values for t, got in cpu.items()})
    return None


def main_run(models: Mapping[str, Path], run: Runner, *, synthetic: bool,
             gpu: bool) -> tuple[NumericsRecord, References | None]:
    """The artifact's logits for each model on its device, held against the references; and
    the references for the emulated CPU models (a CPU artifact's main run on a --model)."""
    main = {t: run(path, offload=gpu) for t, path in models.items()}
    refs = references(models, main, run, synthetic=synthetic, gpu=gpu)
    if refs is not None:
        return refs.record(main), refs
    first = next(iter(main.values()))
    return (NumericsRecord(verdict=NumericsVerdict.MISSING, reason=(
        "a CPU artifact's run on --model has no independent reference here (emulated CPU "
        "models are held against it)")),
        References(description="the artifact's main run", tokens=first.tokens,
                   logits={t: got.values for t, got in main.items()}))
