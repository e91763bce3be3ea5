# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""GPU memory sizing for vLLM: weights, KV cache per token, KV budget, concurrency.

Pure Python, no third-party imports, so that it runs on any managed host and in unit tests.

The model follows how vLLM spends GPU memory on each GPU of a tensor/pipeline parallel group::

    usable   = gpu_memory_total x gpu_memory_utilization
    kv_budget = usable - weights_per_gpu - overhead        (activations, CUDA graphs, non-torch)
    capacity  = kv_budget // kv_bytes_per_token            (tokens of KV cache per GPU)

vLLM refuses to start when the KV budget cannot hold one sequence of max_model_len tokens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

GIB = 1024 ** 3

# --model dtype values; "auto" takes the checkpoint's 16-bit dtype (vLLM also turns a
# float32 checkpoint into 16-bit under "auto").
_DTYPE_BYTES: dict[str, float] = {
    "auto": 2.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "float32": 4.0,
    "float": 4.0,
}

# --quantization values (and a few spellings of the same idea) by bytes per parameter.
_QUANT_8BIT = (
    "fp8", "fp8_e4m3", "fp8_e5m2", "int8", "8bit", "w8a8", "w8a16", "fbgemm_fp8", "ptpc_fp8",
    "compressed-tensors", "compressed_tensors", "modelopt", "experts_int8", "tpu_int8",
    "deepspeedfp", "bitsandbytes_8bit",
)
_QUANT_4BIT = (
    "awq", "awq_marlin", "awq_triton", "gptq", "gptq_marlin", "gptq_marlin_24", "gptq_bitblas",
    "marlin", "bitblas", "bitsandbytes", "bitsandbytes_4bit", "int4", "4bit", "w4a16", "w4a8",
    "mxfp4", "nvfp4", "modelopt_fp4", "petit_nvfp4", "gguf", "hqq", "moe_wna16",
)
_QUANT_BYTES: dict[str, float] = dict(
    [(name, 1.0) for name in _QUANT_8BIT] + [(name, 0.5) for name in _QUANT_4BIT]
)
_NO_QUANT = ("", "none", "null")

# --kv-cache-dtype values; None means "the model's activation dtype".
_KV_BYTES: dict[str, float | None] = {
    "auto": None,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "fp8_inc": 1.0,
    "fp8_ds_mla": 1.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
}

# Minimum Linux driver for a CUDA toolkit/wheel version. These are NVIDIA's minimums from
# the CUDA Toolkit release notes (table "CUDA Toolkit and Corresponding Driver Versions",
# Linux x86_64, GA releases), rounded down to the driver branch. CUDA 13.x wheels run on
# the 580 branch (minor version compatibility), 12.x wheels are held to their GA branch.
_CUDA_MIN_DRIVER: tuple[tuple[tuple[int, int], str], ...] = (
    ((11, 8), "520"),
    ((12, 0), "525"),
    ((12, 1), "530"),
    ((12, 2), "535"),
    ((12, 3), "545"),
    ((12, 4), "550"),
    ((12, 5), "555"),
    ((12, 6), "560"),
    ((12, 8), "570"),
    ((12, 9), "575"),
    ((13, 0), "580"),
)

# Architectures whose MLP is up/down only (no gate projection).
_NON_GATED_MLP = (
    "gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "gpt_bigcode", "starcoder2", "mpt",
)
# Architectures with q/k/v biases although config.json has no attention_bias key.
_QKV_BIAS_MODEL_TYPES = ("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl")


def _gib(value: float) -> str:
    return "%.2f GiB" % (value / GIB)


def version_tuple(v: str) -> tuple[int, ...]:
    """Turn "570.86.15" (or "12.9", "9.0") into a tuple of ints for comparison.

    Non-numeric suffixes of a part are ignored ("560.35.03-open" -> (560, 35, 3)).
    """
    parts: list[int] = []
    for piece in str(v).strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group(0)))
    if not parts:
        raise ValueError("%r is not a version number like 570.86.15 or 12.9" % (v,))
    return tuple(parts)


def min_driver_for_cuda(cuda_version: str) -> str:
    """Minimum NVIDIA Linux driver branch for wheels built against CUDA ``cuda_version``.

    Versions above the table (a CUDA newer than this code) get the highest known minimum;
    13.x gets 580. Versions below the table raise ValueError.
    """
    wanted = version_tuple(cuda_version)
    key = (wanted[0], wanted[1] if len(wanted) > 1 else 0)
    if key[0] == 13:
        return "580"
    best: str | None = None
    for table_key, driver in _CUDA_MIN_DRIVER:
        if table_key <= key:
            best = driver
    if best is None:
        known = ", ".join("%d.%d" % entry[0] for entry in _CUDA_MIN_DRIVER)
        raise ValueError(
            "cuda_version %s is older than any known CUDA release (%s); set min_driver_version "
            "explicitly" % (cuda_version, known)
        )
    return best


def _quant_key(quantization: str | None) -> str | None:
    if quantization is None:
        return None
    key = str(quantization).strip().lower()
    return None if key in _NO_QUANT else key


def bytes_per_param(dtype: str, quantization: str | None) -> float:
    """Bytes that one weight takes in GPU memory for a --dtype / --quantization pair."""
    quant = _quant_key(quantization)
    if quant is not None:
        if quant in _QUANT_BYTES:
            return _QUANT_BYTES[quant]
        raise ValueError(
            "unknown quantization %r; accepted values: none, %s (8-bit), %s (4-bit)"
            % (quantization, ", ".join(_QUANT_8BIT), ", ".join(_QUANT_4BIT))
        )
    return _dtype_bytes(dtype)


def _dtype_bytes(dtype: str) -> float:
    key = str(dtype or "auto").strip().lower()
    if key not in _DTYPE_BYTES:
        raise ValueError(
            "unknown dtype %r; accepted values: %s" % (dtype, ", ".join(sorted(_DTYPE_BYTES)))
        )
    return _DTYPE_BYTES[key]


def activation_bytes(dtype: str) -> float:
    """Bytes of the activation (compute) dtype: 4 for float32, otherwise 2 (quantized models too)."""
    return _dtype_bytes(dtype)


def kv_bytes_per_element(kv_cache_dtype: str, model_dtype_bytes: float) -> float:
    """Bytes per KV cache element; ``auto`` follows the model's activation dtype."""
    key = str(kv_cache_dtype or "auto").strip().lower()
    if key not in _KV_BYTES:
        raise ValueError(
            "unknown kv_cache_dtype %r; accepted values: %s"
            % (kv_cache_dtype, ", ".join(sorted(_KV_BYTES)))
        )
    value = _KV_BYTES[key]
    return float(model_dtype_bytes) if value is None else value


@dataclass(frozen=True)
class ModelShape:
    """What sizing needs to know about a model.

    The attention fields may be None when only a parameter count is known; sizing then
    covers the weights only. ``embedding_params`` (input embeddings plus an untied lm_head)
    stay in the activation dtype when a model is quantized, as vLLM keeps them unquantized.
    ``kv_lora_rank``/``qk_rope_head_dim`` describe multi-head latent attention (DeepSeek),
    whose KV cache is one latent vector per token and layer, the same on every TP rank.
    """

    num_params: int
    num_layers: int | None = None
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    architecture: str | None = None
    embedding_params: int = 0
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None

    @property
    def has_kv_shape(self) -> bool:
        """Whether the KV cache per token can be computed."""
        if not self.num_layers:
            return False
        if self.kv_lora_rank:
            return True
        return bool(self.num_kv_heads and self.head_dim)


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return None


def _int(cfg: dict[str, Any], *keys: str) -> int | None:
    value = _first(cfg, *keys)
    if value is None or isinstance(value, bool):
        return None
    return int(value)


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The language model part of a (possibly multimodal) HF config."""
    for key in ("text_config", "llm_config", "language_config"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and (sub.get("hidden_size") or sub.get("num_hidden_layers")):
            merged = dict(sub)
            for inherited in ("quantization_config", "tie_word_embeddings", "torch_dtype"):
                if inherited not in merged and inherited in cfg:
                    merged[inherited] = cfg[inherited]
            return merged
    return cfg


def _derived_max_len(cfg: dict[str, Any]) -> int | None:
    """The longest context vLLM derives from config.json (before --max-model-len)."""
    keys = (
        "max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
        "max_sequence_length", "max_seq_length", "seq_len",
    )
    found = [int(cfg[k]) for k in keys if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)]
    if not found:
        return None
    derived = min(found)
    rope = cfg.get("rope_scaling")
    if isinstance(rope, dict):
        rope_type = rope.get("rope_type", rope.get("type"))
        factor = rope.get("factor")
        if rope_type not in ("su", "longrope", "llama3", "mrope", "default", None) and factor:
            if rope_type == "yarn" and rope.get("original_max_position_embeddings"):
                derived = int(rope["original_max_position_embeddings"])
            derived = int(derived * float(factor))
    return derived


def quantization_from_hf_config(cfg: dict[str, Any]) -> str | None:
    """The quantization a checkpoint declares in config.json (vLLM detects it the same way).

    Returns a name that bytes_per_param() accepts, the raw quant_method when it is not one
    (bytes_per_param() then raises), or None for an unquantized checkpoint.
    """
    text = _text_config(cfg)
    qc = text.get("quantization_config") or cfg.get("quantization_config")
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method") or qc.get("quant_type") or "").strip().lower()
    if not method:
        return None
    if method in ("awq", "gptq"):
        bits = qc.get("bits") or qc.get("w_bit") or 4
        return "int8" if int(bits) == 8 else method
    if method == "bitsandbytes":
        return "bitsandbytes_8bit" if qc.get("load_in_8bit") else "bitsandbytes"
    if method in ("compressed-tensors", "compressed_tensors"):
        num_bits: list[int] = []
        groups = qc.get("config_groups")
        if isinstance(groups, dict):
            for group in groups.values():
                weights = group.get("weights") if isinstance(group, dict) else None
                if isinstance(weights, dict) and weights.get("num_bits"):
                    num_bits.append(int(weights["num_bits"]))
        if num_bits and max(num_bits) <= 4:
            return "w4a16"
        return "w8a8"
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or "").upper()
        return "modelopt_fp4" if "FP4" in algo else "modelopt"
    return method


def shape_from_hf_config(cfg: dict[str, Any]) -> ModelShape:
    """Read a Hugging Face config.json (as a dict) and estimate the parameter count.

    Dense and MoE decoders: embeddings (+ an untied lm_head), attention projections (with
    q/k/v biases where the architecture has them, multi-head latent attention where
    kv_lora_rank is set), gated or plain MLP, routed and shared experts, norms.
    """
    text = _text_config(cfg)
    model_type = str(text.get("model_type") or cfg.get("model_type") or "").lower()
    archs = cfg.get("architectures") or text.get("architectures") or []
    architecture = str(archs[0]) if isinstance(archs, list) and archs else (model_type or None)

    hidden = _int(text, "hidden_size", "n_embd", "d_model")
    layers = _int(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(text, "num_attention_heads", "n_head", "num_heads")
    vocab = _int(text, "vocab_size", "padded_vocab_size")
    if not hidden or not layers or not heads or not vocab:
        missing = [
            name for name, value in (
                ("hidden_size", hidden), ("num_hidden_layers", layers),
                ("num_attention_heads", heads), ("vocab_size", vocab),
            ) if not value
        ]
        raise ValueError(
            "config.json lacks %s; give model_params (and num_layers, num_kv_heads, head_dim) "
            "instead" % ", ".join(missing)
        )
    kv_heads = _int(text, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    if not kv_heads:
        kv_heads = 1 if text.get("multi_query") else heads
    head_dim = _int(text, "head_dim") or hidden // heads
    tied = bool(text.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False)))

    non_gated = model_type in _NON_GATED_MLP
    intermediate = _int(text, "intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim")
    if not intermediate:
        intermediate = 4 * hidden
    mlp_dense = (2 if non_gated else 3) * hidden * intermediate

    # Attention.
    kv_lora_rank = _int(text, "kv_lora_rank")
    qk_rope = _int(text, "qk_rope_head_dim")
    if kv_lora_rank:
        q_lora = _int(text, "q_lora_rank")
        qk_nope = _int(text, "qk_nope_head_dim") or head_dim
        rope_dim = qk_rope or 0
        v_head = _int(text, "v_head_dim") or head_dim
        q_head = qk_nope + rope_dim
        head_dim = q_head
        if q_lora:
            attn = hidden * q_lora + q_lora + q_lora * heads * q_head
        else:
            attn = hidden * heads * q_head
        attn += hidden * (kv_lora_rank + rope_dim) + kv_lora_rank
        attn += kv_lora_rank * heads * (qk_nope + v_head)
        attn += heads * v_head * hidden
    else:
        q_out = heads * head_dim
        kv_out = kv_heads * head_dim
        attn = hidden * q_out + 2 * hidden * kv_out + q_out * hidden
        if text.get("attention_bias") or text.get("bias") or model_type in _QKV_BIAS_MODEL_TYPES:
            attn += q_out + 2 * kv_out
        qk_rope = None

    # Mixture of experts.
    experts = _int(text, "num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
    if experts and experts > 1:
        expert_inter = _int(text, "moe_intermediate_size", "expert_intermediate_size") or intermediate
        moe = experts * 3 * hidden * expert_inter + hidden * experts  # experts + router
        shared_inter = _int(text, "shared_expert_intermediate_size")
        n_shared = _int(text, "n_shared_experts", "num_shared_experts")
        if shared_inter:
            moe += 3 * hidden * shared_inter + hidden  # Qwen2-MoE: shared expert and its gate
        elif n_shared:
            moe += n_shared * 3 * hidden * expert_inter
        dense_layers = _int(text, "first_k_dense_replace") or 0
        mlp_only = text.get("mlp_only_layers")
        if isinstance(mlp_only, list):
            dense_layers += len([i for i in mlp_only if isinstance(i, int) and i >= dense_layers])
        dense_layers = min(dense_layers, layers)
        mlp_total = dense_layers * mlp_dense + (layers - dense_layers) * moe
    else:
        mlp_total = layers * mlp_dense

    norms_per_layer = 2 * hidden
    embedding = vocab * hidden * (1 if tied else 2)
    total = embedding + layers * (attn + norms_per_layer) + mlp_total + hidden

    return ModelShape(
        num_params=int(total),
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        vocab_size=vocab,
        max_position_embeddings=_derived_max_len(text),
        architecture=architecture,
        embedding_params=int(embedding),
        kv_lora_rank=kv_lora_rank or None,
        qk_rope_head_dim=qk_rope if kv_lora_rank else None,
    )


def allowed_tensor_parallel_sizes(num_attention_heads: int, num_kv_heads: int | None) -> list[int]:
    """TP sizes vLLM accepts: divisors of the attention heads that split or replicate KV heads evenly."""
    allowed = []
    for tp in range(1, num_attention_heads + 1):
        if num_attention_heads % tp:
            continue
        if num_kv_heads and not (num_kv_heads % tp == 0 or tp % num_kv_heads == 0):
            continue
        allowed.append(tp)
    return allowed


def _kv_bytes_per_token(
    shape: ModelShape, kv_bytes: float, tp: int, pp: int
) -> tuple[int, int]:
    """(per GPU, whole model) KV cache bytes per token."""
    layers = int(shape.num_layers or 0)
    layers_per_gpu = math.ceil(layers / pp)
    if shape.kv_lora_rank:
        latent = shape.kv_lora_rank + (shape.qk_rope_head_dim or 0)
        return int(layers_per_gpu * latent * kv_bytes), int(layers * latent * kv_bytes)
    kv_heads = int(shape.num_kv_heads or 0)
    head_dim = int(shape.head_dim or 0)
    kv_heads_per_gpu = max(1, math.ceil(kv_heads / tp))
    per_gpu = layers_per_gpu * kv_heads_per_gpu * head_dim * 2 * kv_bytes
    model = layers * kv_heads * head_dim * 2 * kv_bytes
    return int(per_gpu), int(model)


def _weight_bytes(shape: ModelShape, dtype: str, quantization: str | None) -> float:
    bpp = bytes_per_param(dtype, quantization)
    if _quant_key(quantization) is None or not shape.embedding_params:
        return shape.num_params * bpp
    # Quantized checkpoints keep embeddings and lm_head in the activation dtype.
    embedding = min(shape.embedding_params, shape.num_params)
    return (shape.num_params - embedding) * bpp + embedding * activation_bytes(dtype)


def plan(
    shape: ModelShape,
    *,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    max_model_len: int | None = None,
    max_num_seqs: int = 256,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    gpu_memory_total_bytes: int = 0,
    overhead_bytes: int = 2 * GIB,
) -> dict[str, Any]:
    """Size ``shape`` on GPUs of ``gpu_memory_total_bytes`` each; see the module docstring.

    Raises ValueError for settings vLLM itself rejects (TP not dividing the heads,
    gpu_memory_utilization outside (0, 1]) and for unknown dtypes/quantizations.
    """
    tp = int(tensor_parallel_size)
    pp = int(pipeline_parallel_size)
    if tp < 1 or pp < 1:
        raise ValueError("tensor_parallel_size and pipeline_parallel_size must be at least 1")
    if not 0 < float(gpu_memory_utilization) <= 1:
        raise ValueError(
            "gpu_memory_utilization must be in (0, 1], got %s" % gpu_memory_utilization
        )
    if int(gpu_memory_total_bytes) <= 0:
        raise ValueError("gpu_memory_total_bytes must be a positive number of bytes")
    if int(max_num_seqs) < 1:
        raise ValueError("max_num_seqs must be at least 1")
    if max_model_len is not None and int(max_model_len) < 1:
        raise ValueError("max_model_len must be at least 1")
    if shape.num_attention_heads:
        allowed = allowed_tensor_parallel_sizes(shape.num_attention_heads, shape.num_kv_heads)
        if tp not in allowed:
            raise ValueError(
                "tensor_parallel_size %d does not split this model's %d attention heads (%s KV "
                "heads) evenly; allowed values: %s"
                % (tp, shape.num_attention_heads, shape.num_kv_heads,
                   ", ".join(str(a) for a in allowed))
            )
    if shape.num_layers and pp > shape.num_layers:
        raise ValueError(
            "pipeline_parallel_size %d exceeds the model's %d layers" % (pp, shape.num_layers)
        )

    warnings: list[str] = []
    weights_total = _weight_bytes(shape, dtype, quantization)
    weights_per_gpu = weights_total / float(tp * pp)
    usable = float(gpu_memory_total_bytes) * float(gpu_memory_utilization)
    budget = max(0.0, usable - weights_per_gpu - float(overhead_bytes))

    result: dict[str, Any] = {
        "num_params": int(shape.num_params),
        "bytes_per_param": bytes_per_param(dtype, quantization),
        "weight_bytes_total": int(weights_total),
        "weight_bytes_per_gpu": int(weights_per_gpu),
        "kv_bytes_per_token": None,
        "kv_bytes_per_token_model": None,
        "gpu_memory_total_bytes": int(gpu_memory_total_bytes),
        "usable_bytes_per_gpu": int(usable),
        "overhead_bytes": int(overhead_bytes),
        "kv_budget_bytes_per_gpu": int(budget),
        "kv_tokens_capacity": None,
        "max_model_len": int(max_model_len) if max_model_len is not None else None,
        "max_num_seqs": int(max_num_seqs),
        "max_concurrency_at_max_model_len": None,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "gpu_memory_utilization": float(gpu_memory_utilization),
        "fits": False,
        "reason": "",
        "warnings": warnings,
    }

    per_gpu_line = "%s x gpu_memory_utilization %.2f = %s usable per GPU" % (
        _gib(gpu_memory_total_bytes), float(gpu_memory_utilization), _gib(usable))

    per_token = 0
    capacity = 0
    concurrency = 0.0
    if shape.has_kv_shape:
        if max_model_len is None:
            raise ValueError(
                "max_model_len is required to size the KV cache: the model config gives no "
                "max_position_embeddings"
            )
        kv_bytes = kv_bytes_per_element(kv_cache_dtype, activation_bytes(dtype))
        per_token, per_token_model = _kv_bytes_per_token(shape, kv_bytes, tp, pp)
        capacity = int(budget // per_token) if per_token else 0
        concurrency = capacity / float(max_model_len)
        result.update(
            kv_bytes_per_token=per_token,
            kv_bytes_per_token_model=per_token_model,
            kv_tokens_capacity=capacity,
            max_concurrency_at_max_model_len=round(concurrency, 3),
        )
        if shape.max_position_embeddings and max_model_len > shape.max_position_embeddings:
            warnings.append(
                "max_model_len %d is longer than the model's %d positions; vLLM refuses it "
                "unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
                % (max_model_len, shape.max_position_embeddings)
            )

    if weights_per_gpu + overhead_bytes > usable:
        result["reason"] = (
            "Does not fit: weights need %s per GPU (%s in all over tensor_parallel_size %d x "
            "pipeline_parallel_size %d) plus %s overhead, but %s. Raise tensor_parallel_size "
            "(--tensor-parallel-size)%s, use quantization (--quantization, e.g. fp8 or a 4-bit "
            "checkpoint), or raise gpu_memory_utilization (--gpu-memory-utilization)."
            % (_gib(weights_per_gpu), _gib(weights_total), tp, pp, _gib(overhead_bytes),
               per_gpu_line, _suggest_tp(shape, weights_total, pp, usable, overhead_bytes, tp))
        )
        return result

    if not shape.has_kv_shape:
        result["fits"] = True
        result["reason"] = (
            "Weights fit (%s per GPU plus %s overhead; %s), leaving %s for the KV cache; the "
            "KV cache was not sized because num_layers, num_kv_heads and head_dim are unknown "
            "(give model_config, or those options with model_params)."
            % (_gib(weights_per_gpu), _gib(overhead_bytes), per_gpu_line, _gib(budget))
        )
        return result

    length = int(max_model_len or 0)  # set: has_kv_shape required it above
    if capacity < length:
        need = length * per_token
        result["reason"] = (
            "Does not fit: one sequence of max_model_len %d tokens needs %s of KV cache per GPU "
            "(%s bytes per token), but only %s is left after %s of weights and %s overhead "
            "(%s); that holds %s tokens. Lower max_model_len (--max-model-len)%s, "
            "set kv_cache_dtype fp8 (--kv-cache-dtype), raise gpu_memory_utilization "
            "(--gpu-memory-utilization), raise tensor_parallel_size (--tensor-parallel-size), "
            "or use quantization (--quantization)."
            % (length, _gib(need), f"{per_token:,}", _gib(budget),
               _gib(weights_per_gpu), _gib(overhead_bytes), per_gpu_line,
               f"{capacity:,}", " to at most %d" % capacity if capacity else "")
        )
        return result

    result["fits"] = True
    result["reason"] = (
        "Fits: %s of weights and %s overhead per GPU leave %s of KV cache (%s), %s tokens at "
        "%s bytes per token: %.2f sequences of max_model_len %d at once."
        % (_gib(weights_per_gpu), _gib(overhead_bytes), _gib(budget), per_gpu_line,
           f"{capacity:,}", f"{per_token:,}", concurrency, length)
    )
    if concurrency < max_num_seqs:
        warnings.append(
            "The KV cache holds %.2f sequences of max_model_len %d, fewer than max_num_seqs %d: "
            "requests will queue or be preempted at full length. Lower max_model_len or "
            "max_num_seqs, set kv_cache_dtype fp8, or add GPUs (tensor_parallel_size)."
            % (concurrency, length, max_num_seqs)
        )
    return result


def _suggest_tp(
    shape: ModelShape, weights_total: float, pp: int, usable: float, overhead: float, tp_now: int
) -> str:
    """" (e.g. tensor_parallel_size 4)" for the smallest valid TP whose weights fit, or ""."""
    if shape.num_attention_heads:
        candidates = allowed_tensor_parallel_sizes(shape.num_attention_heads, shape.num_kv_heads)
    else:
        candidates = [1, 2, 4, 8, 16, 32, 64]
    for tp in candidates:
        if tp > tp_now and weights_total / float(tp * pp) + overhead < usable:
            return " to at least %d" % tp
    return ""
