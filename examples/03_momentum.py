"""Claim 3: momentum turns GD's kappa into sqrt(kappa) on ill-conditioned quadratics.

On f(x) = 1/2 x^T A x with mu I <= A <= L I and kappa = L/mu, each method with its
classical optimal tuning (``gpuopt.theory.optimal_params``) converges linearly:

* GD            lr = 2/(L+mu)                         rate (kappa-1)/(kappa+1)
* heavy ball    lr = 4/(sqrt L + sqrt mu)^2,
                beta = ((sqrt k - 1)/(sqrt k + 1))^2  rate (sqrt k - 1)/(sqrt k + 1)
* Nesterov      as ``optimal_params("nesterov")`` gives it

so the iterations to a fixed tolerance grow like kappa for GD and like sqrt(kappa)
with momentum. Nesterov runs in the lecture's notation with the consistent look-ahead
point x + lr*beta*v (the slide's x + beta*v only matches x_{t+1} = x_t + lr*v_{t+1}
when lr = 1); ``gpuopt.Nesterov`` stores that look-ahead point, and we measure the
iterate x itself (``x_from_lookahead``).
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt import theory
from gpuopt.problems import Quadratic

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
DIM, STARTS, TOL = 20, 4, 1e-6
kappas = [10, 100, 1000] if args.quick else [10, 30, 100, 300, 1000, 3000, 10000]
METHODS = {"gd": "GD", "heavy_ball": "heavy ball", "nesterov": "Nesterov"}
claims = Claims("Claim 3: momentum on ill-conditioned quadratics")


def make(method, p):
    if method == "gd":
        return go.SGD(lr=p["lr"], batched=True)
    cls = go.HeavyBall if method == "heavy_ball" else go.Nesterov
    return cls(lr=p["lr"], beta=p["momentum"], batched=True)


def norms_of_run(problem, method, p, x0, steps):
    """||x_t|| / ||x_0|| for every start, shape (steps + 1, R)."""
    opt = make(method, p)
    y = x0.copy()  # the point where the gradient is taken (Nesterov: the look-ahead)
    state = opt.init(y)
    out = np.empty((steps + 1, len(x0)))
    out[0] = 1.0
    n0 = xp.linalg.norm(x0, axis=1)
    for t in range(1, steps + 1):
        opt.step(y, problem.grad(y), state)
        x = opt.x_from_lookahead(y, state) if method == "nesterov" else y
        out[t] = to_numpy(xp.linalg.norm(x, axis=1) / n0)
    return out


rng = np.random.default_rng(0)
x0 = xp.asarray(rng.standard_normal((STARTS, DIM)))
mu = 1.0
iters = {m: [] for m in METHODS}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
show_kappa = 1000

for kappa in kappas:
    L = kappa * mu
    problem = Quadratic(DIM, mu, L, spectrum="log", rotate=True, seed=1)
    for method, label in METHODS.items():
        p = theory.optimal_params(method, mu, L)
        rate = p["rate"]
        # Long enough for ||x_t|| to fall well below TOL: 30 e-foldings of the rate
        # (100 for momentum, whose double eigenvalue needs a long window, see below).
        efolds = 30 if method == "gd" else 100
        steps = int(np.ceil(efolds / -np.log(rate)))
        ratio = norms_of_run(problem, method, p, x0, steps)
        worst = ratio.max(axis=1)
        iters[method].append(int(np.argmax(worst <= TOL)))
        # Rate over the second half: ||x_T|| / ||x_{T/2}|| = rate^(T/2) once the
        # slowest direction dominates. The optimal momentum tunings put a double
        # eigenvalue on the iteration matrix, so there ||x_t|| ~ (a + b t) rate^t and
        # the estimate can exceed rate by the factor 2^(1/(T/2)) (at most).
        half = steps // 2
        measured = (worst[steps] / worst[half]) ** (1.0 / (steps - half))
        slack = 0.0 if method == "gd" else np.log(steps / half) / (steps - half)
        low, high = rate - 0.01 * (1 - rate), rate * np.exp(slack) + 0.01 * (1 - rate)
        claims.check(f"kappa={kappa:g} {label}: linear rate", f"{rate:.5f}",
                     f"{measured:.5f}", low <= measured <= high)
        if kappa == show_kappa:
            t = np.arange(steps + 1)
            line, = ax1.semilogy(t, worst, label=f"{label}: measured")
            ax1.semilogy(t, rate ** t, "--", lw=1, color=line.get_color(), label=f"{label}: rate^t")

ax1.axhline(TOL, color="gray", lw=0.8, ls=":")
ax1.set(xscale="log", ylim=(1e-12, 10), xlabel="step t", ylabel="||x_t|| / ||x_0|| (worst start)",
        title=f"optimal tunings, kappa = {show_kappa}")
ax1.legend(fontsize=7)

# Iterations to TOL against kappa: a power law kappa^s, s fitted on log-log axes. The
# theory's count is log(1/TOL) / -log(rate) for each kappa, fitted the same way.
k = np.array(kappas, dtype=float)
for method, label in METHODS.items():
    n = np.array(iters[method], dtype=float)
    rates = np.array([theory.optimal_params(method, mu, kk * mu)["rate"] for kk in k])
    n_theory = np.log(1 / TOL) / -np.log(rates)
    slope = np.polyfit(np.log(k), np.log(n), 1)[0]
    slope_theory = np.polyfit(np.log(k), np.log(n_theory), 1)[0]
    # The measured count also carries the transient (the (a + b t) factor above and the
    # start's spread over directions), a log-size term: allow 0.1 in the exponent.
    claims.check(f"{label}: iterations to {TOL:g} ~ kappa^s", f"s = {slope_theory:.2f}",
                 f"s = {slope:.2f}", abs(slope - slope_theory) <= 0.1)
    line, = ax2.loglog(k, n, "o-", label=f"{label}: measured, slope {slope:.2f}")
    ax2.loglog(k, n_theory, "--", lw=1, color=line.get_color(),
               label=f"{label}: log(1/tol)/-log(rate), slope {slope_theory:.2f}")
ax2.set(xlabel="condition number kappa", ylabel=f"iterations to ||x_t|| <= {TOL:g} ||x_0||",
        title="GD ~ kappa, momentum ~ sqrt(kappa)")
ax2.legend(fontsize=7)

save(fig, args, "03_momentum")
finish(claims)
