"""Claim 1: the descent lemma, on a non-convex function.

If ||Hessian f|| <= beta wherever gradient descent goes, then one GD step with
lr = 1/beta decreases f by at least ||grad f||^2 / (2 beta):

    f(x_t) - f(x_{t+1}) - ||grad f(x_t)||^2 / (2 beta) >= 0        (the "margin")

Summing over steps, min_{s<T} ||grad f(x_s)||^2 <= 2 beta (f(x_0) - f*) / T, so some
iterate has ||grad|| <= eps within T = 2 beta (f(x_0) - f*) / eps^2 steps. Nothing
here needs convexity: we use Himmelblau's function (four minima, four saddles, one
maximum) on the box [-6, 6]^2, where the Hessian's norm is bounded by its largest
absolute row sum (Gershgorin), and we check that every iterate stays in the box.
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt import theory
from gpuopt.problems import Himmelblau

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
claims = Claims("Claim 1: the descent lemma on Himmelblau's function")
problem = Himmelblau()
f_star = problem.f_star  # 0, at each of the four minima

# beta: Hessian [[12u^2 + 4w - 42, 4(u + w)], [4(u + w), 4u + 12w^2 - 26]] on |u|, |w| <= A.
# A symmetric matrix's norm is at most its largest absolute row sum.
A = 6.0
beta = max(max(12 * A**2 + 4 * A - 42, 42 + 4 * A), max(12 * A**2 + 4 * A - 26, 26 + 4 * A)) + 8 * A
grid = np.stack(np.meshgrid(np.linspace(-A, A, 241), np.linspace(-A, A, 241)), -1).reshape(-1, 2)
hess_max = np.abs(np.linalg.eigvalsh(to_numpy(problem.hessian(xp.asarray(grid))))).max()
claims.check(f"beta bounds ||Hessian|| on [-{A:g}, {A:g}]^2", f"beta = {beta:g} (row sums)",
             f"max ||H|| on a 241^2 grid = {hess_max:.1f}", hess_max <= beta)

# Gradient descent with lr = 1/beta from starts spread over [-4, 4]^2, one batch.
runs, steps = (16, 300) if args.quick else (64, 2000)
x = xp.asarray(np.random.default_rng(0).uniform(-4, 4, (runs, 2)))
opt = go.SGD(lr=1.0 / beta, batched=True)
state = opt.init(x)
xs = [x.copy()]
for _ in range(steps):
    opt.step(x, problem.grad(x), state)
    xs.append(x.copy())
xs = xp.stack(xs)  # (steps + 1, runs, 2)
inside = float(abs(to_numpy(xs)).max())
claims.check("every iterate stays in the box", f"max |coordinate| <= {A:g}", f"{inside:.2f}", inside <= A)

margins = to_numpy(theory.descent_lemma_margins(problem, xs, 1.0 / beta, beta))  # (steps, runs)
f = to_numpy(problem.value(xs.reshape(-1, 2))).reshape(steps + 1, runs)
# f is a sum of squares of O(10) terms: its rounding error is ~1e-14 (1 + f).
tol = 1e-12 * (1 + f[:-1])
claims.check("margin f(x_t)-f(x_t+1)-||g_t||^2/(2 beta) >= 0",
             f"all {margins.size} steps >= 0", f"min {margins.min():.2e}", (margins >= -tol).all())

# The stationarity bound, for every run and every T: min_{s<T} ||g_s|| <= sqrt(2 beta (f0 - f*) / T).
gnorm = np.linalg.norm(to_numpy(problem.grad(xs.reshape(-1, 2))), axis=-1).reshape(steps + 1, runs)
best = np.minimum.accumulate(gnorm, axis=0)[:-1]  # min over s < T, for T = 1 .. steps
T = np.arange(1, steps + 1)[:, None]
bound = np.sqrt(2 * beta * (f[0] - f_star) / T)
claims.check("min_{s<T} ||g_s|| <= sqrt(2 beta (f0-f*)/T)", "ratio <= 1 for all T and runs",
             f"max ratio {(best / bound).max():.3f}", (best <= bound * (1 + 1e-12)).all())
eps = 1e-3
T_eps = theory.stationarity_bound(beta, float((f[0] - f_star).max()), eps)
hit = np.argmax(gnorm <= eps, axis=0)
reached = (gnorm <= eps).any(axis=0).all()
claims.check(f"steps until ||g|| <= {eps:g} (worst start)", f"<= T = 2 beta (f0-f*)/eps^2 = {T_eps:.1e}",
             f"{hit.max()}" if reached else f"not reached in {steps}", reached and hit.max() <= T_eps)

fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
u = np.linspace(-A, A, 300)
U, W = np.meshgrid(u, u)
F = to_numpy(problem.value(xp.asarray(np.stack([U, W], -1).reshape(-1, 2)))).reshape(U.shape)
axes[0].contour(U, W, np.log10(F + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
path = to_numpy(xs)
axes[0].plot(path[:, :, 0], path[:, :, 1], lw=0.8)
axes[0].plot(path[0, :, 0], path[0, :, 1], "k.", ms=4)
axes[0].plot(*problem.minima.T, "r*", ms=10)
axes[0].set(xlabel="u", ylabel="w", aspect="equal", title=f"GD, lr = 1/beta = 1/{beta:g}, {runs} starts")

# decrease / (||g||^2 / (2 beta)) = 1 + margin / (||g||^2 / (2 beta)): at least 1 by the lemma.
# (Near a minimum, where the quadratic model holds, it is 2 - g^T H g / (beta ||g||^2).)
decrease = f[:-1] - f[1:]
predicted = gnorm[:-1] ** 2 / (2 * beta)
keep = predicted > 1e-20  # steps at the rounding floor carry no information
axes[1].semilogx(predicted[keep], decrease[keep] / predicted[keep], ".", ms=2, alpha=0.3)
axes[1].axhline(1, color="k", ls="--", lw=1, label="the lemma's guarantee")
axes[1].set(xlabel="||grad f(x_t)||^2 / (2 beta)", ylabel="(f(x_t) - f(x_t+1)) / (||g_t||^2 / (2 beta))",
            ylim=(0, 3), title="decrease per step over the guaranteed decrease")
axes[1].legend(loc="lower right")

axes[2].loglog(T, best / np.sqrt(2 * beta * (f[0] - f_star)), lw=0.6, alpha=0.6)
axes[2].loglog(T[:, 0], 1 / np.sqrt(T[:, 0]), "k--", lw=2, label="bound 1/sqrt(T)")
axes[2].set(xlabel="T", ylabel="min_{s<T} ||g_s|| / sqrt(2 beta (f0 - f*))",
            title="stationarity: every run under the bound")
axes[2].legend()
save(fig, args, "01_descent_lemma")
finish(claims)
