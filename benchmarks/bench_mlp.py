"""Forward + backward of the batched MLP (``gpuopt.problems.MLP.value_and_grad``)
against the machine's matrix-product throughput and against a per-run loop.

The workload is the hot loop of a network grid study: widths 16-64-64-1, 256
samples, tanh, mean squared error, float32, for R = 1, 64 and 1024 runs at once.

FLOPs are counted as 2 m n k per matrix product: per run, the forward products
(X W_1, a_1 W_2, a_2 W_3), the weight gradients (a_{l-1}^T delta_l) and the
back-propagated signals (delta_l W_l^T for l >= 2), 7.44 MFLOP in all; the
elementwise work (bias, tanh and its derivative, the loss) is not counted, so it
shows as lost throughput. Columns:

- ``batched``: one ``value_and_grad`` on the ``(R, d)`` batch, with ``chunk`` (runs
  per chunk x worker threads) and ``cores`` (CPU seconds per wall second during the
  best repetition: below the core count, other processes took the rest);
- ``% matmul``: that throughput over one large float32 product (``n^3``, default
  2048^3) measured in the same process, interleaved with the other timings so that
  load from other processes affects both alike;
- ``loop``: the same library called once per run (R calls on ``(d,)`` vectors);
- ``naive``: the textbook batched layout in plain NumPy (stacked ``np.matmul`` on
  ``(R, n, k)`` arrays over the whole batch, unfused elementwise passes with
  temporaries), for reference.

Usage::

    python benchmarks/bench_mlp.py [--runs 1 64 1024] [--reps 5] [--xp numpy|cupy] [--no-loop]
                                   [--no-naive]

Timings are the best of ``--reps`` repetitions. On CuPy every timing synchronizes
the device. This is a measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gpuopt import backend, parallel  # noqa: E402
from gpuopt.problems import MLP, teacher_student  # noqa: E402

WIDTHS = [16, 64, 64, 1]
SAMPLES = 256


def flops_per_run(widths, n):
    """2 m n k per product: forward, weight gradients, and input gradients of layers 2..L."""
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    forward = sum(2 * n * a * b for a, b in layers)
    return 2 * forward + sum(2 * n * a * b for a, b in layers[1:])


def naive_value_and_grad(X, y, ws, bs):
    """The straightforward batched layout: (R, n, k) stacks over the whole batch,
    a temporary per operation."""
    a = X
    acts, derivs = [X], []
    for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
        z = a @ w + b[:, None, :]
        if l < len(ws) - 1:
            a = np.tanh(z)
            derivs.append(1 - a * a)
        else:
            a = z
        acts.append(a)
    r = a - y
    loss = (r * r).mean(axis=(1, 2))
    dz = r * (2 / r[0].size)
    grads = []
    for l in range(len(ws) - 1, -1, -1):
        prev = acts[l] if l else np.broadcast_to(X, (dz.shape[0],) + X.shape)
        grads.append((prev.transpose(0, 2, 1) @ dz, dz.sum(axis=1)))
        if l:
            dz = (dz @ ws[l].transpose(0, 2, 1)) * derivs[l - 1]
    return loss, grads


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--matmul", type=int, default=2048, help="size n of the n^3 reference product")
    ap.add_argument("--xp", choices=["numpy", "cupy"], default="numpy")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-run loop (slow on a GPU)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive NumPy layout")
    args = ap.parse_args(argv)

    xp = np if args.xp == "numpy" else backend.get_xp("gpu")
    sync = (lambda: None) if xp is np else (lambda: xp.cuda.Device().synchronize())

    cores = {}

    def timed(fn, key=None):
        sync()
        c, t = time.process_time(), time.perf_counter()
        fn()
        sync()
        c, t = time.process_time() - c, time.perf_counter() - t
        if key is not None and t < best.get(key, float("inf")):
            cores[key] = c / t  # CPU seconds per second of the best repetition
        return t

    X, y = teacher_student(WIDTHS, "tanh", SAMPLES, seed=0)
    mlp = MLP(X, y, WIDTHS, activation="tanh", loss="mse")
    per_run = flops_per_run(WIDTHS, SAMPLES)

    rng = np.random.default_rng(0)
    n = args.matmul
    a = xp.asarray(rng.random((n, n), dtype=np.float32))
    b = xp.asarray(rng.random((n, n), dtype=np.float32))
    c = xp.empty_like(a)

    Xf, yf = X.astype(np.float32), y.astype(np.float32)
    best = {}
    cases = {}
    for R in args.runs:
        x = mlp.init_params(range(R), scheme="xavier_normal", xp=xp, dtype=np.float32)
        case = {"batched": (lambda x=x: mlp.value_and_grad(x))}
        if not args.no_loop:
            case["loop"] = (lambda x=x: [mlp.value_and_grad(x[r]) for r in range(x.shape[0])])
        if xp is np and not args.no_naive:
            ws = [w.copy() for w, _ in mlp.unpack(x)]
            bs = [bias.copy() for _, bias in mlp.unpack(x)]
            case["naive"] = (lambda ws=ws, bs=bs: naive_value_and_grad(Xf, yf, ws, bs))
        cases[R] = case

    # Warm up (thread pools, workspaces, BLAS buffers), then interleave the reference
    # product with every case so that load from other processes hits both alike.
    np.matmul(a, b, out=c) if xp is np else xp.matmul(a, b, out=c)
    for case in cases.values():
        for fn in case.values():
            fn()
    t_mm = float("inf")
    for _ in range(args.reps):
        for R, case in cases.items():
            t_mm = min(t_mm, timed(lambda: xp.matmul(a, b, out=c)))
            for name, fn in case.items():
                fn()  # steady state, as in a training loop: caches and BLAS threads warm
                best[R, name] = min(best.get((R, name), float("inf")), timed(fn, (R, name)))
    peak = 2.0 * n**3 / t_mm / 1e9

    threads = parallel.num_threads()
    print(f"MLP {'-'.join(map(str, WIDTHS))}, {SAMPLES} samples, tanh, mse, float32, {args.xp}; "
          f"d = {mlp.dim} parameters, {per_run / 1e6:.2f} MFLOP per run (forward + backward); "
          f"threads = {threads}")
    print(f"reference: float32 matmul {n}^3 = {peak:.1f} GFLOP/s (best of {args.reps})")
    header = (f"{'R':>6} {'chunk':>6} {'cores':>5} {'batched ms':>11} {'GFLOP/s':>8} {'% matmul':>9} "
              f"{'loop ms':>9} {'loop GF/s':>9} {'x loop':>7} {'naive GF/s':>10} {'x naive':>8}")
    print(header)
    print("-" * len(header))
    for R in cases:
        gf = per_run * R / 1e9
        t = best[R, "batched"]
        chunk, nthreads = mlp._plan(xp, R, np.float32)
        row = (f"{R:>6} {f'{chunk}x{nthreads}':>6} {cores[R, 'batched']:>5.2f} {t * 1e3:>11.2f} "
               f"{gf / t:>8.1f} "
               f"{100 * gf / t / peak:>8.1f}%")
        if (R, "loop") in best:
            tl = best[R, "loop"]
            row += f" {tl * 1e3:>9.2f} {gf / tl:>9.1f} {tl / t:>7.1f}"
        else:
            row += f" {'-':>9} {'-':>9} {'-':>7}"
        if (R, "naive") in best:
            tn = best[R, "naive"]
            row += f" {gf / tn:>10.1f} {tn / t:>8.1f}"
        print(row)
    print("chunk = runs per chunk x worker threads; cores = CPU seconds per wall second of the batched "
          "call (below the core count: other processes had the rest); x loop / x naive = speed-up of "
          "batched over them")


if __name__ == "__main__":
    main()
