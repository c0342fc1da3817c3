"""Problems: gradients, Hessian-vector products and Hessians against finite
differences, known minima, batching, dtypes, initialization and bad input.

The references here are independent of the code under test: central differences of
``value`` (for gradients), of ``grad`` (for hvp and hessian), second differences of
``value`` (for the MLP's hvp, which is itself a difference of gradients), closed-form
solutions (least squares), and a plain per-run NumPy MLP written below.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuopt as go
from gpuopt import parallel
from gpuopt import problems as P
from gpuopt.nn import ACTIVATIONS
from gpuopt.nn import init as nn_init

# ---------------------------------------------------------------------------
# Reference computations


def fd_grad(f, x, h=1e-6):
    """Central differences of a batched f: (R, d) -> (R,), per coordinate."""
    g = np.empty_like(x)
    for i in range(x.shape[1]):
        step = np.zeros(x.shape[1])
        step[i] = h
        g[:, i] = (f(x + step) - f(x - step)) / (2 * h)
    return g


def fd_jacobian_of_grad(p, x, h=1e-6):
    """(R, d, d): column i is (grad(x + h e_i) - grad(x - h e_i)) / 2h."""
    R, d = x.shape
    jac = np.empty((R, d, d))
    for i in range(d):
        step = np.zeros(d)
        step[i] = h
        jac[:, :, i] = (p.grad(x + step) - p.grad(x - step)) / (2 * h)
    return jac


def fd_hvp(p, x, v, h=1e-6):
    return (p.grad(x + h * v) - p.grad(x - h * v)) / (2 * h)


def second_difference(p, x, u, v, h=1e-3):
    """u^T H v from values only, by polarization of second differences."""
    a, b = u + v, u - v
    return (p.value(x + h * a) - p.value(x + h * b) - p.value(x - h * b) + p.value(x - h * a)) / (4 * h * h)


def assert_close(actual, expected, rtol=1e-6, atol_scale=1e-6):
    actual, expected = np.asarray(actual), np.asarray(expected)
    atol = atol_scale * (1.0 + np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def naive_mlp(widths, activation, loss, X, y, theta):
    """Loss and gradient of one run, written plainly (no batching, no buffers)."""
    phi, dphi = {
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
        "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
        "identity": (lambda z: z, lambda z: np.ones_like(z)),
    }[activation]
    Ws, bs, o = [], [], 0
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        Ws.append(theta[o:o + a * b].reshape(a, b))
        o += a * b
        bs.append(theta[o:o + b])
        o += b
    acts, zs = [X], []
    for l, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = acts[-1] @ W + b
        zs.append(z)
        acts.append(z if l == len(Ws) - 1 else phi(z))
    out, n = acts[-1], X.shape[0]
    if loss == "mse":
        r = out - y.reshape(out.shape)
        value = np.mean(r**2)
        delta = 2 * r / r.size
    else:  # softmax cross-entropy, integer labels
        e = np.exp(out - out.max(axis=1, keepdims=True))
        prob = e / e.sum(axis=1, keepdims=True)
        value = -np.mean(np.log(prob[np.arange(n), y]))
        delta = prob.copy()
        delta[np.arange(n), y] -= 1
        delta /= n
    grads = []
    for l in range(len(Ws) - 1, -1, -1):
        grads.append((acts[l].T @ delta, delta.sum(axis=0)))
        if l:
            delta = (delta @ Ws[l].T) * dphi(zs[l - 1])
    return value, np.concatenate([np.concatenate([gw.ravel(), gb]) for gw, gb in grads[::-1]])


# ---------------------------------------------------------------------------
# The problem table

rng0 = np.random.default_rng(0)
_X = rng0.standard_normal((30, 4))
_y = _X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng0.standard_normal(30)
_Xl = rng0.standard_normal((40, 3))
_yl = (_Xl @ np.array([2.0, -1.0, 0.5]) + rng0.standard_normal(40) > 0).astype(float)
_Xm = rng0.standard_normal((12, 3))
_ym = rng0.standard_normal((12, 2))

PROBLEM_CASES = [
    ("quadratic-log", lambda: P.Quadratic(5, 0.5, 20.0, seed=1)),
    ("quadratic-linear-diag", lambda: P.Quadratic(4, 1.0, 10.0, spectrum="linear", rotate=False)),
    ("rosenbrock-2", lambda: P.Rosenbrock()),
    ("rosenbrock-5", lambda: P.Rosenbrock(5)),
    ("beale", lambda: P.Beale()),
    ("himmelblau", lambda: P.Himmelblau()),
    ("least_squares", lambda: P.LeastSquares(_X, _y)),
    ("logistic", lambda: P.LogisticRegression(_Xl, _yl, l2=0.1)),
    ("mlp-tanh", lambda: P.MLP(_Xm, _ym, [3, 5, 2], activation="tanh")),
    ("mlp-ce", lambda: P.MLP(_Xm, np.arange(12) % 3, [3, 4, 4, 3], activation="softplus",
                             loss="cross_entropy")),
]
CASE_IDS = [c[0] for c in PROBLEM_CASES]


@pytest.fixture(params=PROBLEM_CASES, ids=CASE_IDS)
def problem(request):
    return request.param[1]()


def points(p, runs=3, seed=0):
    """Test points near each problem's start (random networks for the MLP)."""
    if isinstance(p, P.MLP):
        return p.init_params(range(seed, seed + runs), scheme="xavier_normal") + 0.1 * \
            np.random.default_rng(seed).standard_normal((runs, p.dim))
    return p.init_params(range(seed, seed + runs), scheme="normal", scale=0.5)


def test_table_covers_every_kind():
    kinds = {type(c[1]()) for c in PROBLEM_CASES}
    assert kinds == set(P.PROBLEMS.values())


# ---------------------------------------------------------------------------
# Derivatives against finite differences


def test_grad_matches_finite_differences(problem):
    x = points(problem)
    f, g = problem.value_and_grad(x)
    assert f.shape == (3,) and g.shape == x.shape
    assert_close(g, fd_grad(problem.value, x), rtol=1e-5)
    assert_close(problem.grad(x), g, rtol=1e-14, atol_scale=0)
    assert_close(problem.value(x), f, rtol=1e-14, atol_scale=0)


def test_hvp_matches_difference_of_gradients_and_of_values(problem):
    x = points(problem, seed=4)
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    hv = problem.hvp(x, v)
    assert hv.shape == x.shape
    if not isinstance(problem, P.MLP):  # the MLP's hvp is this difference itself
        assert_close(hv, fd_hvp(problem, x, v), rtol=1e-5)
    # u^T H v from values alone, which no gradient code touches
    assert_close(np.einsum("rd,rd->r", u, hv), second_difference(problem, x, u, v), rtol=1e-4,
                 atol_scale=1e-4)
    # symmetry of the Hessian: u^T H v = v^T H u
    assert_close(np.einsum("rd,rd->r", u, hv), np.einsum("rd,rd->r", v, problem.hvp(x, u)),
                 rtol=1e-6, atol_scale=1e-7)


def test_hessian_matches_jacobian_of_grad(problem):
    if isinstance(problem, P.MLP):
        assert not hasattr(problem, "hessian")  # documented: hvp only
        return
    x = points(problem, seed=2)
    h = problem.hessian(x)
    assert h.shape == (3, problem.dim, problem.dim)
    assert_close(h, fd_jacobian_of_grad(problem, x), rtol=1e-5)
    np.testing.assert_allclose(h, h.transpose(0, 2, 1), rtol=1e-13, atol=1e-13)
    v = np.random.default_rng(3).standard_normal(x.shape)
    assert_close(problem.hvp(x, v), np.einsum("rij,rj->ri", h, v), rtol=1e-12, atol_scale=1e-12)


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(2, 7), runs=st.integers(1, 5), seed=st.integers(0, 2**16),
       scale=st.floats(0.05, 1.5))
def test_rosenbrock_and_quadratic_derivatives_property(dim, runs, seed, scale):
    for p in (P.Rosenbrock(dim), P.Quadratic(dim, 0.1, 10.0, seed=seed % 7)):
        x = p.init_params(range(seed, seed + runs), scale=scale)
        assert_close(p.grad(x), fd_grad(p.value, x), rtol=1e-5)
        v = np.random.default_rng(seed).standard_normal(x.shape)
        assert_close(p.hvp(x, v), fd_hvp(p, x, v), rtol=1e-5)
        assert_close(p.hessian(x), fd_jacobian_of_grad(p, x), rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(features=st.integers(1, 5), samples=st.integers(1, 25), runs=st.integers(1, 4),
       l2=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**16))
def test_convex_data_problems_property(features, samples, runs, l2, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, features))
    for p in (P.LeastSquares(X, rng.standard_normal(samples)),
              P.LogisticRegression(X, rng.integers(0, 2, samples), l2=l2)):
        x = rng.standard_normal((runs, features))
        assert_close(p.grad(x), fd_grad(p.value, x), rtol=1e-5)
        assert_close(p.hessian(x), fd_jacobian_of_grad(p, x), rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 5), min_size=2, max_size=4), samples=st.integers(1, 7),
       runs=st.integers(1, 4), activation=st.sampled_from(["tanh", "sigmoid", "softplus", "gelu"]),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_mlp_grad_and_hvp_property(widths, samples, runs, activation, bias, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, widths[0]))
    p = P.MLP(X, rng.standard_normal((samples, widths[-1])), widths, activation=activation, bias=bias)
    x = rng.standard_normal((runs, p.dim))
    assert_close(p.grad(x), fd_grad(p.value, x), rtol=1e-5)
    u, v = rng.standard_normal((2, runs, p.dim))
    assert_close(np.einsum("rd,rd->r", u, p.hvp(x, v)), second_difference(p, x, u, v), rtol=1e-4,
                 atol_scale=1e-4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss,outputs", [("mse", 1), ("mse", 3), ("cross_entropy", 1),
                                          ("cross_entropy", 4)])
def test_mlp_grad_every_activation_and_loss(activation, loss, outputs):
    rng = np.random.default_rng(7)
    n = 9
    X = rng.standard_normal((n, 3))
    if loss == "mse":
        y = rng.standard_normal((n, outputs))
    else:
        y = rng.integers(0, max(outputs, 2), n)
    p = P.MLP(X, y, [3, 5, 4, outputs], activation=activation, loss=loss)
    x = p.init_params([1, 2], scheme="xavier_normal") + 0.1 * rng.standard_normal((2, p.dim))
    f, g = p.value_and_grad(x)
    assert np.all(np.isfinite(f))
    assert_close(g, fd_grad(p.value, x), rtol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_mlp_matches_plain_reference(activation, loss):
    rng = np.random.default_rng(11)
    widths = [4, 6, 5, 3]
    X = rng.standard_normal((10, 4))
    y = rng.standard_normal((10, 3)) if loss == "mse" else rng.integers(0, 3, 10)
    p = P.MLP(X, y, widths, activation=activation, loss=loss)
    x = p.init_params([5, 6, 7], scheme="he_normal") + 0.05 * rng.standard_normal((3, p.dim))
    f, g = p.value_and_grad(x)
    for r in range(3):
        fr, gr = naive_mlp(widths, activation, loss, X, y, x[r])
        assert_close(f[r], fr, rtol=1e-12, atol_scale=1e-14)
        assert_close(g[r], gr, rtol=1e-11, atol_scale=1e-13)


def test_binary_cross_entropy_equals_two_class_softmax():
    # sigmoid(z) cross-entropy on labels {0,1} = softmax cross-entropy on logits (0, z).
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 3))
    y = rng.integers(0, 2, 8)
    p1 = P.MLP(X, y, [3, 1], loss="cross_entropy", bias=False)
    p2 = P.MLP(X, y, [3, 2], loss="cross_entropy", bias=False)
    w = rng.standard_normal((2, 3))
    x2 = np.zeros((2, 6))
    x2[:, 1::2] = w  # second logit is X w, first is 0
    np.testing.assert_allclose(p1.value(w), p2.value(x2), rtol=1e-13)


def test_identity_mlp_is_least_squares():
    # One linear layer with mse is least squares with loss 2 f_LS: an exact Hessian.
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((20, 4)), rng.standard_normal(20)
    mlp = P.MLP(X, y, [4, 1], activation="identity", bias=False)
    ls = P.LeastSquares(X, y)
    x = rng.standard_normal((3, 4))
    v = rng.standard_normal((3, 4))
    np.testing.assert_allclose(mlp.value(x), 2 * ls.value(x), rtol=1e-12)
    np.testing.assert_allclose(mlp.grad(x), 2 * ls.grad(x), rtol=1e-11)
    np.testing.assert_allclose(mlp.hvp(x, v), 2 * ls.hvp(x, v), rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------
# Known minima and spectra


def test_rosenbrock_minimum_and_start():
    for d in (2, 3, 6):
        p = P.Rosenbrock(d)
        assert p.value(np.ones(d)) == 0 and np.all(p.grad(np.ones(d)) == 0)
        np.testing.assert_array_equal(p.x_star, np.ones(d))
        assert np.all(np.linalg.eigvalsh(p.hessian(np.ones(d))) > 0)
        start = p.init_params([0], scheme="zeros")[0]
        np.testing.assert_array_equal(start, [-1.2, 1.0, -1.2, 1.0, -1.2, 1.0][:d])
    assert P.Rosenbrock().value(np.array([-1.2, 1.0])) == pytest.approx(24.2)


def test_beale_minimum():
    p = P.Beale()
    assert p.value(np.array([3.0, 0.5])) == 0 and np.all(p.grad(np.array([3.0, 0.5])) == 0)
    np.testing.assert_array_equal(p.x_star, [3.0, 0.5])
    assert np.all(np.linalg.eigvalsh(p.hessian(p.x_star)) > 0)
    assert p.value(np.array([1.0, 1.0])) == pytest.approx(14.203125)


def test_himmelblau_four_minima():
    p = P.Himmelblau()
    assert len(p.minima) == 4 and p.f_star == 0
    np.testing.assert_array_equal(p.x_star, [3.0, 2.0])
    np.testing.assert_allclose(p.value(p.minima), 0, atol=1e-24)
    np.testing.assert_allclose(p.grad(p.minima), 0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(p.hessian(p.minima)) > 0)  # minima, not saddles
    # Newton from a rounded guess lands on each stored minimum.
    x = np.round(p.minima, 1)
    for _ in range(20):
        x = x - np.linalg.solve(p.hessian(x), p.grad(x)[..., None])[..., 0]
    np.testing.assert_allclose(x, p.minima, atol=1e-12)


@pytest.mark.parametrize("spectrum,space", [("log", np.geomspace), ("linear", np.linspace)])
@pytest.mark.parametrize("rotate", [True, False])
def test_quadratic_spectrum_is_exact(spectrum, space, rotate):
    mu, L, d = 0.01, 100.0, 9
    q = P.Quadratic(d, mu, L, spectrum=spectrum, rotate=rotate, seed=3)
    np.testing.assert_array_equal(q.eigenvalues, space(mu, L, d))
    assert q.eigenvalues[0] == mu and q.eigenvalues[-1] == L
    assert q.condition_number == L / mu
    np.testing.assert_allclose(np.linalg.eigvalsh(q.A), q.eigenvalues, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.linalg.cond(q.A), L / mu, rtol=1e-8)
    np.testing.assert_array_equal(q.A, q.A.T)
    off_diagonal = q.A - np.diag(np.diag(q.A))
    assert (np.abs(off_diagonal).max() > 0) == rotate
    assert q.value(q.x_star) == 0 and q.f_star == 0
    x = np.random.default_rng(0).standard_normal(d)
    assert q.value(x) == pytest.approx(0.5 * x @ q.A @ x, rel=1e-12)


def test_quadratic_seed_picks_the_rotation():
    a, b, c = (P.Quadratic(6, 1, 5, seed=s).A for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_least_squares_solution():
    p = P.LeastSquares(_X, _y)
    w = np.linalg.solve(_X.T @ _X, _X.T @ _y)
    np.testing.assert_allclose(p.x_star, w, rtol=1e-10)
    assert p.f_star == pytest.approx(np.sum((_X @ w - _y) ** 2) / (2 * len(_y)), rel=1e-12)
    np.testing.assert_allclose(p.grad(p.x_star), 0, atol=1e-12)
    assert p.value(p.x_star) == pytest.approx(p.f_star, rel=1e-12)


def test_logistic_value_and_stability():
    p = P.LogisticRegression(_Xl, _yl, l2=0.2)
    w = np.array([0.3, -0.2, 0.1])
    z = _Xl @ w
    ref = np.mean(np.log1p(np.exp(z)) - _yl * z) + 0.1 * w @ w
    assert p.value(w) == pytest.approx(ref, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp, no log(0)
        f, g = p.value_and_grad(np.array([[1e4, -1e4, 1e4], [-1e5, 0, 0]]))
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(g))
    z = _Xl @ np.array([1e4, -1e4, 1e4])
    assert f[0] == pytest.approx(np.mean(np.maximum(z, 0) - _yl * z) + 0.1 * 3e8, rel=1e-9)


# ---------------------------------------------------------------------------
# Batching and dtypes


def test_batched_equals_per_row_loop(problem):
    x = points(problem, runs=4, seed=9)
    v = np.random.default_rng(9).standard_normal(x.shape)
    f, g = problem.value_and_grad(x)
    hv = problem.hvp(x, v)
    for r in range(4):
        fr, gr = problem.value_and_grad(x[r])
        assert np.shape(fr) == () and gr.shape == (problem.dim,)
        assert_close(f[r], fr, rtol=1e-12, atol_scale=1e-14)
        assert_close(g[r], gr, rtol=1e-12, atol_scale=1e-14)
        assert_close(hv[r], problem.hvp(x[r], v[r]), rtol=1e-8, atol_scale=1e-10)
        if hasattr(problem, "hessian"):
            assert_close(problem.hessian(x)[r], problem.hessian(x[r]), rtol=1e-12, atol_scale=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_low_precision_in_low_precision_out(problem, dtype):
    x64 = points(problem, seed=5)
    x = x64.astype(dtype)
    v = np.ones_like(x)
    f, g = problem.value_and_grad(x)
    outs = [f, g, problem.value(x), problem.grad(x), problem.hvp(x, v), problem.value(x[0])]
    if hasattr(problem, "hessian"):
        outs.append(problem.hessian(x))
    assert all(o.dtype == dtype for o in outs)
    if dtype == np.float32:  # and it is float32 arithmetic of the same function
        f64, g64 = problem.value_and_grad(x.astype(np.float64))
        assert_close(f, f64, rtol=1e-4, atol_scale=1e-5)
        assert_close(g, g64, rtol=1e-3, atol_scale=1e-4)


def test_mlp_chunks_and_threads_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((16, 5))
    p = P.MLP(X, rng.standard_normal((16, 2)), [5, 7, 6, 2], activation="tanh")
    x = p.init_params(range(11), scheme="xavier_uniform")
    f_ref = np.array([p.value(x[r]) for r in range(11)])
    g_ref = np.array([p.grad(x[r]) for r in range(11)])
    monkeypatch.setenv("GPUOPT_NUM_THREADS", "3")
    p.workspace_bytes = 2 * p._per_run_bytes(8)  # chunks of 2 runs, 3 workers
    assert p._plan(np, 11, np.float64) == (2, 3)
    for _ in range(2):  # the second call reuses the workspaces
        f, g = p.value_and_grad(x)
        np.testing.assert_allclose(f, f_ref, rtol=1e-13)
        np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-15)
    f0, g0 = p.value_and_grad(x[:0])
    assert f0.shape == (0,) and g0.shape == (0, p.dim)


def test_mlp_unpack_views_without_copying():
    p = P.MLP(_Xm, _ym, [3, 5, 2])
    x = np.arange(4 * p.dim, dtype=float).reshape(4, p.dim)
    (w1, b1), (w2, b2) = p.unpack(x)
    assert w1.shape == (4, 3, 5) and b1.shape == (4, 5) and w2.shape == (4, 5, 2) and b2.shape == (4, 2)
    for a in (w1, b1, w2, b2):
        assert np.shares_memory(a, x)
    assert w1[1, 0, 0] == p.dim and b2[0, -1] == p.dim - 1
    assert p.dim == 3 * 5 + 5 + 5 * 2 + 2
    assert P.MLP(_Xm, _ym, [3, 5, 2], bias=False).dim == 3 * 5 + 5 * 2


# ---------------------------------------------------------------------------
# init_params


def test_init_rows_do_not_depend_on_the_batch(problem):
    schemes = ["normal", "he_normal", "orthogonal"] if isinstance(problem, P.MLP) else ["normal", "uniform"]
    for scheme in schemes:
        big = problem.init_params([3, 7, 11], scheme=scheme, scale=0.7)
        alone = problem.init_params([7], scheme=scheme, scale=0.7)
        assert big.shape == (3, problem.dim)
        np.testing.assert_array_equal(big[1], alone[0])
        assert not np.array_equal(big[0], big[2])
    x32 = problem.init_params([1, 2], dtype=np.float32)
    assert x32.dtype == np.float32


def test_init_noise_around_the_standard_start():
    p = P.Rosenbrock(4)
    start = np.array([-1.2, 1.0, -1.2, 1.0])
    np.testing.assert_array_equal(p.init_params([0, 1], scheme="zeros", scale=3.0), [start, start])
    np.testing.assert_array_equal(p.init_params([0], scheme="constant", scale=0.5)[0], start + 0.5)
    many = p.init_params(range(4000), scheme="normal", scale=0.1) - start
    assert abs(many.std() - 0.1) < 0.005 and abs(many.mean()) < 0.005
    uni = p.init_params(range(4000), scheme="uniform", scale=2.0) - start
    bound = 2.0 * np.sqrt(3.0)  # uniform with standard deviation `scale`
    assert -bound <= uni.min() < -0.99 * bound and 0.99 * bound < uni.max() <= bound
    np.testing.assert_array_equal(P.Quadratic(3, 1, 2).init_params([0], scheme="zeros"), np.zeros((1, 3)))
    # Fan schemes see a vector of `dim` entries: fan-in = fan-out = dim.
    p50 = P.Rosenbrock(50)
    xav = p50.init_params(range(200), scheme="xavier_normal", scale=2.0) - p50.start_point()
    assert xav.std() == pytest.approx(2.0 / np.sqrt(50), rel=0.03)
    he = p50.init_params(range(200), scheme="he_normal") - p50.start_point()
    assert he.std() == pytest.approx(np.sqrt(2 / 50), rel=0.03)
    with pytest.raises(ValueError, match="scheme"):
        p.init_params([0], scheme="orthogonal")


def test_mlp_init_uses_nn_init_per_layer():
    p = P.MLP(_Xm, _ym, [3, 40, 30, 2])
    x = p.init_params(range(300), scheme="xavier_normal")
    for (w, b), (fan_in, fan_out) in zip(p.unpack(x), [(3, 40), (40, 30), (30, 2)], strict=True):
        assert np.all(b == 0)
        assert w.std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    # layers of a run are different streams
    (w1, _), (w2, _), _ = p.unpack(x)
    assert not np.allclose(w1[0, 0, :30], w2[0, 0, :30] * w1[0].std() / w2[0].std())
    # orthogonal layers are orthogonal; zeros are zeros; the scale multiplies
    (w1, _), (w2, _), _ = p.unpack(p.init_params([4], scheme="orthogonal", scale=2.0))
    np.testing.assert_allclose(w2[0].T @ w2[0], 4 * np.eye(30), atol=1e-12)  # (40, 30): columns
    assert np.all(p.init_params([4], scheme="zeros") == 0)
    assert set(P.INIT_SCHEMES) == set(nn_init.SCHEMES)


def test_init_bad_arguments_name_themselves(problem):
    with pytest.raises(ValueError, match="scheme"):
        problem.init_params([0], scheme="glorot")
    with pytest.raises(ValueError, match="scale"):
        problem.init_params([0], scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        problem.init_params([0], scale=float("nan"))
    with pytest.raises(ValueError, match="seeds"):
        problem.init_params(3)
    with pytest.raises(ValueError, match="seeds"):
        problem.init_params([0.5])
    with pytest.raises(ValueError, match="dtype"):
        problem.init_params([0], dtype=np.int32)


# ---------------------------------------------------------------------------
# Bad input


def test_bad_points_name_the_argument(problem):
    d = problem.dim
    with pytest.raises(ValueError, match="^x has shape"):
        problem.value(np.zeros(d + 1))
    with pytest.raises(ValueError, match="^x has shape"):
        problem.grad(np.zeros((2, 2, d)))
    with pytest.raises(ValueError, match="^v has shape"):
        problem.hvp(np.zeros((2, d)), np.zeros((3, d)))
    with pytest.raises(TypeError, match="^x has dtype"):
        problem.value(np.zeros(d, dtype=complex))


def test_bad_constructor_arguments_name_themselves():
    cases = [
        (lambda: P.Quadratic(3, 2.0, 1.0), "^mu must be <= L"),
        (lambda: P.Quadratic(3, 0.0, 1.0), "^mu must be positive"),
        (lambda: P.Quadratic(3, 1.0, -1.0), "^L must be positive"),
        (lambda: P.Quadratic(3, 1.0, float("inf")), "^L must be finite"),
        (lambda: P.Quadratic(0, 1.0, 2.0), "^dim must be >= 1"),
        (lambda: P.Quadratic(1, 1.0, 2.0), "mu must equal L"),
        (lambda: P.Quadratic(3, 1.0, 2.0, spectrum="cubic"), "^spectrum"),
        (lambda: P.Rosenbrock(1), "^dim must be >= 2"),
        (lambda: P.Rosenbrock(2.0), "^dim must be an int"),
        (lambda: P.LeastSquares(np.ones((5, 2)), np.ones(4)), "^y has 4 rows but X has 5"),
        (lambda: P.LeastSquares(np.ones(5), np.ones(5)), "^X must have 2 dimension"),
        (lambda: P.LeastSquares(np.full((2, 2), np.nan), np.ones(2)), "^X holds non-finite"),
        (lambda: P.LogisticRegression(np.ones((3, 2)), [0, 1, 2]), "^y must hold labels 0 and 1"),
        (lambda: P.LogisticRegression(np.ones((3, 2)), [0, 1]), "^y has 2 rows but X has 3"),
        (lambda: P.LogisticRegression(np.ones((3, 2)), [0, 1, 1], l2=-1), "^l2 must be >= 0"),
        (lambda: P.MLP(_Xm, _ym, [3, 4, 2], activation="swish"), "^activation"),
        (lambda: P.MLP(_Xm, _ym, [3, 4, 2], loss="hinge"), "^loss"),
        (lambda: P.MLP(_Xm, _ym, [3]), "^widths"),
        (lambda: P.MLP(_Xm, _ym, [3, 0, 2]), "^widths"),
        (lambda: P.MLP(_Xm, _ym, [4, 2]), "^X has 3 columns"),
        (lambda: P.MLP(_Xm, _ym[:5], [3, 2]), "^y has 5 rows but X has 12"),
        (lambda: P.MLP(_Xm, _ym, [3, 3]), "^y has shape"),
        (lambda: P.MLP(_Xm, np.arange(12) % 4, [3, 3], loss="cross_entropy"), "^y must hold integer"),
        (lambda: P.MLP(_Xm, np.arange(12) % 3, [3, 1], loss="cross_entropy"), "^y must hold labels 0"),
        (lambda: P.MLP(_Xm, _ym, [3, 2], bias=1), "^bias must be a bool"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()


def test_diagnostic_inputs_are_checked():
    p = P.MLP(_Xm, _ym, [3, 4, 2])
    with pytest.raises(ValueError, match="^inputs has shape"):
        p.forward(p.init_params([0]), np.ones((5, 4)))


# ---------------------------------------------------------------------------
# make_problem and synthetic data


@pytest.mark.parametrize("kind,keys", [
    ("quadratic", dict(dim=4, mu=0.1, L=10.0, spectrum="linear", rotate=False, seed=2)),
    ("rosenbrock", dict(dim=3)),
    ("beale", {}),
    ("himmelblau", {}),
    ("logistic", dict(samples=50, features=3, noise=0.5, seed=1, l2=0.01)),
    ("logistic", dict(X=[[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]], y=[0, 1, 1])),
    ("least_squares", dict(samples=20, features=3, seed=4)),
    ("mlp", dict(widths=[4, 8, 1], samples=32, seed=3, noise=0.1)),
    ("mlp", dict(widths=[4, 8, 3], loss="cross_entropy", activation="relu", teacher_widths=[4, 16, 3],
                 teacher_activation="tanh", samples=32)),
])
def test_make_problem_builds_working_problems(kind, keys):
    p = P.make_problem(kind, **keys)
    assert isinstance(p, P.PROBLEMS[kind])
    x = p.init_params([0, 1], scheme="xavier_normal" if kind == "mlp" else "normal", scale=0.3)
    assert_close(p.grad(x), fd_grad(p.value, x), rtol=1e-5)
    # the same keys give the same problem
    q = P.make_problem(kind, **keys)
    np.testing.assert_array_equal(q.value(x), p.value(x))


def test_synthetic_data():
    a = P.make_problem("least_squares", samples=500, features=3, noise=0.0, seed=5)
    assert a.f_star == pytest.approx(0, abs=1e-20)  # noiseless linear model fits exactly
    b = P.make_problem("least_squares", samples=5000, features=3, noise=0.5, seed=5)
    assert 2 * b.f_star == pytest.approx(0.25, rel=0.1)  # residual variance = noise^2
    c = P.make_problem("least_squares", samples=500, features=3, noise=0.0, seed=6)
    assert not np.allclose(a.X, c.X)
    lg = P.make_problem("logistic", samples=400, features=4, seed=1)
    assert set(np.unique(lg.y)) == {0.0, 1.0} and 0.2 < lg.y.mean() < 0.8


def test_teacher_student():
    X, y = P.teacher_student([6, 10, 3], "tanh", 50, seed=1)
    assert X.shape == (50, 6) and y.shape == (50, 3)
    X2, y2 = P.teacher_student([6, 10, 3], "tanh", 50, seed=1)
    np.testing.assert_array_equal(y, y2)
    _, labels = P.teacher_student([6, 10, 3], "tanh", 500, seed=1, labels=True)
    assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1, 2}
    _, binary = P.teacher_student([6, 1], "relu", 500, seed=1, labels=True)
    assert set(np.unique(binary)) == {0, 1}
    # a linear teacher is recovered exactly by least squares; noise shows as residual variance
    X, y = P.teacher_student([5, 1], "identity", 200, seed=2)
    assert P.LeastSquares(X, y[:, 0]).f_star == pytest.approx(0, abs=1e-20)
    X, y = P.teacher_student([5, 1], "identity", 5000, seed=2, noise=0.3)
    assert 2 * P.LeastSquares(X, y[:, 0]).f_star == pytest.approx(0.09, rel=0.1)
    with pytest.raises(ValueError, match="^noise"):
        P.teacher_student([5, 1], "tanh", 10, seed=0, noise=-1.0)
    with pytest.raises(ValueError, match="^activation"):
        P.teacher_student([5, 1], "nope", 10, seed=0)


def test_make_problem_bad_keys_name_key_and_kind():
    cases = [
        (dict(kind="rosenbrok"), "^kind must be one of"),
        (dict(kind="rosenbrock", size=3), "^size is not a key of problem kind 'rosenbrock'"),
        (dict(kind="rosenbrock", dim="3"), "^dim must be an int for problem kind 'rosenbrock'"),
        (dict(kind="rosenbrock", dim=True), "^dim must be an int"),
        (dict(kind="quadratic", dim=3, L=2.0), "^mu is required for problem kind 'quadratic'"),
        (dict(kind="quadratic", dim=3, mu=1, L=2, rotate="yes"), "^rotate must be true or false"),
        (dict(kind="logistic", X=[[1.0]]), "^y is missing"),
        (dict(kind="logistic", X=[[1.0]], y=[1], samples=3), "^samples generates synthetic data"),
        (dict(kind="least_squares", noise="high"), "^noise must be a number for problem kind"),
        (dict(kind="mlp"), "^widths is required for problem kind 'mlp'"),
        (dict(kind="mlp", widths=[3, "4", 1]), "^widths must be a list of ints"),
        (dict(kind="mlp", widths=[3, 1], teacher_widths=[4, 1]), "^teacher_widths"),
        (dict(kind="mlp", widths=[3, 1], activation="swish"), "^activation"),
        (dict(kind="beale", dim=2), "^dim is not a key of problem kind 'beale'"),
    ]
    for keys, pattern in cases:
        kind = keys.pop("kind")
        with pytest.raises(ValueError, match=pattern):
            P.make_problem(kind, **keys)


# ---------------------------------------------------------------------------
# With the optimizers


def test_problems_train_with_gpuopt_optimizers():
    p = P.make_problem("mlp", widths=[4, 16, 1], samples=64, seed=0)
    x = p.init_params(range(8), scheme="xavier_normal", dtype=np.float32)
    opt = go.Adam(lr=np.logspace(-3, -1, 8)[:, None], batched=True)
    state = opt.init(x)
    f0 = p.value(x)
    for _ in range(50):
        _, g = p.value_and_grad(x)
        opt.step(x, g, state)
    assert x.dtype == np.float32 and np.all(p.value(x) < f0)
    q = P.Quadratic(6, 0.5, 2.0)
    res = go.minimize(q.value_and_grad, q.init_params([0, 1]), jac=True, method="newton",
                      hessp=q.hvp, options=dict(maxiter=3))
    np.testing.assert_allclose(res.x, 0, atol=1e-10)


def test_non_contiguous_points_are_accepted():
    p = P.MLP(_Xm, _ym, [3, 4, 2])
    x = p.init_params(range(3), scheme="he_normal")
    xf = np.asfortranarray(x)
    np.testing.assert_array_equal(p.grad(xf), p.grad(x))
    wide = np.zeros((3, 2 * p.dim))
    wide[:, ::2] = x
    np.testing.assert_array_equal(p.value(wide[:, ::2]), p.value(x))


def test_concurrent_evaluations_share_nothing_and_restore_blas():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    p = P.MLP(rng.standard_normal((32, 6)), rng.standard_normal((32, 1)), [6, 9, 1])
    p.workspace_bytes = 3 * p._per_run_bytes(8)  # several chunks per call
    xs = [p.init_params(range(s, s + 13), scheme="lecun_normal") for s in range(6)]
    expected = [p.value_and_grad(x) for x in xs]
    control = parallel.openblas()
    before = control[0]() if control else None
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(p.value_and_grad, xs * 3))
    for (f, g), (fe, ge) in zip(results, expected * 3, strict=True):
        np.testing.assert_array_equal(f, fe)
        np.testing.assert_array_equal(g, ge)
    if control:
        assert control[0]() == before
