# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NVML wrapper against patched pynvml functions.

Patching pynvml is the one unavoidable fake here: CI has no GPU and no NVIDIA driver. Only the
NVML C calls are replaced (with unittest.mock); pynvml's own error classes are the real ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

pynvml = pytest.importorskip("pynvml")

from ansible_collections.gpuserve.vllm.plugins.module_utils import nvml  # noqa: E402


@contextlib.contextmanager
def _patch(**overrides: Any) -> Iterator[dict[str, Any]]:
    """Patch the NVML calls pynvml makes; yields the mocks by name."""
    handles = ["h0", "h1"]
    calls: dict[str, Any] = dict(
        nvmlInit=mock.MagicMock(),
        nvmlShutdown=mock.MagicMock(),
        nvmlDeviceGetCount=mock.MagicMock(return_value=2),
        nvmlSystemGetDriverVersion=mock.MagicMock(return_value=b"575.57.08"),
        nvmlSystemGetCudaDriverVersion_v2=mock.MagicMock(return_value=12090),
        nvmlSystemGetCudaDriverVersion=mock.MagicMock(return_value=12090),
        nvmlSystemGetNVMLVersion=mock.MagicMock(return_value="12.575.57.08"),
        nvmlDeviceGetHandleByIndex=mock.MagicMock(side_effect=lambda i: handles[i]),
        nvmlDeviceGetName=mock.MagicMock(side_effect=lambda h: b"NVIDIA H100 80GB HBM3"),
        nvmlDeviceGetUUID=mock.MagicMock(side_effect=lambda h: "GPU-%s" % h),
        nvmlDeviceGetMemoryInfo=mock.MagicMock(
            return_value=SimpleNamespace(total=85520809984, free=84929347584, used=591462400)),
        nvmlDeviceGetCudaComputeCapability=mock.MagicMock(return_value=(9, 0)),
        nvmlDeviceGetPersistenceMode=mock.MagicMock(return_value=1),
        nvmlDeviceGetPciInfo=mock.MagicMock(return_value=SimpleNamespace(busId=b"00000000:18:00.0")),
    )
    calls.update(overrides)
    with mock.patch.multiple(pynvml, **calls):
        yield calls


def test_probe_reads_everything_and_decodes_bytes() -> None:
    with _patch() as mocks:
        info = nvml.probe(None)
    assert info["driver_version"] == "575.57.08"
    assert info["cuda_driver_version"] == "12.9"
    assert info["nvml_version"] == "12.575.57.08"
    assert info["gpu_count"] == 2
    assert [g["index"] for g in info["gpus"]] == [0, 1]
    gpu = info["gpus"][0]
    assert gpu == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-h0",
        "memory_total": 85520809984,
        "memory_free": 84929347584,
        "memory_used": 591462400,
        "compute_capability": "9.0",
        "persistence_mode": True,
        "pci_bus_id": "00000000:18:00.0",
    }
    mocks["nvmlShutdown"].assert_called_once_with()


def test_probe_filters_devices_and_skips_missing() -> None:
    with _patch():
        info = nvml.probe([1, 5, 1])
    assert info["gpu_count"] == 2
    assert [g["index"] for g in info["gpus"]] == [1]


def test_cuda_13_and_v1_fallback() -> None:
    v2_missing = mock.MagicMock(side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND))
    with _patch(nvmlSystemGetCudaDriverVersion_v2=v2_missing,
                nvmlSystemGetCudaDriverVersion=mock.MagicMock(return_value=13000)):
        assert nvml.probe([])["cuda_driver_version"] == "13.0"


def test_persistence_mode_not_supported_is_none() -> None:
    unsupported = mock.MagicMock(side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED))
    with _patch(nvmlDeviceGetPersistenceMode=unsupported):
        assert nvml.probe([0])["gpus"][0]["persistence_mode"] is None


@pytest.mark.parametrize(
    "code,needle",
    [
        ("NVML_ERROR_LIBRARY_NOT_FOUND", "gpuserve.vllm.nvidia_driver"),
        ("NVML_ERROR_DRIVER_NOT_LOADED", "no NVIDIA driver is loaded"),
        ("NVML_ERROR_NO_PERMISSION", "/dev/nvidia"),
        ("NVML_ERROR_LIB_RM_VERSION_MISMATCH", "reboot"),
    ],
)
def test_init_failure_explains(code: str, needle: str) -> None:
    err = pynvml.NVMLError(getattr(pynvml, code))
    with _patch(nvmlInit=mock.MagicMock(side_effect=err)) as mocks:
        with pytest.raises(nvml.NvmlError) as raised:
            nvml.probe(None)
    assert str(raised.value).startswith("NVML could not be initialised (")
    assert needle in str(raised.value)
    mocks["nvmlShutdown"].assert_not_called()  # nothing to shut down


def test_library_not_found_message() -> None:
    with _patch(nvmlInit=mock.MagicMock(side_effect=pynvml.NVMLError_LibraryNotFound())):
        with pytest.raises(nvml.NvmlError) as raised:
            nvml.probe(None)
    assert str(raised.value) == (
        "NVML could not be initialised (NVML Shared Library Not Found): no NVIDIA driver is loaded "
        "on this host; install one with the gpuserve.vllm.nvidia_driver role"
    )


def test_query_failure_still_shuts_down() -> None:
    lost = mock.MagicMock(side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST))
    with _patch(nvmlDeviceGetMemoryInfo=lost) as mocks:
        with pytest.raises(nvml.NvmlError, match="GPU is lost"):
            nvml.probe(None)
    mocks["nvmlShutdown"].assert_called_once_with()


def test_missing_pynvml_raises() -> None:
    with mock.patch.object(nvml, "HAS_PYNVML", False):
        with pytest.raises(nvml.NvmlError, match="nvidia-ml-py"):
            nvml.probe(None)
