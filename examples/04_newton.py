"""Claim 4: Newton's method solves a quadratic in one step and converges
quadratically near a minimum; gradient descent converges only linearly.

* Quadratic f = 1/2 x^T A x: x_1 = x_0 - A^{-1} A x_0 = 0 = x*, whatever the
  condition number (up to rounding, about kappa * machine epsilon).
* Rosenbrock near x* = (1, 1): the errors e_t = ||x_t - x*|| of Newton satisfy
  e_{t+1} ~ C e_t^2 (the digits of accuracy double per step), an order of
  convergence log(e_{t+1}/e_t) / log(e_t/e_{t-1}) -> 2; GD with lr = 1/lam_max(H*)
  has e_{t+1}/e_t -> 1 - lr lam_min(H*), order 1.
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt.problems import Quadratic, Rosenbrock

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
claims = Claims("Claim 4: Newton's method")
EPS = np.finfo(np.float64).eps

# --- one step on quadratics ------------------------------------------------------
for kappa in [1e2, 1e4] if args.quick else [1e2, 1e4, 1e6]:
    problem = Quadratic(50, 1.0, kappa, spectrum="log", rotate=True, seed=2)
    x = xp.asarray(np.random.default_rng(0).standard_normal(50))
    e0 = float(xp.linalg.norm(x))
    opt = go.Newton(lr=1.0)
    opt.step(x, problem.grad(x), opt.init(x), hessian=problem.hessian(x))
    rel = float(xp.linalg.norm(x)) / e0
    # A backward-stable solve has relative error of order kappa * eps.
    claims.check(f"quadratic, kappa={kappa:g}: one step to x*",
                 f"||x1-x*||/||x0-x*|| <= {100 * kappa * EPS:.0e}", f"{rel:.1e}", rel <= 100 * kappa * EPS)

# --- Rosenbrock: Newton vs GD from the same start -----------------------------------
problem = Rosenbrock(dim=2)
x_star = np.ones(2)
x0 = np.array([0.8, 0.6])


def errors(x):
    return float(np.linalg.norm(to_numpy(x) - x_star))


x = xp.asarray(x0.copy())
newton = go.Newton(lr=1.0)
state = newton.init(x)
e_newton = [errors(x)]
while e_newton[-1] > 0 and len(e_newton) < 30:
    newton.step(x, problem.grad(x), state, hessian=problem.hessian(x))
    e_newton.append(errors(x))
e = np.array(e_newton)
H_star = to_numpy(problem.hessian(xp.asarray(x_star)))

# Near x*, Newton's error obeys e_{t+1} = 1/2 H*^{-1} T[e_t, e_t] + O(e_t^3), with T the
# third-derivative tensor, so e_{t+1} <= K e_t^2 with K = max over unit u of
# ||1/2 H*^{-1} T[u, u]||; we allow twice that for H(x_t) != H* (as Nocedal & Wright,
# Theorem 3.5, allow 2 ||H*^{-1}||). T[u] comes from central differences of the
# Hessian (exact here: Rosenbrock's Hessian is quadratic in x).
def third_derivative(u, h=1e-3):
    plus = to_numpy(problem.hessian(xp.asarray(x_star + h * u)))
    minus = to_numpy(problem.hessian(xp.asarray(x_star - h * u)))
    return (plus - minus) / (2 * h)


angles = np.linspace(0, np.pi, 721)
K = max(np.linalg.norm(0.5 * np.linalg.solve(H_star, third_derivative(u) @ u))
        for u in np.stack([np.cos(angles), np.sin(angles)], axis=1))
local = (e[:-1] < 1e-2) & (e[1:] > 0)  # steps inside the local region, above rounding
ratios = e[1:][local] / e[:-1][local] ** 2
digits = -np.log10(e[e > 0])
local_digits = " -> ".join(f"{d:.1f}" for d in digits[digits > 1])
claims.check("Newton on Rosenbrock: e_(t+1) <= K e_t^2 once e_t < 1e-2 (digits double)",
             f"K = 2 max||H*^-1 T[u,u]||/2 = {2 * K:.0f}",
             f"max e_(t+1)/e_t^2 = {ratios.max():.2g}; digits {local_digits}",
             len(ratios) >= 2 and ratios.max() <= 2 * K)

lam = np.linalg.eigvalsh(H_star)
lr = 1.0 / lam[-1]
steps = 12000 if args.quick else 40000
x = xp.asarray(x0.copy())
gd = go.SGD(lr=lr)
state = gd.init(x)
e_gd = np.empty(steps + 1)
e_gd[0] = errors(x)
for t in range(1, steps + 1):
    gd.step(x, problem.grad(x), state)
    e_gd[t] = errors(x)
rate_theory = 1 - lr * lam[0]
rate = (e_gd[-1] / e_gd[steps // 2]) ** (1.0 / (steps - steps // 2))
claims.check("GD on Rosenbrock, lr=1/lam_max(H*): linear rate", f"1 - lam_min/lam_max = {rate_theory:.6f}",
             f"{rate:.6f}", abs(rate - rate_theory) <= 0.01 * (1 - rate_theory))
gd_order = np.log(e_gd[-1] / e_gd[-2]) / np.log(e_gd[-2] / e_gd[-3])
claims.check("GD: order of convergence", "1 (linear)", f"{gd_order:.2f}", abs(gd_order - 1) <= 0.1)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogy(np.arange(len(e)), np.where(e > 0, e, np.nan), "o-", label="Newton")
ax1.semilogy(np.arange(steps + 1), e_gd, label=f"GD, lr = 1/lam_max(H*) = {lr:.1e}")
ax1.semilogy(np.arange(steps + 1), e_gd[0] * rate_theory ** np.arange(steps + 1), "--", lw=1,
             label="e_0 (1 - lam_min/lam_max)^t")
ax1.set(xscale="symlog", xlabel="step t (log scale after 1)", ylabel="||x_t - x*||",
        title="Rosenbrock from x0 = (0.8, 0.6), x* = (1, 1)")
ax1.legend(fontsize=8)
ax2.bar(np.arange(len(digits)), digits, color="C0")
for t, d in enumerate(digits):
    ax2.text(t, d + 0.2, f"{d:.1f}", ha="center", fontsize=8)
ax2.set(xlabel="Newton step t", ylabel="digits of accuracy  -log10 ||x_t - x*||",
        title="Newton: digits double per step")
save(fig, args, "04_newton")
finish(claims)
