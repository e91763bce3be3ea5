# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_probe's main() end to end: arguments in, JSON result out.

The NVML C calls are patched with unittest.mock. That is the one unavoidable fake: CI has no GPU
and no NVIDIA driver. Everything else (argument parsing, the sizing arithmetic, pynvml's error
classes, the JSON the module prints) is real.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

pynvml = pytest.importorskip("pynvml")

from ansible.module_utils import _internal as module_utils_internal  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.gpuserve.vllm.plugins.modules import gpu_probe  # noqa: E402

H100_BYTES = 85520809984  # what NVML reports for an H100 80GB HBM3
from ansible_collections.gpuserve.vllm.tests.unit.model_configs import QWEN25_7B  # noqa: E402


def gpu(name: str = "NVIDIA H100 80GB HBM3", total: int = H100_BYTES, used: int = 591462400,
        cc: tuple[int, int] = (9, 0)) -> dict[str, Any]:
    return {"name": name, "total": total, "used": used, "cc": cc}


@contextlib.contextmanager
def fake_nvml(gpus: list[dict[str, Any]], driver: str = "575.57.08", cuda: int = 12090,
              init_error: Exception | None = None) -> Iterator[dict[str, Any]]:
    """Patch pynvml's NVML calls to describe ``gpus``; yields the mocks by name."""

    def memory(handle: int) -> SimpleNamespace:
        g = gpus[handle]
        return SimpleNamespace(total=g["total"], used=g["used"], free=g["total"] - g["used"])

    calls: dict[str, Any] = dict(
        nvmlInit=mock.MagicMock(side_effect=init_error),
        nvmlShutdown=mock.MagicMock(),
        nvmlDeviceGetCount=mock.MagicMock(return_value=len(gpus)),
        nvmlSystemGetDriverVersion=mock.MagicMock(return_value=driver),
        nvmlSystemGetCudaDriverVersion_v2=mock.MagicMock(return_value=cuda),
        nvmlSystemGetNVMLVersion=mock.MagicMock(return_value="12.%s" % driver),
        nvmlDeviceGetHandleByIndex=mock.MagicMock(side_effect=lambda i: i),
        nvmlDeviceGetName=mock.MagicMock(side_effect=lambda h: gpus[h]["name"].encode()),
        nvmlDeviceGetUUID=mock.MagicMock(side_effect=lambda h: "GPU-0000000%d" % h),
        nvmlDeviceGetMemoryInfo=mock.MagicMock(side_effect=memory),
        nvmlDeviceGetCudaComputeCapability=mock.MagicMock(side_effect=lambda h: gpus[h]["cc"]),
        nvmlDeviceGetPersistenceMode=mock.MagicMock(return_value=1),
        nvmlDeviceGetPciInfo=mock.MagicMock(
            side_effect=lambda h: SimpleNamespace(busId="00000000:%02X:00.0" % (0x18 + h))),
    )
    with mock.patch.multiple(pynvml, **calls):
        yield calls


def run_module(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    """Run gpu_probe.main() with ``args``; return the JSON it printed.

    Some pytest plugins (testinfra) import Ansible's controller, which makes module warnings go
    to the controller's display instead of the result; run as on a managed host instead.
    """
    with patch_module_args(args), mock.patch.object(module_utils_internal, "is_controller", False):
        with pytest.raises(SystemExit):
            gpu_probe.main()
    return json.loads(capsys.readouterr().out)


def warnings_of(result: dict[str, Any]) -> list[str]:
    """Warning texts; ansible-core 2.19 modules return them as WarningSummary objects."""
    texts = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):
            warning = warning.get("event", {}).get("msg", "")
        texts.append(str(warning))
    return texts


@pytest.fixture
def qwen_dir(tmp_path: Any) -> str:
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    return str(tmp_path)


def test_probe_only(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu(), gpu()]) as mocks:
        result = run_module(capsys, {})
    assert "failed" not in result
    assert result["changed"] is False
    assert result["gpu_count"] == 2
    assert result["driver_version"] == "575.57.08"
    assert result["cuda_driver_version"] == "12.9"
    assert result["nvml_version"] == "12.575.57.08"
    assert result["min_driver_version"] == "575"
    assert result["sizing"] is None and result["fits"] is None
    assert result["gpus"][1] == {
        "index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000001",
        "memory_total": H100_BYTES, "memory_free": H100_BYTES - 591462400, "memory_used": 591462400,
        "compute_capability": "9.0", "persistence_mode": True, "pci_bus_id": "00000000:19:00.0",
    }
    mocks["nvmlShutdown"].assert_called_once_with()


def test_happy_path_sizes_qwen_over_two_gpus(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    with fake_nvml([gpu(), gpu(total=H100_BYTES - 2 ** 30), gpu(total=10)]):
        result = run_module(capsys, {
            "devices": [0, 1], "model_config": qwen_dir, "tensor_parallel_size": 2,
            "max_num_seqs": 32, "kv_cache_dtype": "fp8",
        })
    assert "failed" not in result, result.get("msg")
    assert result["changed"] is False
    assert result["gpu_count"] == 3
    assert [g["index"] for g in result["gpus"]] == [0, 1]
    assert result["fits"] is True
    sizing = result["sizing"]
    assert sizing["fits"] is True
    assert sizing["architecture"] == "Qwen2ForCausalLM"
    assert sizing["max_model_len"] == 32768  # from max_position_embeddings
    assert sizing["gpu_memory_total_bytes"] == H100_BYTES - 2 ** 30  # the smaller of the pair
    assert sizing["weight_bytes_per_gpu"] == 7615616512  # 15.2 GB of bf16 weights over 2 GPUs
    assert sizing["kv_bytes_per_token"] == 28 * 2 * 128 * 2 * 1  # 2 KV heads per GPU, fp8
    assert sizing["kv_bytes_per_token_model"] == 28 * 4 * 128 * 2
    assert sizing["max_concurrency_at_max_model_len"] > 32
    assert sizing["warnings"] == []
    assert set(sizing) >= {
        "weight_bytes_total", "weight_bytes_per_gpu", "kv_bytes_per_token", "kv_bytes_per_token_model",
        "usable_bytes_per_gpu", "kv_budget_bytes_per_gpu", "kv_tokens_capacity",
        "max_concurrency_at_max_model_len", "fits", "reason", "warnings",
    }


def test_library_not_found_points_to_driver_role(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([], init_error=pynvml.NVMLError_LibraryNotFound()):
        result = run_module(capsys, {})
    assert result["failed"] is True
    assert "NVML Shared Library Not Found" in result["msg"]
    assert "gpuserve.vllm.nvidia_driver" in result["msg"]


def test_missing_pynvml_uses_missing_required_lib(capsys: pytest.CaptureFixture[str]) -> None:
    with mock.patch.object(gpu_probe, "HAS_PYNVML", False):
        result = run_module(capsys, {})
    assert result["failed"] is True
    assert "nvidia-ml-py" in result["msg"]
    assert "Failed to import the required Python library" in result["msg"]


def test_old_compute_capability_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu(), gpu(name="Tesla P40", total=24 * 10 ** 9, cc=(6, 1))]):
        result = run_module(capsys, {})
    assert result["failed"] is True
    assert "GPU 1 (Tesla P40) has compute capability 6.1" in result["msg"]
    assert "7.0" in result["msg"]


def test_old_gpu_left_out_with_devices(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu(), gpu(name="Tesla P40", cc=(6, 1))]):
        result = run_module(capsys, {"devices": [0]})
    assert "failed" not in result


def test_old_driver_fails_naming_the_minimum(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu()], driver="570.86.15", cuda=12080):
        result = run_module(capsys, {"cuda_version": "12.9"})
    assert result["failed"] is True
    assert "570.86.15" in result["msg"]
    assert "575" in result["msg"]
    assert "cuda_version" in result["msg"]
    assert result["min_driver_version"] == "575"
    with fake_nvml([gpu()], driver="570.86.15", cuda=12080):
        assert "failed" not in run_module(capsys, {"cuda_version": "12.8"})
    with fake_nvml([gpu()], driver="570.86.15", cuda=12080):
        assert "failed" not in run_module(capsys, {"min_driver_version": "570.86"})


def test_no_gpus_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([]):
        result = run_module(capsys, {})
    assert result["failed"] is True
    assert "no NVIDIA GPU" in result["msg"]


def test_devices_that_do_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu()]):
        result = run_module(capsys, {"devices": [3, 4]})
    assert result["failed"] is True
    assert "None of the GPUs in devices (3, 4) exist" in result["msg"]
    with fake_nvml([gpu()]):
        result = run_module(capsys, {"devices": [0, 4]})
    assert "failed" not in result
    assert any("devices 4 do not exist" in w for w in warnings_of(result))


def test_too_few_gpus_for_tp(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    with fake_nvml([gpu()]):
        result = run_module(capsys, {"model_config": qwen_dir, "tensor_parallel_size": 2})
    assert result["failed"] is True
    assert "tensor_parallel_size 2 x pipeline_parallel_size 1 needs 2 GPUs" in result["msg"]


def test_tp_not_dividing_heads_fails(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    result = run_module(capsys, {"model_config": qwen_dir, "tensor_parallel_size": 3,
                                 "gpu_memory_total_bytes": H100_BYTES})
    assert result["failed"] is True
    assert "allowed values: 1, 2, 4, 28" in result["msg"]


def test_gpu_memory_total_bytes_needs_no_nvml(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    init = mock.MagicMock(side_effect=AssertionError("NVML must not be called"))
    with mock.patch.object(pynvml, "nvmlInit", init), mock.patch.object(gpu_probe, "HAS_PYNVML", False):
        result = run_module(capsys, {"model_config": qwen_dir + "/config.json", "max_model_len": 8192,
                                     "gpu_memory_total_bytes": 24 * 10 ** 9})
    init.assert_not_called()
    assert "failed" not in result, result.get("msg")
    assert result["gpus"] == []
    assert result["gpu_count"] is None and result["driver_version"] is None
    assert result["fits"] is True
    assert result["sizing"]["gpu_memory_total_bytes"] == 24 * 10 ** 9
    assert result["sizing"]["kv_bytes_per_token"] == 57344


def test_fail_on_unfit(capsys: pytest.CaptureFixture[str]) -> None:
    args = {"model_params": 70.6e9, "num_layers": 80, "num_attention_heads": 64, "num_kv_heads": 8,
            "head_dim": 128, "max_model_len": 8192, "gpu_memory_total_bytes": 80 * 10 ** 9}
    result = run_module(capsys, args)
    assert "failed" not in result
    assert result["fits"] is False
    assert "tensor_parallel_size" in result["sizing"]["reason"]
    result = run_module(capsys, dict(args, fail_on_unfit=True))
    assert result["failed"] is True
    assert result["msg"] == result["sizing"]["reason"]
    assert "Raise tensor_parallel_size" in result["msg"]
    result = run_module(capsys, dict(args, fail_on_unfit=True, tensor_parallel_size=4))
    assert "failed" not in result and result["fits"] is True


def test_max_model_len_too_long_fails_on_unfit(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    # 24e9 x 0.8 - 15.23e9 of weights - 2 GiB = 1.82e9 bytes: 31,746 tokens at 57,344 bytes each
    with fake_nvml([gpu(name="NVIDIA L4", total=24 * 10 ** 9, used=0, cc=(8, 9))]):
        result = run_module(capsys, {"model_config": qwen_dir, "gpu_memory_utilization": 0.8,
                                     "fail_on_unfit": True})
    assert result["failed"] is True
    assert "max_model_len 32768" in result["msg"]
    assert "Lower max_model_len (--max-model-len) to at most" in result["msg"]


def test_model_params_without_kv_shape_sizes_weights_only(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_module(capsys, {"model_params": 7e9, "gpu_memory_total_bytes": 80 * 10 ** 9})
    assert result["fits"] is True
    assert result["sizing"]["kv_tokens_capacity"] is None
    assert "KV cache was not sized" in result["sizing"]["reason"]


def test_quantization_read_from_config(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    cfg = dict(QWEN25_7B, quantization_config={"quant_method": "awq", "bits": 4})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    result = run_module(capsys, {"model_config": str(tmp_path), "max_model_len": 4096,
                                 "gpu_memory_total_bytes": 24 * 10 ** 9})
    assert result["sizing"]["quantization"] == "awq"
    assert result["sizing"]["bytes_per_param"] == 0.5
    result = run_module(capsys, {"model_config": str(tmp_path), "quantization": "bogus",
                                 "gpu_memory_total_bytes": 24 * 10 ** 9})
    assert result["failed"] is True
    assert "accepted values" in result["msg"]


def test_missing_config_fails(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    result = run_module(capsys, {"model_config": str(tmp_path), "gpu_memory_total_bytes": 10 ** 10})
    assert result["failed"] is True
    assert "Cannot read the model config" in result["msg"]


def test_busy_gpu_warns(capsys: pytest.CaptureFixture[str], qwen_dir: str) -> None:
    with fake_nvml([gpu(used=40 * 2 ** 30)]):
        result = run_module(capsys, {"model_config": qwen_dir, "max_model_len": 8192, "max_num_seqs": 4})
    assert result["fits"] is True
    assert any("GPU 0 has" in w and "free" in w for w in warnings_of(result))


def test_check_mode_is_read_only(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_nvml([gpu()]):
        result = run_module(capsys, {"_ansible_check_mode": True})
    assert result["changed"] is False
    assert result["gpu_count"] == 1
