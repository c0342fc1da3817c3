"""Claim 8: learning rate x initialization scale of a deep tanh network, against
the edge of chaos and the stability limit of gradient descent.

The grid study examples/08_lr_init_scale.toml (--quick: ..._quick.toml) runs through
the command line, ``gpuopt run``: full-batch GD on a deep tanh MLP whose weights are
N(0, sigma_w^2 / fan_in), sigma_w = the init scale, biases zero. Theory says:

* Edge of chaos (Poole et al. 2016; Schoenholz et al. 2017; ``gpuopt.theory``):
  sigma_w^2 = critical_sigma_w2("tanh", 0) = 1 separates the ordered phase (signals
  and gradients die, chi_1 < 1) from the chaotic one. Signals cross about xi_c
  layers (depth_scale(...)["xi_c"]), and a network of depth L trains only if
  L <~ 6 xi_c (Schoenholz et al.'s empirical constant 6). We check the ordered side
  (L > 6 xi_c: no learning rate trains) and the band around the critical point
  (L <= 6 xi_c: some learning rate trains).
* Divergence: GD is unstable at the start when lr > 2 / lam_max(Hessian at init),
  lam_max by power iteration (theory.estimate_smoothness); between 2/lam and about
  4/lam a run may still survive by a "catapult" (Lewkowycz et al. 2020). We check
  that no run below 2/lam diverges and every run above 4/lam does -- in the ordered
  phase and at the edge. In the chaotic phase lam_max explodes with depth, yet the
  runs survive learning rates far above 2/lam: one step saturates the tanh units,
  whose outputs are bounded (the figure shows it; it is not a claim).

"Trains" means the final loss is below 10% of the initial loss in the step budget;
"does not train" that it stays above 50% (the median over seeds, the best lr).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save

import gpuopt as go
from gpuopt import theory

args = parse_args(__doc__.splitlines()[0])
here = os.path.dirname(os.path.abspath(__file__))
study_file = os.path.join(here, "08_lr_init_scale_quick.toml" if args.quick else "08_lr_init_scale.toml")
claims = Claims("Claim 8: learning rate x init scale, deep tanh MLP")

# --- the study, through the command line ------------------------------------------------
work = tempfile.mkdtemp(prefix="gpuopt-08-")
out = os.path.join(work, "results")
# The study file names no device; the copy that runs asks for the one given here.
run_file = os.path.join(work, os.path.basename(study_file))
with open(study_file) as f, open(run_file, "w") as g:
    g.write(f.read().replace("[study]\n", f'[study]\ndevice = "{args.device}"\n', 1))
command = [sys.executable, "-m", "gpuopt.cli", "run", run_file, "--out", out, "--cluster", "none",
           "--no-progress"]
print("$ gpuopt run", os.path.relpath(study_file), "--out", out, "--cluster none")
subprocess.run(command, check=True)
runs = go.load_results(out)
shutil.rmtree(work, ignore_errors=True)
spec = go.load_spec(study_file)
problem = spec.make_problem()
depth = len(problem.widths) - 2  # hidden layers

# --- theory for every scale -----------------------------------------------------------------
scales = np.sort(runs.init_scale.unique())
lrs = np.sort(runs.lr.unique())
sigma_c = np.sqrt(theory.critical_sigma_w2("tanh", 0.0))
xi = np.array([theory.depth_scale("tanh", s * s, 0.0)["xi_c"] for s in scales])
ordered = scales < sigma_c * (1 - 1e-9)
critical_band = 6 * xi >= depth  # Schoenholz et al.: trainable when L <~ 6 xi_c

# lam_max of the Hessian at each run's start, by power iteration (float64 for accuracy)
seeds = sorted(runs.seed.unique())
starts = np.concatenate([problem.init_params([int(s) for s in seeds], scheme="lecun_normal",
                                             scale=float(scale)) for scale in scales])
lam = theory.estimate_smoothness(problem, starts, iters=30).reshape(len(scales), len(seeds))

# --- the heatmap's numbers: median over seeds of final / initial loss ----------------------
ratio = np.where(runs.diverged, np.inf, runs.final_loss / runs.initial_loss)
table = runs.assign(ratio=ratio).groupby(["lr", "init_scale"]).ratio.median().unstack()
grid = table.loc[lrs, scales].to_numpy()  # (lrs, scales)
best = grid.min(axis=0)  # the best lr per scale

dead = ordered & ~critical_band
claims.check(f"ordered phase with L={depth} > 6 xi_c (sigma_w <= {scales[dead].max():.2f}): no lr trains",
             "best final/initial > 0.5", f"min {best[dead].min():.3f}", dead.any() and best[dead].min() > 0.5)
lo, hi = scales[critical_band].min(), scales[critical_band].max()
claims.check(f"6 xi_c >= L={depth} (sigma_w {lo:.2f}..{hi:.2f}): some lr trains",
             "best final/initial < 0.1", f"max {best[critical_band].max():.3f}",
             critical_band.any() and best[critical_band].max() < 0.1)

# Divergence against 2/lam_max, run by run, where the theory applies (chi_1 <= 1).
index = {s: i for i, s in enumerate(scales)}
seed_index = {s: j for j, s in enumerate(seeds)}
lam_run = np.array([lam[index[s], seed_index[d]] for s, d in zip(runs.init_scale, runs.seed, strict=True)])
x = runs.lr.to_numpy() * lam_run / 2  # lr in units of the stability limit 2/lam_max
in_theory = runs.init_scale.to_numpy() <= sigma_c * (1 + 1e-9)
div = runs.diverged.to_numpy()
below, above = in_theory & (x < 1), in_theory & (x > 2)
claims.check("sigma_w <= 1: runs with lr < 2/lam_max(H0) diverge", "none",
             f"{(div & below).sum()} of {below.sum()}", below.any() and not (div & below).any())
claims.check("sigma_w <= 1: runs with lr > 4/lam_max(H0) diverge", "all",
             f"{(div & above).sum()} of {above.sum()}", above.any() and div[above].all())

# --- figure --------------------------------------------------------------------------------------
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.2), layout="constrained")
shown = np.where(np.isfinite(grid), np.log10(np.maximum(grid, 1e-6)), np.nan)
cmap = plt.get_cmap("viridis_r").copy()
cmap.set_bad("lightgray")
ls, lr_ = np.log10(scales), np.log10(lrs)
half = lambda v: np.append(v - np.diff(v).mean() / 2, v[-1] + np.diff(v).mean() / 2)  # noqa: E731
im = ax1.pcolormesh(half(ls), half(lr_), shown, cmap=cmap, vmin=-4, vmax=0.3)
fig.colorbar(im, ax=ax1, label="log10 final / initial loss (median over seeds)")
for i, j in zip(*np.nonzero(~np.isfinite(grid)), strict=True):
    ax1.text(ls[j], lr_[i], "x", ha="center", va="center", fontsize=8, color="k")
ax1.axvline(np.log10(sigma_c), color="r", lw=2, label="edge of chaos sigma_w = 1")
band = np.log10(scales[critical_band])
for edge in (band.min(), band.max()):  # the scales where the theory expects training
    ax1.axvline(edge, color="orange", ls=":", lw=2)
ax1.plot([], [], color="orange", ls=":", lw=2, label=f"band L <= 6 xi_c (L = {depth})")
ax1.plot(ls, np.log10(2 / np.median(lam, axis=1)), "w--", lw=2, label="2 / lam_max(Hessian at init)")
ax1.set(xlabel="log10 sigma_w (init scale)", ylabel="log10 learning rate", ylim=(lr_[0] - 0.2, lr_[-1] + 0.2),
        title=f"GD on a {depth}-layer tanh MLP, {spec.steps} steps (x: diverged)")
ax1.legend(fontsize=8, loc="lower left")

ax2.semilogy(scales, np.median(lam, axis=1), "o-", label="lam_max(Hessian at init)")
with np.errstate(divide="ignore"):
    ax2.semilogy(scales, np.where(np.isfinite(xi), xi, np.nan), "s-", label="xi_c (depth scale)")
ax2.axhline(depth / 6, color="gray", ls=":", label=f"L / 6 = {depth / 6:.1f}")
ax2.axvline(sigma_c, color="r", lw=1)
ax2.set(xscale="log", xlabel="sigma_w", title="theory per scale: sharpness and depth scale")
ax2.legend(fontsize=8)
save(fig, args, "08_lr_init_scale")
finish(claims)
