"""Claim 2: gradient descent on a quadratic converges linearly.

On f(x) = 1/2 x^T A x with eigenvalues mu = lam_min <= ... <= lam_max = L, GD is
x_{t+1} = (I - lr A) x_t, so each eigen-coordinate shrinks by |1 - lr lam| per step:

* for lr <= 1/L:  ||x_t|| <= (1 - lr mu)^t ||x_0||               (the lecture's bound)
* for any lr:     the rate is max(|1 - lr mu|, |1 - lr L|), smallest at
                  lr = 2/(L + mu), where it is (kappa - 1)/(kappa + 1), kappa = L/mu.

We run batches of GD runs (one run per start point and learning rate, all in one
array) on rotated quadratics of several condition numbers and compare.
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt import theory
from gpuopt.problems import Quadratic

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
DIM, STARTS = 20, 8
kappas = [10, 100] if args.quick else [10, 100, 1000]
claims = Claims("Claim 2: GD on quadratics")


def run_gd(problem, lr, x0, steps):
    """GD from every start; lr is a scalar or one value per run, shape (R, 1).
    Returns the norms ||x_t||, shape (steps + 1, R)."""
    x = x0.copy()
    opt = go.SGD(lr=lr, batched=True)
    state = opt.init(x)
    norms = [xp.linalg.norm(x, axis=1)]
    for _ in range(steps):
        opt.step(x, problem.grad(x), state)
        norms.append(xp.linalg.norm(x, axis=1))
    return to_numpy(xp.stack(norms))


def window_rate(norms):
    """Asymptotic linear rate from the second half of a trajectory: once the slowest
    eigen-direction dominates, ||x_t|| ~ c rate^t."""
    t = len(norms) - 1
    return (norms[t] / norms[t // 2]) ** (1.0 / (t - t // 2))


rng = np.random.default_rng(0)
x0 = xp.asarray(rng.standard_normal((STARTS, DIM)))
mu = 1.0
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))

# --- (a) the bound (1 - lr mu)^t at lr = 1/L --------------------------------------
for kappa in kappas:
    L = kappa * mu
    problem = Quadratic(DIM, mu, L, spectrum="log", rotate=True, seed=1)
    lr = 1.0 / L
    steps = int(8 * kappa)  # long enough for the bound to fall by e^-8
    norms = run_gd(problem, lr, x0, steps)
    ratio = norms / norms[0]
    t = np.arange(steps + 1)
    bound = theory.quadratic_rate_bound(lr, mu, L, t)
    worst = (ratio[1:] / bound[1:, None]).max()  # <= 1 when the bound holds (t >= 1, all starts)
    claims.check(f"kappa={kappa:g}: ||x_t||/||x_0|| <= (1-lr mu)^t, lr=1/L",
                 "max ratio/bound <= 1", f"{worst:.4f}", worst <= 1 + 1e-12)
    # against t / kappa every bound is close to exp(-t / kappa): the curves line up
    line, = ax1.semilogy(t / kappa, ratio.max(axis=1), label=f"kappa={kappa:g}: measured (worst start)")
    ax1.semilogy(t / kappa, bound, "--", color=line.get_color(), label=f"kappa={kappa:g}: (1 - mu/L)^t")
ax1.set(xlabel="step t / kappa", ylabel="||x_t|| / ||x_0||", ylim=(1e-4, 2),
        title="GD with lr = 1/L stays under (1 - lr mu)^t")
ax1.legend(fontsize=7)

# --- (b) the optimal learning rate 2/(L + mu) and its rate -------------------------
for kappa in kappas:
    L = kappa * mu
    problem = Quadratic(DIM, mu, L, spectrum="log", rotate=True, seed=1)
    opt = theory.optimal_params("gd", mu, L)
    # about 30 e-foldings at the optimal rate: the slowest direction then dominates
    steps = int(30 / (1 - opt["rate"]))
    scan = kappa == 100 or (args.quick and kappa == kappas[-1])
    lrs = np.append(np.linspace(0.1, 2.05, 40) / L, opt["lr"]) if scan else np.array([opt["lr"]])
    # every (lr, start) pair is one run of the batch
    lr_runs = np.repeat(lrs, STARTS)[:, None]
    norms = run_gd(problem, xp.asarray(lr_runs), xp.tile(x0, (len(lrs), 1)), steps)
    rates = window_rate(norms).reshape(len(lrs), STARTS).max(axis=1)  # worst start per lr
    measured = rates[-1]
    claims.check(f"kappa={kappa:g}: rate at lr=2/(L+mu)", f"(k-1)/(k+1) = {opt['rate']:.5f}",
                 f"{measured:.5f}", abs(measured - opt["rate"]) <= 0.01 * (1 - opt["rate"]))
    if scan:
        order = np.argsort(lrs[:-1])
        theory_rates = np.maximum(abs(1 - lrs * mu), abs(1 - lrs * L))
        gap = abs(rates - theory_rates).max()
        claims.check(f"kappa={kappa:g}: rate over a scan of {len(lrs) - 1} lrs",
                     "max(|1-lr mu|, |1-lr L|)", f"max deviation {gap:.1e}",
                     gap <= 0.01 * (1 - opt["rate"]))
        beaten = rates[:-1].min() < measured * (1 - 1e-9)
        claims.check(f"kappa={kappa:g}: no scanned lr beats 2/(L+mu)", f"rate >= {measured:.5f}",
                     f"best scanned {rates[:-1].min():.5f}", not beaten)
        fine = np.linspace(0.05, 2.1, 400) / L
        ax2.plot(fine * L, np.maximum(abs(1 - fine * mu), abs(1 - fine * L)), "k-", lw=1,
                 label="theory max(|1-lr mu|, |1-lr L|)")
        ax2.plot(lrs[:-1][order] * L, rates[:-1][order], "o", ms=4, label="measured (worst start)")
        ax2.axvline(opt["lr"] * L, color="C3", ls=":", label="lr = 2/(L+mu)")
        ax2.set(xlabel="lr x L", ylabel="rate per step", ylim=(0.95, 1.05),
                title=f"linear rate of GD, kappa = {kappa:g}")
        ax2.legend(fontsize=7)

save(fig, args, "02_gd_quadratic")
finish(claims)
