"""One optimizer step on large float32 buffers: gpuopt against its peers and a copy.

    python benchmarks/bench_update.py [--sizes 1M,8M,64M] [--reps 7] [--device auto|cpu|gpu]
                                      [--json out.json]

For Adam, RMSProp and SGD with momentum, on each size, times in one process, with
the repetitions interleaved (implementation A, B, C, A, B, C, ...) so that drift in
the machine's state hits all alike, and reports medians:

- ``gpuopt``: the NumPy fallback (blocked in-place ufuncs, threads);
- ``naive``: the textbook NumPy expressions, allocating temporaries;
- ``torch-foreach`` / ``torch-fused``: torch.optim on CPU tensors (when torch imports;
  torch has no fused RMSprop);
- ``copy``: ``np.copyto`` of one array of the same size, the memory-traffic yardstick.

An update is memory-bound: Adam reads p, g, m, v and writes p, m, v, 28 bytes per
float32 element; RMSProp and SGD-momentum move 20. "GB/s" is that traffic over the
time (a copy moves 8 bytes per element), "x fused" the time over torch fused's.
When CuPy sees a GPU, the same steps run with gpuopt's CuPy kernels against a device
copy and torch's fused CUDA optimizer. Nothing here is part of the test run.

The machine should be otherwise idle: on a shared 2-core machine another process
easily doubles any of these times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# torch's OpenMP threads spin-wait after each parallel region. Interleaved with the
# other implementations on a machine with few cores, the spinning steals the cores
# the next measurement needs: on 2 cores it doubled gpuopt's times and inflated
# torch's own foreach times 10-20x. Passive waiting lets each be measured alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gpuopt as go  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional: its columns are left out
    torch = None

LR, BETAS, EPS, ALPHA, MOMENTUM = 1e-3, (0.9, 0.999), 1e-8, 0.99, 0.9
# Bytes of memory traffic per float32 element and step (reads + writes).
TRAFFIC = {"adam": 28, "rmsprop": 20, "sgd-momentum": 20}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * scale)


# ---------------------------------------------------------------------------
# Implementations: each a factory (p, g) -> step() that updates p in place


def gpuopt_step(rule, p, g):
    opt = {"adam": lambda: go.Adam(LR, betas=BETAS, eps=EPS),
           "rmsprop": lambda: go.RMSProp(LR, alpha=ALPHA, eps=EPS),
           "sgd-momentum": lambda: go.SGD(LR, momentum=MOMENTUM)}[rule]()
    state = opt.init(p)
    return lambda: opt.step(p, g, state)


def naive_step(rule, p, g):
    """The textbook expressions, as one writes them first: every operator allocates."""
    s = {"t": 0, "m": np.zeros_like(p), "v": np.zeros_like(p), "buf": np.zeros_like(p)}
    b1, b2 = BETAS

    def adam():
        s["t"] += 1
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1 ** s["t"])
        v_hat = s["v"] / (1 - b2 ** s["t"])
        p[...] = p - LR * m_hat / (np.sqrt(v_hat) + EPS)

    def rmsprop():
        s["v"] = ALPHA * s["v"] + (1 - ALPHA) * g * g
        p[...] = p - LR * g / (np.sqrt(s["v"]) + EPS)

    def sgd_momentum():
        s["buf"] = MOMENTUM * s["buf"] + g
        p[...] = p - LR * s["buf"]

    return {"adam": adam, "rmsprop": rmsprop, "sgd-momentum": sgd_momentum}[rule]


def torch_step(rule, p, g, mode, device="cpu"):
    """torch.optim on tensors sharing p's and g's memory (CPU) or on device copies."""
    tp = torch.as_tensor(p, device=device)
    tp.grad = torch.as_tensor(g, device=device)
    kw = {mode: True}
    if rule == "adam":
        opt = torch.optim.Adam([tp], lr=LR, betas=BETAS, eps=EPS, **kw)
    elif rule == "rmsprop":
        if mode == "fused":
            return None
        opt = torch.optim.RMSprop([tp], lr=LR, alpha=ALPHA, eps=EPS, **kw)
    else:
        opt = torch.optim.SGD([tp], lr=LR, momentum=MOMENTUM, **kw)
    return opt.step


def copy_step(p):
    dst = np.empty_like(p)
    return lambda: np.copyto(dst, p)


# ---------------------------------------------------------------------------
# Timing


def measure(steps: dict, reps: int, sync=lambda: None) -> dict[str, list[float]]:
    """Interleaved repetitions after one warm-up call each (allocations, first touch)."""
    for f in steps.values():
        f()
    sync()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for name, f in steps.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def cpu_rows(rule, n, reps, impls):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    # Every implementation updates the same p (its own state): the values stay
    # tame for a few steps of lr 1e-3, and memory holds one p and g, not one per peer.
    steps = {}
    if "gpuopt" in impls:
        steps["gpuopt"] = gpuopt_step(rule, p, g)
    if "naive" in impls:
        steps["naive"] = naive_step(rule, p, g)
    if torch is not None:
        for mode in ("foreach", "fused"):
            if f"torch-{mode}" in impls:
                f = torch_step(rule, p, g, mode)
                if f is not None:
                    steps[f"torch-{mode}"] = f
    if "copy" in impls:
        steps["copy"] = copy_step(p)
    times = measure(steps, reps)
    return summarize(rule, n, "cpu", times)


def summarize(rule, n, device, times):
    med = {k: statistics.median(v) for k, v in times.items()}
    fused = med.get("torch-fused")
    copy = med.get("copy")
    rows = []
    for name, t in med.items():
        traffic = 8 if name == "copy" else TRAFFIC[rule]
        rows.append({
            "device": device, "rule": rule, "n": n, "impl": name, "median_s": t,
            "times_s": times[name], "gbps": traffic * n / t / 1e9,
            "x_torch_fused": None if fused is None else t / fused,
            # fraction of the copy's bandwidth the update reaches
            "of_copy_bw": None if copy is None or name == "copy" else (traffic * n / t) / (8 * n / copy),
        })
    return rows


def gpu_rows(rule, n, reps):
    cp = go.backend.cupy_module()
    rng = cp.random.default_rng(0)
    p = rng.standard_normal(n, dtype=cp.float32)
    g = rng.standard_normal(n, dtype=cp.float32)
    steps = {"gpuopt-cupy": gpuopt_step(rule, p, g)}
    if torch is not None and torch.cuda.is_available():
        f = torch_step(rule, cp.asnumpy(p), cp.asnumpy(g), "fused", device="cuda")
        if f is not None:
            steps["torch-fused"] = f
    dst = cp.empty_like(p)
    steps["copy"] = lambda: cp.copyto(dst, p)

    def sync():
        cp.cuda.Device().synchronize()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()

    # GPU steps are short: time a batch of calls per repetition.
    batch = 20
    batched = {k: (lambda f=f: [f() for _ in range(batch)]) for k, f in steps.items()}
    times = measure(batched, reps, sync)
    times = {k: [t / batch for t in v] for k, v in times.items()}
    return summarize(rule, n, "gpu", times)


# ---------------------------------------------------------------------------


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def print_table(rows, file=sys.stdout):
    head = (f"{'device':6} {'rule':13} {'size':>5} {'impl':14} {'ms':>9} {'GB/s':>7} {'x fused':>8} "
            f"{'of copy':>8}")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in rows:
        size = f"{r['n'] >> 20}M" if r["n"] >= 1 << 20 else str(r["n"])
        print(f"{r['device']:6} {r['rule']:13} {size:>5} {r['impl']:14} {r['median_s'] * 1e3:9.2f} "
              f"{r['gbps']:7.1f} {fmt(r['x_torch_fused'], '8.2f')} {fmt(r['of_copy_bw'], '8.0%')}",
              file=file)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,8M,64M", help="comma-separated element counts (K, M suffixes)")
    ap.add_argument("--rules", default="adam,rmsprop,sgd-momentum")
    ap.add_argument("--impls", default="gpuopt,naive,torch-foreach,torch-fused,copy")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions per implementation")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                    help="cpu: NumPy/torch CPU only; gpu: CuPy only (fails without a GPU); "
                         "auto: CPU, then the GPU when CuPy sees one")
    args = ap.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    rules = args.rules.split(",")
    for r in rules:
        if r not in TRAFFIC:
            ap.error(f"--rules: unknown rule {r!r}; known: {sorted(TRAFFIC)}")
    impls = set(args.impls.split(","))

    info = {
        "python": platform.python_version(), "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "gpuopt_threads": go.parallel.num_threads(),
        "block": go.optim.BLOCK, "machine": platform.machine(), "backend": go.backend.info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    gpu = go.backend.gpu_available()
    if args.device == "gpu" and not gpu:
        ap.error("--device gpu: CuPy sees no GPU (or GPUOPT_BACKEND=numpy)")
    rows = []
    if args.device in ("auto", "cpu"):
        for n in sizes:
            for rule in rules:
                rows += cpu_rows(rule, n, args.reps, impls)
    if args.device in ("auto", "gpu") and gpu:
        for n in sizes:
            for rule in rules:
                rows += gpu_rows(rule, n, args.reps)
    print(f"numpy {info['numpy']}, torch {info['torch']} ({info['torch_threads']} threads), "
          f"{info['cpu_count']} CPUs, gpuopt {info['gpuopt_threads']} threads, block {info['block']}")
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
        tmp.replace(args.json)  # whole or absent
    return rows


if __name__ == "__main__":
    main()
