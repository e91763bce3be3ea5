# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizing arithmetic, checked against hand-computed numbers for real model shapes."""

from __future__ import annotations

import pytest
from ansible_collections.gpuserve.vllm.plugins.module_utils.sizing import (
    GIB,
    ModelShape,
    allowed_tensor_parallel_sizes,
    bytes_per_param,
    kv_bytes_per_element,
    min_driver_for_cuda,
    plan,
    quantization_from_hf_config,
    shape_from_hf_config,
    version_tuple,
)

GB80 = 80 * 10 ** 9

from ansible_collections.gpuserve.vllm.tests.unit.model_configs import QWEN25_7B  # noqa: E402

LLAMA31_70B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3", "original_max_position_embeddings": 8192},
    "tie_word_embeddings": False,
}


def qwen_shape() -> ModelShape:
    return shape_from_hf_config(QWEN25_7B)


def test_qwen25_7b_param_estimate_within_two_percent() -> None:
    shape = qwen_shape()
    assert shape.num_params == pytest.approx(7.6e9, rel=0.02)
    # embeddings + untied lm_head, 28 x (attention with qkv bias + gated MLP + 2 norms), final norm
    per_layer = (3584 * 3584 * 2 + 3584 * 512 * 2 + 3584 + 512 * 2) + 3 * 3584 * 18944 + 2 * 3584
    assert shape.num_params == 2 * 152064 * 3584 + 28 * per_layer + 3584 == 7615616512
    assert (shape.num_layers, shape.num_kv_heads, shape.head_dim) == (28, 4, 128)
    assert shape.max_position_embeddings == 32768
    assert shape.architecture == "Qwen2ForCausalLM"


def test_tied_embeddings_count_once() -> None:
    tied = shape_from_hf_config(dict(QWEN25_7B, tie_word_embeddings=True))
    assert qwen_shape().num_params - tied.num_params == 152064 * 3584


def test_llama_70b_estimate_and_llama3_rope_keeps_positions() -> None:
    shape = shape_from_hf_config(LLAMA31_70B)
    assert shape.num_params == pytest.approx(70.6e9, rel=0.02)
    assert shape.max_position_embeddings == 131072


def test_multimodal_text_config_and_defaults() -> None:
    cfg = {
        "architectures": ["SomeVLForConditionalGeneration"],
        "model_type": "some_vl",
        "text_config": {
            "model_type": "llama",
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
        },
    }
    shape = shape_from_hf_config(cfg)
    assert shape.num_kv_heads == 32  # defaults to the attention heads
    assert shape.head_dim == 128  # hidden_size // num_attention_heads
    assert shape.architecture == "SomeVLForConditionalGeneration"
    assert shape.num_params == pytest.approx(6.74e9, rel=0.01)  # Llama-2-7B


def test_moe_mixtral_and_qwen3_moe() -> None:
    mixtral = shape_from_hf_config({
        "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
        "num_local_experts": 8, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
    })
    assert mixtral.num_params == pytest.approx(46.7e9, rel=0.02)
    qwen3_moe = shape_from_hf_config({
        "model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_experts": 128, "num_hidden_layers": 48,
        "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
        "vocab_size": 151936, "max_position_embeddings": 40960, "tie_word_embeddings": False,
    })
    assert qwen3_moe.num_params == pytest.approx(30.5e9, rel=0.02)  # Qwen3-30B-A3B


def test_deepseek_v3_mla_shape_and_kv() -> None:
    shape = shape_from_hf_config({
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "n_routed_experts": 256, "n_shared_experts": 1, "first_k_dense_replace": 3,
        "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
        "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
        "max_position_embeddings": 163840,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096},
    })
    assert shape.num_params == pytest.approx(671e9, rel=0.02)
    assert shape.max_position_embeddings == 163840
    result = plan(shape, dtype="auto", quantization="fp8", max_model_len=4096,
                  tensor_parallel_size=8, gpu_memory_total_bytes=141 * 10 ** 9)
    # one latent of 512 + 64 per layer, the same on every TP rank
    assert result["kv_bytes_per_token"] == 61 * 576 * 2
    assert result["kv_bytes_per_token_model"] == 61 * 576 * 2


def test_missing_keys_raise() -> None:
    with pytest.raises(ValueError, match="hidden_size"):
        shape_from_hf_config({"num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10})


@pytest.mark.parametrize(
    "dtype,quantization,expected",
    [
        ("auto", None, 2), ("bfloat16", None, 2), ("float16", "none", 2), ("half", "", 2),
        ("float32", None, 4), ("auto", "fp8", 1), ("auto", "int8", 1), ("auto", "w8a8", 1),
        ("auto", "fbgemm_fp8", 1), ("auto", "compressed-tensors", 1), ("auto", "8bit", 1),
        ("auto", "awq", 0.5), ("auto", "gptq", 0.5), ("auto", "awq_marlin", 0.5),
        ("auto", "gptq_marlin", 0.5), ("auto", "bitsandbytes", 0.5), ("auto", "int4", 0.5),
        ("auto", "mxfp4", 0.5), ("auto", "nvfp4", 0.5), ("auto", "gguf", 0.5), ("auto", "AWQ", 0.5),
    ],
)
def test_bytes_per_param(dtype: str, quantization: str | None, expected: float) -> None:
    assert bytes_per_param(dtype, quantization) == expected


def test_unknown_quantization_and_dtype_name_accepted_values() -> None:
    with pytest.raises(ValueError, match="accepted values:.*awq"):
        bytes_per_param("auto", "magic3bit")
    with pytest.raises(ValueError, match="accepted values:.*bfloat16"):
        bytes_per_param("float8", None)


def test_kv_bytes_per_element() -> None:
    assert kv_bytes_per_element("auto", 2) == 2
    assert kv_bytes_per_element("auto", 4) == 4
    for name in ("fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"):
        assert kv_bytes_per_element(name, 2) == 1
    assert kv_bytes_per_element("bfloat16", 4) == 2
    assert kv_bytes_per_element("float16", 2) == 2
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        kv_bytes_per_element("int3", 2)


def test_quantization_from_hf_config() -> None:
    assert quantization_from_hf_config(QWEN25_7B) is None
    assert quantization_from_hf_config({"quantization_config": {"quant_method": "awq", "bits": 4}}) == "awq"
    assert quantization_from_hf_config({"quantization_config": {"quant_method": "gptq", "bits": 8}}) == "int8"
    assert quantization_from_hf_config({"quantization_config": {"quant_method": "fp8"}}) == "fp8"
    ct4 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4}}}}
    assert quantization_from_hf_config({"quantization_config": ct4}) == "w4a16"
    ct8 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8}}}}
    assert quantization_from_hf_config({"quantization_config": ct8}) == "w8a8"


def test_qwen_kv_bytes_per_token_bf16() -> None:
    result = plan(qwen_shape(), dtype="bfloat16", max_model_len=32768, gpu_memory_total_bytes=GB80)
    # 28 layers x 4 KV heads x 128 head_dim x 2 (K and V) x 2 bytes
    assert result["kv_bytes_per_token"] == 28 * 4 * 128 * 2 * 2 == 57344
    assert result["kv_bytes_per_token_model"] == 57344
    assert result["weight_bytes_total"] == 7615616512 * 2
    assert result["usable_bytes_per_gpu"] == int(GB80 * 0.9)
    budget = int(GB80 * 0.9) - 7615616512 * 2 - 2 * GIB
    assert result["kv_budget_bytes_per_gpu"] == budget
    assert result["kv_tokens_capacity"] == budget // 57344
    assert result["max_concurrency_at_max_model_len"] == pytest.approx(budget // 57344 / 32768, abs=1e-3)
    assert result["fits"] is True
    assert result["reason"].startswith("Fits:")
    assert "14.19 GiB" in result["reason"]  # 15,231,233,024 bytes of weights
    # ~29 sequences of 32k tokens < the default 256 max_num_seqs: a warning, not a failure
    assert len(result["warnings"]) == 1
    assert "max_num_seqs 256" in result["warnings"][0]


def test_no_concurrency_warning_when_max_num_seqs_fits() -> None:
    result = plan(qwen_shape(), max_model_len=4096, max_num_seqs=64, gpu_memory_total_bytes=GB80)
    assert result["fits"] is True
    assert result["warnings"] == []


def test_tensor_parallel_two_halves_kv_heads_and_weights() -> None:
    one = plan(qwen_shape(), max_model_len=32768, gpu_memory_total_bytes=GB80)
    two = plan(qwen_shape(), max_model_len=32768, tensor_parallel_size=2, gpu_memory_total_bytes=GB80)
    assert two["kv_bytes_per_token"] == 28 * 2 * 128 * 2 * 2 == one["kv_bytes_per_token"] // 2
    assert two["kv_bytes_per_token_model"] == one["kv_bytes_per_token_model"]
    assert two["weight_bytes_per_gpu"] == one["weight_bytes_per_gpu"] // 2
    assert two["weight_bytes_total"] == one["weight_bytes_total"]
    assert two["kv_tokens_capacity"] > 2 * one["kv_tokens_capacity"]


def test_kv_heads_replicated_when_tp_exceeds_them() -> None:
    # 28 heads, 4 KV heads: TP 7 and 14 and 28 are invalid (4 % tp and tp % 4 both non-zero)
    with pytest.raises(ValueError, match="allowed values: 1, 2, 4, 28"):
        plan(qwen_shape(), max_model_len=4096, tensor_parallel_size=7, gpu_memory_total_bytes=GB80)
    shape = ModelShape(num_params=10 ** 9, num_layers=16, num_attention_heads=32, num_kv_heads=2,
                       head_dim=64)
    result = plan(shape, max_model_len=4096, tensor_parallel_size=8, gpu_memory_total_bytes=GB80)
    assert result["kv_bytes_per_token"] == 16 * 1 * 64 * 2 * 2  # max(1, ceil(2 / 8)) = 1 head
    assert result["kv_bytes_per_token_model"] == 16 * 2 * 64 * 2 * 2


def test_pipeline_parallel_splits_layers_and_weights() -> None:
    result = plan(qwen_shape(), max_model_len=32768, pipeline_parallel_size=3, gpu_memory_total_bytes=GB80)
    assert result["kv_bytes_per_token"] == 10 * 4 * 128 * 2 * 2  # ceil(28 / 3) = 10 layers
    assert result["weight_bytes_per_gpu"] == int(7615616512 * 2 / 3)


def test_tp_must_divide_heads() -> None:
    with pytest.raises(ValueError) as err:
        plan(qwen_shape(), max_model_len=4096, tensor_parallel_size=3, gpu_memory_total_bytes=GB80)
    assert "tensor_parallel_size 3" in str(err.value)
    assert "28 attention heads" in str(err.value)
    assert "allowed values" in str(err.value)
    assert allowed_tensor_parallel_sizes(64, 8) == [1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("utilization", [0, -0.1, 1.01])
def test_gpu_memory_utilization_range(utilization: float) -> None:
    with pytest.raises(ValueError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        plan(qwen_shape(), max_model_len=4096, gpu_memory_utilization=utilization,
             gpu_memory_total_bytes=GB80)


def test_4bit_halves_weights_vs_8bit() -> None:
    shape = ModelShape(num_params=7 * 10 ** 9, num_layers=28, num_attention_heads=28,
                       num_kv_heads=4, head_dim=128)
    w8 = plan(shape, quantization="fp8", max_model_len=4096, gpu_memory_total_bytes=GB80)
    w4 = plan(shape, quantization="awq", max_model_len=4096, gpu_memory_total_bytes=GB80)
    bf16 = plan(shape, max_model_len=4096, gpu_memory_total_bytes=GB80)
    assert w8["weight_bytes_total"] == 7 * 10 ** 9
    assert w4["weight_bytes_total"] == w8["weight_bytes_total"] // 2
    assert bf16["weight_bytes_total"] == 2 * w8["weight_bytes_total"]
    # the KV cache stays 16-bit: quantizing weights does not shrink it
    assert w4["kv_bytes_per_token"] == bf16["kv_bytes_per_token"] == 57344


def test_quantized_checkpoint_keeps_embeddings_16bit() -> None:
    shape = qwen_shape()
    w4 = plan(shape, quantization="awq", max_model_len=4096, gpu_memory_total_bytes=GB80)
    body = shape.num_params - shape.embedding_params
    assert w4["weight_bytes_total"] == int(body * 0.5 + shape.embedding_params * 2)


def test_70b_on_one_80gb_gpu_does_not_fit_and_names_tensor_parallel_size() -> None:
    shape = shape_from_hf_config(LLAMA31_70B)
    result = plan(shape, dtype="bfloat16", max_model_len=8192, gpu_memory_total_bytes=GB80)
    assert result["fits"] is False
    assert "tensor_parallel_size" in result["reason"]
    assert "--tensor-parallel-size" in result["reason"]
    assert "quantization" in result["reason"]
    assert "gpu_memory_utilization" in result["reason"]
    assert "131.42 GiB" in result["reason"]  # 141.1e9 bytes of bf16 weights
    assert "to at least 4" in result["reason"]  # TP 2 leaves 65.7 + 2 GiB > 67.06 GiB usable
    assert result["kv_budget_bytes_per_gpu"] == 0
    four = plan(shape, dtype="bfloat16", max_model_len=8192, tensor_parallel_size=4,
                gpu_memory_total_bytes=GB80)
    assert four["fits"] is True
    # 80 layers x ceil(8 / 4) KV heads x 128 x 2 x 2 bytes
    assert four["kv_bytes_per_token"] == 80 * 2 * 128 * 2 * 2


def test_max_model_len_too_large_for_kv_budget() -> None:
    # 24 GB card: 21.6e9 usable, 15.23e9 of weights and 2 GiB overhead leave ~4.2e9 (~73k tokens)
    result = plan(qwen_shape(), max_model_len=131072, gpu_memory_total_bytes=24 * 10 ** 9)
    budget = int(24 * 10 ** 9 * 0.9) - 7615616512 * 2 - 2 * GIB
    assert result["kv_budget_bytes_per_gpu"] == budget
    assert result["kv_tokens_capacity"] == budget // 57344 < 131072
    assert result["fits"] is False
    assert "max_model_len" in result["reason"]
    assert "--max-model-len" in result["reason"]
    assert "to at most %d" % (budget // 57344) in result["reason"]
    assert "kv_cache_dtype fp8" in result["reason"]
    assert "GiB" in result["reason"]
    # and a warning because 131072 exceeds the model's 32768 positions
    assert any("VLLM_ALLOW_LONG_MAX_MODEL_LEN" in w for w in result["warnings"])


def test_kv_fp8_doubles_capacity() -> None:
    auto = plan(qwen_shape(), max_model_len=32768, gpu_memory_total_bytes=GB80)
    fp8 = plan(qwen_shape(), max_model_len=32768, kv_cache_dtype="fp8", gpu_memory_total_bytes=GB80)
    assert fp8["kv_bytes_per_token"] == auto["kv_bytes_per_token"] // 2 == 28672
    assert fp8["kv_tokens_capacity"] in (2 * auto["kv_tokens_capacity"], 2 * auto["kv_tokens_capacity"] + 1)


def test_float32_kv_auto_is_4_bytes() -> None:
    result = plan(qwen_shape(), dtype="float32", max_model_len=4096, gpu_memory_total_bytes=GB80)
    assert result["kv_bytes_per_token"] == 57344 * 2
    assert result["weight_bytes_total"] == 7615616512 * 4


def test_weights_only_when_kv_shape_unknown() -> None:
    result = plan(ModelShape(num_params=7 * 10 ** 9), max_model_len=None, gpu_memory_total_bytes=GB80)
    assert result["fits"] is True
    assert result["kv_bytes_per_token"] is None
    assert result["kv_tokens_capacity"] is None
    assert "not sized" in result["reason"]
    assert "num_layers" in result["reason"]


def test_kv_shape_needs_max_model_len() -> None:
    with pytest.raises(ValueError, match="max_model_len is required"):
        plan(qwen_shape(), max_model_len=None, gpu_memory_total_bytes=GB80)


@pytest.mark.parametrize(
    "cuda,driver",
    [("12.1", "530"), ("12.4", "550"), ("12.6", "560"), ("12.8", "570"), ("12.9", "575"),
     ("13.0", "580"), ("13.1", "580"), ("13", "580"), ("12.7", "560"), ("14.2", "580"),
     ("12.9.1", "575")],
)
def test_min_driver_for_cuda(cuda: str, driver: str) -> None:
    assert min_driver_for_cuda(cuda) == driver


def test_min_driver_for_ancient_cuda_raises() -> None:
    with pytest.raises(ValueError, match="min_driver_version"):
        min_driver_for_cuda("10.2")


def test_version_tuple() -> None:
    assert version_tuple("570.86.15") == (570, 86, 15)
    assert version_tuple("570.86.15") < version_tuple("575")
    assert version_tuple("580.65.06") >= version_tuple("580")
    assert version_tuple("9.0") > version_tuple("7.5")
    assert version_tuple("560.35.03-open") == (560, 35, 3)
    with pytest.raises(ValueError):
        version_tuple("latest")
