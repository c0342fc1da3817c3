"""Claim 7: initialization decides whether a deep network can train at all.

1. Symmetry. With all weights equal (zeros, or a constant), every hidden unit of a
   layer computes the same function and receives the same gradient, so the units
   stay identical forever: the layer acts as one unit. Random weights break this.
2. The design principles behind Xavier (Glorot & Bengio 2010) and He (He et al. 2015)
   initialization: activations with zero mean, and a variance kept from layer to
   layer. Mean-field theory (Poole et al. 2016) predicts the pre-activation variance
   q_l of layer l: q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2], z ~ N(0, 1), with
   sigma_w^2 = fan_in Var(W). For relu E[relu(sqrt(q) z)^2] = q/2, so the variance
   is multiplied by sigma_w^2 / 2 per layer: kept by He (sigma_w^2 = 2), halved by
   Xavier (sigma_w^2 = 1 for square layers). relu's outputs are never zero-mean:
   mean/std = (1/sqrt(2 pi)) / sqrt(1/2 - 1/(2 pi)) = 0.683.
3. He et al.'s observation: a deep relu network trains with He initialization and
   stalls with Xavier's. We run a depth x scheme grid through the study engine
   (gpuopt.Study, SGD with momentum, best learning rate of a grid per cell). This
   part is an empirical observation: "trains" means the loss falls below 10% of its
   initial value, "stalls" that it stays above 50%; the variance halving of point 2
   is its explanation (at depth 20 Xavier's output signal is 2^-10 of He's).
"""

import shutil
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

import gpuopt as go
from gpuopt import nn
from gpuopt.nn.diagnostics import layer_statistics, unit_symmetry
from gpuopt.problems import MLP, teacher_student

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
claims = Claims("Claim 7: initialization")
fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
axes = axes.ravel()

# --- 1. symmetry ---------------------------------------------------------------------
X, y = teacher_student([4, 16, 1], "tanh", samples=64, seed=0)
net = MLP(X, y, [4, 16, 16, 1], activation="tanh")
schemes = {"zeros": ("zeros", 1.0), "constant 0.3": ("constant", 0.3), "Xavier": ("xavier_normal", 1.0)}
theta = xp.concatenate([net.init_params([0], scheme=s, scale=c, xp=xp) for s, c in schemes.values()])

steps = 300 if args.quick else 2000
opt = go.SGD(lr=0.1, batched=True)
state = opt.init(theta)
losses, spread = [], []
for _ in range(steps + 1):
    # unit_symmetry: per run and hidden layer, the largest difference between two
    # units' incoming weights, biases or outgoing weights (0: all units identical)
    spread.append(to_numpy(unit_symmetry(net, theta)).max(axis=1))
    loss, grad = net.value_and_grad(theta)
    losses.append(to_numpy(loss))
    opt.step(theta, grad, state)
spread = np.array(spread)  # (steps + 1, runs)
for k, name in enumerate(schemes):
    if name == "Xavier":
        claims.check("Xavier: hidden units differ throughout", "spread > 0", f"min {spread[:, k].min():.3f}",
                     spread[:, k].min() > 0)
    else:
        # exact arithmetic gives exactly 0; identical units see identical operations
        claims.check(f"{name}: hidden units stay identical ({steps} GD steps)", "spread = 0",
                     f"max {spread[:, k].max():.1e}", spread[:, k].max() <= 1e-12)
    axes[0].semilogy(np.array(losses)[:, k], label=f"{name}: unit spread {spread[-1, k]:.2g} at the end")
axes[0].set(xlabel="GD step", ylabel="training loss", title="a 4-16-16-1 tanh net: symmetry is never broken")
axes[0].legend(fontsize=8)

# --- 2. activation statistics per layer ----------------------------------------------------
WIDTH, DEPTH, SEEDS = (256, 12, 4) if args.quick else (256, 20, 4)
X = np.random.default_rng(1).standard_normal((512, WIDTH))
# name: (scheme, scale, sigma_w^2 = fan_in Var(W))
INITS = {"small N(0,0.01^2)": ("normal", 0.01, WIDTH * 1e-4), "large N(0,1)": ("normal", 1.0, WIDTH),
         "Xavier": ("xavier_normal", 1.0, 1.0), "He": ("he_normal", 1.0, 2.0)}
z, w = np.polynomial.hermite_e.hermegauss(101)  # Gauss-Hermite nodes for E over z ~ N(0, 1)
w = w / w.sum()
layers = np.arange(1, DEPTH + 1)
# Finite width makes log q_l a random walk around the mean-field curve (steps of
# relative size ~ sqrt(2 / width) per layer): at width 256 the fitted per-layer
# factor of one network scatters by ~0.01 decades, ~0.005 averaged over 4 seeds;
# we allow 0.02 decades (5% per layer).
TOL = 0.02
for ax, act in zip(axes[1:3], ["tanh", "relu"], strict=True):
    net = MLP(X, np.zeros((len(X), 1)), [WIDTH] * (DEPTH + 1) + [1], activation=act)
    seeds = list(range(SEEDS))
    theta = xp.concatenate([net.init_params(seeds, scheme=s, scale=c, xp=xp) for s, c, _ in INITS.values()])
    stats = {k: to_numpy(v)[:, :DEPTH] for k, v in layer_statistics(net, theta).items()}  # (runs, layers)
    q = stats["pre_var"]
    mean_over_std = stats["post_mean"] / np.sqrt(stats["post_var"])
    for k, (name, (_, _, sigma_w2)) in enumerate(INITS.items()):
        runs = slice(k * SEEDS, (k + 1) * SEEDS)
        q_meas = np.exp(np.log(q[runs]).mean(axis=0))  # geometric mean over seeds
        q_mf = [sigma_w2 * (X ** 2).mean()]
        for _ in range(DEPTH - 1):
            q_mf.append(sigma_w2 * w @ nn.activation(act, np.sqrt(q_mf[-1]) * z) ** 2)
        rate = np.polyfit(layers, np.log10(q_meas), 1)[0]
        rate_mf = np.polyfit(layers, np.log10(q_mf), 1)[0]
        claims.check(f"{act} {name}: variance factor per layer", f"x10^{rate_mf:+.3f} (mean field)",
                     f"x10^{rate:+.3f}", abs(rate - rate_mf) <= TOL)
        line, = ax.semilogy(layers, q_meas, lw=2, label=f"{name}: x{10 ** rate:.3g} per layer")
        ax.semilogy(layers, q_mf, "k--", lw=0.8)
    ms = mean_over_std
    if act == "tanh":  # an odd activation: zero mean at every layer
        worst = abs(ms).max()
        claims.check("tanh: activations zero-mean (every init, layer)", "|mean|/std ~ 0 (<= 0.05)",
                     f"max {worst:.3f}", worst <= 0.05)
    else:
        expected = (1 / np.sqrt(2 * np.pi)) / np.sqrt(0.5 - 1 / (2 * np.pi))
        # A unit's inputs are all positive, so each unit gets a random mean offset; over
        # 256 units the pooled mean/std scatters by ~0.03 around the formula: allow 0.15.
        claims.check("relu: activations not zero-mean", f"mean/std = {expected:.3f}",
                     f"{ms.min():.3f} .. {ms.max():.3f}", abs(ms - expected).max() <= 0.15)
    ax.plot([], [], "k--", lw=0.8, label="mean field q_(l+1) = sigma_w^2 E[phi^2]")
    ax.set(xlabel="layer l", ylabel="pre-activation variance q_l",
           title=f"{act}, width {WIDTH}: activation variance per layer")
    ax.legend(fontsize=7)

# --- 3. trainability: depth x scheme through the study engine --------------------------------
depths = [5, 20] if args.quick else [5, 10, 20, 30]
out = tempfile.mkdtemp(prefix="gpuopt-07-")
best = {}
for depth in depths:
    spec = {
        "study": {"name": f"relu-depth-{depth}", "steps": 200, "seeds": 2, "record_every": 20,
                  "dtype": "float64", "device": args.device},
        "problem": {"kind": "mlp", "widths": [16] + [32] * depth + [1], "activation": "relu",
                    "samples": 64, "teacher_widths": [16, 32, 1], "seed": 0},
        "init": {"scheme": {"values": ["xavier_normal", "he_normal"]}},
        "optimizers": [{"name": "sgd", "lr": {"logspace": [-3, 0, 7]}, "momentum": 0.9}],
    }
    runs = go.Study(spec, f"{out}/depth{depth}").run(cluster="none", progress=False)
    runs = runs[~runs.diverged]
    ratio = (runs.final_loss / runs.initial_loss).groupby([runs.init_scheme, runs.lr]).median()
    for scheme in ("xavier_normal", "he_normal"):
        best[depth, scheme] = ratio[scheme].min()  # the best learning rate of the grid
shutil.rmtree(out, ignore_errors=True)
shallow, deep = depths[0], depths[-1]
claims.check(f"depth {shallow}: both schemes train", "final/initial loss < 0.1",
             f"He {best[shallow, 'he_normal']:.1e}, Xavier {best[shallow, 'xavier_normal']:.1e}",
             max(best[shallow, "he_normal"], best[shallow, "xavier_normal"]) < 0.1)
claims.check(f"depth {deep}: He trains, Xavier stalls (observation)", "He < 0.1, Xavier > 0.5",
             f"He {best[deep, 'he_normal']:.1e}, Xavier {best[deep, 'xavier_normal']:.2f}",
             best[deep, "he_normal"] < 0.1 and best[deep, "xavier_normal"] > 0.5)
grid = np.array([[best[d, s] for s in ("xavier_normal", "he_normal")] for d in depths])
im = axes[3].imshow(np.log10(grid), cmap="viridis_r", vmin=-4, vmax=0, aspect="auto")
for i in range(len(depths)):
    for j in range(2):
        axes[3].text(j, i, f"{grid[i, j]:.1e}", ha="center", va="center",
                     color="w" if grid[i, j] > 0.01 else "k")
axes[3].set(xticks=[0, 1], xticklabels=["Xavier", "He"], yticks=range(len(depths)), yticklabels=depths,
            xlabel="initialization", ylabel="hidden layers (width 32, relu)",
            title="final / initial loss, best lr (SGD + momentum, 200 steps)")
fig.colorbar(im, ax=axes[3], label="log10 final / initial loss")

save(fig, args, "07_initialization")
finish(claims)
