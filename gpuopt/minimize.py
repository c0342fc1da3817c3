"""``minimize``: run any gpuopt optimizer to convergence, in the style of
``scipy.optimize.minimize``, for one starting point or a batch of them."""

from __future__ import annotations

import functools

import numpy as np

from . import backend
from .optim import Newton, get_optimizer


class OptimizeResult(dict):
    """The result of :func:`minimize`, a dict with attribute access as scipy's:
    ``x, fun, jac, nit, nfev, success, message`` (``fun`` and ``success`` are per-run
    arrays for a batch)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e

    def __repr__(self):
        return "OptimizeResult(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"


def _finite_difference(fun, x, eps):
    """Central differences, per run: (f(x + h e_i) - f(x - h e_i)) / 2h for each i."""
    g = x * 0
    for i in range(x.shape[-1]):
        xp_, xm = x.copy(), x.copy()
        h = eps * (1 + abs(x[..., i]))
        xp_[..., i] += h
        xm[..., i] -= h
        g[..., i] = (fun(xp_) - fun(xm)) / (xp_[..., i] - xm[..., i])
    return g


def minimize(fun, x0, jac=None, method="adam", options=None, callback=None, hess=None, hessp=None):
    """Minimize ``fun`` from ``x0`` with a gpuopt optimizer.

    Parameters
    ----------
    fun : callable ``x -> value``; with ``jac=True``, ``x -> (value, gradient)``. For a
        batch ``x0`` of shape ``(R, d)`` it returns one value per run, shape ``(R,)``.
    x0 : array of shape ``(d,)`` or ``(R, d)`` (NumPy or CuPy; it picks the backend).
        It is copied, never modified.
    jac : callable ``x -> gradient``, ``True``, or None for central finite differences.
    method : an optimizer name (``"sgd"``, ``"heavy_ball"``, ``"nesterov"``,
        ``"newton"``, ``"adagrad"``, ``"rmsprop"``, ``"adadelta"``, ``"adam"``,
        ``"adamw"``).
    options : the optimizer's hyperparameters plus ``maxiter`` (default 1000) and
        ``gtol`` (default 1e-5: stop a run once the largest gradient entry is below it).
    callback : ``callback(x)`` after every iteration; returning True stops.
    hess, hessp : for ``method="newton"``: ``x -> Hessian`` or ``(x, v) -> H v``.

    Converged runs of a batch are frozen while the others go on. The result follows
    ``scipy.optimize.OptimizeResult``: ``x, fun, jac, nit, nfev, success, message``.
    """
    options = dict(options or {})
    maxiter = options.pop("maxiter", 1000)
    gtol = options.pop("gtol", 1e-5)
    if not isinstance(maxiter, int) or maxiter < 0:
        raise ValueError(f"options['maxiter'] must be a non-negative int, got {maxiter!r}")
    if not np.isfinite(gtol) or gtol < 0:
        raise ValueError(f"options['gtol'] must be a non-negative number, got {gtol!r}")
    cls = get_optimizer(method)
    if not callable(fun):
        raise TypeError("fun must be callable")
    if not backend.is_array(x0):
        x0 = np.asarray(x0, dtype=np.float64)
    xp = backend.array_module(("x0", x0))
    if x0.ndim not in (1, 2):
        raise ValueError(f"x0 must have shape (d,) or (R, d), got {x0.shape}")
    x = x0.astype(x0.dtype if x0.dtype.kind == "f" else np.float64, copy=True)
    batched = x.ndim == 2
    try:
        opt = cls(batched=batched, **options)
    except TypeError as e:
        raise ValueError(f"options: {e}") from None
    if cls is Newton and hess is None and hessp is None:
        raise ValueError("method='newton' needs hess= or hessp=")

    nfev = 0

    def evaluate(x):
        nonlocal nfev
        nfev += 1
        if jac is True:
            f, g = fun(x)
        elif callable(jac):
            f, g = fun(x), jac(x)
        elif jac is None:
            f, g = fun(x), _finite_difference(fun, x, np.sqrt(np.finfo(x.dtype).eps))
        else:
            raise TypeError("jac must be a callable, True or None")
        return xp.asarray(f), xp.asarray(g, dtype=x.dtype)

    state = opt.init(x)
    f, g = evaluate(x)
    done = xp.abs(g).max(axis=-1) <= gtol
    nit, message = 0, "maximum number of iterations reached"
    while nit < maxiter:
        if bool(done.all()):
            message = "gradient below gtol"
            break
        x_prev = x.copy() if batched else None
        if cls is Newton:
            if hess is not None:
                kw = {"hessian": hess(x)}
            else:
                # The step changes x in place; H v is taken where the step started.
                kw = {"hvp": functools.partial(hessp, x.copy())}
            opt.step(x, g, state, **kw)
        else:
            opt.step(x, g, state)
        if batched:
            x[done] = x_prev[done]
        nit += 1
        f, g = evaluate(x)
        done = done | (xp.abs(g).max(axis=-1) <= gtol)
        if callback is not None and callback(x):
            message = "stopped by callback"
            break
    else:
        if bool(done.all()):
            message = "gradient below gtol"
    success = done if batched else bool(done)
    return OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=nfev, success=success,
                          message=message)
