"""Claim 5: adaptive methods rescale every coordinate by its own gradient history.

AdaGrad, RMSProp, AdaDelta and Adam divide each coordinate's step by a running root
mean square of that coordinate's gradients, so multiplying one coordinate's
gradients by a constant leaves its steps unchanged (exactly when eps = 0):

1. On a badly scaled quadratic f = 1/2 sum_i lam_i x_i^2, curvatures lam_i from 1 to
   1e4, started at x_0 = (1, ..., 1), every coordinate follows the same trajectory
   x_i(t) whatever its curvature, so they all converge together; GD's coordinates
   shrink by (1 - lr lam_i)^t with lr <= 2/lam_max, and the flat ones barely move.
2. On a small network, whose gradient entries span orders of magnitude, the first
   step moves every parameter by the same amount: lr for AdaGrad and bias-corrected
   Adam, lr / sqrt(1 - alpha) for RMSProp (AdaDelta's first step, about
   lr sqrt(eps / (1 - rho)), is uniform only where |g| >> sqrt(eps / (1 - rho))).
3. Adam's bias correction: under the same gradients, the uncorrected step (the
   lecture's form m_t / (sqrt(v_t) + eps)) differs from the corrected one (Kingma &
   Ba's, gpuopt.Adam's default) by the factor (1 - beta1^t) / sqrt(1 - beta2^t).

AdaGrad here divides by sqrt(s_t) (Duchi et al. 2011, as torch and every library
does); the lecture's slide divides by s_t itself, which breaks the scale invariance
of point 1: a coordinate's step would then shrink as its gradients grow.
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt.problems import MLP, Quadratic, teacher_student

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
claims = Claims("Claim 5: adaptive methods")
COLOR = {"AdaGrad": "C0", "RMSProp": "C1", "AdaDelta": "C2", "Adam": "C3", "GD": "C7"}
OPTIMIZER = {"AdaGrad": "adagrad", "RMSProp": "rmsprop", "AdaDelta": "adadelta", "Adam": "adam", "GD": "sgd"}
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
axes = axes.ravel()

# --- 1. a badly scaled quadratic ---------------------------------------------------
DIM, T = 9, 300
problem = Quadratic(DIM, 1.0, 1e4, spectrum="log", rotate=False)  # axis-aligned: diagonal A
lam = np.asarray(problem.eigenvalues)
# eps is kept far below the gradients so that the invariance is visible to 1e-4;
# AdaDelta keeps its default, because its eps also sets the size of its first steps.
ADAPTIVE = {
    "AdaGrad": go.AdaGrad(lr=0.1, eps=1e-12),
    "RMSProp": go.RMSProp(lr=0.01, eps=1e-12),
    "AdaDelta": go.AdaDelta(lr=1.0),
    "Adam": go.Adam(lr=0.01, eps=1e-12),
}
gd_lr = 1.0 / lam.max()
runs = {**ADAPTIVE, f"GD, lr = 1/lam_max = {gd_lr:g}": go.SGD(lr=gd_lr)}
x0 = xp.ones(DIM)
dist = {}
for name, opt in runs.items():
    x = x0.copy()
    state = opt.init(x)
    spread, d = 0.0, [1.0]
    for _ in range(T):
        opt.step(x, problem.grad(x), state)
        xh = to_numpy(x)
        spread = max(spread, np.ptp(xh))  # largest gap between two coordinates
        d.append(np.linalg.norm(xh) / np.sqrt(DIM))
    dist[name] = np.array(d)
    if name in ADAPTIVE:
        claims.check(f"{name}: coordinates with lam 1..1e4 move alike",
                     "max_t max_ij |x_i - x_j| ~ 0 (<= 1e-4)", f"{spread:.1e}", spread <= 1e-4)
    axes[0].semilogy(dist[name], label=name, color=COLOR[name.split(",")[0]])
# GD's best possible distance after T steps, over every stable lr (exact formula):
# ||x_T||^2 = sum_i (1 - lr lam_i)^(2T) x_0i^2.
lrs = np.linspace(0, 2 / lam.max(), 4001)[1:]
gd_best = np.sqrt(((1 - lrs[:, None] * lam) ** (2 * T)).sum(axis=1).min() / DIM)
for name in ADAPTIVE:
    claims.check(f"{name}: ||x_T||/||x_0|| after {T} steps", f"< GD's best over all lr = {gd_best:.3f}",
                 f"{dist[name][-1]:.1e}", dist[name][-1] < gd_best)
axes[0].axhline(gd_best, color="k", lw=0.8, ls=":", label="GD, best lr (formula)")
axes[0].set(xlabel="step t", ylabel="||x_t|| / ||x_0||", ylim=(1e-12, 2),
            title="diagonal quadratic, curvatures 1 .. 1e4")
axes[0].legend(fontsize=7)

# --- 2. first steps on a small network ----------------------------------------------
X, y = teacher_student([8, 32, 1], "tanh", samples=128, seed=0)
net = MLP(X, y, widths=[8, 32, 32, 1], activation="tanh")
theta0 = net.init_params([0], scheme="xavier_normal", xp=xp, dtype=np.float64)[0]
g0 = net.grad(theta0)
big = to_numpy(abs(g0)) > 1e-6  # entries where eps is negligible
span = np.log10(to_numpy(abs(g0))[big].max() / to_numpy(abs(g0))[big].min())
lr = 1e-3
g = to_numpy(abs(g0))[big]
# After one step the state holds g itself (AdaGrad: s = g^2; RMSProp: s = (1-alpha) g^2;
# Adam, bias-corrected: m = g, v = g^2), so the step is lr |g| / (c |g| + eps): lr / c
# for every |g| >> eps, whatever the size of g.
first_step = {
    "AdaGrad": (go.AdaGrad(lr=lr, eps=1e-10), lr * g / (g + 1e-10)),
    "RMSProp": (go.RMSProp(lr=lr, alpha=0.99, eps=1e-8), lr * g / (np.sqrt(1 - 0.99) * g + 1e-8)),
    "Adam": (go.Adam(lr=lr, eps=1e-8), lr * g / (g + 1e-8)),
}
for name, (opt, expected) in first_step.items():
    theta = theta0.copy()
    opt.step(theta, g0.copy(), opt.init(theta))
    moved = to_numpy(abs(theta - theta0))[big]
    worst = abs(moved / expected - 1).max()
    claims.check(f"{name}: first step on a net (|g| spans {span:.0f} decades)",
                 f"|dtheta| = lr|g|/(c|g|+eps) ~ {lr / (0.1 if name == 'RMSProp' else 1):g}",
                 f"{moved.min():.4g} .. {moved.max():.4g}", worst <= 1e-9)
    big_marker = name == "AdaGrad"  # AdaGrad's points lie under Adam's: draw them larger
    axes[1].loglog(g, moved, "o" if big_marker else ".", ms=6 if big_marker else 3, color=COLOR[name],
                   label=name + (" (same as Adam)" if big_marker else ""))
axes[1].loglog(g, lr * g, ".", ms=3, color=COLOR["GD"], label="GD: lr |g|")
axes[1].set(xlabel="|gradient entry| at init", ylabel="|first step| of that parameter",
            title=f"first step on an 8-32-32-1 tanh net, lr = {lr:g}")
axes[1].legend(fontsize=8)

# Training the same net, each method with the best lr of a small grid (one batch of
# runs per method, one lr per run). An illustration, not a claim: which method wins
# on a network depends on the network, the data and the budget.
STEPS = 150 if args.quick else 500
grids = {"GD": np.logspace(-3, -0.5, 6), "AdaGrad": np.logspace(-3, 0, 7),
         "RMSProp": np.logspace(-4, -1, 7), "AdaDelta": np.logspace(-1, 2, 7),
         "Adam": np.logspace(-4, -1, 7)}
for name, lrs in grids.items():
    theta = xp.tile(theta0, (len(lrs), 1))
    opt = go.get_optimizer(OPTIMIZER[name])(lr=lrs[:, None], batched=True)
    state = opt.init(theta)
    curve = []
    for _ in range(STEPS):
        loss, grad = net.value_and_grad(theta)
        curve.append(to_numpy(loss))
        opt.step(theta, grad, state)
    curve = np.array(curve)
    best = np.nanargmin(np.where(np.isfinite(curve[-1]), curve[-1], np.nan))
    axes[2].semilogy(curve[:, best], color=COLOR[name], label=f"{name}, best lr = {lrs[best]:.2g}")
axes[2].set(xlabel="step", ylabel="training loss (mse)", title="the same net, best lr of a grid each")
axes[2].legend(fontsize=8)

# --- 3. Adam with and without bias correction -----------------------------------------
# A linear f(x) = c . x has the constant gradient c, so both variants see the same
# gradients and the same m_t, v_t: the ratio of their steps is the correction factor.
beta1, beta2 = 0.9, 0.999
t_max = 200 if args.quick else 2000
rng = np.random.default_rng(0)
c_host = rng.choice([-1.0, 1.0], 1000) * rng.uniform(0.1, 10.0, 1000)
c = xp.asarray(c_host)
steps = {}
for corrected in (True, False):
    opt = go.Adam(lr=1e-3, betas=(beta1, beta2), bias_correction=corrected)
    x = xp.zeros(1000)
    state = opt.init(x)
    sizes = []
    for _ in range(t_max):
        before = x.copy()
        opt.step(x, c.copy(), state)
        sizes.append(to_numpy(abs(x - before)))
    steps[corrected] = np.array(sizes)
t = np.arange(1, t_max + 1)
formula = (1 - beta1 ** t) / np.sqrt(1 - beta2 ** t)
ratio = steps[False] / steps[True]  # (t, coordinates)
err = abs(ratio / formula[:, None] - 1).max()
# The formula is exact for eps = 0; eps = 1e-8 shifts the ratio by at most
# eps / sqrt(v_t) <= eps / (sqrt(1 - beta2) min|c|) (v_t is smallest at t = 1).
tol = 1e-8 / (np.sqrt(1 - beta2) * abs(c_host).min())
claims.check("Adam: uncorrected / corrected step at step t", "(1 - b1^t) / sqrt(1 - b2^t)",
             f"max rel. deviation {err:.1e} over t <= {t_max} (eps allows {tol:.1e})", err <= tol)
claims.check("Adam: the uncorrected first step", f"{formula[0]:.3f} x the corrected (larger)",
             f"{ratio[0].mean():.3f} x", abs(ratio[0].mean() / formula[0] - 1) <= tol)
axes[3].plot(t, ratio.mean(axis=1), lw=3, alpha=0.5, label="measured: uncorrected / corrected step")
axes[3].plot(t, formula, "k--", lw=1, label="(1 - beta1^t) / sqrt(1 - beta2^t)")
axes[3].axhline(1, color="gray", lw=0.5)
axes[3].set(xscale="log", xlabel="step t", ylabel="step-size ratio",
            title=f"Adam bias correction, betas = ({beta1}, {beta2})")
axes[3].legend(fontsize=8)

save(fig, args, "05_adaptive")
finish(claims)
