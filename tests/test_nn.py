"""gpuopt.nn: activations (values, derivatives, fused in-place paths, gains) and the
initializations of gpuopt.nn.init (moments, orthogonality, seeds, errors).

References are independent of the code under test: scalar ``math`` formulas in
float64, central finite differences, numerical integration on a fine grid, and
sample moments with tolerances from their standard errors.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuopt import nn
from gpuopt.nn import activations, init

SLOPE = nn.LEAKY_RELU_SLOPE
ALPHA = nn.ELU_ALPHA
C2 = 2.0 * math.sqrt(2.0 / math.pi)


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _gelu_u(x):
    if abs(x) > 1e100:  # x**3 would overflow; u is then -inf or +inf
        return math.copysign(math.inf, x)
    return C2 * (x + 0.044715 * x**3)


# name -> (phi, phi') as scalar float64 formulas from the math module
REFERENCE = {
    "identity": (lambda x: x, lambda x: 1.0),
    "sigmoid": (_sig, lambda x: _sig(x) * _sig(-x)),
    "tanh": (math.tanh, lambda x: 1.0 / math.cosh(x) ** 2 if abs(x) < 300 else 0.0),
    "relu": (lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0),
    "leaky_relu": (lambda x: x if x > 0 else SLOPE * x, lambda x: 1.0 if x > 0 else SLOPE),
    "elu": (lambda x: x if x > 0 else ALPHA * math.expm1(x), lambda x: 1.0 if x > 0 else ALPHA * math.exp(x)),
    "softplus": (lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))), _sig),
    "gelu": (lambda x: x * _sig(_gelu_u(x)),
             lambda x: _sig(_gelu_u(x)) + x * _sig(_gelu_u(x)) * _sig(-_gelu_u(x))
             * C2 * (1 + 3 * 0.044715 * x * x)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * _sig(-x))),
}

# where an activation has a kink, finite differences are not a derivative
KINKS = {"relu": [0.0], "leaky_relu": [0.0]}


def _ref(name, z, which):
    f = REFERENCE[name][which]
    return np.array([f(float(v)) for v in np.ravel(z)]).reshape(np.shape(z))


def test_activation_table_is_complete():
    assert nn.ACTIVATIONS == ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus",
                              "gelu", "silu")
    assert set(REFERENCE) == set(nn.ACTIVATIONS)


# -- values and derivatives against references ------------------------------------------


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_activation_values_and_derivatives_match_math_formulas(name):
    """float64 over [-40, 40] and far tails, relative accuracy in the tails (sigmoid(-90)
    is 8e-40, softplus(-700) is 1e-304: a cancelling formula would lose these)."""
    z = np.concatenate([np.linspace(-40, 40, 8001), [-700.0, -90.0, 90.0, 700.0, 1e-30, -1e-30, 0.0]])
    a, da = nn.activation_with_derivative(name, z)
    # gelu's exp(-|u|) turns the rounding of u (|u| up to 745) into |u| eps relative
    rtol = 2e-12 if name == "gelu" else 1e-13
    np.testing.assert_allclose(a, _ref(name, z, 0), rtol=rtol, atol=1e-300)
    # tanh's 1 - a^2 is absolute-accurate only (as torch's); the rest are relative
    atol = 4e-16 if name == "tanh" else 1e-300
    np.testing.assert_allclose(da, _ref(name, z, 1), rtol=10 * rtol, atol=atol)


def test_activation_gelu_is_the_tanh_approximation():
    """gelu equals 0.5 z (1 + tanh(sqrt(2/pi)(z + 0.044715 z^3))) where that form does
    not cancel, and is within 5e-4 of the exact erf GELU everywhere."""
    z = np.linspace(-3, 8, 2001)
    tanh_form = np.array([0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
                          for x in z])
    np.testing.assert_allclose(nn.activation("gelu", z), tanh_form, rtol=1e-12, atol=1e-15)
    z = np.linspace(-10, 10, 4001)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in z])
    diff = np.abs(nn.activation("gelu", z) - exact)
    assert diff.max() < 5e-4 and diff.max() > 1e-4  # an approximation, and the documented one


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-25, 25, allow_nan=False), min_size=1, max_size=24),
       shape_id=st.integers(0, 2), name=st.sampled_from(nn.ACTIVATIONS))
def test_activation_derivative_matches_central_differences(values, shape_id, name):
    """phi'(z) against (phi(z + h) - phi(z - h)) / 2h, on arrays of several shapes."""
    z = np.array(values)
    z = [z, np.tile(z, (3, 1)), np.tile(z, (2, 2, 1)).transpose(2, 0, 1)][shape_id]
    h = 1e-6 * np.maximum(1.0, np.abs(z))
    for k in KINKS.get(name, []):
        z = np.where(np.abs(z - k) < 4 * h, k + 1.0, z)
    _, da = nn.activation_with_derivative(name, z)
    fd = (nn.activation(name, z + h) - nn.activation(name, z - h)) / (2 * h)
    assert da.shape == z.shape
    np.testing.assert_allclose(da, fd, rtol=1e-6, atol=1e-7)


def test_activation_derivative_check_can_fail():
    """The finite-difference comparison detects a wrong derivative (tanh's for sigmoid's)."""
    z = np.linspace(-3, 3, 101)
    fd = (nn.activation("sigmoid", z + 1e-6) - nn.activation("sigmoid", z - 1e-6)) / 2e-6
    _, wrong = nn.activation_with_derivative("tanh", z)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_activation_low_precision_matches_float64(name, dtype):
    """float32 and float16 storage (float32 math) give the float64 result rounded."""
    z64 = np.linspace(-12, 12, 3001)
    z = z64.astype(dtype)
    a, da = nn.activation_with_derivative(name, z)
    assert a.dtype == dtype and da.dtype == dtype and a.shape == z.shape
    ra, rda = nn.activation_with_derivative(name, z.astype(np.float64))
    eps = float(np.finfo(dtype).eps)
    # gelu's exp(-|u|) has condition number |u|, and u = 2c(z + k z^3) is rounded
    cond = 1 + np.abs(C2 * (z64 + 0.044715 * z64**3)) if name == "gelu" else 1.0
    tol = 4 * eps * cond
    assert np.all(np.abs(a - ra) <= tol * np.abs(ra) + float(np.finfo(dtype).tiny)), name
    assert np.all(np.abs(da - rda) <= tol * np.abs(rda) + 8 * eps), name


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_activation_special_values(name):
    """NaN stays NaN; huge finite inputs give finite results (no overflow); no warnings."""
    z = np.array([np.nan, 1e30, -1e30, 1e300, -1e300, 0.0])
    with np.errstate(all="raise"):
        a, da = nn.activation_with_derivative(name, z)
    assert np.isnan(a[0]) and np.isnan(da[0]) == (name in ("sigmoid", "tanh", "elu", "softplus",
                                                             "gelu", "silu"))
    assert np.isfinite(a[1:]).all() and np.isfinite(da[1:]).all()
    np.testing.assert_allclose(a[1:], _ref(name, z[1:], 0), rtol=1e-15, atol=0)


# -- the fused in-place paths ---------------------------------------------------------


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_activation_in_place_and_layouts_give_the_same_bits(name, dtype):
    """out=z, dout=z, given buffers, value-only, non-contiguous views, and arrays large
    enough for blocks and threads all give exactly the plain call's result."""
    rng = np.random.default_rng(7)
    n = activations._THREAD_MIN + 3 * activations.BLOCK + 5  # threads, partial last block
    z = (rng.standard_normal(n) * 6).astype(dtype)
    a, da = nn.activation_with_derivative(name, z)
    small_a = np.concatenate([nn.activation(name, c) for c in np.array_split(z, 97)])
    np.testing.assert_array_equal(a, small_a)
    np.testing.assert_array_equal(nn.activation(name, z), a)

    z1 = z.copy()
    a1, d1 = nn.activation_with_derivative(name, z1, out=z1)
    assert a1 is z1
    z2 = z.copy()
    a2, d2 = nn.activation_with_derivative(name, z2, dout=z2)
    assert d2 is z2
    z3 = z.copy()
    assert nn.activation(name, z3, out=z3) is z3
    out, dout = np.empty_like(z), np.empty_like(z)
    a4, d4 = nn.activation_with_derivative(name, z, out, dout)
    assert a4 is out and d4 is dout
    for got_a, got_d in ((a1, d1), (a2, d2), (z3, da), (a4, d4)):
        np.testing.assert_array_equal(got_a, a)
        np.testing.assert_array_equal(got_d, da)

    m = z[: 600 * 40].reshape(600, 40)
    for view in (m.T, m[::3, 1::2], np.asfortranarray(m)):
        va, vd = nn.activation_with_derivative(name, view)
        ra, rd = nn.activation_with_derivative(name, np.ascontiguousarray(view))
        np.testing.assert_array_equal(va, ra)
        np.testing.assert_array_equal(vd, rd)
    # a strided output view is written in place
    big = np.zeros((600, 80), dtype)
    nn.activation(name, m, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2], nn.activation(name, m))
    assert not big[:, 1::2].any()


def test_activation_empty_and_scalar_arrays():
    a, da = nn.activation_with_derivative("tanh", np.zeros((0, 3), np.float32))
    assert a.shape == (0, 3) and da.shape == (0, 3)
    a, da = nn.activation_with_derivative("sigmoid", np.array(0.0))
    assert a.shape == () and float(a) == 0.5 and float(da) == 0.25


# -- bad input --------------------------------------------------------------------


def test_activation_bad_input_names_the_argument():
    z = np.zeros(4)
    with pytest.raises(ValueError, match="name"):
        nn.activation("swish", z)
    with pytest.raises(ValueError, match="name"):
        nn.activation_with_derivative("Tanh", z)
    with pytest.raises(TypeError, match="z"):
        nn.activation("tanh", [0.0, 1.0])
    with pytest.raises(TypeError, match="z"):
        nn.activation("tanh", np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="out"):
        nn.activation("tanh", z, out=np.zeros(5))
    with pytest.raises(ValueError, match="out"):
        nn.activation("tanh", z, out=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="dout"):
        nn.activation_with_derivative("tanh", z, dout=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="out and dout"):
        buf = np.zeros(4)
        nn.activation_with_derivative("tanh", z, out=buf, dout=buf)


# -- gains -----------------------------------------------------------------------


def test_gain_literature_values():
    """torch.nn.init.calculate_gain's values (He et al. 2015 for the rectifiers)."""
    assert nn.gain("identity") == 1.0
    assert nn.gain("sigmoid") == 1.0
    assert nn.gain("tanh") == pytest.approx(5 / 3, rel=1e-15)
    assert nn.gain("relu") == pytest.approx(math.sqrt(2), rel=1e-15)
    assert nn.gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)), rel=1e-15)
    assert nn.gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04), rel=1e-15)
    assert nn.gain("leaky_relu", 1.0) == pytest.approx(1.0, rel=1e-15)  # slope 1 is linear


def _second_moment(f, lo=-12.0, hi=12.0, n=480001):
    """E[f(z)^2], z ~ N(0, 1), by the trapezoid rule on a fine grid (independent of
    the Gauss-Hermite quadrature the library uses)."""
    x = np.linspace(lo, hi, n)
    y = np.array([f(v) ** 2 for v in x]) * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return float(np.sum((y[1:] + y[:-1]) / 2) * (x[1] - x[0]))


@pytest.mark.parametrize("name", ["elu", "softplus", "gelu", "silu"])
def test_gain_second_moment_rule(name):
    """g = 1 / sqrt(E[phi(z)^2]) for the activations without a literature value."""
    expected = 1.0 / math.sqrt(_second_moment(REFERENCE[name][0]))
    assert nn.gain(name) == pytest.approx(expected, rel=1e-6)


def test_gain_second_moment_rule_reproduces_the_rectifier_values():
    """The rule, evaluated with the library's quadrature, gives He's sqrt(2) for relu
    and the leaky value: the literature values are this rule's."""
    z, w = nn.gaussian_quadrature()
    for name, param in (("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3)):
        slope = 0.0 if name == "relu" else (SLOPE if param is None else param)
        a = np.where(z > 0, z, slope * z)
        assert 1 / math.sqrt(w @ (a * a)) == pytest.approx(nn.gain(name, param), rel=1e-13)


def test_gain_elu_alpha_param():
    f = lambda x: x if x > 0 else 0.5 * math.expm1(x)  # noqa: E731
    assert nn.gain("elu", 0.5) == pytest.approx(1 / math.sqrt(_second_moment(f)), rel=1e-6)


def test_gain_bad_input():
    with pytest.raises(ValueError, match="name"):
        nn.gain("selu")
    with pytest.raises(ValueError, match="param"):
        nn.gain("tanh", 0.1)
    with pytest.raises(ValueError, match="param"):
        nn.gain("leaky_relu", -0.1)
    with pytest.raises(ValueError, match="param"):
        nn.gain("leaky_relu", math.nan)


def test_gaussian_quadrature_moments_and_kinks():
    """Gaussian moments E[Z^k] = (k-1)!!, and integrands with a kink at 0 (E|Z| =
    sqrt(2/pi), E[relu(Z)^2] = 1/2) to near machine precision."""
    z, w = nn.gaussian_quadrature()
    for k, moment in ((0, 1), (2, 1), (4, 3), (6, 15), (8, 105)):
        assert w @ z**k == pytest.approx(moment, rel=1e-13)
    assert abs(w @ z**3) < 1e-13
    assert w @ np.abs(z) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-13)
    assert w @ np.maximum(z, 0) ** 2 == pytest.approx(0.5, rel=1e-13)


# -- initializations -----------------------------------------------------------------

# scheme -> (standard deviation for shape (fan_in, fan_out) and scale * gain = g, law)
SCHEME_STD = {
    "normal": (lambda fi, fo, g: g, "normal"),
    "uniform": (lambda fi, fo, g: g, "uniform"),
    "lecun_normal": (lambda fi, fo, g: g / math.sqrt(fi), "normal"),
    "xavier_normal": (lambda fi, fo, g: g * math.sqrt(2 / (fi + fo)), "normal"),
    "xavier_uniform": (lambda fi, fo, g: g * math.sqrt(2 / (fi + fo)), "uniform"),
    "he_normal": (lambda fi, fo, g: g * math.sqrt(2 / fi), "normal"),
    "he_uniform": (lambda fi, fo, g: g * math.sqrt(2 / fi), "uniform"),
}


def test_init_scheme_table_and_signatures():
    assert set(init.SCHEMES) == {"zeros", "constant", "normal", "uniform", "lecun_normal",
                                 "xavier_normal", "xavier_uniform", "he_normal", "he_uniform",
                                 "orthogonal"}
    for name, fn in init.SCHEMES.items():
        assert init.get(name) is fn
        params = inspect.signature(fn).parameters
        assert list(params)[0] == "shape"
        for kw, default in (("runs", None), ("scale", 1.0), ("gain", 1.0), ("seed", 0),
                            ("xp", np), ("dtype", np.float32)):
            assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, (name, kw)
            assert params[kw].default is default or params[kw].default == default, (name, kw)
        assert fn.__doc__


@pytest.mark.parametrize("name", sorted(SCHEME_STD))
def test_init_moments_match_the_formula(name):
    """Sample mean and variance against the scheme's formula, tolerance 5 standard
    errors; the fourth moment tells the normal law (kurtosis 3) from the uniform (1.8).
    The shape is lopsided, so swapping fan_in and fan_out would fail."""
    fan_in, fan_out, scale, gain = 300, 40, 0.7, 1.3
    std_fn, law = SCHEME_STD[name]
    std = std_fn(fan_in, fan_out, scale * gain)
    w = init.get(name)((fan_in, fan_out), runs=10, scale=scale, gain=gain, seed=11, dtype=np.float64)
    assert w.shape == (10, fan_in, fan_out) and w.dtype == np.float64
    x = w.ravel()
    n = x.size
    kurt = 3.0 if law == "normal" else 1.8
    assert abs(x.mean()) < 5 * std / math.sqrt(n)
    var_se = std**2 * math.sqrt((kurt - 1) / n)
    assert abs(x.var() - std**2) < 5 * var_se
    assert np.mean(x**4) / x.var() ** 2 == pytest.approx(kurt, abs=0.05)
    if law == "uniform":
        bound = math.sqrt(3) * std
        assert np.abs(x).max() <= bound and np.abs(x).max() > 0.999 * bound


def test_init_fan_convention_is_fan_in_first():
    """Weights are (fan_in, fan_out) and X @ W keeps the variance of X under
    lecun_normal: the output variance is fan_in * var(W) * var(X) = 1."""
    w = init.lecun_normal((1000, 10), seed=1, dtype=np.float64)
    assert w.std() == pytest.approx(1 / math.sqrt(1000), rel=0.05)
    assert init.fans((1000, 10)) == (1000, 10)
    assert init.fans((7,)) == (7, 7)
    assert init.fans((3, 4, 5, 2)) == (30, 40)
    x = np.random.default_rng(2).standard_normal((4000, 1000))
    assert (x @ w).var() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (12, 3, 4)])
def test_init_orthogonal(shape):
    """W^T W = g^2 I for tall matrices, W W^T = g^2 I for wide ones (Saxe et al. 2014)."""
    g = 0.5 * 1.5
    w = init.orthogonal(shape, runs=3, scale=0.5, gain=1.5, seed=4, dtype=np.float64)
    assert w.shape == (3, *shape)
    for r in range(3):
        m = w[r].reshape(shape[0], -1)
        gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(gram, g * g * np.eye(len(gram)), atol=1e-12)
    assert not np.allclose(w[0], w[1])


def test_init_orthogonal_is_haar_distributed():
    """With the sign fix, the first entry of a Haar-random 2x2 rotation/reflection is
    symmetric about 0 (QR without it would favour positive diagonals)."""
    w = init.orthogonal((2, 2), runs=4000, seed=0, dtype=np.float64)
    assert abs(np.mean(w[:, 0, 0] > 0) - 0.5) < 5 * 0.5 / math.sqrt(4000)


def test_init_zeros_and_constant():
    assert not init.zeros((3, 4), runs=2).any()
    c = init.constant((3, 4), value=2.0, scale=0.5, gain=3.0, runs=2, dtype=np.float64)
    assert c.shape == (2, 3, 4) and (c == 3.0).all()
    assert (init.constant(5, scale=0.25) == np.float32(0.25)).all()


@pytest.mark.parametrize("name", sorted(init.SCHEMES))
def test_init_seeds_per_run(name):
    """A run's weights depend on (seed, run index) only: not on the batch size; a
    seed list gives each run the stream of its own seed; repeats are bit-identical."""
    fn = init.get(name)
    shape = (6, 4)
    w5 = fn(shape, runs=5, seed=9)
    w8 = fn(shape, runs=8, seed=9)
    np.testing.assert_array_equal(w5, w8[:5])
    np.testing.assert_array_equal(fn(shape, runs=5, seed=9), w5)
    seeds = [3, 14, 15, 92]
    batch = fn(shape, seed=seeds)
    assert batch.shape == (4, *shape)
    np.testing.assert_array_equal(fn(shape, seed=seeds, runs=4), batch)
    for r, s in enumerate(seeds):
        np.testing.assert_array_equal(batch[r], fn(shape, seed=s))
    if name not in ("zeros", "constant"):
        assert not np.array_equal(w8[3], w8[4])  # runs are different draws
        assert not np.array_equal(fn(shape, seed=1), fn(shape, seed=2))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_init_dtype_and_backend(dtype):
    w = init.he_uniform((8, 3), runs=2, seed=5, dtype=dtype, xp=np)
    assert isinstance(w, np.ndarray) and w.dtype == dtype and w.shape == (2, 8, 3)
    # drawn in float64, then rounded: the same numbers in every dtype
    w64 = init.he_uniform((8, 3), runs=2, seed=5, dtype=np.float64)
    np.testing.assert_array_equal(w, w64.astype(dtype))
    assert init.normal(4).dtype == np.float32  # the default


def test_init_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="name"):
        init.get("glorot")
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="scale"):
            init.normal((3, 3), scale=bad)
        with pytest.raises(ValueError, match="gain"):
            init.xavier_uniform((3, 3), gain=bad)
    with pytest.raises(ValueError, match="shape"):
        init.lecun_normal(())
    with pytest.raises(ValueError, match="shape"):
        init.he_normal((0, 5))
    with pytest.raises(ValueError, match="shape"):
        init.orthogonal((5,))
    with pytest.raises(ValueError, match="shape"):
        init.normal((3, -1))
    with pytest.raises(ValueError, match="runs"):
        init.normal((3,), runs=0)
    with pytest.raises(ValueError, match="runs"):
        init.normal((3,), runs=3, seed=[1, 2])
    with pytest.raises(ValueError, match="seed"):
        init.normal((3,), seed=-1)
    with pytest.raises(ValueError, match="seed"):
        init.normal((3,), seed=[])
    with pytest.raises(ValueError, match="dtype"):
        init.normal((3,), dtype=np.int32)
    with pytest.raises(ValueError, match="xp"):
        init.normal((3,), xp=math)
    with pytest.raises(ValueError, match="value"):
        init.constant((3,), value=math.nan)
