# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A thin, typed wrapper over NVML (the nvidia-ml-py package, imported as pynvml).

probe() reads what gpu_probe needs in one nvmlInit/nvmlShutdown pair and turns every
NVML failure into NvmlError with a message that says what to do about it.
"""

from __future__ import annotations

import traceback
from typing import Any

try:
    import pynvml
except ImportError:
    pynvml = None
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PYNVML = True
    PYNVML_IMPORT_ERROR = None

DRIVER_ROLE = "gpuserve.vllm.nvidia_driver"

# NVML return codes (part of NVML's stable C API, nvml.h) and what they mean for the operator.
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_NO_DRIVER = "no NVIDIA driver is loaded on this host; install one with the %s role" % DRIVER_ROLE
_HINTS: dict[int, str] = {
    NVML_ERROR_DRIVER_NOT_LOADED: _NO_DRIVER,
    NVML_ERROR_LIBRARY_NOT_FOUND: _NO_DRIVER,
    NVML_ERROR_NO_PERMISSION: "this user may not open the NVIDIA devices (/dev/nvidia*); run as "
                              "root (become: true) or fix their permissions",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "the loaded NVIDIA kernel module and the user-space driver "
                                        "differ (upgraded without a reboot?); reboot the host",
}
_DEFAULT_HINT = "check the NVIDIA driver (nvidia-smi), or reinstall it with the %s role" % DRIVER_ROLE


class NvmlError(Exception):
    """NVML is missing, could not be initialised, or a query failed."""


def _text(value: Any) -> str:
    """pynvml returns bytes from older versions and str from newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _error_code(err: BaseException) -> int | None:
    value = getattr(err, "value", None)
    return value if isinstance(value, int) else None


def _cuda_version_string(value: int) -> str:
    """NVML's CUDA driver version int (13000, 12090) -> "13.0", "12.9"."""
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def cuda_driver_version() -> str | None:
    """The CUDA version the loaded driver supports, "13.0" style; NVML must be initialised."""
    for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        func = getattr(pynvml, name, None)
        if func is None:
            continue
        try:
            return _cuda_version_string(int(func()))
        except pynvml.NVMLError:
            continue
    return None


def _persistence_mode(handle: Any) -> bool | None:
    try:
        return int(pynvml.nvmlDeviceGetPersistenceMode(handle)) == int(
            getattr(pynvml, "NVML_FEATURE_ENABLED", 1))
    except pynvml.NVMLError:
        return None  # not supported (e.g. WSL) or not permitted


def _gpu(index: int) -> dict[str, Any]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    pci = pynvml.nvmlDeviceGetPciInfo(handle)
    return {
        "index": index,
        "name": _text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
        "memory_total": int(memory.total),
        "memory_free": int(memory.free),
        "memory_used": int(memory.used),
        "compute_capability": "%d.%d" % (int(major), int(minor)),
        "persistence_mode": _persistence_mode(handle),
        "pci_bus_id": _text(getattr(pci, "busId", "")),
    }


def probe(devices: list[int] | None = None) -> dict[str, Any]:
    """Driver and CUDA versions and the GPUs in ``devices`` (NVML indexes; None: all).

    Indexes in ``devices`` that do not exist are left out of ``gpus``; ``gpu_count`` counts
    every GPU on the host. Raises NvmlError when pynvml is missing or NVML fails.
    """
    if not HAS_PYNVML:
        raise NvmlError(
            "the Python package nvidia-ml-py (pynvml) is not installed on this host: %s"
            % (PYNVML_IMPORT_ERROR or "import failed")
        )
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        code = _error_code(err)
        hint = _HINTS.get(code, _DEFAULT_HINT) if code is not None else _DEFAULT_HINT
        raise NvmlError("NVML could not be initialised (%s): %s" % (_text(err), hint)) from err
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        wanted: list[int] = []
        for index in range(count) if devices is None else devices:
            if int(index) not in wanted:
                wanted.append(int(index))
        return {
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": cuda_driver_version(),
            "nvml_version": _text(pynvml.nvmlSystemGetNVMLVersion()),
            "gpu_count": count,
            "gpus": [_gpu(i) for i in wanted if 0 <= i < count],
        }
    except pynvml.NVMLError as err:
        raise NvmlError("NVML query failed (%s): %s" % (_text(err), _DEFAULT_HINT)) from err
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
