"""Which array library runs a computation: NumPy on the CPU, CuPy on the GPU.

The array decides. A computation handed NumPy arrays runs the NumPy path; handed
CuPy arrays it runs the CuPy kernels; handed both it refuses. gpuopt never imports
CuPy on its own at import time, so ``import gpuopt`` works on machines without CuPy
or a GPU. ``GPUOPT_BACKEND=numpy`` in the environment forces the NumPy path:
CuPy is then reported unavailable and CuPy arrays are refused.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def forced_numpy() -> bool:
    """True when ``GPUOPT_BACKEND=numpy`` forces the NumPy fallback."""
    value = os.environ.get("GPUOPT_BACKEND", "").strip().lower()
    if value not in ("", "numpy", "auto", "cupy"):
        raise ValueError(f"GPUOPT_BACKEND must be 'numpy', 'cupy' or 'auto', not {value!r}")
    return value == "numpy"


@functools.lru_cache(maxsize=1)
def _import_cupy() -> ModuleType | None:
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


def cupy_module() -> ModuleType | None:
    """The CuPy module, or None when CuPy is not importable or is switched off."""
    if forced_numpy():
        return None
    return _import_cupy()


def device_count() -> int:
    """Number of CUDA devices CuPy sees (0 without CuPy or without a GPU)."""
    cp = cupy_module()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


def gpu_available() -> bool:
    """True when CuPy is importable and sees at least one device."""
    return device_count() > 0


def info() -> dict:
    """What this process can run on: versions, the default backend, devices seen."""
    cp = cupy_module()
    devices = []
    if cp is not None:
        for i in range(device_count()):
            props = cp.cuda.runtime.getDeviceProperties(i)
            name = props["name"]
            devices.append(name.decode() if isinstance(name, bytes) else str(name))
    return {
        "numpy": np.__version__,
        "cupy": None if cp is None else cp.__version__,
        "forced_numpy": forced_numpy(),
        "devices": devices,
        "default_backend": "cupy" if devices else "numpy",
    }


def is_cupy_array(a) -> bool:
    """True for a CuPy ndarray, decided without importing CuPy."""
    return type(a).__module__.split(".")[0] == "cupy"


def is_array(a) -> bool:
    return isinstance(a, np.ndarray) or is_cupy_array(a)


def array_module(*named: tuple[str, object]) -> ModuleType:
    """The array module of the arrays given as ``(name, array)`` pairs.

    NumPy arrays and Python scalars give NumPy; CuPy arrays give CuPy. Mixing the two
    is a ``TypeError`` naming one argument of each kind.
    """
    forced = forced_numpy()  # also refuses a misspelt GPUOPT_BACKEND on the NumPy path
    numpy_name = cupy_name = None
    for name, a in named:
        if is_cupy_array(a):
            cupy_name = cupy_name or name
        elif isinstance(a, np.ndarray):
            numpy_name = numpy_name or name
    if cupy_name is None:
        return np
    if numpy_name is not None:
        raise TypeError(
            f"{numpy_name} is a NumPy array but {cupy_name} is a CuPy array: "
            "hand all arrays of one call on the same device"
        )
    if forced:
        raise TypeError(f"{cupy_name} is a CuPy array, but GPUOPT_BACKEND=numpy forbids CuPy")
    return _import_cupy()


def get_xp(device: str = "auto") -> ModuleType:
    """The array module for a device name: ``"cpu"``, ``"gpu"`` or ``"auto"``.

    ``"auto"`` picks CuPy when a GPU is seen, else NumPy; ``"gpu"`` without one is an
    error naming ``device``.
    """
    if device == "cpu":
        return np
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError("device='gpu' but CuPy sees no GPU (or GPUOPT_BACKEND=numpy)")
        return cupy_module()
    if device == "auto":
        return cupy_module() if gpu_available() else np
    raise ValueError(f"device must be 'cpu', 'gpu' or 'auto', not {device!r}")


def to_numpy(a):
    """A NumPy copy (or the array itself) of a NumPy or CuPy array."""
    return a.get() if is_cupy_array(a) else np.asarray(a)


def compute_dtype(dtype) -> np.dtype:
    """The dtype the arithmetic runs in: float32 for float16 storage, else the same."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype
