"""Generate ``torch_trajectories.npz``: reference trajectories from ``torch.optim``.

torch is not a test dependency; the tests only read the stored arrays. Regenerate
(after changing a case, or to check against a newer torch) from the repository root
with torch installed::

    python tests/data/make_torch_fixtures.py

Each case is a small random problem whose gradient depends on the parameters,

    g(x) = sign * (A x + b + c * tanh(x)),    x = concat(ravel(p0), ravel(p1)),

split back into two parameter tensors of different shapes (``SHAPES``), so the
optimizer sees a list of parameters and every step's gradient depends on its past
steps. The tests recompute the same gradients in NumPy, step gpuopt's optimizer,
and compare the whole trajectory in float64.

File layout (no pickled objects, ``numpy.load(..., allow_pickle=False)`` reads it):

- ``meta``: a JSON string with ``torch`` (version), ``steps``, ``shapes`` and
  ``cases``: ``{name: {"optimizer": torch class name, "kwargs": {...},
  "sign": +-1, "c": float}}``;
- ``<name>.A`` (n, n), ``<name>.b`` (n,): the problem;
- ``<name>.x`` (steps + 1, n): the concatenated parameters before the first step and
  after each step (row 0 is the start).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

SHAPES = [(3, 4), (5,)]
STEPS = 30
OUT = Path(__file__).with_name("torch_trajectories.npz")

# name: (torch.optim class, kwargs, gradient sign). The sign is -1 for maximize, so
# that maximizing -f follows the same well-behaved problem instead of running away.
CASES = {
    "sgd": ("SGD", dict(lr=0.1), 1),
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9), 1),
    "sgd_momentum_dampening": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2), 1),
    "sgd_nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), 1),
    "sgd_weight_decay": ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1), 1),
    "sgd_maximize": ("SGD", dict(lr=0.05, momentum=0.3, weight_decay=0.05, maximize=True), -1),
    "adagrad": ("Adagrad", dict(lr=0.1), 1),
    "adagrad_decay_wd_init": ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1,
                                              initial_accumulator_value=0.2), 1),
    "rmsprop": ("RMSprop", dict(lr=0.01), 1),
    "rmsprop_centered_momentum_wd": ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True,
                                                     momentum=0.5, weight_decay=0.1), 1),
    "adadelta": ("Adadelta", dict(), 1),
    "adadelta_wd": ("Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1), 1),
    "adam": ("Adam", dict(lr=0.05), 1),
    "adam_wd": ("Adam", dict(lr=0.05, betas=[0.8, 0.99], weight_decay=0.1), 1),
    "adam_amsgrad": ("Adam", dict(lr=0.05, amsgrad=True), 1),
    "adamw": ("AdamW", dict(lr=0.05, weight_decay=0.1), 1),
    "adamw_amsgrad": ("AdamW", dict(lr=0.05, betas=[0.8, 0.99], weight_decay=0.1, amsgrad=True), 1),
}


def problem(seed: int, n: int):
    """A well-conditioned symmetric positive definite A (eigenvalues in about [0.5, 2])
    so 30 steps neither diverge nor amplify rounding, b and x0 of order one."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * rng.uniform(0.5, 2.0, n)) @ q.T
    return a, rng.standard_normal(n), rng.standard_normal(n), float(rng.uniform(0.2, 0.8))


def main() -> None:
    import torch

    torch.set_default_dtype(torch.float64)
    n = sum(math.prod(s) for s in SHAPES)
    arrays, cases = {}, {}
    for seed, (name, (cls_name, kwargs, sign)) in enumerate(CASES.items()):
        a, b, x0, c = problem(seed, n)
        params, start = [], 0
        for s in SHAPES:
            k = math.prod(s)
            params.append(torch.tensor(x0[start:start + k].reshape(s), requires_grad=False))
            start += k
        opt = getattr(torch.optim, cls_name)(params, **kwargs)
        traj = [x0.copy()]
        for _ in range(STEPS):
            x = np.concatenate([p.detach().numpy().ravel() for p in params])
            g = sign * (a @ x + b + c * np.tanh(x))
            start = 0
            for p, s in zip(params, SHAPES, strict=True):
                k = math.prod(s)
                p.grad = torch.tensor(g[start:start + k].reshape(s))
                start += k
            opt.step()
            traj.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
        arrays[f"{name}.A"], arrays[f"{name}.b"] = a, b
        arrays[f"{name}.x"] = np.array(traj)
        cases[name] = {"optimizer": cls_name, "kwargs": kwargs, "sign": sign, "c": c}
    meta = {"torch": torch.__version__, "steps": STEPS, "shapes": SHAPES, "cases": cases}
    np.savez_compressed(OUT, meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(cases)} cases)")


if __name__ == "__main__":
    main()
