r"""Objectives with gradients, Hessian-vector products and (where cheap) Hessians,
batched over runs, on NumPy or CuPy arrays.

Every problem follows one protocol, which the optimizers, ``gpuopt.minimize``,
``gpuopt.theory`` and the study engine rely on:

- ``dim``: the number of parameters of one run. Every problem works on a flat
  parameter vector ``x`` of shape ``(dim,)`` or, for a batch of ``R`` runs, ``(R, dim)``
  (the MLP too: it reads its layers as views of the flat vector).
- ``value(x)`` -> shape ``()`` or ``(R,)``; ``grad(x)`` -> the shape of ``x``;
  ``value_and_grad(x)`` -> both in one pass (for the MLP, one forward and one
  backward); ``hvp(x, v)`` -> :math:`\nabla^2 f(x)\,v`, the shape of ``x``;
  ``hessian(x)`` -> ``(dim, dim)`` or ``(R, dim, dim)`` on the problems where it is
  cheap (all but the MLP, which has no ``hessian`` attribute).
- ``init_params(seeds, *, scheme="normal", scale=1.0, xp=numpy, dtype=numpy.float64)``
  -> ``(len(seeds), dim)``; row ``r`` depends only on ``seeds[r]``, ``scheme`` and
  ``scale`` (never on how many runs share the batch).
- ``x_star``, ``f_star``: a minimizer and the minimum, ``None`` where unknown.

**Backends and dtypes.** The array ``x`` decides: NumPy arrays compute with NumPy,
CuPy arrays with CuPy. Problems keep their data (``A``, ``X``, ``y``) as NumPy
float64 and cache one copy per array module, device and dtype on first use, so a
float32 study computes in float32 throughout (no silent upcast). float16 input
computes in float32 and returns float16; integer input computes in float64.

``PROBLEMS`` maps the study-file kinds to the classes and :func:`make_problem`
builds a problem from study-file keys (synthetic data included, so studies need no
download).

References: Moré, Garbow & Hillstrom 1981 (test functions and their standard
starts); Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006 (least squares,
logistic regression, Hessian-vector products by differences of gradients);
Rumelhart, Hinton & Williams 1986 (backpropagation); Glorot & Bengio 2010 and He et
al. 2015 (initializations, via ``gpuopt.nn.init``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading

import numpy as np

from . import backend, parallel
from .flat import _view

# The schemes of gpuopt.nn.init; the non-network problems accept the ones that make
# sense without a fan-in (see Problem.init_params).
INIT_SCHEMES = ("zeros", "constant", "normal", "uniform", "lecun_normal", "xavier_normal",
                "xavier_uniform", "he_normal", "he_uniform", "orthogonal")


# ---------------------------------------------------------------------------
# Argument checks


def _check_int(name, value, low=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _check_real(name, value, low=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_data(name, a, ndim):
    """User data as a finite float64 NumPy array of ``ndim`` dimensions."""
    if backend.is_cupy_array(a):
        a = a.get()
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers") from None
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite values")
    return a


def _check_lengths(X, y):
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}: X and y must have "
                         "the same number of samples")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")


def _check_binary(name, y):
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must hold labels 0 and 1 only")


# ---------------------------------------------------------------------------
# Per-backend copies of problem data


class _DataCache:
    """NumPy float64 arrays and their copies per (array module, device, dtype).

    A study moves a problem to the GPU and to float32 once; every later call finds
    the copy here instead of transferring and casting again."""

    def __init__(self, **arrays):
        self.host = arrays
        self._copies = {}
        self._lock = threading.Lock()

    def get(self, xp, dtype):
        device = xp.cuda.Device().id if xp is not np else None
        key = (xp.__name__, device, np.dtype(dtype).str)
        copies = self._copies.get(key)
        if copies is None:
            with self._lock:
                copies = self._copies.get(key)
                if copies is None:
                    copies = _Arrays({k: xp.asarray(v.astype(dtype) if v.dtype.kind == "f" else v)
                                      for k, v in self.host.items()})
                    self._copies[key] = copies
        return copies


class _Arrays(dict):
    __getattr__ = dict.__getitem__


# ---------------------------------------------------------------------------
# The protocol


class Problem:
    """Base class: argument checks, the run axis, dtypes and ``init_params``.

    Subclasses implement ``_value_and_grad(xp, x, grad)`` and ``_hvp(xp, x, v)`` on
    ``(R, dim)`` arrays of the compute dtype (returning ``(f, g)`` with ``g`` None
    unless ``grad``), and, where the Hessian is cheap, a public ``hessian(x)``: a
    problem without one has no ``hessian`` attribute at all, so ``hasattr`` tells."""

    name: str = ""
    dim: int
    x_star: np.ndarray | None = None
    f_star: float | None = None

    # -- arguments ---------------------------------------------------------
    def _batch(self, x, name="x"):
        """``(xp, x2d, single, storage dtype)`` for a point or a batch of points."""
        if not backend.is_array(x):
            x = np.asarray(x)
        xp = backend.array_module((name, x))
        if x.dtype.kind in "biu":
            x = x.astype(np.float64)
        elif x.dtype not in backend.FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {x.dtype}; problems take float16, float32 or float64")
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, but {type(self).__name__} takes "
                             f"({self.dim},) or (R, {self.dim}) (dim = {self.dim})")
        cd = backend.compute_dtype(x.dtype)
        x2 = x[None] if x.ndim == 1 else x
        if x2.strides[-1] != x2.itemsize:  # the MLP views rows as matrices
            x2 = xp.ascontiguousarray(x2)
        return xp, x2.astype(cd, copy=False), x.ndim == 1, x.dtype

    def _second(self, xp, x2, v, name="v"):
        """The direction of an hvp, checked against ``x`` and cast to its compute dtype."""
        if not backend.is_array(v):
            v = np.asarray(v)
        backend.array_module(("x", x2), (name, v))
        if v.dtype.kind not in "biuf":
            raise TypeError(f"{name} has dtype {v.dtype}; expected real numbers")
        v2 = v[None] if v.ndim == 1 else v
        if v2.shape != x2.shape:
            raise ValueError(f"{name} has shape {tuple(v.shape)}; it must have the shape of x")
        return v2.astype(x2.dtype, copy=False)

    @staticmethod
    def _out(a, single, dtype):
        a = a[0] if single else a
        return a if a.dtype == dtype else a.astype(dtype)

    # -- public ------------------------------------------------------------
    def value(self, x):
        """:math:`f(x)`: shape ``()`` for ``x`` of shape ``(dim,)``, ``(R,)`` for ``(R, dim)``."""
        xp, x2, single, dt = self._batch(x)
        f, _ = self._value_and_grad(xp, x2, False)
        return self._out(f, single, dt)

    def grad(self, x):
        r""":math:`\nabla f(x)`, the shape of ``x``."""
        return self.value_and_grad(x)[1]

    def value_and_grad(self, x):
        r"""``(f(x), \nabla f(x))`` computed in one pass."""
        xp, x2, single, dt = self._batch(x)
        f, g = self._value_and_grad(xp, x2, True)
        return self._out(f, single, dt), self._out(g, single, dt)

    def hvp(self, x, v):
        r"""The Hessian-vector product :math:`\nabla^2 f(x)\,v` (per run for a batch)."""
        xp, x2, single, dt = self._batch(x)
        v2 = self._second(xp, x2, v)
        return self._out(self._hvp(xp, x2, v2), single, dt)

    def __call__(self, x):
        return self.value(x)

    # -- initialization ------------------------------------------------------
    def start_point(self) -> np.ndarray:
        """The standard start point (float64, shape ``(dim,)``); the origin by default."""
        return np.zeros(self.dim)

    def init_params(self, seeds, *, scheme="normal", scale=1.0, xp=np, dtype=np.float64):
        r"""Start points for ``len(seeds)`` runs: :math:`x_r = x_0 + \xi_r`.

        :math:`x_0` is :meth:`start_point` and :math:`\xi_r` is the scheme's draw from
        ``gpuopt.nn.init`` for a vector of shape ``(dim,)`` with this ``scale``, seeded by
        ``seeds[r]`` alone: ``normal`` :math:`N(0, \text{scale}^2 I)`, ``uniform`` uniform
        with standard deviation ``scale`` (bound :math:`\sqrt3\,\text{scale}`), ``zeros``
        no noise (every run starts at :math:`x_0`), ``constant`` a shift of ``scale`` in
        every coordinate, and the fan schemes with fan-in = fan-out = ``dim`` (so
        ``xavier_normal`` and ``lecun_normal`` have standard deviation
        :math:`\text{scale}/\sqrt{\text{dim}}`, ``he_normal``
        :math:`\text{scale}\sqrt{2/\text{dim}}`): the same meaning ``scale`` has for a
        network's weights. ``orthogonal`` needs a matrix and raises ``ValueError`` naming
        ``scheme``. The draw happens on the host in float64, so a run's start is the same
        on NumPy and CuPy and in every dtype (up to the final cast).
        """
        from .nn import init as nn_init

        seeds, scale, dtype = _check_init_args(seeds, scale, xp, dtype)
        scheme = _check_choice("scheme", scheme, INIT_SCHEMES)
        if scheme == "orthogonal":
            raise ValueError(f"scheme 'orthogonal' needs a weight matrix; {type(self).__name__} "
                             "has a start vector: use another scheme")
        x = np.tile(self.start_point(), (len(seeds), 1))
        if seeds:
            x += nn_init.get(scheme)((self.dim,), seed=seeds, scale=scale, dtype=np.float64)
        return xp.asarray(x.astype(dtype))


def _check_init_args(seeds, scale, xp, dtype):
    if isinstance(seeds, (int, np.integer)) or not hasattr(seeds, "__len__"):
        raise ValueError(f"seeds must be a sequence of ints (one per run), got {seeds!r}")
    seeds = [_check_int("seeds", s, low=0) for s in seeds]
    scale = _check_real("scale", scale, low=0.0)
    dtype = np.dtype(dtype)
    if dtype not in backend.FLOAT_DTYPES:
        raise ValueError(f"dtype must be float16, float32 or float64, got {dtype}")
    if xp is not np and getattr(xp, "__name__", "") != "cupy":
        raise ValueError(f"xp must be numpy or cupy, got {xp!r}")
    return seeds, scale, dtype


def _rowdot(xp, a, b):
    """Per-run dot products of two ``(R, d)`` arrays, in their dtype."""
    return xp.einsum("rd,rd->r", a, b)


# ---------------------------------------------------------------------------
# Quadratic


class Quadratic(Problem):
    r"""The quadratic :math:`f(x) = \tfrac12 x^\top A x` with a prescribed spectrum.

    :math:`A = Q\,\mathrm{diag}(\lambda)\,Q^\top` with eigenvalues ``eigenvalues``
    running from ``mu`` to ``L``, both included: ``numpy.geomspace(mu, L, dim)`` for
    ``spectrum="log"`` and ``numpy.linspace(mu, L, dim)`` for ``"linear"``. So
    :math:`\mu I \preceq A \preceq L I`, the condition number is exactly ``L / mu``, and
    the function is :math:`\mu`-strongly convex and :math:`L`-smooth. With
    ``rotate=True``, :math:`Q` is a Haar-random orthogonal matrix drawn from ``seed``
    (QR of a Gaussian matrix with the signs of ``R``'s diagonal fixed, Mezzadri 2007),
    so the eigenvectors are not the coordinate axes and coordinate-wise methods get
    no free help; ``rotate=False`` gives the diagonal matrix. Minimizer :math:`0`,
    minimum :math:`0`. ``dim = 1`` needs ``mu == L``.
    """

    name = "quadratic"

    def __init__(self, dim, mu, L, spectrum="log", rotate=True, seed=0):
        self.dim = _check_int("dim", dim, low=1)
        self.mu = _check_real("mu", mu, positive=True)
        self.L = _check_real("L", L, positive=True)
        if self.mu > self.L:
            raise ValueError(f"mu must be <= L, got mu={self.mu!r} > L={self.L!r}")
        if self.dim == 1 and self.mu != self.L:
            raise ValueError(f"dim = 1 has one eigenvalue: mu must equal L, got mu={self.mu!r}, L={self.L!r}")
        self.spectrum = _check_choice("spectrum", spectrum, ("log", "linear"))
        if not isinstance(rotate, bool):
            raise ValueError(f"rotate must be a bool, got {rotate!r}")
        self.rotate = rotate
        self.seed = _check_int("seed", seed, low=0)
        space = np.geomspace if self.spectrum == "log" else np.linspace
        self.eigenvalues = space(self.mu, self.L, self.dim)
        if rotate:
            q = haar_orthogonal(self.dim, self.seed)
            a = (q * self.eigenvalues) @ q.T
            a = 0.5 * (a + a.T)  # exactly symmetric, so x A and A x agree bit for bit
        else:
            a = np.diag(self.eigenvalues)
        self.A = a
        self.condition_number = self.L / self.mu
        self.x_star = np.zeros(self.dim)
        self.f_star = 0.0
        self._data = _DataCache(A=a)

    def _value_and_grad(self, xp, x, grad):
        g = x @ self._data.get(xp, x.dtype).A
        return 0.5 * _rowdot(xp, x, g), (g if grad else None)

    def _hvp(self, xp, x, v):
        return v @ self._data.get(xp, x.dtype).A

    def hessian(self, x):
        """:math:`A` for every run: ``(dim, dim)`` or ``(R, dim, dim)``."""
        xp, x2, single, dt = self._batch(x)
        a = self._data.get(xp, x2.dtype).A
        return self._out(xp.broadcast_to(a, (x2.shape[0],) + a.shape).copy(), single, dt)


def haar_orthogonal(n: int, seed: int) -> np.ndarray:
    """A Haar-distributed random orthogonal ``(n, n)`` matrix (Mezzadri 2007)."""
    z = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(z)
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------------------
# Test functions


class Rosenbrock(Problem):
    r"""The (extended) Rosenbrock function (Rosenbrock 1960; Moré et al. 1981):

    .. math:: f(x) = \sum_{i=1}^{d-1} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2

    Minimizer :math:`(1, \dots, 1)`, minimum 0; the standard start point is
    :math:`(-1.2, 1, -1.2, 1, \dots)`. The Hessian is tridiagonal:
    :math:`H_{ii} = 1200 x_i^2 - 400 x_{i+1} + 2` (for :math:`i < d`) plus 200 (for
    :math:`i > 1`), :math:`H_{i,i+1} = -400 x_i`.
    """

    name = "rosenbrock"

    def __init__(self, dim=2):
        self.dim = _check_int("dim", dim, low=2)
        self.x_star = np.ones(self.dim)
        self.f_star = 0.0

    def start_point(self):
        return np.where(np.arange(self.dim) % 2 == 0, -1.2, 1.0)

    def _value_and_grad(self, xp, x, grad):
        a, b = x[:, :-1], x[:, 1:]
        t = b - a * a
        u = 1.0 - a
        f = (100.0 * t * t + u * u).sum(axis=1)
        if not grad:
            return f, None
        g = xp.zeros_like(x)
        g[:, :-1] = -400.0 * a * t - 2.0 * u
        g[:, 1:] += 200.0 * t
        return f, g

    def _bands(self, xp, x):
        """The Hessian's diagonal ``(R, d)`` and first off-diagonal ``(R, d-1)``."""
        a, b = x[:, :-1], x[:, 1:]
        diag = xp.zeros_like(x)
        diag[:, :-1] = 1200.0 * a * a - 400.0 * b + 2.0
        diag[:, 1:] += 200.0
        return diag, -400.0 * a

    def _hvp(self, xp, x, v):
        diag, off = self._bands(xp, x)
        hv = diag * v
        hv[:, :-1] += off * v[:, 1:]
        hv[:, 1:] += off * v[:, :-1]
        return hv

    def hessian(self, x):
        """The tridiagonal Hessian, ``(dim, dim)`` or ``(R, dim, dim)``."""
        xp, x2, single, dt = self._batch(x)
        diag, off = self._bands(xp, x2)
        d = self.dim
        h = xp.zeros((x2.shape[0], d, d), x2.dtype)
        i = xp.arange(d)
        h[:, i, i] = diag
        h[:, i[:-1], i[1:]] = off
        h[:, i[1:], i[:-1]] = off
        return self._out(h, single, dt)


class _Planar(Problem):
    """A function of two variables with an explicit 2x2 Hessian."""

    dim = 2

    def _hvp(self, xp, x, v):
        return xp.einsum("rij,rj->ri", self._hess(xp, x), v)

    def hessian(self, x):
        """The 2x2 Hessian, ``(2, 2)`` or ``(R, 2, 2)``."""
        xp, x2, single, dt = self._batch(x)
        return self._out(self._hess(xp, x2), single, dt)

    @staticmethod
    def _stack2x2(xp, h00, h01, h11):
        h = xp.empty(h00.shape + (2, 2), h00.dtype)
        h[:, 0, 0], h[:, 0, 1], h[:, 1, 0], h[:, 1, 1] = h00, h01, h01, h11
        return h


class Beale(_Planar):
    r"""Beale's function (Beale 1958; Moré et al. 1981):

    .. math:: f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2

    Minimizer :math:`(3, 0.5)`, minimum 0; standard start :math:`(1, 1)`.
    """

    name = "beale"
    _C = (1.5, 2.25, 2.625)

    def __init__(self):
        self.x_star = np.array([3.0, 0.5])
        self.f_star = 0.0

    def start_point(self):
        return np.array([1.0, 1.0])

    def _terms(self, x):
        """Residuals t_k = c_k - x + x y^k and their gradients (dx, dy), k = 1, 2, 3."""
        u, w = x[:, 0], x[:, 1]
        out = []
        for k, c in enumerate(self._C, start=1):
            wk = w**k
            out.append((c - u + u * wk, wk - 1.0, k * u * w ** (k - 1)))
        return out

    def _value_and_grad(self, xp, x, grad):
        terms = self._terms(x)
        f = sum(t * t for t, _, _ in terms)
        if not grad:
            return f, None
        g = xp.empty_like(x)
        g[:, 0] = sum(2.0 * t * dx for t, dx, _ in terms)
        g[:, 1] = sum(2.0 * t * dy for t, _, dy in terms)
        return f, g

    def _hess(self, xp, x):
        # H = 2 sum_k (grad t_k grad t_k^T + t_k Hess t_k), with
        # Hess t_k = [[0, k y^(k-1)], [k y^(k-1), k (k-1) x y^(k-2)]].
        u, w = x[:, 0], x[:, 1]
        h00 = h01 = h11 = 0.0
        for k, (t, dx, dy) in enumerate(self._terms(x), start=1):
            h00 = h00 + 2.0 * dx * dx
            h01 = h01 + 2.0 * (dx * dy + t * k * w ** (k - 1))
            h11 = h11 + 2.0 * (dy * dy + t * (k * (k - 1)) * u * w ** max(k - 2, 0))
        return self._stack2x2(xp, h00, h01, h11)


class Himmelblau(_Planar):
    r"""Himmelblau's function (Himmelblau 1972):

    .. math:: f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2

    Four minima, all with value 0: :math:`(3, 2)` (the only one with integer
    coordinates, exposed as ``x_star``) and approximately
    :math:`(-2.805118, 3.131313)`, :math:`(-3.779310, -3.283186)`,
    :math:`(3.584428, -1.848126)`; all four are in ``minima``. Standard start
    :math:`(0, 0)`, from where runs with noise fall into different basins.
    """

    name = "himmelblau"
    minima = np.array([
        [3.0, 2.0],
        [-2.805118086952745, 3.131312518250573],
        [-3.779310253377747, -3.283185991286170],
        [3.584428340330492, -1.848126526964404],
    ])

    def __init__(self):
        self.x_star = self.minima[0].copy()
        self.f_star = 0.0

    def _value_and_grad(self, xp, x, grad):
        u, w = x[:, 0], x[:, 1]
        p = u * u + w - 11.0
        q = u + w * w - 7.0
        f = p * p + q * q
        if not grad:
            return f, None
        g = xp.empty_like(x)
        g[:, 0] = 4.0 * u * p + 2.0 * q
        g[:, 1] = 2.0 * p + 4.0 * w * q
        return f, g

    def _hess(self, xp, x):
        u, w = x[:, 0], x[:, 1]
        return self._stack2x2(xp, 12.0 * u * u + 4.0 * w - 42.0, 4.0 * (u + w),
                              4.0 * u + 12.0 * w * w - 26.0)


# ---------------------------------------------------------------------------
# Convex problems on data


class LeastSquares(Problem):
    r"""Linear least squares on data :math:`X \in \mathbb R^{n\times d}`, :math:`y \in \mathbb R^n`:

    .. math:: f(w) = \frac{1}{2n}\,\lVert X w - y\rVert^2,\qquad
              \nabla f = \tfrac1n X^\top (Xw - y),\qquad \nabla^2 f = \tfrac1n X^\top X.

    (The :math:`\tfrac1{2n}` makes the Hessian the empirical second-moment matrix, so
    its largest eigenvalue is the smoothness constant independent of :math:`n`.)
    No intercept: append a column of ones to ``X`` for one. ``x_star`` is the
    minimum-norm least-squares solution (``numpy.linalg.lstsq``) and ``f_star`` its
    value, computed once in float64.
    """

    name = "least_squares"

    def __init__(self, X, y):
        X = _check_data("X", X, 2)
        y = _check_data("y", y, 1)
        _check_lengths(X, y)
        self.X, self.y = X, y
        self.n, self.dim = X.shape
        self.x_star = np.linalg.lstsq(X, y, rcond=None)[0]
        r = X @ self.x_star - y
        self.f_star = float(r @ r / (2 * self.n))
        self._gram = X.T @ X / self.n
        self._data = _DataCache(X=X, y=y, gram=self._gram)

    def _value_and_grad(self, xp, x, grad):
        d = self._data.get(xp, x.dtype)
        r = x @ d.X.T
        r -= d.y
        f = _rowdot(xp, r, r) * (0.5 / self.n)
        if not grad:
            return f, None
        g = r @ d.X
        g *= 1.0 / self.n
        return f, g

    def _hvp(self, xp, x, v):
        return v @ self._data.get(xp, x.dtype).gram

    def hessian(self, x):
        r""":math:`X^\top X / n` for every run."""
        xp, x2, single, dt = self._batch(x)
        gram = self._data.get(xp, x2.dtype).gram
        return self._out(xp.broadcast_to(gram, (x2.shape[0],) + gram.shape).copy(), single, dt)


class LogisticRegression(Problem):
    r"""Binary logistic regression with labels :math:`y_i \in \{0, 1\}` (mean loss):

    .. math::
        f(w) = \frac1n \sum_i \big[\log(1 + e^{z_i}) - y_i z_i\big] + \frac{\lambda}{2}\lVert w\rVert^2,
        \quad z = X w,

    :math:`\nabla f = \tfrac1n X^\top(\sigma(z) - y) + \lambda w` and
    :math:`\nabla^2 f = \tfrac1n X^\top \mathrm{diag}(\sigma(z)(1-\sigma(z))) X + \lambda I`
    with :math:`\lambda` = ``l2``. :math:`\log(1 + e^z)` is evaluated as
    ``logaddexp(0, z)`` and :math:`\sigma(z) = e^{z - \log(1 + e^z)}`, which neither
    overflows nor loses the tails (the log-sigmoid trick). No intercept: append a
    column of ones to ``X``. ``x_star``/``f_star`` are None (no closed form).
    """

    name = "logistic"

    def __init__(self, X, y, l2=0.0):
        X = _check_data("X", X, 2)
        y = _check_data("y", y, 1)
        _check_lengths(X, y)
        _check_binary("y", y)
        self.l2 = _check_real("l2", l2, low=0.0)
        self.X, self.y = X, y
        self.n, self.dim = X.shape
        self._data = _DataCache(X=X, y=y)

    def _logits(self, xp, x):
        d = self._data.get(xp, x.dtype)
        z = x @ d.X.T
        return d, z, xp.logaddexp(0.0, z)

    def _value_and_grad(self, xp, x, grad):
        d, z, sp = self._logits(xp, x)
        f = (sp - d.y * z).mean(axis=1)
        if self.l2:
            f += (0.5 * self.l2) * _rowdot(xp, x, x)
        if not grad:
            return f, None
        s = xp.exp(z - sp)
        s -= d.y
        g = s @ d.X
        g *= 1.0 / self.n
        if self.l2:
            g += self.l2 * x
        return f, g

    def _weights(self, xp, x):
        d, z, sp = self._logits(xp, x)
        s = xp.exp(z - sp)
        return d, s * (1.0 - s)

    def _hvp(self, xp, x, v):
        d, w = self._weights(xp, x)
        hv = (w * (v @ d.X.T)) @ d.X
        hv *= 1.0 / self.n
        if self.l2:
            hv += self.l2 * v
        return hv

    def hessian(self, x):
        r""":math:`\tfrac1n X^\top \mathrm{diag}(\sigma(1-\sigma)) X + \lambda I` per run."""
        xp, x2, single, dt = self._batch(x)
        d, w = self._weights(xp, x2)
        h = (d.X.T * w[:, None, :]) @ d.X
        h *= 1.0 / self.n
        if self.l2:
            h += self.l2 * xp.eye(self.dim, dtype=h.dtype)
        return self._out(h, single, dt)


# ---------------------------------------------------------------------------
# MLP

class _Workspace:
    """Per-thread buffers of one chunk of up to ``runs`` runs: the pre-activations
    (overwritten by the activations), the derivatives, and one scratch buffer for the
    back-propagated signal. Smaller chunks use leading slices, which stay contiguous."""

    def __init__(self, xp, dtype, runs, n, widths):
        self.runs = runs
        self.z = [xp.empty((runs, n, w), dtype) for w in widths[1:]]
        self.d = [xp.empty((runs, n, w), dtype) for w in widths[1:-1]]
        self.scratch = xp.empty(runs * n * max(widths[1:-1], default=1), dtype)

    def back(self, c, n, w):
        """A contiguous ``(c, n, w)`` view of the scratch buffer."""
        return self.scratch[: c * n * w].reshape(c, n, w)


class MLP(Problem):
    r"""A fully connected network as an objective of its flat parameter vector.

    ``widths = [n_0, n_1, ..., n_L]`` includes the input and the output width. Layer
    :math:`l` maps :math:`a_{l-1} \in \mathbb R^{n \times n_{l-1}}` to

    .. math:: z_l = a_{l-1} W_l + b_l,\qquad a_l = \phi(z_l)\ (l < L),\qquad a_L = z_L,

    with :math:`a_0 = X` and :math:`W_l` of shape ``(n_{l-1}, n_l)`` (forward is
    ``X @ W``). A run's parameters are one flat vector ``[W_1, b_1, W_2, b_2, ...]``
    (row-major, biases omitted when ``bias=False``), so ``x`` is ``(dim,)`` or
    ``(R, dim)`` like every problem; :meth:`unpack` gives the per-layer views without
    copying and ``layout`` lists ``(in, out, weight offset, bias offset)``.

    **Losses** (means over the ``n`` samples):

    - ``"mse"``: :math:`\frac{1}{n n_L}\sum_{i,k} (a_{L,ik} - y_{ik})^2` (torch's
      ``MSELoss``, no 1/2); ``y`` of shape ``(n, n_L)``, or ``(n,)`` when ``n_L = 1``.
    - ``"cross_entropy"``: with ``n_L > 1`` outputs, softmax cross-entropy
      :math:`\frac1n\sum_i \log\sum_k e^{z_{ik}} - z_{i y_i}` on integer labels
      :math:`y_i \in \{0..n_L-1\}`; with one output, the sigmoid (binary)
      cross-entropy :math:`\frac1n\sum_i \log(1+e^{z_i}) - y_i z_i` on labels in {0, 1}.
      Both are evaluated in their overflow-free forms (max-shifted softmax, ``logaddexp``).

    **Gradient**: backpropagation written out (Rumelhart et al. 1986):
    :math:`\delta_L = \partial\ell/\partial z_L`, :math:`\nabla W_l = a_{l-1}^\top \delta_l`,
    :math:`\nabla b_l = \mathbf 1^\top \delta_l`,
    :math:`\delta_{l-1} = (\delta_l W_l^\top) \odot \phi'(z_{l-1})`, with :math:`\phi` and
    :math:`\phi'` from one fused pass of ``gpuopt.nn.activation_with_derivative``.

    **Hessian-vector product**: central differences of gradients (Nocedal & Wright
    2006, sec. 8.1), :math:`Hv \approx (\nabla f(x + hv) - \nabla f(x - hv)) / 2h` with
    :math:`h = \epsilon^{1/3}(1 + \lVert x\rVert)/\lVert v\rVert` per run
    (:math:`\epsilon` the dtype's machine epsilon), which balances the
    :math:`O(h^2)` truncation and :math:`O(\epsilon/h)` rounding errors: about 1e-10
    relative in float64, 1e-4 in float32. Two gradient evaluations; there is no
    ``hessian`` (``dim`` is in the thousands).

    **Layout for speed** (the hot loop of network grid studies). The batch of ``R``
    runs is cut into chunks of runs whose activations fit in the cache
    (``workspace_bytes`` per thread on NumPy; on CuPy one chunk, up to
    ``gpu_workspace_bytes``); each chunk is one forward and one backward through
    stacked matrix products ``(c, n, n_{l-1}) @ (c, n_{l-1}, n_l)`` (one BLAS/cuBLAS
    GEMM per run, samples along the rows: a 256x64x64 product runs at ~85% of a
    large product's single-core rate on one core, about half of it when split over
    the cores), with the activations computed in place,
    :math:`\mathbf 1^\top\delta` as a product and the buffers kept across calls
    (per array module, device and dtype). On NumPy the chunks are shared out to
    ``GPUOPT_NUM_THREADS`` worker threads (default: the cores this process may use;
    BLAS and the ufuncs release the GIL) with NumPy's OpenBLAS pinned to one thread
    meanwhile, since workers that each wake a multithreaded BLAS oversubscribe the
    cores; with a BLAS that cannot be pinned, one worker. ``benchmarks/bench_mlp.py``
    measures it (16-64-64-1, 256 samples, 1024 runs: ~40% of a large float32
    product's FLOP rate on 2 cores, against ~15% for the naive batched layout). On
    CuPy the same code runs as strided-batched cuBLAS calls (CuPy copies transposed
    operands to contiguous ones first).
    """

    name = "mlp"
    workspace_bytes = 4 << 20
    gpu_workspace_bytes = 1 << 30

    def __init__(self, X, y, widths, activation="tanh", loss="mse", bias=True):
        from . import nn

        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) < 2:
            raise ValueError(f"widths must list at least an input and an output width, got {widths!r}")
        self.widths = [_check_int("widths", w, low=1) for w in widths]
        self.activation = _check_choice("activation", activation, tuple(nn.ACTIVATIONS))
        self.loss = _check_choice("loss", loss, ("mse", "cross_entropy"))
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        self.bias = bias
        X = _check_data("X", X, 2)
        if X.shape[1] != self.widths[0]:
            raise ValueError(f"X has {X.shape[1]} columns but widths[0] = {self.widths[0]}")
        y = np.asarray(y.get() if backend.is_cupy_array(y) else y)
        k = self.widths[-1]
        if self.loss == "mse":
            y = _check_data("y", y, y.ndim if y.ndim in (1, 2) else 2)
            if y.ndim == 1 and k == 1:
                y = y[:, None]
            _check_lengths(X, y)
            if y.ndim != 2 or y.shape[1] != k:
                raise ValueError(f"y has shape {y.shape}; mse needs (n, {k})"
                                 + (" or (n,)" if k == 1 else ""))
            targets = {"y": y}
        else:
            y = _check_data("y", y, 1)
            _check_lengths(X, y)
            if k == 1:
                _check_binary("y", y)
                targets = {"y": y[:, None]}
            else:
                if not np.all((y == np.round(y)) & (y >= 0) & (y < k)):
                    raise ValueError(f"y must hold integer class labels 0..{k - 1} for {k} outputs")
                targets = {"onehot": np.eye(k)[y.astype(np.int64)]}
        self.X, self.y = X, y
        self.n = X.shape[0]
        self.layout = []
        offset = 0
        for a, b in zip(self.widths[:-1], self.widths[1:], strict=True):
            w_off, offset = offset, offset + a * b
            b_off = None
            if bias:
                b_off, offset = offset, offset + b
            self.layout.append((a, b, w_off, b_off))
        self.dim = offset
        self._data = _DataCache(X=X, ones=np.ones((1, self.n)), **targets)
        self._workspaces = {}
        self._ws_lock = threading.Lock()

    # -- parameters -----------------------------------------------------------
    def unpack(self, x):
        """Per-layer ``(W, b)`` views of ``x`` (``b`` None without bias): ``W`` of shape
        ``(..., n_{l-1}, n_l)``, ``b`` of ``(..., n_l)``, with ``x``'s leading axes."""
        lead = x.shape[:-1]
        out = []
        for a, b, w_off, b_off in self.layout:
            w = _view(x[..., w_off:w_off + a * b], lead + (a, b))
            out.append((w, None if b_off is None else x[..., b_off:b_off + b]))
        return out

    def init_params(self, seeds, *, scheme="normal", scale=1.0, xp=np, dtype=np.float64, gain=1.0):
        r"""Parameters for ``len(seeds)`` runs: every weight matrix from
        ``gpuopt.nn.init.get(scheme)`` with ``scale`` and ``gain``, biases zero.

        Layer :math:`l` of run :math:`r` draws from the seed
        ``SeedSequence([seeds[r], l]).generate_state(1)[0]``, so the layers of a run are
        independent streams and a run's parameters depend only on its seed, the scheme,
        the scale and the gain, never on the other runs of the batch.
        """
        from .nn import init as nn_init

        seeds, scale, dtype = _check_init_args(seeds, scale, xp, dtype)
        scheme = _check_choice("scheme", scheme, INIT_SCHEMES)
        gain = _check_real("gain", gain, low=0.0)
        fn = nn_init.get(scheme)
        x = xp.zeros((len(seeds), self.dim), dtype)
        if not seeds:
            return x
        for l, (w, _) in enumerate(self.unpack(x)):
            layer_seeds = [int(np.random.SeedSequence([s, l]).generate_state(1)[0]) for s in seeds]
            w[...] = fn(w.shape[1:], runs=len(seeds), seed=layer_seeds, scale=scale, gain=gain,
                        xp=xp, dtype=dtype)
        return x

    # -- the hot loop -------------------------------------------------------------
    def _per_run_bytes(self, itemsize):
        hidden = self.widths[1:-1]
        return itemsize * self.n * (sum(self.widths[1:]) + sum(hidden) + max(hidden, default=1))

    def _plan(self, xp, runs, dtype):
        """``(chunk, threads)``: runs per chunk and worker threads for a batch."""
        per_run = self._per_run_bytes(np.dtype(dtype).itemsize)
        if xp is not np:
            return max(1, min(runs, self.gpu_workspace_bytes // per_run)), 1
        chunk = max(1, min(runs, self.workspace_bytes // per_run))
        threads = min(parallel.num_threads(), -(-runs // chunk))
        if parallel.openblas() is None and parallel.NUM_THREADS_ENV not in os.environ:
            threads = 1  # a BLAS whose threads we cannot pin would fight our workers
        if threads > 1:
            # Equal chunks, a multiple of the thread count of them where possible.
            chunk = -(-runs // (threads * -(-runs // (threads * chunk))))
        return chunk, threads

    def _acquire(self, xp, dtype, chunk, threads):
        """Workspaces for ``threads`` workers, reused across calls. A second thread
        calling while the first computes gets fresh ones, never shared buffers."""
        key = (xp.__name__, xp.cuda.Device().id if xp is not np else None, np.dtype(dtype).str)
        if not self._ws_lock.acquire(blocking=False):
            return [_Workspace(xp, dtype, chunk, self.n, self.widths) for _ in range(threads)], None
        try:
            wss = self._workspaces.get(key, [])
            if len(wss) < threads or wss[0].runs < chunk:
                wss = self._workspaces[key] = []  # free the old ones before allocating
                wss = [_Workspace(xp, dtype, chunk, self.n, self.widths) for _ in range(threads)]
                self._workspaces[key] = wss
        except BaseException:
            self._ws_lock.release()
            raise
        return wss, self._ws_lock

    def _evaluate(self, xp, x, grad):
        runs = x.shape[0]
        f = xp.empty(runs, x.dtype)
        g = xp.empty(x.shape, x.dtype) if grad else None
        if runs == 0:
            return f, g
        data = self._data.get(xp, x.dtype)
        chunk, threads = self._plan(xp, runs, x.dtype)
        wss, lock = self._acquire(xp, x.dtype, chunk, threads)
        # Workers take the next chunk when done with theirs: a static split would wait
        # on whichever core another process is using.
        starts = iter(range(0, runs, chunk))
        taking = threading.Lock()

        def work(t):
            while True:
                with taking:
                    s = next(starts, None)
                if s is None:
                    return
                e = min(s + chunk, runs)
                self._chunk(xp, data, x[s:e], None if g is None else g[s:e], f[s:e], wss[t])

        try:
            with parallel.single_threaded_blas() if threads > 1 else contextlib.nullcontext():
                parallel.run_parallel(work, threads, pool="mlp")
        finally:
            if lock is not None:
                lock.release()
        return f, g

    def _chunk(self, xp, data, x, g, f, ws):
        """Loss (into ``f``) and, when ``g`` is given, gradient (into ``g``) of ``c`` runs."""
        from . import nn

        c, n = x.shape[0], self.n
        params = self.unpack(x)
        last = len(params) - 1
        a = data.X
        for l, (w, b) in enumerate(params):
            z = ws.z[l][:c]
            xp.matmul(a, w, out=z)
            if b is not None:
                xp.add(z, b[:, None, :], out=z)
            if l < last:
                if g is None:
                    nn.activation(self.activation, z, out=z)
                else:
                    nn.activation_with_derivative(self.activation, z, out=z, dout=ws.d[l][:c])
            a = z
        dz = self._loss(xp, data, a, f, g is not None)
        if g is None:
            return
        grads = self.unpack(g)
        for l in range(last, -1, -1):
            w, _ = params[l]
            gw, gb = grads[l]
            if gb is not None:
                # 1^T delta as a product: BLAS beats a strided sum over the sample axis ~4x.
                xp.matmul(data.ones, dz, out=gb[:, None, :])
            a_prev = data.X if l == 0 else ws.z[l - 1][:c]
            # a_prev^T delta: the transposed view is F-ordered, which BLAS takes as is.
            xp.matmul(a_prev.swapaxes(-1, -2), dz, out=gw)
            if l > 0:
                back = ws.back(c, n, self.widths[l])
                if xp is np and dz.shape[2] == 1:
                    # An outer product: BLAS with inner dimension 1 is ~4x slower than einsum.
                    np.einsum("cnk,cwk->cnw", dz, w, out=back)
                else:
                    xp.matmul(dz, w.swapaxes(-1, -2), out=back)
                dz = xp.multiply(back, ws.d[l - 1][:c], out=ws.d[l - 1][:c])

    def _loss(self, xp, data, z, f, grad):
        """Per-run loss of the outputs ``z`` (c, n, k) into ``f``; with ``grad``, ``z`` is
        overwritten by :math:`\\partial\\ell/\\partial z` and returned."""
        n, k = self.n, self.widths[-1]
        if self.loss == "mse":
            xp.subtract(z, data.y, out=z)
            f[...] = xp.einsum("cnk,cnk->c", z, z) * (1.0 / (n * k))
            if grad:
                xp.multiply(z, 2.0 / (n * k), out=z)
        elif k == 1:  # sigmoid cross-entropy
            sp = xp.logaddexp(0.0, z)
            f[...] = (sp - data.y * z).sum(axis=(1, 2)) * (1.0 / n)
            if grad:
                xp.subtract(z, sp, out=z)
                xp.exp(z, out=z)  # sigma(z) = exp(z - log(1 + e^z)), no overflow
                xp.subtract(z, data.y, out=z)
                xp.multiply(z, 1.0 / n, out=z)
        else:  # softmax cross-entropy
            xp.subtract(z, z.max(axis=2, keepdims=True), out=z)
            picked = xp.einsum("cnk,nk->cn", z, data.onehot)
            xp.exp(z, out=z)
            total = z.sum(axis=2, keepdims=True)
            f[...] = (xp.log(total[..., 0]) - picked).sum(axis=1) * (1.0 / n)
            if grad:
                xp.divide(z, total, out=z)
                xp.subtract(z, data.onehot, out=z)
                xp.multiply(z, 1.0 / n, out=z)
        return z

    def _value_and_grad(self, xp, x, grad):
        return self._evaluate(xp, x, grad)

    def _hvp(self, xp, x, v):
        eps = float(np.finfo(x.dtype).eps)
        vnorm = xp.sqrt(_rowdot(xp, v, v))[:, None]
        xnorm = xp.sqrt(_rowdot(xp, x, x))[:, None]
        h = (eps ** (1.0 / 3.0)) * (1.0 + xnorm) / xp.where(vnorm > 0, vnorm, 1.0)
        _, gp = self._evaluate(xp, x + h * v, True)
        _, gm = self._evaluate(xp, x - h * v, True)
        gp -= gm
        gp /= 2.0 * h
        return gp

    # -- a plain forward pass, for diagnostics ----------------------------------------
    def forward(self, x, inputs=None):
        """Pre- and post-activations of every layer: two lists of ``L`` arrays of shape
        ``(R, m, n_l)`` (``(m, n_l)`` for ``x`` of shape ``(dim,)``), for ``inputs``
        ``(m, n_0)`` (default: the training inputs ``X``). The last layer's
        post-activation is the network output (no activation). Allocates its results:
        meant for diagnostics, not for the training loop."""
        xp, x2, single, dt = self._batch(x)
        a = self._inputs(xp, x2.dtype, inputs)
        pre, post = [], []
        for l, (w, b) in enumerate(self.unpack(x2)):
            z = a @ w
            if b is not None:
                z += b[:, None, :]
            a = z if l == len(self.layout) - 1 else self._act(z)
            pre.append(self._out(z, single, dt))
            post.append(self._out(a, single, dt))
        return pre, post

    def _act(self, z):
        from . import nn

        return nn.activation(self.activation, z)

    def _inputs(self, xp, dtype, inputs):
        if inputs is None:
            return self._data.get(xp, dtype).X
        if not backend.is_array(inputs):
            inputs = np.asarray(inputs, dtype=np.float64)
        if inputs.ndim != 2 or inputs.shape[1] != self.widths[0]:
            raise ValueError(f"inputs has shape {tuple(inputs.shape)}; expected (m, {self.widths[0]})")
        if backend.is_cupy_array(inputs) != (xp is not np):
            raise TypeError("inputs and x must be on the same device")
        return inputs.astype(dtype, copy=False)


def teacher_student(widths, activation, samples, seed, noise=0.0, labels=False):
    r"""Synthetic data labelled by a random *teacher* network (Gardner & Derrida 1989;
    Saad & Solla 1995): ``(X, y)`` with :math:`X_{ij} \sim N(0, 1)` of shape
    ``(samples, widths[0])`` and :math:`y = T(X) + \text{noise}\cdot\varepsilon`.

    The teacher :math:`T` is an MLP with ``widths`` and ``activation`` whose weights
    are :math:`N(0, g^2/\text{fan\_in})` (:math:`g` = ``gpuopt.nn.gain(activation)`` in
    the hidden layers, 1 in the output layer) and biases zero, so its outputs have
    order-one variance. ``y`` has shape ``(samples, widths[-1])``; with
    ``labels=True`` the noisy outputs become class labels (int64, shape
    ``(samples,)``): the argmax with several outputs, ``y > 0`` with one. Everything
    is drawn from ``numpy.random.default_rng(seed)``.
    """
    from . import nn

    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) < 2:
        raise ValueError(f"widths must list at least an input and an output width, got {widths!r}")
    widths = [_check_int("widths", w, low=1) for w in widths]
    _check_choice("activation", activation, tuple(nn.ACTIVATIONS))
    samples = _check_int("samples", samples, low=1)
    seed = _check_int("seed", seed, low=0)
    noise = _check_real("noise", noise, low=0.0)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, widths[0]))
    a = X
    for l, (i, o) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        hidden = l < len(widths) - 2
        g = nn.gain(activation) if hidden else 1.0
        a = a @ (rng.standard_normal((i, o)) * (g / math.sqrt(i)))
        if hidden:
            a = nn.activation(activation, a)
    y = a + noise * rng.standard_normal(a.shape)
    if labels:
        y = np.argmax(y, axis=1) if widths[-1] > 1 else (y[:, 0] > 0).astype(np.int64)
    return X, y


# ---------------------------------------------------------------------------
# Study-file factory

PROBLEMS = {
    "quadratic": Quadratic,
    "rosenbrock": Rosenbrock,
    "beale": Beale,
    "himmelblau": Himmelblau,
    "logistic": LogisticRegression,
    "least_squares": LeastSquares,
    "mlp": MLP,
}

# Key -> expected type, per kind. "array" takes nested lists or arrays (user data).
_KEYS = {
    "quadratic": {"dim": "int", "mu": "real", "L": "real", "spectrum": "str", "rotate": "bool",
                  "seed": "int"},
    "rosenbrock": {"dim": "int"},
    "beale": {},
    "himmelblau": {},
    "logistic": {"X": "array", "y": "array", "l2": "real", "samples": "int", "features": "int",
                 "noise": "real", "seed": "int"},
    "least_squares": {"X": "array", "y": "array", "samples": "int", "features": "int",
                      "noise": "real", "seed": "int"},
    "mlp": {"X": "array", "y": "array", "widths": "ints", "activation": "str", "loss": "str",
            "bias": "bool", "samples": "int", "teacher_widths": "ints",
            "teacher_activation": "str", "noise": "real", "seed": "int"},
}
_REQUIRED = {"quadratic": ("dim", "mu", "L"), "mlp": ("widths",)}
_SYNTHETIC = ("samples", "features", "noise", "seed", "teacher_widths", "teacher_activation")


def _check_key(kind, key, value, want):
    ok = {
        "int": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
        "real": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "ints": lambda v: isinstance(v, (list, tuple)) and all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in v),
        "array": lambda v: isinstance(v, (list, tuple)) or backend.is_array(v),
    }[want](value)
    if not ok:
        words = {"int": "an int", "real": "a number", "str": "a string", "bool": "true or false",
                 "ints": "a list of ints", "array": "an array (list of numbers)"}[want]
        raise ValueError(f"{key} must be {words} for problem kind {kind!r}, got {value!r}")


def make_problem(kind, **keys):
    """Build a problem from a study file's ``[problem]`` keys.

    ``kind`` is a key of ``PROBLEMS``; the keys are the class's arguments plus, for
    ``logistic``, ``least_squares`` and ``mlp`` without user ``X``/``y``, the synthetic
    data's:

    - ``quadratic``: ``dim``, ``mu``, ``L`` (required), ``spectrum``, ``rotate``, ``seed``.
    - ``rosenbrock``: ``dim``. ``beale``, ``himmelblau``: no keys.
    - ``least_squares``: ``X`` and ``y``, or ``samples`` (256), ``features`` (10),
      ``noise`` (0.1), ``seed`` (0): :math:`X \\sim N(0, 1)`,
      :math:`w^* \\sim N(0, I/\\text{features})`, :math:`y = X w^* + \\text{noise}\\,\\varepsilon`.
    - ``logistic``: the same, plus ``l2``; labels :math:`y = [X w^* + \\text{noise}\\,\\varepsilon > 0]`
      (noise flips labels near the boundary, so the data is not separable).
    - ``mlp``: ``widths`` (required), ``activation``, ``loss``, ``bias``; data ``X`` and
      ``y``, or :func:`teacher_student` with ``samples`` (256), ``teacher_widths``
      (default ``widths``), ``teacher_activation`` (default ``activation``), ``noise``
      (0) and ``seed`` (0); cross-entropy gets class labels from the teacher.

    An unknown key, a key of the wrong type or a missing required key is a
    ``ValueError`` naming the key and the kind.
    """
    if not isinstance(kind, str) or kind not in PROBLEMS:
        raise ValueError(f"kind must be one of {', '.join(sorted(PROBLEMS))}, got {kind!r}")
    spec = _KEYS[kind]
    for key, value in keys.items():
        if key not in spec:
            known = ", ".join(spec) or "none"
            raise ValueError(f"{key} is not a key of problem kind {kind!r} (keys: {known})")
        _check_key(kind, key, value, spec[key])
    for key in _REQUIRED.get(kind, ()):
        if key not in keys:
            raise ValueError(f"{key} is required for problem kind {kind!r}")
    if "X" in keys or "y" in keys:
        for key in ("X", "y"):
            if key not in keys:
                raise ValueError(f"{key} is missing: problem kind {kind!r} takes user data as X and y "
                                 "together")
        for key in _SYNTHETIC:
            if key in keys:
                raise ValueError(f"{key} generates synthetic data and cannot go with user X and y "
                                 f"(problem kind {kind!r})")
    if kind in ("quadratic", "rosenbrock", "beale", "himmelblau"):
        return PROBLEMS[kind](**keys)
    if kind == "mlp":
        return _make_mlp(keys)
    if "X" not in keys:
        samples = _check_int("samples", keys.pop("samples", 256), low=1)
        features = _check_int("features", keys.pop("features", 10), low=1)
        noise = _check_real("noise", keys.pop("noise", 0.1), low=0.0)
        seed = _check_int("seed", keys.pop("seed", 0), low=0)
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((samples, features))
        t = X @ (rng.standard_normal(features) / math.sqrt(features)) + noise * rng.standard_normal(samples)
        keys["X"], keys["y"] = X, ((t > 0).astype(np.float64) if kind == "logistic" else t)
    return PROBLEMS[kind](**keys)


def _make_mlp(keys):
    from . import nn

    widths = keys["widths"]
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ValueError(f"widths must list at least two positive widths (input and output), got {widths!r}")
    activation = keys.get("activation", "tanh")
    loss = keys.get("loss", "mse")
    bias = keys.get("bias", True)
    if "X" in keys:
        return MLP(keys["X"], keys["y"], widths, activation=activation, loss=loss, bias=bias)
    _check_choice("activation", activation, tuple(nn.ACTIVATIONS))
    _check_choice("loss", loss, ("mse", "cross_entropy"))
    teacher = list(keys.get("teacher_widths", widths))
    if len(teacher) < 2 or len(widths) < 2 or teacher[0] != widths[0] or teacher[-1] != widths[-1]:
        raise ValueError(f"teacher_widths must start and end like widths ({widths!r}), got {teacher!r}")
    X, y = teacher_student(teacher, keys.get("teacher_activation", activation), keys.get("samples", 256),
                           keys.get("seed", 0), noise=keys.get("noise", 0.0),
                           labels=loss == "cross_entropy")
    return MLP(X, y, widths, activation=activation, loss=loss, bias=bias)
