"""Backend dispatch: NumPy without CuPy, GPUOPT_BACKEND, what info() reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuopt as go
from gpuopt import backend

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter (a clean sys.modules) with extra env vars."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=120)


def test_import_without_cupy_when_forced_numpy():
    code = """
import json, sys
import numpy as np
import gpuopt as go
assert 'cupy' not in sys.modules, 'import gpuopt imported cupy'
info = go.backend.info()
p = np.ones(3)
opt = go.Adam(0.1)
opt.step(p, np.ones(3), opt.init(p))
assert 'cupy' not in sys.modules, 'a NumPy step imported cupy'
print(json.dumps({"info": info, "p": p.tolist()}))
"""
    out = run_python(code, GPUOPT_BACKEND="numpy")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    info = got["info"]
    assert info["forced_numpy"] is True and info["cupy"] is None
    assert info["devices"] == [] and info["default_backend"] == "numpy"
    np.testing.assert_allclose(got["p"], 0.9)  # Adam's first step is lr * sign(g)


def test_plain_import_does_not_import_cupy():
    out = run_python("import sys, gpuopt; print('cupy' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_info_fields():
    info = backend.info()
    assert set(info) >= {"numpy", "cupy", "forced_numpy", "devices", "default_backend"}
    assert info["numpy"] == np.__version__
    assert isinstance(info["devices"], list) and all(isinstance(d, str) for d in info["devices"])
    assert info["default_backend"] == ("cupy" if info["devices"] else "numpy")
    assert info["cupy"] is None or isinstance(info["cupy"], str)
    assert len(info["devices"]) == backend.device_count()
    assert backend.gpu_available() == bool(info["devices"])


@pytest.mark.parametrize("value", ["tpu", "nunpy", "1"])
def test_invalid_backend_value_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("GPUOPT_BACKEND", value)
    with pytest.raises(ValueError, match="GPUOPT_BACKEND"):
        backend.info()
    with pytest.raises(ValueError, match=value):
        backend.forced_numpy()
    with pytest.raises(ValueError, match="GPUOPT_BACKEND"):
        backend.get_xp("auto")


@pytest.mark.parametrize("value", ["numpy", " NumPy ", "auto", "cupy", ""])
def test_valid_backend_values(monkeypatch, value):
    monkeypatch.setenv("GPUOPT_BACKEND", value)
    assert backend.forced_numpy() == (value.strip().lower() == "numpy")
    if backend.forced_numpy():
        assert backend.cupy_module() is None
        assert backend.device_count() == 0 and not backend.gpu_available()
        assert backend.info()["forced_numpy"] is True


def test_forced_numpy_refuses_gpu(monkeypatch):
    monkeypatch.setenv("GPUOPT_BACKEND", "numpy")
    with pytest.raises(RuntimeError, match="gpu"):
        backend.get_xp("gpu")
    assert backend.get_xp("auto") is np
    assert backend.get_xp("cpu") is np


def test_get_xp_names_the_device():
    with pytest.raises(ValueError, match="device"):
        backend.get_xp("tpu")


def test_array_module_with_numpy_arrays():
    assert backend.array_module(("a", np.zeros(2)), ("b", 1.0)) is np
    assert backend.array_module() is np
    assert backend.is_array(np.zeros(1)) and not backend.is_array([0.0])
    assert not backend.is_cupy_array(np.zeros(1))


def test_array_module_refuses_cupy_when_forced_numpy(monkeypatch):
    cp = pytest.importorskip("cupy", reason="needs CuPy to build a CuPy array")
    if not backend.gpu_available():
        pytest.skip("CuPy sees no GPU")
    a = cp.zeros(2)
    assert backend.array_module(("a", a)) is cp
    with pytest.raises(TypeError, match=r"b.*NumPy|NumPy.*b"):
        backend.array_module(("a", a), ("b", np.zeros(2)))
    monkeypatch.setenv("GPUOPT_BACKEND", "numpy")
    with pytest.raises(TypeError, match="GPUOPT_BACKEND"):
        backend.array_module(("a", a))


def test_dtype_helpers():
    assert backend.compute_dtype(np.float16) == np.float32
    assert backend.compute_dtype(np.float32) == np.float32
    assert backend.compute_dtype("float64") == np.float64
    a = np.arange(3.0)
    assert backend.to_numpy(a) is a


def test_public_names():
    for name in go.__all__:
        assert hasattr(go, name), name
    assert set(go.OPTIMIZERS) >= {"sgd", "heavy_ball", "nesterov", "newton", "adagrad", "rmsprop",
                                  "adadelta", "adam", "adamw"}


def test_misspelt_backend_variable_is_refused_on_the_numpy_path_too(monkeypatch):
    import gpuopt as go

    monkeypatch.setenv("GPUOPT_BACKEND", "nunpy")
    x = np.zeros(3)
    with pytest.raises(ValueError, match="GPUOPT_BACKEND"):
        go.SGD(lr=0.1).step(x, np.ones(3), go.SGD(lr=0.1).init(x))
    assert not x.any()  # refused before anything changed
