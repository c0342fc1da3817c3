r"""The lecture's bounds and the classical tunings as code, to be checked against runs.

Each function states its formula and reference. Problems follow the protocol of
``gpuopt.problems`` (``value(x)``, ``grad(x)``, ``hvp(x, v)`` on ``x`` of shape
``(d,)`` or ``(R, d)``); arrays may be NumPy or CuPy, and results come back on the
same backend.

- :func:`descent_lemma_margins`, :func:`stationarity_bound`: gradient descent on a
  :math:`\beta`-smooth function (Nesterov 2004, Section 1.2.3).
- :func:`estimate_smoothness`: :math:`\beta` as the Hessian's largest eigenvalue
  magnitude, by power iteration on Hessian-vector products (Pearlmutter 1994).
- :func:`quadratic_rate_bound`, :func:`optimal_params`: linear rates on quadratics
  :math:`\mu I \preceq A \preceq L I` (Polyak 1964 and 1987; Nesterov 2004;
  Lessard, Recht & Packard 2016).
- :func:`critical_sigma_w2`, :func:`depth_scale`: mean-field signal propagation in
  deep random networks (Poole et al. 2016; Schoenholz et al. 2017).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend
from .nn import activations as _act

# ---------------------------------------------------------------------------
# Checks


def _positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {kind}, got {value!r}")
    return value


def _spectrum(mu_name, mu, l_name, big):
    mu = _positive(mu_name, mu)
    big = _positive(l_name, big)
    if mu > big:
        raise ValueError(f"{mu_name} = {mu:g} exceeds {l_name} = {big:g}")
    return mu, big


# ---------------------------------------------------------------------------
# Gradient descent on smooth functions


def descent_lemma_margins(problem, xs, lr, beta):
    r"""Per step of a gradient-descent trajectory, how much more the objective fell
    than the descent lemma guarantees:

    .. math::
        m_t = f(x_t) - f(x_{t+1}) - \eta\Bigl(1 - \frac{\beta\eta}{2}\Bigr)\|\nabla f(x_t)\|^2,
        \qquad t = 0, \dots, T-1.

    If :math:`\|\nabla^2 f\| \le \beta` on the segments :math:`[x_t, x_{t+1}]` and
    :math:`x_{t+1} = x_t - \eta\nabla f(x_t)`, then
    :math:`f(x_{t+1}) \le f(x_t) - \eta(1 - \beta\eta/2)\|\nabla f(x_t)\|^2`
    (the quadratic upper bound of a :math:`\beta`-smooth function; Nesterov 2004,
    Section 1.2.2), so every :math:`m_t \ge 0`, for any step size. With :math:`\eta = 1/\beta` this is
    the lecture's :math:`m_t = f(x_t) - f(x_{t+1}) - \|\nabla f(x_t)\|^2 / (2\beta)`.
    A negative margin means :math:`\beta` does not bound the curvature where the run
    went (or the steps were not gradient steps with ``lr``).

    ``xs``: the iterates :math:`x_0, \dots, x_T`, an array of shape ``(T+1, ..., d)``
    (e.g. ``(T+1, R, d)`` for ``R`` runs) or a list of ``T+1`` arrays. Returns the
    margins, shape ``(T, ...)``, on the backend of ``xs``.
    """
    lr = _positive("lr", lr)
    beta = _positive("beta", beta)
    if isinstance(xs, (list, tuple)):
        if len(xs) < 2:
            raise ValueError(f"xs must hold at least two iterates, got {len(xs)}")
        xp = backend.array_module(*((f"xs[{i}]", x) for i, x in enumerate(xs)))
        xs = xp.stack([xp.asarray(x) for x in xs])
    if not backend.is_array(xs):
        raise TypeError(f"xs must be an array or a list of arrays, not {type(xs).__name__}")
    if xs.ndim < 2 or xs.shape[0] < 2:
        raise ValueError(f"xs must have shape (T+1, ..., d) with T >= 1, got {xs.shape}")
    xp = backend.array_module(("xs", xs))
    d = xs.shape[-1]
    flat = xs.reshape(-1, d)
    f = problem.value(flat).reshape(xs.shape[:-1])
    g = problem.grad(xs[:-1].reshape(-1, d))  # the gradients at x_0 .. x_{T-1}
    gsq = xp.sum(g * g, axis=-1).reshape((xs.shape[0] - 1,) + xs.shape[1:-1])
    return f[:-1] - f[1:] - lr * (1.0 - beta * lr / 2.0) * gsq


def stationarity_bound(beta, f0_minus_fstar, eps) -> int:
    r"""The number of gradient-descent steps with :math:`\eta = 1/\beta` after which
    some iterate is :math:`\epsilon`-stationary:

    .. math:: T = \Bigl\lceil \frac{2\beta\,(f(x_0) - f^*)}{\epsilon^2} \Bigr\rceil
              \;\Rightarrow\; \min_{t < T} \|\nabla f(x_t)\| \le \epsilon.

    Summing the descent lemma over :math:`t < T` gives
    :math:`\sum_{t<T} \|\nabla f(x_t)\|^2 / (2\beta) \le f(x_0) - f^*`, so the smallest
    squared gradient norm is at most :math:`2\beta(f(x_0) - f^*)/T` (Nesterov 2004,
    Section 1.2.3). No convexity is needed. At least 1 (the first iterate is checked).
    """
    beta = _positive("beta", beta)
    gap = _positive("f0_minus_fstar", f0_minus_fstar, allow_zero=True)
    eps = _positive("eps", eps)
    return max(1, math.ceil(2.0 * beta * gap / (eps * eps)))


def estimate_smoothness(problem, x, iters=100, seed=0):
    r"""The Hessian's largest eigenvalue magnitude :math:`\|\nabla^2 f(x)\|_2` by power
    iteration on Hessian-vector products:

    .. math:: v_{k+1} = \frac{H v_k}{\|H v_k\|},\qquad
              \hat\beta_k = \|H v_k\| \to |\lambda|_{\max}(H),\quad H = \nabla^2 f(x).

    The error falls like :math:`(|\lambda_2| / |\lambda_1|)^k`; :math:`\hat\beta_k` never
    exceeds :math:`\|H\|_2` (up to rounding), so an unconverged estimate is low, and it
    converges also when :math:`\pm\lambda` share the largest magnitude. Only
    ``problem.hvp(x, v)`` is needed (Pearlmutter 1994), never the Hessian.

    ``x`` of shape ``(d,)`` gives a float; ``(R, d)`` gives one estimate per run,
    shape ``(R,)``, all runs iterated together. The start vectors are Gaussian from
    ``numpy.random.default_rng(seed)``.
    """
    if isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    if not backend.is_array(x) or x.ndim not in (1, 2):
        raise ValueError(f"x must be an array of shape (d,) or (R, d), got {getattr(x, 'shape', x)!r}")
    xp = backend.array_module(("x", x))
    v = np.random.default_rng(seed).standard_normal(x.shape)
    v = xp.asarray(v.astype(np.result_type(x.dtype, np.float32)))
    v /= xp.linalg.norm(v, axis=-1, keepdims=True)
    est = None
    for _ in range(int(iters)):
        w = problem.hvp(x, v)
        est = xp.linalg.norm(w, axis=-1, keepdims=True)
        # a zero Hessian-vector product: the estimate is 0, keep the direction
        v = xp.where(est > 0, w / xp.where(est > 0, est, 1), v)
    est = est[..., 0]
    return float(est) if x.ndim == 1 else est


# ---------------------------------------------------------------------------
# Quadratics


def quadratic_rate_bound(lr, lam_min, lam_max, t):
    r"""The lecture's bound for gradient descent on a quadratic
    :math:`f(x) = \tfrac12 (x - x^*)^T A (x - x^*)` with eigenvalues in
    :math:`[\lambda_{\min}, \lambda_{\max}]`, :math:`\lambda_{\min} > 0`:

    .. math:: \frac{\|x_t - x^*\|}{\|x_0 - x^*\|} \le (1 - \eta\lambda_{\min})^t
              \quad\text{for}\quad 0 < \eta \le 1/\lambda_{\max}.

    GD multiplies the eigencomponent :math:`i` by :math:`1 - \eta\lambda_i` per step,
    and under the condition all these factors lie in :math:`[0, 1 - \eta\lambda_{\min}]`.
    (The exact worst factor is :math:`\max(|1-\eta\lambda_{\min}|, |1-\eta\lambda_{\max}|)`,
    which equals the bound up to :math:`\eta = 2/(\lambda_{\min}+\lambda_{\max})`; the
    lecture states the simpler sufficient condition, and so does this function.)

    **Validity.** A learning rate outside :math:`(0, 1/\lambda_{\max}]` is a
    ``ValueError`` naming ``lr`` (four units of rounding are tolerated, so
    ``lr = 1/lam_max`` computed in floating point passes), rather than a number that
    is not a bound. ``t``: an int or an array of ints >= 0; returns a float or an array.
    """
    lr = _positive("lr", lr)
    lam_min, lam_max = _spectrum("lam_min", lam_min, "lam_max", lam_max)
    if lr * lam_max > 1.0 + 4 * np.finfo(float).eps:
        raise ValueError(f"lr = {lr:g} exceeds 1/lam_max = {1 / lam_max:g}: the bound "
                         "(1 - lr lam_min)^t needs lr <= 1/lam_max")
    ts = np.asarray(t)
    if ts.dtype.kind not in "iu" or np.any(ts < 0):
        raise ValueError(f"t must be a non-negative int or an array of them, got {t!r}")
    out = (1.0 - lr * lam_min) ** ts.astype(np.float64)
    return float(out) if out.ndim == 0 else out


OPTIMAL_METHODS = ("gd", "heavy_ball", "nesterov")


def optimal_params(method, mu, L) -> dict:
    r"""The classical optimal tuning for quadratics with :math:`\mu I \preceq A \preceq
    L I` and its linear rate (:math:`\kappa = L/\mu`), in the parameterization of this
    library's optimizers:

    With :math:`r = (\sqrt\kappa - 1)/(\sqrt\kappa + 1)`:

    ==========  ==================================  ============  ==================================
    method      ``lr``                              ``momentum``  ``rate``
    ==========  ==================================  ============  ==================================
    gd          :math:`2/(L+\mu)`                   (absent)      :math:`(\kappa-1)/(\kappa+1)`
    heavy_ball  :math:`4/(\sqrt L+\sqrt\mu)^2`       :math:`r^2`   :math:`r`
    nesterov    :math:`1/L`                         :math:`r`     :math:`1 - 1/\sqrt\kappa`
    ==========  ==================================  ============  ==================================

    - gd: ``gpuopt.SGD(lr)``; the rate is the spectral radius
      :math:`\max_i |1 - \eta\lambda_i|`, minimized by balancing the two ends
      (Polyak 1987, Chapter 1).
    - heavy_ball: ``gpuopt.HeavyBall(lr, beta=momentum)``, i.e.
      :math:`x_{t+1} = x_t - \eta\nabla f(x_t) + \beta(x_t - x_{t-1})`; Polyak 1964,
      and Polyak 1987, Chapter 3; Lessard, Recht & Packard 2016.
    - nesterov: ``gpuopt.Nesterov(lr, beta=momentum)``, whose iterates are
      :math:`y_t = x_t + \beta(x_t - x_{t-1})`, :math:`x_{t+1} = y_t - \eta\nabla f(y_t)`:
      Nesterov's constant-momentum scheme for strongly convex functions (Nesterov
      2004, Section 2.2.1, constant step scheme III). On the quadratic the iteration
      matrix of the slowest eigenvalue has the double eigenvalue
      :math:`1 - 1/\sqrt\kappa`, all others are smaller in magnitude (Lessard, Recht &
      Packard 2016).

    ``rate`` is the asymptotic factor per step of :math:`\|x_t - x^*\|`, the spectral
    radius of the iteration matrix. With a double eigenvalue the norm behaves like
    :math:`(a + bt)\,\text{rate}^t`. Bad input: ``method`` unknown, ``mu`` or ``L`` not
    positive and finite, or ``mu > L`` is a ValueError naming the argument.
    """
    if method not in OPTIMAL_METHODS:
        raise ValueError(f"method must be one of {OPTIMAL_METHODS}, not {method!r}")
    mu, L = _spectrum("mu", mu, "L", L)
    kappa = L / mu
    sk = math.sqrt(kappa)
    if method == "gd":
        return {"lr": 2.0 / (L + mu), "rate": (kappa - 1.0) / (kappa + 1.0)}
    if method == "heavy_ball":
        r = (sk - 1.0) / (sk + 1.0)
        return {"lr": 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2, "momentum": r * r, "rate": r}
    return {"lr": 1.0 / L, "momentum": (sk - 1.0) / (sk + 1.0), "rate": 1.0 - 1.0 / sk}


# ---------------------------------------------------------------------------
# Mean-field signal propagation

# The variance map is searched on [Q_MIN, Q_MAX]: a fixed point below is reported
# as 0 (the signal dies), above as inf (it grows without bound).
Q_MIN, Q_MAX = 1e-30, 1e30


def _phi(name):
    if name not in _act.ACTIVATIONS:
        raise ValueError(f"activation must be one of {_act.ACTIVATIONS}, not {name!r}")
    return lambda u: _act.activation(name, u)


def _dphi(name):
    return lambda u: _act.activation_with_derivative(name, u)[1]


def _expect(f, q):
    r""":math:`E[f(\sqrt q Z)]`, :math:`Z \sim N(0,1)` (``gpuopt.nn.gaussian_quadrature``)."""
    z, w = _act.gaussian_quadrature()
    return float(w @ f(math.sqrt(q) * z))


def _expect2(f, g, q, c):
    r""":math:`E[f(u_1) g(u_2)]` for :math:`u_1 = \sqrt q Z_1`,
    :math:`u_2 = \sqrt q (c Z_1 + \sqrt{1-c^2} Z_2)`, :math:`Z_1, Z_2` independent N(0,1).

    The outer rule in :math:`Z_1` splits at 0 (the kink of :math:`f`); for each outer
    node the inner Gauss-Legendre rule in :math:`Z_2` splits where :math:`u_2 = 0` (the
    kink of :math:`g`), so both are integrals of analytic functions.
    """
    z1, w1 = _act.gaussian_quadrature()
    s = math.sqrt(max(0.0, 1.0 - c * c))
    sq = math.sqrt(q)
    if s < 1e-12:  # u2 = c u1: one-dimensional
        return float(w1 @ (f(sq * z1) * g(sq * c * z1)))
    x, w = np.polynomial.legendre.leggauss(_act.QUADRATURE_NODES)
    cut = _act.QUADRATURE_CUTOFF
    t = np.clip(-c * z1 / s, -cut, cut)[:, None]  # Z2 where u2 = 0, per outer node
    total = 0.0
    for lo, hi in ((-cut, t), (t, cut)):
        half = (hi - lo) / 2.0
        nodes = (hi + lo) / 2.0 + half * x[None, :]
        weights = half * w[None, :] * np.exp(-nodes * nodes / 2.0) / math.sqrt(2.0 * math.pi)
        inner = np.sum(weights * g(sq * (c * z1[:, None] + s * nodes)), axis=1)
        total += float(w1 @ (f(sq * z1) * inner))
    return total


def _q_star(phi, sigma_w2, sigma_b2) -> float:
    """The fixed point of q -> sigma_w2 E[phi(sqrt(q) Z)^2] + sigma_b2 that the
    iteration from q = 1 converges to (the map is increasing, so the iterates move
    monotonically to the nearest fixed point in the direction of the first step)."""

    def side(q):
        # +1 / -1: the map moves q up / down; 0: q is fixed up to rounding
        h = sigma_w2 * _expect(lambda u: phi(u) ** 2, q) + sigma_b2 - q
        return 0 if abs(h) <= 1e-12 * q else (1 if h > 0 else -1)

    start = side(1.0)
    if start == 0:
        return 1.0  # e.g. relu at sigma_w2 = 2 without bias: every q is fixed
    a = 1.0
    while True:  # walk from 1 until the map moves the other way (rounding-level
        # zeros do not stop the walk: tanh at sigma_w2 = 1 decays to q* = 0 like 1/l)
        b = a * 2.0 if start > 0 else a / 2.0
        if b > Q_MAX:
            return math.inf
        if b < Q_MIN:
            return 0.0
        if side(b) == -start:
            break
        a = b
    for _ in range(200):  # geometric bisection: q* may be far from 1
        m = math.sqrt(a * b)
        sm = side(m)
        if sm == 0 or m in (a, b):
            return m
        if sm == start:
            a = m
        else:
            b = m
    return math.sqrt(a * b)


def _chi_1(name, sigma_w2, q):
    # at q* = 0 or inf, the limit q -> q* (phi'(0) itself is a convention for relu)
    q = min(max(q, Q_MIN), Q_MAX)
    dphi = _dphi(name)
    return sigma_w2 * _expect(lambda u: dphi(u) ** 2, q)


def depth_scale(activation, sigma_w2, sigma_b2) -> dict:
    r"""Mean-field signal propagation through a deep random network (Poole et al. 2016;
    Schoenholz et al. 2017) with weights :math:`N(0, \sigma_w^2/N)`, biases
    :math:`N(0, \sigma_b^2)` and activation :math:`\phi`, in the limit of infinite width.

    Returns a dict:

    - ``q_star``: the fixed point :math:`q^*` of the length map
      :math:`q \mapsto \sigma_w^2 E[\phi(\sqrt q Z)^2] + \sigma_b^2` reached from
      :math:`q_0 = 1` (``0`` when the pre-activation variance decays to 0, ``inf``
      when it grows without bound).
    - ``chi_1``: :math:`\chi_1 = \sigma_w^2 E[\phi'(\sqrt{q^*} Z)^2]`, the slope of the
      correlation map at :math:`c = 1` and the mean squared singular value of a layer's
      Jacobian: :math:`\chi_1 < 1` ordered (inputs converge, gradients vanish),
      :math:`> 1` chaotic (inputs decorrelate, gradients explode), :math:`= 1` the
      order-to-chaos line. At ``q_star`` 0 or inf, the limit.
    - ``c_star``: the stable fixed point of the correlation map
      :math:`c \mapsto (\sigma_w^2 E[\phi(u_1)\phi(u_2)] + \sigma_b^2)/q^*`,
      :math:`u_1 = \sqrt{q^*} Z_1`, :math:`u_2 = \sqrt{q^*}(c Z_1 + \sqrt{1-c^2} Z_2)`:
      1 in the ordered phase, below 1 in the chaotic phase.
    - ``chi_c``: the slope of the correlation map at :math:`c^*`,
      :math:`\sigma_w^2 E[\phi'(u_1)\phi'(u_2)]` (Schoenholz et al. 2017);
      equals ``chi_1`` when :math:`c^* = 1`.
    - ``xi_c``: the correlation depth scale :math:`\xi_c = -1/\log\chi_c`
      (Schoenholz et al. 2017): :math:`|c_l - c^*| \sim e^{-l/\xi_c}`. It
      diverges (``inf``) on the order-to-chaos line; signals propagate through about
      :math:`\xi_c` layers, and networks deeper than a few :math:`\xi_c` do not train.
    - ``phase``: ``"ordered"`` (:math:`\chi_1 < 1`), ``"critical"`` (:math:`|\chi_1 - 1|
      \le 10^{-9}`) or ``"chaotic"``.

    When ``q_star`` is inf in the chaotic phase the correlation map is not defined
    and ``c_star``, ``chi_c``, ``xi_c`` are NaN. Expectations by quadrature
    (``gpuopt.nn.gaussian_quadrature``, split at the activations' kinks).
    """
    phi = _phi(activation)
    sigma_w2 = _positive("sigma_w2", sigma_w2)
    sigma_b2 = _positive("sigma_b2", sigma_b2, allow_zero=True)
    q = _q_star(phi, sigma_w2, sigma_b2)
    chi1 = _chi_1(activation, sigma_w2, q)
    phase = "critical" if abs(chi1 - 1.0) <= 1e-9 else ("ordered" if chi1 < 1.0 else "chaotic")
    if phase != "chaotic":
        c_star, chi_c = 1.0, chi1
    elif not 0.0 < q < math.inf:
        c_star = chi_c = math.nan
    else:
        c_star = _c_star(phi, sigma_w2, sigma_b2, q)
        dphi = _dphi(activation)
        chi_c = sigma_w2 * _expect2(dphi, dphi, q, c_star)
    if math.isnan(chi_c):
        xi = math.nan
    elif phase == "critical" or chi_c >= 1.0:
        xi = math.inf
    else:
        xi = -1.0 / math.log(chi_c) if chi_c > 0 else 0.0
    return {"q_star": q, "chi_1": chi1, "c_star": c_star, "chi_c": chi_c, "xi_c": xi, "phase": phase}


def _c_star(phi, sigma_w2, sigma_b2, q) -> float:
    """The fixed point c* < 1 of the correlation map in the chaotic phase: C(1) = 1
    with slope chi_1 > 1, so C(c) < c just below 1, and C(-1) >= -1 (Cauchy-Schwarz);
    bisection on C(c) - c over [-1 + 1e-6, 1 - 1e-6]. The lower end stays off -1:
    for odd activations without bias, c = -1 is itself an (unstable) fixed point, and
    whether rounding put C(-1) - (-1) at +0 or -0 must not decide the answer."""

    def h(c):
        return (sigma_w2 * _expect2(phi, phi, q, c) + sigma_b2) / q - c

    a, b = -1.0 + 1e-6, 1.0 - 1e-6
    if h(b) >= 0:  # too close to critical to resolve c* below 1
        return 1.0
    if h(a) <= 0:
        return -1.0
    for _ in range(60):
        m = (a + b) / 2.0
        if h(m) > 0:
            a = m
        else:
            b = m
    return (a + b) / 2.0


def critical_sigma_w2(activation, sigma_b2=0.0) -> float:
    r"""The weight variance :math:`\sigma_w^2` on the order-to-chaos line for the given
    bias variance: the solution of :math:`\chi_1(\sigma_w^2, \sigma_b^2) = 1`
    (see :func:`depth_scale`), by bisection in :math:`\log\sigma_w^2` over
    :math:`[10^{-3}, 10^4]` to relative precision 1e-12 (Poole et al. 2016,
    Schoenholz et al. 2017). Initializing at this :math:`\sigma_w^2` makes the
    correlation depth scale diverge, so signals and gradients reach any depth.

    Known values: tanh with :math:`\sigma_b^2 = 0` gives 1 (:math:`q^* = 0`,
    :math:`\chi_1 = \sigma_w^2\phi'(0)^2`); relu gives 2 for any :math:`\sigma_b^2`
    (:math:`\chi_1 = \sigma_w^2/2`, He et al. 2015); identity gives 1.

    Precision: where :math:`\chi_1 - 1` changes sign linearly, to ~1e-12; where it
    touches 1 tangentially on one side (tanh, elu at :math:`\sigma_b^2 = 0`, where
    :math:`\chi_1 - 1 = O(\delta^2)` above the line), the rounding of :math:`\chi_1`
    limits it to ~1e-6. A ValueError names ``activation`` when there is no crossing in
    the interval, or when :math:`\chi_1` jumps across 1 instead of crossing it (gelu
    and silu without bias: the fixed point :math:`q^*` reached from :math:`q_0 = 1`
    jumps from 0 to infinity).
    """
    phi = _phi(activation)
    sigma_b2 = _positive("sigma_b2", sigma_b2, allow_zero=True)


    def excess(sw2):
        return _chi_1(activation, sw2, _q_star(phi, sw2, sigma_b2)) - 1.0

    lo, hi = 1e-3, 1e4
    if excess(lo) >= 0 or excess(hi) <= 0:
        raise ValueError(f"activation {activation!r} with sigma_b2 = {sigma_b2:g} has no "
                         f"order-to-chaos transition for sigma_w2 in [{lo:g}, {hi:g}]")
    while hi / lo - 1.0 > 1e-12:
        m = math.sqrt(lo * hi)
        if excess(m) > 0:
            hi = m
        else:
            lo = m
    # A sign change need not be a crossing: where q* jumps (gelu and silu without
    # bias: q* = 0 is stable, yet from q = 1 the variance can run off to infinity),
    # chi_1 jumps past 1 and there is no point with chi_1 = 1.
    jump = max(abs(excess(lo)), abs(excess(hi)))
    if jump > 1e-6:
        raise ValueError(
            f"activation {activation!r} with sigma_b2 = {sigma_b2:g}: chi_1 jumps across 1 at "
            f"sigma_w2 = {lo:.6g} (from {excess(lo) + 1:.4g} to {excess(hi) + 1:.4g}, where the "
            "fixed point q* jumps); there is no order-to-chaos line to return")
    return math.sqrt(lo * hi)
