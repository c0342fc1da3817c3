"""The activation kernels of ``kernels/act_*.cu`` against the NumPy path
(``pytest -k kernel``).

Each kernel body is compiled for the host by tests/kernel_harness.py and run on
edge values (0, +-1e-30, +-1, +-20, +-90, +-1e30, NaN, ...) and on a dense grid of
ordinary values, in float32 and float64, value-only and DERIV variants; the result
must equal ``gpuopt.nn.activation(_with_derivative)`` on NumPy arrays. With a GPU,
the real CuPy kernels are compared as well. nvcc compile coverage of these files is
in tests/test_kernels.py (it compiles every file of ``kernels/``).
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_harness import require, run_on_cpu

from gpuopt import backend, kernels, nn
from gpuopt.nn import activations

CTYPE = {np.float32: "float", np.float64: "double"}
RTOL = {np.float32: 1e-5, np.float64: 1e-6}
# Values are compared relatively down to the smallest normal number (sigmoid(-90)
# is 8e-40 and must not become 0). Derivatives are O(1) sums and differences
# (tanh's 1 - a^2, gelu's h + z h'(z) crosses 0), so one rounding of an O(1) term is
# an absolute 16 eps.
VALUE_ATOL = {t: float(np.finfo(t).tiny) for t in RTOL}
DERIV_ATOL = {t: 16 * float(np.finfo(t).eps) for t in RTOL}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def _inputs(dtype) -> np.ndarray:
    edge = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 20.0, -20.0, 90.0, -90.0, 1e30, -1e30, np.nan,
            np.inf, -np.inf, 5.0, -5.0, 0.5, -0.75]
    if dtype == np.float64:
        edge += [1e300, -1e300, 1e-300, -1e-300, 800.0, -800.0]
    grid = np.linspace(-40.0, 40.0, 4001)
    return np.concatenate([edge, grid]).astype(dtype)


def _kernel_on_cpu(name, z, deriv):
    flags = frozenset({"DERIV"}) if deriv else frozenset()
    k = kernels.variant(f"act_{name}", flags)
    scalars = activations._kernel_scalars(name)  # what the CuPy launch passes
    inputs = {"z": z, **{q.name: scalars[q.name] for q in k.inputs[1:]}}
    outputs = {q.name: np.full(z.shape, -7.0, z.dtype) for q in k.outputs}
    run_on_cpu(k, CTYPE[z.dtype.type], inputs, outputs)
    return outputs["a"], outputs.get("da")


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
@DTYPES
def test_kernel_activation_on_cpu_matches_numpy(name, dtype):
    """The kernel body on the host equals the NumPy path, value and derivative, NaN
    and infinities in the same places."""
    require("g++")
    z = _inputs(dtype)
    a_k, da_k = _kernel_on_cpu(name, z, deriv=True)
    a_v, none = _kernel_on_cpu(name, z, deriv=False)
    assert none is None
    a_np, da_np = nn.activation_with_derivative(name, z)
    np.testing.assert_allclose(a_k, a_np, rtol=RTOL[dtype], atol=VALUE_ATOL[dtype], equal_nan=True,
                               err_msg=f"{name} value")
    np.testing.assert_allclose(da_k, da_np, rtol=RTOL[dtype], atol=DERIV_ATOL[dtype], equal_nan=True,
                               err_msg=f"{name} derivative")
    # the value-only variant computes the same value as the DERIV variant
    np.testing.assert_array_equal(a_v, a_k)
    np.testing.assert_allclose(nn.activation(name, z), a_k, rtol=RTOL[dtype], atol=VALUE_ATOL[dtype],
                               equal_nan=True)


@DTYPES
def test_kernel_activation_harness_detects_a_wrong_formula(dtype):
    """The comparison above can fail: tanh's kernel against sigmoid's NumPy path."""
    require("g++")
    z = _inputs(dtype)
    a_k, da_k = _kernel_on_cpu("tanh", z, deriv=True)
    a_np, da_np = nn.activation_with_derivative("sigmoid", z)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(a_k, a_np, rtol=RTOL[dtype], atol=VALUE_ATOL[dtype], equal_nan=True)


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_kernel_activation_files_declare_the_launch_parameters(name):
    """Every act_ kernel takes ``z`` first and then scalars the launcher knows, and
    writes ``a`` (and ``da`` in its DERIV variant): what ``_launch`` passes."""
    scalars = activations._kernel_scalars(name)
    for flags, outs in ((frozenset(), ["a"]), (frozenset({"DERIV"}), ["a", "da"])):
        k = kernels.variant(f"act_{name}", flags)
        assert k.inputs[0].name == "z" and k.inputs[0].type == "T"
        assert all(q.type == "F" and q.name in scalars for q in k.inputs[1:])
        assert len(k.inputs) >= 2, "an F parameter is needed for CuPy to type F"
        assert [q.name for q in k.outputs] == outs
        assert all(q.type == "T" for q in k.outputs)
    assert set(kernels.source(f"act_{name}").flags) == {"DERIV"}


def test_kernel_activation_file_for_every_activation():
    assert sorted(n for n in kernels.kernel_names() if n.startswith("act_")) == sorted(
        f"act_{n}" for n in nn.ACTIVATIONS)


@pytest.mark.skipif(not backend.gpu_available(), reason="CuPy sees no GPU")
@pytest.mark.parametrize("name", nn.ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=["float16", "float32", "float64"])
def test_kernel_activation_cupy_matches_numpy(name, dtype):
    """The CuPy kernels equal the NumPy path (float16 computes in float32 on both),
    in place and into given outputs, with one launch for value and derivative."""
    cp = backend.cupy_module()
    with np.errstate(all="ignore"):
        z = np.concatenate([_inputs(np.float32), np.linspace(-8, 8, 1001)]).astype(dtype)
    a_np, da_np = nn.activation_with_derivative(name, z)
    a_cp, da_cp = nn.activation_with_derivative(name, cp.asarray(z))
    assert backend.is_cupy_array(a_cp) and a_cp.dtype == dtype and da_cp.dtype == dtype
    rtol = {np.float16: 2e-3, np.float32: 1e-5, np.float64: 1e-6}[dtype]
    atol = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-14}[dtype]
    # the GPU may contract multiply-adds: a few roundings of O(1) values
    for got, want in ((a_cp, a_np), (da_cp, da_np)):
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True, err_msg=name)
    zc = cp.asarray(z)
    out = nn.activation(name, zc, out=zc)
    assert out is zc
    np.testing.assert_allclose(cp.asnumpy(zc).astype(np.float64), a_np.astype(np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)
