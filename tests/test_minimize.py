"""minimize: scipy-style driver over gpuopt optimizers, checked against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

import gpuopt as go

D = 5
_rng = np.random.default_rng(0)
_q, _ = np.linalg.qr(_rng.standard_normal((D, D)))
A = (_q * np.linspace(1.0, 4.0, D)) @ _q.T  # SPD, eigenvalues 1..4
B = _rng.standard_normal(D)
X_STAR = -np.linalg.solve(A, B)  # the minimizer of x'Ax/2 + b'x


def quad(x):
    """x'Ax/2 + b'x for x of shape (d,) or (R, d) (one value per run)."""
    return 0.5 * np.einsum("...i,ij,...j->...", x, A, x) + x @ B


def quad_jac(x):
    return x @ A + B


def rosen(x):
    return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2


def rosen_jac(x):
    g = np.empty_like(x)
    g[..., 0] = -2 * (1 - x[..., 0]) - 400 * x[..., 0] * (x[..., 1] - x[..., 0] ** 2)
    g[..., 1] = 200 * (x[..., 1] - x[..., 0] ** 2)
    return g


def rosen_hess(x):
    h = np.empty(x.shape + (2,))
    h[..., 0, 0] = 2 - 400 * (x[..., 1] - x[..., 0] ** 2) + 800 * x[..., 0] ** 2
    h[..., 0, 1] = h[..., 1, 0] = -400 * x[..., 0]
    h[..., 1, 1] = 200
    return h


# Settings under which each method converges on the quadratic in well under 1000 steps.
METHODS = {
    "sgd": dict(lr=0.25),
    "heavy_ball": dict(lr=0.3, beta=0.3),
    "nesterov": dict(lr=0.2, beta=0.5),
    "adam": dict(lr=0.05),
    "adamw": dict(lr=0.05, weight_decay=0.0),
    "rmsprop": dict(lr=0.01),
    "adagrad": dict(lr=0.5),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_quadratic_reaches_the_closed_form(method):
    gtol = 1e-8
    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method=method,
                      options=dict(METHODS[method], gtol=gtol, maxiter=5000))
    assert res.success and res.message == "gradient below gtol"
    assert np.abs(res.jac).max() <= gtol
    # |x - x*| <= |grad| / lambda_min, and lambda_min = 1
    np.testing.assert_allclose(res.x, X_STAR, rtol=0, atol=gtol * np.sqrt(D))
    assert res.fun == pytest.approx(quad(X_STAR), abs=1e-12)


def test_every_method_name_is_accepted():
    for method in go.OPTIMIZERS:
        kw = {"hess": lambda x: A} if method == "newton" else {}
        opts = {"lr": 0.1} if method in ("sgd", "heavy_ball", "nesterov") else {}
        res = go.minimize(quad, np.zeros(D), jac=quad_jac, method=method,
                          options=dict(opts, maxiter=3), **kw)
        assert res.nit <= 3


def test_result_fields_like_scipy():
    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd", options={"lr": 0.25})
    assert {"x", "fun", "jac", "nit", "nfev", "success", "message"} <= set(res)
    assert res.x is res["x"] and res.nit == res["nit"]
    np.testing.assert_allclose(res.jac, quad_jac(res.x), rtol=1e-14)
    assert res.fun == pytest.approx(quad(res.x), rel=1e-14)
    assert res.nfev == res.nit + 1  # the start, then one evaluation per step
    assert isinstance(res.success, bool) and isinstance(res.message, str)
    assert repr(res).startswith("OptimizeResult(")
    with pytest.raises(AttributeError):
        _ = res.hess_inv


def test_jac_true_callable_and_finite_differences_agree():
    opts = {"lr": 0.25, "maxiter": 200}
    a = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd", options=opts)
    b = go.minimize(lambda x: (quad(x), quad_jac(x)), np.zeros(D), jac=True, method="sgd", options=opts)
    c = go.minimize(quad, np.zeros(D), jac=None, method="sgd", options=opts)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nit == b.nit
    # Central differences are exact on a quadratic up to rounding of order sqrt(eps).
    np.testing.assert_allclose(c.x, X_STAR, atol=1e-5)
    np.testing.assert_allclose(c.jac, quad_jac(c.x), atol=1e-6)


def test_finite_differences_batched():
    x0 = np.random.default_rng(1).standard_normal((3, D))
    res = go.minimize(quad, x0, method="heavy_ball", options={"lr": 0.3, "beta": 0.3, "gtol": 1e-6})
    assert res.success.shape == (3,) and res.success.all()
    np.testing.assert_allclose(res.x, np.broadcast_to(X_STAR, (3, D)), atol=1e-5)


def test_batched_x0_equals_separate_runs():
    x0 = np.random.default_rng(2).standard_normal((4, D)) * np.array([0.1, 1.0, 3.0, 10.0])[:, None]
    opts = {"lr": 0.05, "gtol": 1e-7, "maxiter": 3000}
    res = go.minimize(quad, x0, jac=quad_jac, method="adam", options=opts)
    assert res.x.shape == (4, D) and res.fun.shape == (4,) and res.jac.shape == (4, D)
    assert res.success.shape == (4,) and res.success.all()
    nits = []
    for r in range(4):
        one = go.minimize(quad, x0[r], jac=quad_jac, method="adam", options=opts)
        nits.append(one.nit)
        # A converged run is frozen where it converged, as its separate run stops there.
        np.testing.assert_allclose(res.x[r], one.x, rtol=1e-9, atol=1e-12)
    assert len(set(nits)) > 1, "the runs should converge at different steps"
    assert res.nit == max(nits)


def test_gtol_and_maxiter():
    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd", options={"lr": 0.25, "gtol": 1e-3})
    assert res.success and np.abs(res.jac).max() <= 1e-3
    loose = res.nit
    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd", options={"lr": 0.25, "gtol": 1e-9})
    assert res.nit > loose
    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd",
                      options={"lr": 0.25, "gtol": 0.0, "maxiter": 7})
    assert res.nit == 7 and not res.success and "maximum" in res.message
    x0 = np.ones(D)
    res = go.minimize(quad, x0, jac=quad_jac, method="sgd", options={"lr": 0.25, "maxiter": 0})
    assert res.nit == 0 and res.nfev == 1
    np.testing.assert_array_equal(res.x, x0)


def test_callback_sees_every_iterate_and_can_stop():
    seen = []

    def callback(x):
        seen.append(x.copy())
        return len(seen) == 3

    res = go.minimize(quad, np.zeros(D), jac=quad_jac, method="sgd", options={"lr": 0.25},
                      callback=callback)
    assert res.nit == 3 and "callback" in res.message and not res.success
    np.testing.assert_array_equal(seen[-1], res.x)
    # The iterates are gradient steps: x1 = x0 - lr grad(x0).
    np.testing.assert_allclose(seen[0], -0.25 * quad_jac(np.zeros(D)), rtol=1e-15)


def test_x0_is_not_modified_and_lists_are_accepted():
    x0 = np.zeros(D)
    go.minimize(quad, x0, jac=quad_jac, method="sgd", options={"lr": 0.25, "maxiter": 5})
    assert not x0.any()
    res = go.minimize(quad, [0] * D, jac=quad_jac, method="sgd", options={"lr": 0.25})
    assert res.x.dtype == np.float64
    np.testing.assert_allclose(res.x, X_STAR, atol=1e-5)


def test_newton_with_hess_and_hessp_on_the_quadratic():
    res = go.minimize(quad, np.ones(D), jac=quad_jac, method="newton", hess=lambda x: A)
    assert res.nit == 1 and res.success
    np.testing.assert_allclose(res.x, X_STAR, rtol=1e-12)
    res = go.minimize(quad, np.ones(D), jac=quad_jac, method="newton", hessp=lambda x, v: v @ A)
    assert res.nit == 1 and res.success
    np.testing.assert_allclose(res.x, X_STAR, rtol=1e-10)
    x0 = np.random.default_rng(3).standard_normal((3, D))
    res = go.minimize(quad, x0, jac=quad_jac, method="newton",
                      hess=lambda x: np.broadcast_to(A, (len(x), D, D)))
    assert res.nit == 1 and res.success.all()
    np.testing.assert_allclose(res.x, np.broadcast_to(X_STAR, (3, D)), rtol=1e-12)


def test_rosenbrock_reaches_its_minimum():
    x0 = np.array([-1.2, 1.0])
    tight = {"gtol": 1e-10}  # Newton converges quadratically: a tight gtol costs a step
    res = go.minimize(rosen, x0, jac=rosen_jac, method="newton", hess=rosen_hess, options=tight)
    assert res.success and res.nit < 20
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    res = go.minimize(rosen, x0, jac=rosen_jac, method="newton", options=tight,
                      hessp=lambda x, v: np.einsum("...ij,...j->...i", rosen_hess(x), v))
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    res = go.minimize(rosen, x0, jac=rosen_jac, method="heavy_ball",
                      options={"lr": 1e-3, "beta": 0.9, "maxiter": 5000})
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)


def test_rosenbrock_batched_newton():
    x0 = np.array([[-1.2, 1.0], [2.0, 2.0], [0.5, -0.5]])
    res = go.minimize(rosen, x0, jac=rosen_jac, method="newton", hess=rosen_hess,
                      options={"gtol": 1e-10})
    assert res.success.all()
    np.testing.assert_allclose(res.x, np.ones((3, 2)), atol=1e-6)


@pytest.mark.parametrize("options, key", [
    ({"maxiter": -1}, "maxiter"), ({"maxiter": 2.5}, "maxiter"), ({"gtol": -1.0}, "gtol"),
    ({"gtol": float("nan")}, "gtol"), ({"lrr": 0.1}, "lrr"), ({"lr": -0.1}, "lr"),
    ({"betas": (1.0, 0.9)}, "betas"),
])
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ValueError, match=rf"\b{key}\b"):
        go.minimize(quad, np.zeros(D), jac=quad_jac, method="adam", options=options)


def test_bad_arguments():
    with pytest.raises(ValueError, match="adamm"):
        go.minimize(quad, np.zeros(D), jac=quad_jac, method="adamm")
    with pytest.raises(ValueError, match="hess"):
        go.minimize(quad, np.zeros(D), jac=quad_jac, method="newton")
    with pytest.raises(ValueError, match="x0"):
        go.minimize(quad, np.zeros((2, 2, D)), jac=quad_jac)
    with pytest.raises(TypeError, match="fun"):
        go.minimize("quad", np.zeros(D))
    with pytest.raises(TypeError, match="jac"):
        go.minimize(quad, np.zeros(D), jac="yes")
