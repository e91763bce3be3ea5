#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_probe
short_description: Probe NVIDIA GPUs through NVML and size a vLLM model against them
description:
  - Reads the NVIDIA driver version, the CUDA version it supports, and each GPU's name, UUID, memory,
    compute capability, persistence mode and PCI bus id through NVML (the C(nvidia-ml-py) package).
  - Fails when NVML or the driver is missing, when no GPU is visible, when a GPU's compute capability is
    below O(min_compute_capability), or when the driver is older than the minimum for O(cuda_version).
  - Given a model (O(model_config) or O(model_params)), estimates what vLLM needs on each GPU of a
    tensor/pipeline parallel group (weights, KV cache per token, KV cache budget, how many sequences of
    O(max_model_len) fit at once) and says whether the model fits. The reason names the vLLM flag to
    change when it does not.
  - With O(gpu_memory_total_bytes) it plans without touching NVML, so it also runs on hosts without GPUs.
  - Read-only; never reports a change.
version_added: "0.1.0"
author:
  - gpuserve.vllm contributors (@gpuserve)
requirements:
  - nvidia-ml-py (imported as pynvml) on the managed host, unless O(gpu_memory_total_bytes) is set
  - an NVIDIA driver (libnvidia-ml.so) on the managed host, unless O(gpu_memory_total_bytes) is set
notes:
  - The estimate follows vLLM's memory model. Weights are parameters times bytes per parameter (the
    embeddings and an untied lm_head stay 16-bit in quantized checkpoints); the KV cache per token and
    GPU is layers per pipeline stage x KV heads per GPU x head_dim x 2 (K and V) x bytes per element,
    with KV heads replicated when O(tensor_parallel_size) exceeds them. Activation peaks, CUDA graphs
    and non-torch memory are covered by O(overhead_bytes) alone, so treat results near the limit with
    care.
  - Sliding-window and hybrid (Mamba) layers are sized as full attention, which overestimates their
    KV cache.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff mode when run in check mode).
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  devices:
    description:
      - NVML indexes of the GPUs to consider, as in E(CUDA_VISIBLE_DEVICES) with
        E(CUDA_DEVICE_ORDER=PCI_BUS_ID).
      - Indexes that do not exist are skipped with a warning; the module fails when none exists.
      - All GPUs when omitted.
    type: list
    elements: int
  model_config:
    description:
      - Path on the managed host to a Hugging Face C(config.json), or to a directory holding one.
      - Multimodal configs (with C(text_config)) are sized by their language model.
      - A C(quantization_config) in it sets the quantization when O(quantization) is not given.
      - Mutually exclusive with O(model_params).
    type: path
  model_params:
    description:
      - Parameter count of the model, for sizing without a C(config.json).
      - Give O(num_layers), O(num_kv_heads) and O(head_dim) too to size the KV cache; without them only
        the weights are checked, and RV(sizing.reason) says so.
    type: float
  num_layers:
    description:
      - Number of decoder layers. With O(model_config), overrides the config.
    type: int
  num_attention_heads:
    description:
      - Number of attention heads; O(tensor_parallel_size) must divide it. With O(model_config),
        overrides the config.
    type: int
  num_kv_heads:
    description:
      - Number of key/value heads (grouped-query attention). Defaults to O(num_attention_heads).
        With O(model_config), overrides the config.
    type: int
  head_dim:
    description:
      - Dimension of one attention head. With O(model_config), overrides the config.
    type: int
  dtype:
    description:
      - vLLM C(--dtype). V(auto) means 16-bit (vLLM also runs float32 checkpoints in 16-bit under V(auto)).
    type: str
    default: auto
    choices: [auto, bfloat16, float16, half, float32, float]
  quantization:
    description:
      - vLLM C(--quantization). Sets the bytes per parameter, 1 for 8-bit methods (V(fp8), V(int8),
        V(w8a8), V(fbgemm_fp8), V(compressed-tensors), ...) and 0.5 for 4-bit ones (V(awq), V(gptq),
        V(awq_marlin), V(gptq_marlin), V(bitsandbytes), V(mxfp4), V(nvfp4), V(gguf), ...).
      - When omitted, the checkpoint's C(quantization_config) decides, and without one the model is
        sized in O(dtype).
      - An unknown value fails and lists the accepted ones.
    type: str
  kv_cache_dtype:
    description:
      - vLLM C(--kv-cache-dtype). V(auto) follows the model's activation dtype; the fp8 variants halve
        the KV cache of a 16-bit model.
    type: str
    default: auto
    choices: [auto, fp8, fp8_e4m3, fp8_e5m2, fp8_inc, fp8_ds_mla, bfloat16, float16, half]
  max_model_len:
    description:
      - vLLM C(--max-model-len), the longest sequence (prompt and output) in tokens.
      - Defaults to the context length in O(model_config) (C(max_position_embeddings), with rope
        scaling applied); required to size the KV cache when the config gives none or O(model_params)
        is used with the KV options.
    type: int
  max_num_seqs:
    description:
      - vLLM C(--max-num-seqs). A warning is given when fewer sequences of O(max_model_len) fit in the
        KV cache at once.
    type: int
    default: 256
  tensor_parallel_size:
    description:
      - vLLM C(--tensor-parallel-size), the GPUs that share each layer.
    type: int
    default: 1
  pipeline_parallel_size:
    description:
      - vLLM C(--pipeline-parallel-size), the GPUs that hold consecutive groups of layers.
    type: int
    default: 1
  gpu_memory_utilization:
    description:
      - vLLM C(--gpu-memory-utilization), the share of each GPU's memory vLLM may use, in (0, 1].
    type: float
    default: 0.9
  overhead_bytes:
    description:
      - Memory per GPU held back from the KV cache for activations, CUDA graphs and non-torch memory
        (NCCL, the CUDA context).
    type: int
    default: 2147483648
  cuda_version:
    description:
      - CUDA version of the vLLM/PyTorch wheels. Sets the minimum driver from NVIDIA's release notes
        (12.1 needs 530, 12.4 550, 12.6 560, 12.8 570, 12.9 575, 13.x 580).
    type: str
    default: "12.9"
  min_driver_version:
    description:
      - Minimum NVIDIA driver version, overriding the one derived from O(cuda_version).
    type: str
  min_compute_capability:
    description:
      - Lowest CUDA compute capability accepted for every considered GPU (vLLM needs 7.0, Volta).
    type: str
    default: "7.0"
  gpu_memory_total_bytes:
    description:
      - Memory of one GPU in bytes to size against instead of asking NVML, for planning on a host
        without GPUs. No NVML call is made, so no driver or GPU checks are done and RV(gpus) is empty.
    type: int
  fail_on_unfit:
    description:
      - Fail with RV(sizing.reason) when the model does not fit.
    type: bool
    default: false
seealso:
  - name: vLLM engine arguments
    description: The flags these options mirror.
    link: https://docs.vllm.ai/en/latest/configuration/engine_args.html
"""

EXAMPLES = r"""
- name: Check the driver and list the GPUs
  gpuserve.vllm.gpu_probe:
  register: probe

- name: Size Qwen2.5-7B-Instruct on GPUs 0 and 1 and stop if it cannot start
  gpuserve.vllm.gpu_probe:
    devices: [0, 1]
    model_config: /srv/models/Qwen2.5-7B-Instruct
    max_model_len: 32768
    tensor_parallel_size: 2
    kv_cache_dtype: fp8
    fail_on_unfit: true

- name: Plan a 70B model on 80 GB GPUs from the controller, without GPUs
  gpuserve.vllm.gpu_probe:
    model_params: 70.6e9
    num_layers: 80
    num_attention_heads: 64
    num_kv_heads: 8
    head_dim: 128
    max_model_len: 8192
    tensor_parallel_size: 4
    gpu_memory_total_bytes: 85899345920
  delegate_to: localhost
  register: plan

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ plan.sizing.reason }}"
"""

RETURN = r"""
gpu_count:
  description: Number of GPUs NVML sees on the host, including those not in O(devices).
  returned: always; null when O(gpu_memory_total_bytes) was given
  type: int
  sample: 2
gpus:
  description: The considered GPUs (O(devices), or all). Empty when O(gpu_memory_total_bytes) was given.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: NVML index.
      type: int
      sample: 0
    name:
      description: Product name.
      type: str
      sample: NVIDIA H100 80GB HBM3
    uuid:
      description: GPU UUID.
      type: str
      sample: GPU-5e0b7c55-2f0f-7e2b-2a85-3e1c0f6a9d11
    memory_total:
      description: Memory in bytes.
      type: int
      sample: 85520809984
    memory_free:
      description: Free memory in bytes.
      type: int
      sample: 84929347584
    memory_used:
      description: Used memory in bytes.
      type: int
      sample: 591462400
    compute_capability:
      description: CUDA compute capability.
      type: str
      sample: "9.0"
    persistence_mode:
      description: Whether persistence mode is on; null where the driver does not report it.
      type: bool
      sample: true
    pci_bus_id:
      description: PCI bus id.
      type: str
      sample: "00000000:18:00.0"
driver_version:
  description: NVIDIA driver version.
  returned: always; null when O(gpu_memory_total_bytes) was given
  type: str
  sample: "570.86.15"
cuda_driver_version:
  description: Newest CUDA version the driver supports.
  returned: always; null when O(gpu_memory_total_bytes) was given
  type: str
  sample: "12.8"
nvml_version:
  description: NVML library version.
  returned: always; null when O(gpu_memory_total_bytes) was given
  type: str
  sample: "12.570.86.15"
min_driver_version:
  description: Minimum driver version enforced (O(min_driver_version), or the one for O(cuda_version)).
  returned: always
  type: str
  sample: "575"
fits:
  description: Whether the model fits; same as RV(sizing.fits).
  returned: always; null when no model was given
  type: bool
  sample: true
sizing:
  description: The sizing of the model on each GPU of the parallel group.
  returned: always; null when no model was given
  type: dict
  contains:
    architecture:
      description: Architecture from the config, or null.
      type: str
      sample: Qwen2ForCausalLM
    quantization:
      description: Quantization the sizing used (given, or read from the config), or null.
      type: str
      sample: awq
    dtype:
      description: O(dtype) used.
      type: str
      sample: auto
    kv_cache_dtype:
      description: O(kv_cache_dtype) used.
      type: str
      sample: auto
    num_params:
      description: Parameter count (estimated from the config, or O(model_params)).
      type: int
      sample: 7615616512
    bytes_per_param:
      description: Bytes per weight for O(dtype) and the quantization.
      type: float
      sample: 2.0
    weight_bytes_total:
      description: Weights of the whole model in bytes.
      type: int
      sample: 15231233024
    weight_bytes_per_gpu:
      description: Weights per GPU, the total over O(tensor_parallel_size) x O(pipeline_parallel_size).
      type: int
      sample: 7615616512
    kv_bytes_per_token:
      description:
        - KV cache bytes per token on one GPU (its layers and its KV heads); null when the KV shape is unknown.
      type: int
      sample: 28672
    kv_bytes_per_token_model:
      description: KV cache bytes per token of the whole model over all GPUs; null when the KV shape is unknown.
      type: int
      sample: 57344
    gpu_memory_total_bytes:
      description: Memory of the smallest GPU of the group (or O(gpu_memory_total_bytes)).
      type: int
      sample: 85520809984
    usable_bytes_per_gpu:
      description: Memory vLLM may use per GPU, total x O(gpu_memory_utilization).
      type: int
      sample: 76968728985
    overhead_bytes:
      description: O(overhead_bytes).
      type: int
      sample: 2147483648
    kv_budget_bytes_per_gpu:
      description: Usable memory minus weights and overhead per GPU, not below 0.
      type: int
      sample: 67205628576
    kv_tokens_capacity:
      description: Tokens the KV cache holds; null when the KV shape is unknown.
      type: int
      sample: 2343945
    max_model_len:
      description: O(max_model_len) used, or null.
      type: int
      sample: 32768
    max_num_seqs:
      description: O(max_num_seqs).
      type: int
      sample: 256
    max_concurrency_at_max_model_len:
      description: Sequences of O(max_model_len) tokens the KV cache holds at once; null when the KV shape is unknown.
      type: float
      sample: 71.532
    tensor_parallel_size:
      description: O(tensor_parallel_size).
      type: int
      sample: 2
    pipeline_parallel_size:
      description: O(pipeline_parallel_size).
      type: int
      sample: 1
    gpu_memory_utilization:
      description: O(gpu_memory_utilization).
      type: float
      sample: 0.9
    fits:
      description:
        - Whether vLLM can start with these settings; false when weights and overhead exceed the usable
          memory or the KV cache cannot hold one sequence of O(max_model_len).
      type: bool
      sample: true
    reason:
      description: The verdict with sizes in GiB; when it does not fit, the flags to change.
      type: str
      sample: >-
        Fits: 7.09 GiB of weights and 2.00 GiB overhead per GPU leave 62.59 GiB of KV cache
        (79.65 GiB x gpu_memory_utilization 0.90 = 71.68 GiB usable per GPU), 2,343,945 tokens at
        28,672 bytes per token: 71.53 sequences of max_model_len 32768 at once.
    warnings:
      description: Concerns that do not stop vLLM from starting (also given as module warnings).
      type: list
      elements: str
      sample: []
"""

import dataclasses
import json
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.gpuserve.vllm.plugins.module_utils.nvml import (
    DRIVER_ROLE,
    HAS_PYNVML,
    PYNVML_IMPORT_ERROR,
    NvmlError,
    probe,
)
from ansible_collections.gpuserve.vllm.plugins.module_utils.sizing import (
    ModelShape,
    min_driver_for_cuda,
    plan,
    quantization_from_hf_config,
    shape_from_hf_config,
    version_tuple,
)

ARGUMENT_SPEC: dict[str, Any] = dict(
    devices=dict(type="list", elements="int"),
    model_config=dict(type="path"),
    model_params=dict(type="float"),
    num_layers=dict(type="int"),
    num_attention_heads=dict(type="int"),
    num_kv_heads=dict(type="int"),
    head_dim=dict(type="int"),
    dtype=dict(type="str", default="auto",
               choices=["auto", "bfloat16", "float16", "half", "float32", "float"]),
    quantization=dict(type="str"),
    kv_cache_dtype=dict(type="str", default="auto",
                        choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla",
                                 "bfloat16", "float16", "half"]),
    max_model_len=dict(type="int"),
    max_num_seqs=dict(type="int", default=256),
    tensor_parallel_size=dict(type="int", default=1),
    pipeline_parallel_size=dict(type="int", default=1),
    gpu_memory_utilization=dict(type="float", default=0.9),
    overhead_bytes=dict(type="int", default=2 * 1024 ** 3),
    cuda_version=dict(type="str", default="12.9"),
    min_driver_version=dict(type="str"),
    min_compute_capability=dict(type="str", default="7.0"),
    gpu_memory_total_bytes=dict(type="int"),
    fail_on_unfit=dict(type="bool", default=False),
)


def load_shape(module: AnsibleModule) -> tuple[ModelShape | None, str | None]:
    """The model to size and the quantization its config declares; (None, None) without a model."""
    params = module.params
    overrides = {
        key: params[key]
        for key in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim")
        if params[key] is not None
    }
    if params["model_config"]:
        path = params["model_config"]
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        try:
            with open(path, encoding="utf-8") as handle:
                cfg = json.load(handle)
        except (OSError, ValueError) as err:
            module.fail_json(msg="Cannot read the model config %s: %s" % (path, err))
        if not isinstance(cfg, dict):
            module.fail_json(msg="The model config %s is not a JSON object" % path)
        try:
            shape = shape_from_hf_config(cfg)
        except (TypeError, ValueError) as err:
            module.fail_json(msg="Cannot size the model in %s: %s" % (path, err))
        if overrides:
            shape = dataclasses.replace(shape, **overrides)
        return shape, quantization_from_hf_config(cfg)
    if params["model_params"] is not None:
        if params["model_params"] <= 0:
            module.fail_json(msg="model_params must be a positive parameter count")
        heads = overrides.get("num_attention_heads")
        shape = ModelShape(
            num_params=int(params["model_params"]),
            num_layers=overrides.get("num_layers"),
            num_attention_heads=heads,
            num_kv_heads=overrides.get("num_kv_heads", heads),
            head_dim=overrides.get("head_dim"),
            architecture=None,
        )
        return shape, None
    return None, None


def check_gpus(module: AnsibleModule, info: dict[str, Any], min_driver: str) -> None:
    """Fail on no GPU, too low a compute capability, or too old a driver.

    ``info`` is the module result with probe()'s keys; failures return it too.
    """
    params = module.params
    devices = params["devices"]
    if not info["gpu_count"]:
        module.fail_json(
            msg="NVML sees no NVIDIA GPU on this host (driver %s). Check that the GPU is attached "
                "and that the %s role installed a driver for it." % (info["driver_version"], DRIVER_ROLE),
            **info)
    if devices is not None:
        found = [gpu["index"] for gpu in info["gpus"]]
        missing = [d for d in devices if d not in found]
        if not found:
            module.fail_json(
                msg="None of the GPUs in devices (%s) exist; this host has %d GPU(s), indexes 0 to %d."
                    % (", ".join(str(d) for d in devices), info["gpu_count"], info["gpu_count"] - 1),
                **info)
        if missing:
            module.warn("devices %s do not exist on this host (GPUs 0 to %d); they are left out."
                        % (", ".join(str(d) for d in missing), info["gpu_count"] - 1))
    try:
        min_cc = version_tuple(params["min_compute_capability"])
    except ValueError as err:
        module.fail_json(msg="min_compute_capability: %s" % err)
    for gpu in info["gpus"]:
        if version_tuple(gpu["compute_capability"]) < min_cc:
            module.fail_json(
                msg="GPU %d (%s) has compute capability %s, below the minimum %s that vLLM needs; "
                    "leave it out with devices / CUDA_VISIBLE_DEVICES, or lower min_compute_capability."
                    % (gpu["index"], gpu["name"], gpu["compute_capability"],
                       params["min_compute_capability"]),
                **info)
    if version_tuple(info["driver_version"]) < version_tuple(min_driver):
        module.fail_json(
            msg="NVIDIA driver %s is older than %s, the minimum for CUDA %s wheels (cuda_version). "
                "Upgrade the driver with the %s role, install wheels for an older CUDA (and set "
                "cuda_version), or override with min_driver_version."
                % (info["driver_version"], min_driver, params["cuda_version"], DRIVER_ROLE),
            **info)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("model_config", "model_params")],
        supports_check_mode=True,
    )
    params = module.params

    if params["min_driver_version"]:
        min_driver = params["min_driver_version"]
    else:
        try:
            min_driver = min_driver_for_cuda(params["cuda_version"])
        except ValueError as err:
            module.fail_json(msg="cuda_version: %s" % err)
    try:
        version_tuple(min_driver)
    except ValueError as err:
        module.fail_json(msg="min_driver_version: %s" % err)

    result: dict[str, Any] = dict(
        changed=False,
        gpu_count=None,
        gpus=[],
        driver_version=None,
        cuda_driver_version=None,
        nvml_version=None,
        min_driver_version=min_driver,
        sizing=None,
        fits=None,
    )

    shape, config_quantization = load_shape(module)

    gpu_memory_total = params["gpu_memory_total_bytes"]
    if gpu_memory_total is not None:
        if gpu_memory_total <= 0:
            module.fail_json(msg="gpu_memory_total_bytes must be a positive number of bytes", **result)
    else:
        if not HAS_PYNVML:
            module.fail_json(msg=missing_required_lib("nvidia-ml-py"), exception=PYNVML_IMPORT_ERROR,
                             **result)
        try:
            info = probe(params["devices"])
        except NvmlError as err:
            module.fail_json(msg=str(err), **result)
        result.update(info)
        check_gpus(module, result, min_driver)

    if shape is None:
        module.exit_json(**result)
        return

    tp = params["tensor_parallel_size"]
    pp = params["pipeline_parallel_size"]
    if gpu_memory_total is None:
        group = result["gpus"][:tp * pp]
        if len(group) < tp * pp:
            module.fail_json(
                msg="tensor_parallel_size %d x pipeline_parallel_size %d needs %d GPUs, but only %d "
                    "%s visible%s. Lower tensor_parallel_size / pipeline_parallel_size or add GPUs "
                    "to devices."
                    % (tp, pp, tp * pp, len(group), "is" if len(group) == 1 else "are",
                       " in devices" if params["devices"] is not None else ""),
                **result)
        gpu_memory_total = min(gpu["memory_total"] for gpu in group)

    quantization = params["quantization"] or config_quantization
    max_model_len = params["max_model_len"]
    if max_model_len is None:
        max_model_len = shape.max_position_embeddings
    if max_model_len is None and shape.has_kv_shape:
        module.fail_json(
            msg="max_model_len is required to size the KV cache: the model config gives no "
                "max_position_embeddings.", **result)

    try:
        sizing = plan(
            shape,
            dtype=params["dtype"],
            quantization=quantization,
            kv_cache_dtype=params["kv_cache_dtype"],
            max_model_len=max_model_len,
            max_num_seqs=params["max_num_seqs"],
            tensor_parallel_size=tp,
            pipeline_parallel_size=pp,
            gpu_memory_utilization=params["gpu_memory_utilization"],
            gpu_memory_total_bytes=gpu_memory_total,
            overhead_bytes=params["overhead_bytes"],
        )
    except ValueError as err:
        hint = ""
        if quantization and not params["quantization"] and "quantization" in str(err):
            hint = " (read from the model config's quantization_config; set quantization to override)"
        module.fail_json(msg="Cannot size the model: %s%s" % (err, hint), **result)

    sizing.update(
        architecture=shape.architecture,
        quantization=quantization,
        dtype=params["dtype"],
        kv_cache_dtype=params["kv_cache_dtype"],
    )
    for gpu in result["gpus"][:tp * pp]:
        if gpu["memory_free"] < sizing["usable_bytes_per_gpu"]:
            sizing["warnings"].append(
                "GPU %d has %.2f GiB free, less than the %.2f GiB vLLM will claim "
                "(gpu_memory_utilization %.2f); vLLM refuses to start unless that memory is freed "
                "(it may be held by the vLLM instance this model replaces)."
                % (gpu["index"], gpu["memory_free"] / 1024.0 ** 3,
                   sizing["usable_bytes_per_gpu"] / 1024.0 ** 3, params["gpu_memory_utilization"]))
    for warning in sizing["warnings"]:
        module.warn(warning)
    result.update(sizing=sizing, fits=sizing["fits"])

    if params["fail_on_unfit"] and not sizing["fits"]:
        module.fail_json(msg=sizing["reason"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
