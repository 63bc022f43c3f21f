"""A small synthetic llama-architecture GGUF for smoke tests (no download possible).

Random weights and a byte-fallback SPM vocabulary: llama-bench loads it and runs prompt
processing and generation; it does not care what the weights say. The numerics check
(:mod:`buildtool.verify.numerics`) computes the same model's logits independently, so the
shapes suit every quantization type it checks (rows of 256 for the K-quants' super-blocks)
and the output projection is scaled so the next-token distribution is peaked enough for a
KL divergence to mean something. Files are cached by a hash of their parameters and written
atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from buildtool.paths import cache_dir

GENERATOR_VERSION = 2
WORD_PIECES = ("▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁that", "▁llama",
               "▁build", "▁test", "▁smoke", "ing", "ed", "er", "s", "▁")


@dataclass(frozen=True, kw_only=True)
class ModelParams:
    n_embd: int = 256  # a multiple of 256: K-quant super-blocks (Q4_K) need whole rows
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 4
    n_ff: int = 512
    output_std: float = 0.125  # logits with a standard deviation of about 2
    n_ctx: int = 512
    seed: int = 0

    def digest(self) -> str:
        payload = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += list(WORD_PIECES)
    types += [gguf.TokenType.NORMAL] * len(WORD_PIECES)
    scores = [0.0] * 259 + [-float(i) for i in range(len(WORD_PIECES))]
    return tokens, scores, [int(t) for t in types]


def write_model(path: Path, params: ModelParams) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(params.seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    head_dim = params.n_embd // params.n_head
    n_embd_kv = head_dim * params.n_head_kv

    def rand(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("buildtool synthetic smoke model")
    writer.add_context_length(params.n_ctx)
    writer.add_embedding_length(params.n_embd)
    writer.add_block_count(params.n_layer)
    writer.add_feed_forward_length(params.n_ff)
    writer.add_head_count(params.n_head)
    writer.add_head_count_kv(params.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_tensor("token_embd.weight", rand(n_vocab, params.n_embd))
    for i in range(params.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(params.n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(params.n_embd, params.n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(n_embd_kv, params.n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(n_embd_kv, params.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(params.n_embd, params.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(params.n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(params.n_ff, params.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(params.n_ff, params.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(params.n_embd, params.n_ff))
    writer.add_tensor("output_norm.weight", np.ones(params.n_embd, np.float32))
    writer.add_tensor("output.weight", rand(n_vocab, params.n_embd, std=params.output_std))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def cached_model(params: ModelParams = ModelParams(), directory: Path | None = None) -> Path:
    directory = directory or cache_dir() / "models"
    path = directory / f"synthetic-llama-{params.digest()}.gguf"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".part-", suffix=".gguf")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_model(tmp, params)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
