"""gpuopt.theory against independent computations: gradient-descent trajectories,
eigen-decompositions, the library's own optimizers' measured rates, and direct
simulation of wide random networks.

The test problems are defined here (value / grad / hvp on x of shape (d,) or (R, d)),
so these tests do not depend on gpuopt.problems.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpuopt as go
from gpuopt import nn, theory


class Quadratic:
    """f(x) = x^T A x / 2 with A = Q diag(eigs) Q^T (Q a random rotation)."""

    def __init__(self, eigs, seed=0, rotate=True):
        eigs = np.asarray(eigs, float)
        q = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))[0]
        if not rotate:
            q = np.eye(len(eigs))
        self.eigs, self.q = eigs, q
        self.A = (q * eigs) @ q.T

    def value(self, x):
        return 0.5 * np.sum(x * (x @ self.A), axis=-1)

    def grad(self, x):
        return x @ self.A

    def hvp(self, x, v):
        return v @ self.A


class Wavy:
    """A non-convex function: f(x) = sum_i cos(x_i) + x^T A x / 2, Hessian A - diag(cos x),
    which changes with x. ||Hessian|| <= ||A|| + 1 everywhere; f >= -d when A >= 0."""

    def __init__(self, A):
        self.A = np.asarray(A, float)

    def value(self, x):
        return np.sum(np.cos(x), axis=-1) + 0.5 * np.sum(x * (x @ self.A), axis=-1)

    def grad(self, x):
        return -np.sin(x) + x @ self.A

    def hvp(self, x, v):
        return v @ self.A - np.cos(x) * v

    def hessian(self, x):
        return self.A - np.apply_along_axis(np.diag, -1, np.cos(x))


def _gd(problem, x0, lr, steps):
    """Plain gradient descent, written out (not the library's optimizer): (steps+1, ...)."""
    xs = [x0]
    for _ in range(steps):
        xs.append(xs[-1] - lr * problem.grad(xs[-1]))
    return np.stack(xs)


# -- descent lemma ---------------------------------------------------------------------


def test_descent_lemma_margins_nonnegative_at_lr_one_over_beta():
    """On a quadratic with beta = lambda_max and lr = 1/beta every margin is >= 0, and
    each equals the lecture's f(x_t) - f(x_t+1) - ||grad||^2 / (2 beta)."""
    problem = Quadratic(np.geomspace(0.05, 8.0, 12), seed=1)
    beta = problem.eigs.max()
    xs = _gd(problem, np.random.default_rng(0).standard_normal((5, 12)), 1 / beta, 60)
    m = theory.descent_lemma_margins(problem, xs, 1 / beta, beta)
    assert m.shape == (60, 5)
    f = problem.value(xs)
    g = problem.grad(xs[:-1])
    lecture = f[:-1] - f[1:] - np.sum(g * g, axis=-1) / (2 * beta)
    np.testing.assert_allclose(m, lecture, rtol=1e-12, atol=1e-14)
    assert m.min() >= -1e-12 * (1 + f.max())
    # a list of iterates and a single run give the same margins
    np.testing.assert_allclose(theory.descent_lemma_margins(problem, list(xs[:, 2]), 1 / beta, beta),
                               m[:, 2], rtol=1e-14)


def test_descent_lemma_margins_fail_when_beta_is_too_small():
    """The check can fail: at lr = 2.5/lambda_max GD diverges, and with beta = 1/lr
    (which underestimates the curvature) margins are negative; with the true beta the
    general lemma f(x_t+1) <= f(x_t) - lr (1 - beta lr / 2) ||g||^2 still holds."""
    problem = Quadratic(np.geomspace(0.05, 8.0, 12), seed=1)
    lam = problem.eigs.max()
    lr = 2.5 / lam
    xs = _gd(problem, np.random.default_rng(0).standard_normal((5, 12)), lr, 30)
    f = problem.value(xs)
    assert (f[-1] > f[0]).all()  # diverging
    wrong = theory.descent_lemma_margins(problem, xs, lr, 1 / lr)
    assert (wrong < 0).any()
    right = theory.descent_lemma_margins(problem, xs, lr, lam)
    assert right.min() >= -1e-9 * np.abs(f).max()


def test_descent_lemma_margins_on_a_nonconvex_function():
    """Non-convex: the margins stay >= 0 along GD with beta = ||A|| + 1."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((6, 6))
    problem = Wavy(0.1 * B @ B.T)
    beta = np.linalg.eigvalsh(problem.A).max() + 1.0
    xs = _gd(problem, rng.uniform(-3, 3, (8, 6)), 1 / beta, 100)
    assert np.abs(np.linalg.eigvalsh(problem.hessian(xs.reshape(-1, 6)))).max() <= beta
    m = theory.descent_lemma_margins(problem, xs, 1 / beta, beta)
    assert m.min() >= -1e-12 and m.max() > 1e-3


def test_descent_lemma_margins_bad_input():
    problem = Quadratic([1.0, 2.0])
    xs = np.zeros((3, 2))
    with pytest.raises(ValueError, match="lr"):
        theory.descent_lemma_margins(problem, xs, -1.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        theory.descent_lemma_margins(problem, xs, 1.0, math.nan)
    with pytest.raises(ValueError, match="xs"):
        theory.descent_lemma_margins(problem, xs[:1], 1.0, 1.0)


# -- stationarity --------------------------------------------------------------------------


def test_stationarity_bound_formula():
    assert theory.stationarity_bound(2.0, 3.0, 0.1) == 1200  # ceil(2 * 2 * 3 / 0.01)
    assert theory.stationarity_bound(1.0, 0.5, 1.0) == 1
    assert theory.stationarity_bound(1.0, 0.0, 1e-3) == 1
    with pytest.raises(ValueError, match="eps"):
        theory.stationarity_bound(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="f0_minus_fstar"):
        theory.stationarity_bound(1.0, -1.0, 0.1)
    with pytest.raises(ValueError, match="beta"):
        theory.stationarity_bound(0.0, 1.0, 0.1)


def test_stationarity_bound_honored_by_gradient_descent():
    """On the non-convex Wavy function (f* >= -d), GD with lr = 1/beta reaches
    ||grad|| <= eps within the bound's T steps, and min_{t<T} ||g_t||^2 <=
    2 beta (f0 - f*) / T holds for every prefix T."""
    rng = np.random.default_rng(5)
    problem = Wavy(np.zeros((4, 4)))  # f = sum cos(x_i), f* = -4, beta = 1
    beta, f_star, eps = 1.0, -4.0, 1e-3
    x0 = rng.uniform(-3, 3, (16, 4))
    f0 = problem.value(x0)
    T = theory.stationarity_bound(beta, float((f0 - f_star).max()), eps)
    steps = min(T, 4000)
    xs = _gd(problem, x0, 1 / beta, steps)
    gn = np.linalg.norm(problem.grad(xs), axis=-1)
    assert (gn.min(axis=0) <= eps).all()  # within min(T, 4000) <= T steps
    best = np.minimum.accumulate(gn[:-1] ** 2, axis=0)
    prefix = np.arange(1, steps + 1)[:, None]
    assert (best <= 2 * beta * (f0 - f_star) / prefix * (1 + 1e-12)).all()


# -- smoothness --------------------------------------------------------------------------


def test_estimate_smoothness_matches_eigvalsh():
    """Power iteration on hvp against numpy.linalg.eigvalsh, for one x and batched over
    runs whose Hessians differ (and have a negative eigenvalue of largest magnitude)."""
    rng = np.random.default_rng(8)
    d = 10
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    A = (Q * np.r_[-6.0, np.linspace(-1, 3, d - 1)]) @ Q.T
    problem = Wavy(A)
    x = rng.uniform(-3, 3, (4, d))
    est = theory.estimate_smoothness(problem, x, iters=300)
    exact = np.abs(np.linalg.eigvalsh(problem.hessian(x))).max(axis=-1)
    assert est.shape == (4,)
    np.testing.assert_allclose(est, exact, rtol=1e-8)
    one = theory.estimate_smoothness(problem, x[1], iters=300)
    assert isinstance(one, float) and one == pytest.approx(exact[1], rel=1e-8)
    # an unconverged estimate is low, never high
    rough = theory.estimate_smoothness(problem, x, iters=2)
    assert (rough <= exact * (1 + 1e-12)).all()


def test_estimate_smoothness_symmetric_extremes_and_bad_input():
    """+-lambda with the same magnitude: the estimate still converges to it."""
    problem = Quadratic([-5.0, 5.0, 1.0, 0.5], seed=2)
    assert theory.estimate_smoothness(problem, np.zeros(4), iters=40) == pytest.approx(5.0, rel=1e-12)
    with pytest.raises(ValueError, match="iters"):
        theory.estimate_smoothness(problem, np.zeros(4), iters=0)
    with pytest.raises(ValueError, match="x"):
        theory.estimate_smoothness(problem, np.zeros((2, 2, 4)))


# -- quadratics ---------------------------------------------------------------------


def test_quadratic_rate_bound_against_gd():
    """GD on a diagonal quadratic stays under (1 - lr mu)^t for lr <= 1/L, with equality
    for a start along the slowest eigenvector."""
    mu, L = 0.1, 4.0
    problem = Quadratic(np.linspace(mu, L, 15), rotate=False)
    t = np.arange(201)
    for lr in (1 / L, 0.4 / L):
        bound = theory.quadratic_rate_bound(lr, mu, L, t)
        assert bound.shape == t.shape and bound[0] == 1.0
        xs = _gd(problem, np.random.default_rng(0).standard_normal((6, 15)), lr, 200)
        ratio = np.linalg.norm(xs, axis=-1) / np.linalg.norm(xs[0], axis=-1)
        assert (ratio <= bound[:, None] * (1 + 1e-12)).all()
        slow = _gd(problem, np.eye(15)[0], lr, 200)
        np.testing.assert_allclose(np.linalg.norm(slow, axis=-1), bound, rtol=1e-12)
    assert theory.quadratic_rate_bound(1 / L, mu, L, 3) == pytest.approx((1 - mu / L) ** 3)


def test_quadratic_rate_bound_validity():
    with pytest.raises(ValueError, match="lr"):
        theory.quadratic_rate_bound(1.01 / 4.0, 0.1, 4.0, 5)
    with pytest.raises(ValueError, match="lam_min"):
        theory.quadratic_rate_bound(0.1, 5.0, 4.0, 5)
    with pytest.raises(ValueError, match="t"):
        theory.quadratic_rate_bound(0.1, 1.0, 4.0, -1)
    with pytest.raises(ValueError, match="t"):
        theory.quadratic_rate_bound(0.1, 1.0, 4.0, 1.5)


def test_optimal_params_formulas():
    p = theory.optimal_params("gd", 1.0, 100.0)
    assert p == pytest.approx({"lr": 2 / 101, "rate": 99 / 101}) and "momentum" not in p
    p = theory.optimal_params("heavy_ball", 1.0, 100.0)
    assert p == pytest.approx({"lr": 4 / 121, "momentum": (9 / 11) ** 2, "rate": 9 / 11})
    p = theory.optimal_params("nesterov", 1.0, 100.0)
    assert p == pytest.approx({"lr": 0.01, "momentum": 9 / 11, "rate": 0.9})
    with pytest.raises(ValueError, match="method"):
        theory.optimal_params("adam", 1.0, 2.0)
    with pytest.raises(ValueError, match="mu"):
        theory.optimal_params("gd", 3.0, 2.0)
    with pytest.raises(ValueError, match="L"):
        theory.optimal_params("gd", 1.0, math.inf)


def _measured_rate(method, params, problem, steps):
    """The per-step factor of ||x_t|| over the last half of a run of the library's own
    optimizer (NumPy path), from a least-squares fit of log ||x_t||."""
    x = np.random.default_rng(1).standard_normal((3, len(problem.eigs)))
    if method == "gd":
        opt = go.SGD(lr=params["lr"])
    else:
        opt = {"heavy_ball": go.HeavyBall, "nesterov": go.Nesterov}[method](
            lr=params["lr"], beta=params["momentum"])
    state = opt.init(x)
    norms = []
    for _ in range(steps):
        opt.step(x, problem.grad(x), state)
        norms.append(np.linalg.norm(x, axis=-1).max())
    t = np.arange(steps // 2, steps)
    return math.exp(np.polyfit(t, np.log(norms[steps // 2:]), 1)[0])


@pytest.mark.parametrize("method", theory.OPTIMAL_METHODS)
def test_optimal_params_rate_matches_the_optimizers(method):
    """gpuopt.SGD / HeavyBall / Nesterov with the returned parameters converge at the
    returned rate on a quadratic whose eigenvalues span [mu, L] (endpoints included).
    The tuned momentum methods have a double eigenvalue, ||x_t|| ~ t rate^t, which
    biases the fitted log-rate by about 2 log(2) / steps: 5% of it is allowed. A
    detuned learning rate converges measurably slower."""
    mu, L = 1.0, 100.0
    problem = Quadratic(np.geomspace(mu, L, 24), seed=3)
    p = theory.optimal_params(method, mu, L)
    steps = int((30 if method == "gd" else 60) / -math.log(p["rate"]))
    measured = _measured_rate(method, p, problem, steps)
    assert math.log(measured) == pytest.approx(math.log(p["rate"]), rel=0.05)
    detuned = dict(p, lr=0.7 * p["lr"])
    assert math.log(_measured_rate(method, detuned, problem, steps)) > 0.8 * math.log(p["rate"])


# -- mean-field signal propagation -------------------------------------------------------


def test_critical_sigma_w2_known_values():
    """tanh without bias: 1; relu: 2 with any bias (He et al. 2015); identity: 1;
    leaky_relu: 2 / (1 + slope^2)."""
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    assert theory.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, rel=1e-10)
    assert theory.critical_sigma_w2("relu", 0.1) == pytest.approx(2.0, rel=1e-10)
    assert theory.critical_sigma_w2("identity") == pytest.approx(1.0, rel=1e-10)
    assert theory.critical_sigma_w2("leaky_relu") == pytest.approx(2 / (1 + nn.LEAKY_RELU_SLOPE**2),
                                                                   rel=1e-10)


def test_critical_sigma_w2_is_the_order_to_chaos_line():
    """At the returned sigma_w2, chi_1 = 1 and the depth scale diverges; below it the
    network is ordered with a finite depth scale, above it chaotic with c* < 1."""
    sb2 = 0.05
    crit = theory.critical_sigma_w2("tanh", sb2)
    at = theory.depth_scale("tanh", crit, sb2)
    assert at["chi_1"] == pytest.approx(1.0, abs=1e-9) and at["xi_c"] == math.inf
    assert at["phase"] == "critical"
    below = theory.depth_scale("tanh", 0.9 * crit, sb2)
    assert below["phase"] == "ordered" and below["c_star"] == 1.0 and 1 < below["xi_c"] < math.inf
    above = theory.depth_scale("tanh", 1.1 * crit, sb2)
    assert above["phase"] == "chaotic" and above["c_star"] < 1 and above["chi_1"] > 1
    # deeper signal propagation closer to the line
    assert theory.depth_scale("tanh", 0.97 * crit, sb2)["xi_c"] > below["xi_c"]


def _simulate(sigma_w2, sigma_b2, width=1000, depth=12, c0=0.6, seed=0):
    """A wide tanh network on two inputs of correlation c0 and q0 = 1: per layer the
    mean squared pre-activation q_l, the correlation c_l, and the growth of the squared
    norm of 8 random tangent vectors through the layer's Jacobian (mean-field chi_1)."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((2, width))
    h = np.stack([u, c0 * u + math.sqrt(1 - c0 * c0) * v])  # two inputs, q0 = 1
    delta = rng.standard_normal((8, width))
    qs, cs, growth = [], [], []
    for _ in range(depth):
        W = rng.standard_normal((width, width)) * math.sqrt(sigma_w2 / width)
        b = rng.standard_normal(width) * math.sqrt(sigma_b2)
        a, da = nn.activation_with_derivative("tanh", h)
        new_delta = (da[0] * delta) @ W.T
        growth.append(np.sum(new_delta**2) / np.sum(delta**2))
        delta = new_delta
        h = a @ W.T + b
        q = np.mean(h * h, axis=1)
        qs.append(q.mean())
        cs.append(np.mean(h[0] * h[1]) / math.sqrt(q[0] * q[1]))
    return np.array(qs), np.array(cs), np.array(growth)


def _one_layer_correlations(sigma_w2, sigma_b2, q, cs, width=1500, pairs=32, seed=0):
    """The correlation map measured on one wide tanh layer: for each c of ``cs``,
    pairs of inputs with variance q and correlation c in, the mean output correlation out."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((width, width)) * math.sqrt(sigma_w2 / width)
    b = rng.standard_normal(width) * math.sqrt(sigma_b2)
    out = []
    for c in cs:
        u, v = rng.standard_normal((2, pairs, width))
        h = math.sqrt(q) * np.concatenate([u, c * u + math.sqrt(1 - c * c) * v])
        y = nn.activation("tanh", h) @ W.T + b
        y1, y2 = y[:pairs], y[pairs:]
        out.append(np.mean(np.sum(y1 * y2, 1) / np.sqrt(np.sum(y1 * y1, 1) * np.sum(y2 * y2, 1))))
    return out


@pytest.mark.parametrize("sigma_w2", [1.0, 2.5])
def test_depth_scale_matches_a_wide_random_network(sigma_w2):
    """q* and chi_1 against direct simulation of a width-1000 tanh network (finite-width
    fluctuations are O(1/sqrt(width)): 6% tolerances); the phase from the inputs'
    correlation: ordered networks make two inputs identical within a few xi_c layers,
    chaotic ones keep them apart, at the correlation c* that one wide layer maps to
    itself (and towards which it moves c* +- 0.3)."""
    sb2 = 0.05
    theo = theory.depth_scale("tanh", sigma_w2, sb2)
    qs, cs, growth = _simulate(sigma_w2, sb2)
    assert qs[5:].mean() == pytest.approx(theo["q_star"], rel=0.06)
    assert growth[5:].mean() == pytest.approx(theo["chi_1"], rel=0.06)
    if theo["phase"] == "ordered":  # xi_c = 3.6 layers
        assert theo["c_star"] == 1.0 and theo["xi_c"] < 4
        assert 1 - cs[-1] < 0.05
        return
    assert theo["phase"] == "chaotic" and theo["c_star"] < 0.6 and 1 - cs[-1] > 0.3
    q, c = theo["q_star"], theo["c_star"]
    at, above, below = _one_layer_correlations(sigma_w2, sb2, q, [c, c + 0.3, c - 0.3])
    assert at == pytest.approx(c, abs=0.03)
    assert above < c + 0.3 - 0.005 and below > c - 0.3 + 0.005


def _c_map(sigma_w2, sigma_b2, q, c, n=1201, lim=9.0):
    """The correlation map by the trapezoid rule on a 2-D grid: a quadrature
    independent of the library's (split Gauss-Legendre)."""
    z = np.linspace(-lim, lim, n)
    dz = z[1] - z[0]
    w = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * dz
    u1 = math.sqrt(q) * z[:, None]
    u2 = math.sqrt(q) * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
    e = w @ (np.tanh(u1) * np.tanh(u2)) @ w
    return (sigma_w2 * e + sigma_b2) / q


def test_depth_scale_correlation_fixed_point_and_slope():
    """In the chaotic phase c* is a fixed point of the correlation map and chi_c its
    slope there (Gaussian integration by parts), both checked with an independent
    quadrature; xi_c = -1 / log(chi_c)."""
    sw2, sb2 = 2.5, 0.05
    d = theory.depth_scale("tanh", sw2, sb2)
    q, c = d["q_star"], d["c_star"]
    assert _c_map(sw2, sb2, q, c) == pytest.approx(c, abs=1e-9)
    h = 1e-4
    slope = (_c_map(sw2, sb2, q, c + h) - _c_map(sw2, sb2, q, c - h)) / (2 * h)
    assert d["chi_c"] == pytest.approx(slope, rel=1e-6)
    assert d["xi_c"] == pytest.approx(-1 / math.log(d["chi_c"]), rel=1e-12)
    # the length map's fixed point, independently: q = sigma_w2 E[tanh(sqrt(q) z)^2] + sigma_b2
    z = np.linspace(-12, 12, 200001)
    pdf = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    assert sw2 * pdf @ np.tanh(math.sqrt(q) * z) ** 2 + sb2 == pytest.approx(q, rel=1e-9)
    assert d["chi_1"] == pytest.approx(sw2 * pdf @ (1 / np.cosh(math.sqrt(q) * z) ** 4), rel=1e-9)


def test_depth_scale_ordered_relu():
    """relu with bias below sigma_w2 = 2: q* = sigma_b2 / (1 - sigma_w2 / 2) in closed
    form, chi_1 = sigma_w2 / 2, xi_c = -1 / log(chi_1)."""
    d = theory.depth_scale("relu", 1.0, 0.1)
    assert d["q_star"] == pytest.approx(0.2, rel=1e-10)
    assert d["chi_1"] == pytest.approx(0.5, rel=1e-12)
    assert d["xi_c"] == pytest.approx(1 / math.log(2), rel=1e-10)
    assert d["phase"] == "ordered"
    grow = theory.depth_scale("relu", 3.0, 0.1)
    assert grow["q_star"] == math.inf and grow["chi_1"] == pytest.approx(1.5)


def test_mean_field_bad_input():
    with pytest.raises(ValueError, match="activation"):
        theory.depth_scale("swish", 1.0, 0.0)
    with pytest.raises(ValueError, match="activation"):
        theory.critical_sigma_w2("swish", 0.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.depth_scale("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.depth_scale("tanh", 1.0, math.nan)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.critical_sigma_w2("tanh", -0.1)
    # gelu without bias: q* jumps from 0 to infinity, chi_1 jumps across 1
    with pytest.raises(ValueError, match="jumps"):
        theory.critical_sigma_w2("gelu", 0.0)
