"""Claim 6: gradients explode or vanish geometrically with depth.

Backpropagation multiplies the gradient by one Jacobian per layer. For the error
signal delta_l = dloss/dz_l at layer l's pre-activations z_l,

    delta_l = (delta_{l+1} W_{l+1}^T) * phi'(z_l),

and if W_{l+1} (entries of variance sigma_w^2 / fan_in) is treated as independent of
delta_{l+1} (the mean-field "product of Jacobians" picture), each layer multiplies
||delta||^2 by

    chi_l = sigma_w^2 * mean_j phi'(z_lj)^2,

so ||delta_l|| grows or shrinks like a geometric sequence, by sqrt(chi) per layer.
We measure ||delta_l|| in deep MLPs (width 128, 50 hidden layers) with sigmoid, tanh
and relu under four initializations -- small N(0, 0.01^2), large N(0, 1), Xavier
and He -- and fit the per-layer factor on log axes; the prediction takes chi_l
from the same networks' forward pass. For one input sample, the gradient of the
loss with respect to layer l's bias *is* delta_l, so we read it off MLP.grad.
"""

import matplotlib.pyplot as plt
import numpy as np
from claims import Claims, finish, parse_args, save, to_numpy

from gpuopt import nn
from gpuopt.problems import MLP

args = parse_args(__doc__.splitlines()[0])
xp = args.xp
WIDTH, DEPTH, SAMPLES = (64, 20, 4) if args.quick else (128, 50, 16)
ACTIVATIONS = ["sigmoid", "tanh", "relu"]
INITS = {"small N(0,0.01^2)": ("normal", 0.01), "large N(0,1)": ("normal", 1.0),
         "Xavier": ("xavier_normal", 1.0), "He": ("he_normal", 1.0)}
# The independence of W_{l+1} and delta_{l+1} holds only as width -> infinity: at
# width n the per-layer factor is off by O(1/n) (about 2/n decades for saturated
# tanh units, the worst case here). 0.05 decades = 12% per layer covers n >= 64.
TOL = 0.05
claims = Claims(f"Claim 6: exploding and vanishing gradients ({DEPTH} layers of width {WIDTH})")

rng = np.random.default_rng(0)
X = rng.standard_normal((SAMPLES, WIDTH))
y = rng.standard_normal((SAMPLES, 1))
widths = [WIDTH] + [WIDTH] * DEPTH + [1]
layers = np.arange(1, DEPTH + 1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")

for ax, act in zip(axes, ACTIVATIONS, strict=True):
    delta_sq = 0.0  # sum over samples of ||delta_l||^2, per (init, layer)
    chi = 0.0       # sum over samples of chi_l
    for i in range(SAMPLES):
        net = MLP(X[i:i + 1], y[i:i + 1], widths, activation=act)
        # one run per initialization, all in one batch; the same seed for every sample
        theta = xp.concatenate([net.init_params([1], scheme=s, scale=c, xp=xp) for s, c in INITS.values()])
        grads = net.unpack(net.grad(theta))
        delta_sq = delta_sq + np.stack([(to_numpy(gb) ** 2).sum(axis=-1) for _, gb in grads[:DEPTH]], axis=1)
        pre, _ = net.forward(theta)
        weights = [w for w, _ in net.unpack(theta)]
        for_layer = []
        for l in range(DEPTH):  # chi_l = fan_in * Var(W_{l+1}) * mean phi'(z_l)^2
            _, dphi = nn.activation_with_derivative(act, pre[l])
            sigma_w2 = WIDTH * to_numpy(weights[l + 1].var(axis=(1, 2)))
            for_layer.append(sigma_w2 * to_numpy((dphi ** 2).mean(axis=(1, 2))))
        chi = chi + np.stack(for_layer, axis=1)
    rms = np.sqrt(delta_sq / SAMPLES)  # (inits, layers)
    chi = chi / SAMPLES
    for k, name in enumerate(INITS):
        # Prediction: start from the measured top layer and multiply by sqrt(chi_l)
        # going down: log ||delta_l|| = log ||delta_D|| + sum_{m=l}^{D-1} log sqrt(chi_m).
        steps = 0.5 * np.log10(chi[k, :DEPTH - 1])
        predicted = np.log10(rms[k, -1]) + np.append(np.cumsum(steps[::-1])[::-1], 0.0)
        # per-layer factor toward the input, in decades: minus the slope over l
        measured_rate = -np.polyfit(layers, np.log10(rms[k]), 1)[0]
        predicted_rate = -np.polyfit(layers, predicted, 1)[0]
        total = np.log10(rms[k, 0] / rms[k, -1])
        change = predicted_rate * (DEPTH - 1)  # predicted decades from layer D down to layer 1
        verdict = "explodes" if change > 1 else "vanishes" if change < -1 else "kept within 10x"
        claims.check(f"{act:7} {name:17}: ||delta|| per layer toward input",
                     f"x10^{predicted_rate:+.3f} ({verdict})",
                     f"x10^{measured_rate:+.3f}, {total:+.1f} decades over {DEPTH} layers",
                     abs(measured_rate - predicted_rate) <= TOL)
        line, = ax.semilogy(layers, rms[k], lw=2, label=f"{name}: x{10 ** measured_rate:.3g} per layer down")
        ax.semilogy(layers, 10 ** predicted, "--", color="k", lw=0.8)
    ax.plot([], [], "k--", lw=0.8, label="product-of-Jacobians prediction")
    ax.set(xlabel="layer l (1 = next to the input)", ylabel="||dloss/dz_l|| (rms over samples)",
           title=f"{act}, width {WIDTH}, depth {DEPTH}")
    ax.legend(fontsize=7)

save(fig, args, "06_exploding_vanishing")
finish(claims)
