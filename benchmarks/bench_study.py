"""Grid studies end to end: the batched engine against a per-run loop, jax, and Dask.

    python benchmarks/bench_study.py [--device cpu|gpu] [--studies 1,2,3] [--reps 3]
        [--rosenbrock-runs 10000] [--rosenbrock-steps 1000] [--rosenbrock-loop-runs 100]
        [--mlp-runs 1024] [--mlp-steps 100] [--mlp-loop-runs 16] [--no-jax]
        [--dask-runs N] [--dask-chunk-size 64] [--dask-reps 1] [--json out.json]

On one large GPU (benchmarks/gpu_check.sh)::

    python benchmarks/bench_study.py --device gpu --reps 1 --rosenbrock-runs 1000000
        --rosenbrock-loop-runs 10 --mlp-runs 65536 --mlp-loop-runs 8 --dask-runs 16384
        --dask-chunk-size 4096 --json out.json

Everything runs in one process (the Dask studies start their own worker processes),
so the ratios compare implementations under the same machine state; repetitions are
interleaved (A, B, C, A, B, C, ...) and the tables report medians.

1. **Small problems.** 2-D Rosenbrock, Adam (float64), ``--rosenbrock-runs`` runs
   (learning rate x init scale x seeds), ``--rosenbrock-steps`` steps. ``engine``: the
   whole grid as one chunk through ``gpuopt.engine.run_chunk`` (what ``--cluster none``
   runs per chunk; no Parquet writes). ``loop``: the same library once per run, as a
   user without the engine writes it: ``problem.init_params`` for the run's seed,
   ``gpuopt.Adam`` on a ``(2,)`` array, ``problem.value_and_grad`` per step, the same
   divergence check and best/final loss bookkeeping. The loop is timed on
   ``--rosenbrock-loop-runs`` runs spread evenly over the grid and **extrapolated** to
   the whole grid (time per run x runs); its final losses are checked against the
   engine's for those runs.
2. **Networks.** A 16-64-64-1 tanh MLP (mse, float32) on 256 teacher-student samples,
   full-batch gradient descent (``sgd``, no momentum) for ``--mlp-steps`` steps, over
   learning rate x init scale (``xavier_normal`` times the scale) x 4 seeds
   (1,024 runs = 16 x 16 x 4 by default). ``engine`` as in 1; ``jax``: ``jax.vmap``
   over runs of a jitted training loop (``jax.lax.fori_loop`` over the steps,
   ``jax.grad`` of the same loss, per-run learning rate and initial parameters, float32
   with ``precision=highest``), started from the engine's own initial parameters;
   compile time is reported apart. ``loop``: as in 1 with ``gpuopt.SGD``,
   ``--mlp-loop-runs`` runs, extrapolated. The engine drops diverged runs, jax
   computes every run to the end: the table says what share of the run-steps the
   engine computed. The engine's final losses are checked against jax's on every run
   that did not diverge.
3. **Dask.** Study 2 (``--dask-runs`` runs) through ``go.Study(...).run`` with
   ``cluster="local"`` and 1, then 2 workers (fresh output directories in a temporary
   directory, ``--dask-chunk-size`` runs per chunk so each worker gets several
   chunks), and with ``cluster="none"`` (this process: gpuopt's thread pool, all
   cores). Dask's workers run single-threaded (``gpuopt.cluster`` sets
   ``GPUOPT_NUM_THREADS=1`` and the BLAS thread variables; the benchmark reads them
   back from a worker). The task summaries (engine seconds per chunk) are collected
   by wrapping ``gpuopt.cluster._execute``; *overhead* is
   ``(wall - sum(task seconds) / workers) / wall`` over the execution phase (first
   submission to last result: scheduling, pickling, Parquet writes, load imbalance),
   and again over the whole call (cluster start-up and ``load_results`` included).
   On a GPU machine there is one worker per GPU, so the second-worker speed-up needs
   two GPUs; without Dask installed the study is skipped.

``--device gpu`` runs the engine and the loops with CuPy (and jax on its GPU backend
when it has one; jax without a GPU is skipped there rather than compared on the
host). This is a measurement, never a pass/fail test; the targets in the table
(``target``) are the project's (issue 4), not assertions.

On a shared machine, another process easily doubles a timing: the script prints the
load average before and after each study.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# jax must not grab most of the GPU's memory at import: CuPy shares the device.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import gpuopt as go  # noqa: E402
from gpuopt import backend, engine  # noqa: E402
from gpuopt.study import load_spec  # noqa: E402

WIDTHS = [16, 64, 64, 1]
SAMPLES = 256
MLP_SEEDS = 4


# ---------------------------------------------------------------------------
# Study files


def grid_axes(runs: int, seeds: int) -> tuple[int, int, int]:
    """``(n_lr, n_scale, n_seeds)`` with product ``runs``: the two hyperparameter
    axes as square as the divisors allow."""
    if runs < 1:
        raise ValueError(f"runs must be positive, got {runs}")
    if runs % seeds:
        seeds = 1
    n = runs // seeds
    a = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n // a, a, seeds


def rosenbrock_study(runs: int, steps: int, device: str) -> dict:
    n_lr, n_scale, n_seeds = grid_axes(runs, 16)
    return {"study": {"name": "bench-rosenbrock", "steps": steps, "seeds": n_seeds, "device": device},
            "problem": {"kind": "rosenbrock", "dim": 2},
            "init": {"scheme": "normal", "scale": {"logspace": [-1, 0.5, n_scale]}},
            "optimizers": [{"name": "adam", "lr": {"logspace": [-3, 0, n_lr]}}]}


def mlp_study(runs: int, steps: int, device: str) -> dict:
    n_lr, n_scale, n_seeds = grid_axes(runs, MLP_SEEDS)
    return {"study": {"name": "bench-mlp", "steps": steps, "seeds": n_seeds, "device": device},
            "problem": {"kind": "mlp", "widths": WIDTHS, "activation": "tanh", "samples": SAMPLES},
            "init": {"scheme": "xavier_normal", "scale": {"logspace": [-0.5, 0.5, n_scale]}},
            "optimizers": [{"name": "sgd", "lr": {"logspace": [-2, 0, n_lr]}}]}


def describe(spec) -> str:
    g = spec.groups[0]
    shape = " x ".join(f"{len(a.values)} {a.name}" for a in g.axes if len(a.values) > 1)
    return f"{spec.n_runs} runs ({shape}), {spec.steps} steps"


# ---------------------------------------------------------------------------
# Timing helpers


def sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def whole_chunk(spec):
    (chunk,) = spec.chunks(spec.n_runs)
    return chunk


def warm_up(spec):
    """Build the problem, its data copies and the kernels on a few runs and steps."""
    g = spec.groups[0]
    engine.run_chunk(spec, go.study.Chunk(0, g.index, g.start, g.start + min(8, g.size)), steps=2)


def interleave(cases: dict, reps: int) -> dict:
    """``{name: [seconds, ...]}``: ``reps`` rounds, each case once per round."""
    times = {k: [] for k in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            times[name].append(fn())
    return times


def loop_subset(spec, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, spec.n_runs - 1, max(1, min(k, spec.n_runs))).round().astype(np.int64))


def per_run_loop(spec, run_ids, xp):
    """The runs ``run_ids`` one at a time through the public API, as the engine would
    run each (same start, same optimizer settings, same divergence rule); returns
    ``(seconds, final losses)``."""
    problem = engine.problem_for(spec)
    dtype = np.dtype(spec.dtype)
    cls = go.optim.get_optimizer(spec.blocks[0].name)
    finals = []
    sync(xp)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        for r in run_ids:
            cols = spec.points(int(r), int(r) + 1)
            kw = {k: _scalar(v) for k, v in cols["_kwargs"].items()}
            x = problem.init_params([int(cols["seed"][0])], scheme=cols["init_scheme"][0],
                                    scale=float(cols["init_scale"][0]), xp=xp, dtype=dtype)[0]
            opt = cls(**kw)
            state = opt.init(x)
            bound = best = None
            curve = []
            f = math.nan
            for t in range(spec.steps + 1):
                if t < spec.steps:
                    fd, g = problem.value_and_grad(x)
                else:
                    fd, g = problem.value(x), None
                f = float(fd)
                if t == 0:
                    bound = spec.diverge_factor * (abs(f) if f != 0 else 1.0)
                    best = math.inf
                if not math.isfinite(f) or f > bound:
                    break
                best = min(best, f)
                if t % spec.record_every == 0 or t == spec.steps:
                    curve.append(f)
                if g is not None:
                    opt.step(x, g, state)
            finals.append(f)
    sync(xp)
    return time.perf_counter() - t0, np.asarray(finals)


def _scalar(v):
    """A one-run hyperparameter as a plain value: (1, 1) arrays become floats."""
    if isinstance(v, np.ndarray):
        return float(v.reshape(-1)[0])
    if isinstance(v, tuple):
        return tuple(_scalar(e) for e in v)
    return v


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-30)


def median(v):
    return statistics.median(v)


def load():
    return tuple(round(x, 2) for x in os.getloadavg())


def engine_and_loop(spec, chunk, subset, xp, out):
    """Timed callables: the engine on the whole chunk, and the per-run loop on
    ``subset``; each returns its seconds and leaves its results in ``out``."""

    def run_engine():
        res = engine.run_chunk(spec, chunk)
        out["runs"] = res.runs
        return res.seconds

    def run_loop():
        s, finals = per_run_loop(spec, subset, xp)
        out["loop_finals"] = finals
        return s

    return run_engine, run_loop


# ---------------------------------------------------------------------------
# Study 1: Rosenbrock


def study_rosenbrock(args, device, xp, log):
    spec = load_spec(rosenbrock_study(args.rosenbrock_runs, args.rosenbrock_steps, device))
    chunk = whole_chunk(spec)
    warm_up(spec)
    subset = loop_subset(spec, args.rosenbrock_loop_runs)
    out = {}
    run_engine, run_loop = engine_and_loop(spec, chunk, subset, xp, out)

    before = load()
    times = interleave({"engine": run_engine, "loop": run_loop}, args.reps)
    after = load()
    t_engine = median(times["engine"])
    t_loop_subset = median(times["loop"])
    t_loop = t_loop_subset / len(subset) * spec.n_runs
    runs = out["runs"]
    eng_finals = runs["final_loss"].to_numpy()[subset]
    both = np.isfinite(eng_finals) & np.isfinite(out["loop_finals"])
    agree = float(rel_diff(out["loop_finals"][both], eng_finals[both]).max()) if both.any() else math.nan
    rows = [
        {"impl": "engine (one chunk)", "seconds": t_engine, "runs_per_s": spec.n_runs / t_engine,
         "x": t_loop / t_engine, "times_s": times["engine"], "note": ""},
        {"impl": f"loop ({len(subset)} runs, extrapolated)", "seconds": t_loop,
         "runs_per_s": spec.n_runs / t_loop, "x": 1.0, "times_s": times["loop"],
         "note": f"{t_loop_subset / len(subset) * 1e3:.1f} ms per run"},
    ]
    result = {"study": 1, "title": f"Rosenbrock 2-D, Adam, float64, {device}: {describe(spec)}",
              "rows": rows, "reference": "loop", "speedup": t_loop / t_engine, "target": 100.0,
              "diverged": int(runs["diverged"].sum()),
              "check": {"loop_vs_engine_max_rel_diff": agree, "runs_compared": int(both.sum())},
              "load_before": before, "load_after": after}
    print_study(result, log)
    log(f"check: per-run loop vs engine final loss on {int(both.sum())} runs: max rel diff {agree:.2e}")
    return result


# ---------------------------------------------------------------------------
# Study 2: MLP


def jax_trainer(problem, steps):
    """A jitted ``(params, lr) -> final loss`` over a batch of runs: vmap over runs of a
    fori_loop of full-batch gradient steps on the same network and loss."""
    import jax
    import jax.numpy as jnp

    X = jnp.asarray(problem.X, jnp.float32)
    y = jnp.asarray(np.asarray(problem.y, np.float64).reshape(problem.n, -1), jnp.float32)
    last = len(problem.layout) - 1
    hi = jax.lax.Precision.HIGHEST

    def loss(params):
        a = X
        for l, (w, b) in enumerate(params):
            a = jnp.matmul(a, w, precision=hi) + b
            if l < last:
                a = jnp.tanh(a)
        r = a - y
        return jnp.mean(r * r)

    grad = jax.grad(loss)

    def train(params, lr):
        def body(_, p):
            g = grad(p)
            return jax.tree_util.tree_map(lambda a, da: a - lr * da, p, g)

        return loss(jax.lax.fori_loop(0, steps, body, params))

    return jax.jit(jax.vmap(train))


def jax_params(problem, x0):
    """The engine's flat ``(R, d)`` initial parameters as per-layer jax arrays."""
    import jax.numpy as jnp

    x0 = np.ascontiguousarray(backend.to_numpy(x0))
    return [(jnp.asarray(w), jnp.asarray(b)) for w, b in problem.unpack(x0)]


def jax_status(device):
    """``(usable, why-not)`` for jax on this run's device."""
    try:
        import jax
    except ImportError:
        return False, "jax is not installed (pip install jax)"
    platform_ = jax.default_backend()
    if device == "gpu" and platform_ != "gpu":
        return False, f"jax runs on {platform_}, not on the GPU: not compared"
    return True, f"jax {jax.__version__} on {platform_}"


def study_mlp(args, device, xp, log):
    spec = load_spec(mlp_study(args.mlp_runs, args.mlp_steps, device))
    problem = engine.problem_for(spec)
    chunk = whole_chunk(spec)
    warm_up(spec)
    subset = loop_subset(spec, args.mlp_loop_runs)
    out = {}
    run_engine, run_loop = engine_and_loop(spec, chunk, subset, xp, out)

    cases = {"engine": run_engine, "loop": run_loop}
    use_jax, jax_note = jax_status(device) if not args.no_jax else (False, "--no-jax")
    compile_s = None
    if use_jax:
        import jax

        cols = spec.points(chunk.start, chunk.stop)
        x0 = engine._init_batch(problem, cols, np, np.dtype(spec.dtype))  # the engine's start
        params = jax_params(problem, x0)
        lr = jax.numpy.asarray(cols["_kwargs"]["lr"].reshape(-1), jax.numpy.float32)
        t0 = time.perf_counter()
        compiled = jax_trainer(problem, spec.steps).lower(params, lr).compile()
        compile_s = time.perf_counter() - t0

        def run_jax():
            t = time.perf_counter()
            f = compiled(params, lr).block_until_ready()
            s = time.perf_counter() - t
            out["jax_finals"] = np.asarray(f)
            return s

        cases["jax"] = run_jax

    before = load()
    times = interleave(cases, args.reps)
    after = load()
    runs = out["runs"]
    med = {k: median(v) for k, v in times.items()}
    t_loop = med["loop"] / len(subset) * spec.n_runs
    ref = "jax" if use_jax else "loop"
    t_ref = med["jax"] if use_jax else t_loop
    share = int(runs["steps"].sum()) / (spec.n_runs * spec.steps)  # jax computes every step of every run
    rows = [{"impl": "engine (one chunk)", "seconds": med["engine"],
             "runs_per_s": spec.n_runs / med["engine"], "x": t_ref / med["engine"],
             "times_s": times["engine"],
             "note": f"computed {share:.0%} of the run-steps (diverged runs dropped); "
                     f"{share * t_ref / med['engine']:.2f}x {ref} per run-step"}]
    if use_jax:
        rows.append({"impl": "jax vmap(jit(fori_loop))", "seconds": med["jax"],
                     "runs_per_s": spec.n_runs / med["jax"], "x": 1.0, "times_s": times["jax"],
                     "note": f"compile {compile_s:.1f} s (not included)"})
    rows.append({"impl": f"loop ({len(subset)} runs, extrapolated)", "seconds": t_loop,
                 "runs_per_s": spec.n_runs / t_loop, "x": t_ref / t_loop, "times_s": times["loop"],
                 "note": f"{med['loop'] / len(subset) * 1e3:.1f} ms per run"})
    check = {}
    eng = runs["final_loss"].to_numpy()
    ok = ~runs["diverged"].to_numpy()
    lf = out["loop_finals"]
    both = ok[subset] & np.isfinite(lf)
    check["loop_vs_engine_max_rel_diff"] = (float(rel_diff(lf[both], eng[subset][both]).max())
                                            if both.any() else math.nan)
    if use_jax:
        jf = out["jax_finals"]
        d = rel_diff(jf[ok], eng[ok])
        check.update({"jax_vs_engine_runs": int(ok.sum()),
                      "jax_vs_engine_median_rel_diff": float(np.median(d)),
                      "jax_vs_engine_max_rel_diff": float(d.max()),
                      "jax_vs_engine_within_1e-3": int((d <= 1e-3).sum()),
                      "jax_nonfinite_where_engine_diverged": int((~np.isfinite(jf[~ok])).sum())})
    result = {"study": 2, "title": f"MLP {'-'.join(map(str, WIDTHS))} tanh, {SAMPLES} samples, GD, float32, "
                                   f"{device}: {describe(spec)}",
              "rows": rows, "reference": ref, "speedup": t_ref / med["engine"],
              "run_steps_share": share, "speedup_per_run_step": share * t_ref / med["engine"],
              "target": 1.0 if use_jax else None, "diverged": int(runs["diverged"].sum()),
              "jax": jax_note, "jax_compile_s": compile_s, "check": check,
              "load_before": before, "load_after": after}
    print_study(result, log)
    log(f"engine diverged runs: {result['diverged']} of {spec.n_runs} "
        "(dropped from the batch when they diverge)")
    if not use_jax:
        log(f"jax: {jax_note}")
    log(f"check: per-run loop vs engine final loss on {int(both.sum())} runs: "
        f"max rel diff {check['loop_vs_engine_max_rel_diff']:.2e}")
    if use_jax:
        for i in np.flatnonzero(ok)[:: max(1, ok.sum() // 4)][:4]:
            log(f"check: run {i:5d} lr {runs['lr'][i]:.3g} scale {runs['init_scale'][i]:.3g}: "
                f"engine {eng[i]:.6g}  jax {out['jax_finals'][i]:.6g}")
        log(f"check: jax vs engine final loss on the {check['jax_vs_engine_runs']} runs that did not "
            "diverge: "
            f"median rel diff {check['jax_vs_engine_median_rel_diff']:.1e}, max "
            f"{check['jax_vs_engine_max_rel_diff']:.1e}, {check['jax_vs_engine_within_1e-3']} within 1e-3; "
            f"jax non-finite on {check['jax_nonfinite_where_engine_diverged']} of the {result['diverged']} "
            "runs the engine dropped")
    return result


# ---------------------------------------------------------------------------
# Study 3: Dask


@contextlib.contextmanager
def capture_tasks():
    """Record the task summaries and the execution phase of ``run_study``."""
    from gpuopt import cluster

    original = cluster._execute
    rec = {"summaries": [], "start": None, "end": None}

    def execute(client, spec, todo, store):
        rec["start"] = time.perf_counter()
        for s in original(client, spec, todo, store):
            rec["summaries"].append(s)
            yield s
        rec["end"] = time.perf_counter()

    cluster._execute = execute
    try:
        yield rec
    finally:
        cluster._execute = original


def worker_env(spec, workers):
    """What a local Dask worker sees: its thread variables and gpuopt's thread count."""
    from gpuopt import cluster

    def probe():
        import os as os_

        from gpuopt import parallel

        names = ("GPUOPT_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        return {**{k: os_.environ.get(k) for k in names}, "gpuopt_threads": parallel.num_threads()}

    with cluster.connect("local", spec=spec, workers=workers, dashboard=None) as client:
        return list(client.run(probe).values())


def study_dask(args, device, log):
    try:
        import distributed  # noqa: F401
    except ImportError:
        log("study 3 skipped: dask.distributed is not installed")
        return {"study": 3, "skipped": "dask.distributed is not installed"}
    runs = args.dask_runs or args.mlp_runs
    study = mlp_study(runs, args.mlp_steps, device)
    spec = load_spec(study)
    n_chunks = -(-spec.n_runs // args.dask_chunk_size)
    counts = [1, 2]
    if device == "gpu":
        counts = [n for n in counts if n <= backend.device_count()]
    env = None
    if device == "cpu":  # on a GPU machine the probe would cost another cluster start
        env = worker_env(spec, 1)[0]
        log(f"dask worker environment: {env}")
    configs = [("none", None)] + [("local", n) for n in counts]
    base = Path(tempfile.mkdtemp(prefix="bench-study-"))
    times: dict = {c: [] for c in configs}
    before = load()
    for rep in range(args.dask_reps):
        for kind, workers in configs:
            out = base / f"{kind}-{workers}-{rep}"
            with capture_tasks() as rec:
                t0 = time.perf_counter()
                df = go.Study(study, out).run(cluster=kind, workers=workers, chunk_size=args.dask_chunk_size,
                                              progress=False, dashboard=None)
                wall = time.perf_counter() - t0
            assert len(df) == spec.n_runs, (len(df), spec.n_runs)
            task = [s["seconds"] for s in rec["summaries"]]
            times[kind, workers].append({"wall": wall, "exec": rec["end"] - rec["start"],
                                         "startup": rec["start"] - t0, "task_sum": sum(task),
                                         "task_max": max(task), "tasks": len(task)})
    after = load()
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(base)

    def med(c, key):
        return median([r[key] for r in times[c]])

    rows = []
    one = ("local", 1)
    for c in configs:
        kind, workers = c
        n = workers or 1
        wall, ex, tsum = med(c, "wall"), med(c, "exec"), med(c, "task_sum")
        rows.append({"impl": f"cluster={kind}" + (f", workers={workers}" if workers else " (in-process)"),
                     "wall_s": wall, "exec_s": ex, "startup_s": med(c, "startup"), "task_sum_s": tsum,
                     "task_max_s": med(c, "task_max"), "runs_per_s": spec.n_runs / ex,
                     "speedup_vs_1_worker": med(one, "exec") / ex if one in times else None,
                     "task_time_vs_1_worker": tsum / med(one, "task_sum") if one in times else None,
                     "overhead_exec": (ex - tsum / n) / ex,
                     "overhead_wall": (wall - tsum / n) / wall, "reps": times[c]})
    two = next((r for r in rows if r["impl"].endswith("workers=2")), None)
    result = {"study": 3, "title": f"Dask: study 2 with {describe(spec)}, chunk size {args.dask_chunk_size} "
                                   f"({n_chunks} chunks), {device}",
              "rows": rows, "worker_env": env, "speedup_2_workers": two and two["speedup_vs_1_worker"],
              "target_speedup": 1.6, "target_overhead": 0.05,
              "load_before": before, "load_after": after}
    print_dask(result, log)
    return result


# ---------------------------------------------------------------------------
# Output


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def print_study(r, log):
    log("")
    log(f"== study {r['study']}: {r['title']}")
    head = f"{'implementation':34} {'seconds':>9} {'runs/s':>11} {'x ' + r['reference']:>9}  note"
    log(head)
    log("-" * len(head))
    for row in r["rows"]:
        log(f"{row['impl']:34} {row['seconds']:9.2f} {row['runs_per_s']:11.1f} {row['x']:9.1f}  "
            f"{row['note']}")
    tgt = r.get("target")
    if tgt is not None:
        verdict = "met" if r["speedup"] >= tgt else "MISSED"
        log(f"engine vs {r['reference']}: {r['speedup']:.2f}x (target >= {tgt:g}x: {verdict})")
    log(f"load average before {r['load_before']}, after {r['load_after']}")


def print_dask(r, log):
    log("")
    log(f"== study 3: {r['title']}")
    head = (f"{'configuration':34} {'wall s':>7} {'start s':>7} {'exec s':>7} {'tasks s':>8} {'runs/s':>7} "
            f"{'x 1 wkr':>7} {'ovh exec':>8} {'ovh wall':>8} {'task t':>6}")
    log(head)
    log("-" * len(head))
    for row in r["rows"]:
        sp = row["speedup_vs_1_worker"]
        log(f"{row['impl']:34} {row['wall_s']:7.2f} {row['startup_s']:7.2f} {row['exec_s']:7.2f} "
            f"{row['task_sum_s']:8.2f} {row['runs_per_s']:7.1f} {fmt(sp):>7} "
            f"{row['overhead_exec']:8.1%} {row['overhead_wall']:8.1%} {fmt(row['task_time_vs_1_worker']):>6}")
    log("tasks s = sum of the tasks' engine seconds; ovh = (wall - tasks s / workers) / wall, over the "
        "execution phase (exec) and the whole Study.run call (wall); task t = the tasks' total engine time "
        "over that with 1 worker (above 1: the workers got less than a core each, or shared a resource)")
    sp = r["speedup_2_workers"]
    if sp is not None:
        log(f"second worker: {sp:.2f}x (target >= {r['target_speedup']}x: "
            f"{'met' if sp >= r['target_speedup'] else 'MISSED'})")
    for row in r["rows"]:
        if row["impl"].startswith("cluster=local"):
            ok = row["overhead_exec"] < r["target_overhead"]
            log(f"overhead {row['impl']}: {row['overhead_exec']:.1%} of the execution phase "
                f"(target < {r['target_overhead']:.0%}: {'met' if ok else 'MISSED'}), "
                f"{row['overhead_wall']:.1%} of the whole call")
    log(f"load average before {r['load_before']}, after {r['load_after']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                    help="cpu: NumPy; gpu: CuPy (fails without a GPU)")
    ap.add_argument("--studies", default="1,2,3", help="comma-separated subset of 1,2,3")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of studies 1 and 2")
    ap.add_argument("--rosenbrock-runs", type=int, default=10_000)
    ap.add_argument("--rosenbrock-steps", type=int, default=1000)
    ap.add_argument("--rosenbrock-loop-runs", type=int, default=100,
                    help="runs the per-run loop times (then extrapolated)")
    ap.add_argument("--mlp-runs", type=int, default=1024, help="runs of study 2 (a multiple of 4)")
    ap.add_argument("--mlp-steps", type=int, default=100)
    ap.add_argument("--mlp-loop-runs", type=int, default=16)
    ap.add_argument("--no-jax", action="store_true", help="skip the jax comparison")
    ap.add_argument("--dask-runs", type=int, default=None, help="runs of study 3 (default: --mlp-runs)")
    ap.add_argument("--dask-chunk-size", type=int, default=64)
    ap.add_argument("--dask-reps", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    studies = {s.strip() for s in args.studies.split(",") if s.strip()}
    if not studies <= {"1", "2", "3"}:
        ap.error(f"--studies: pick from 1, 2, 3; got {args.studies!r}")
    for name in ("reps", "rosenbrock_runs", "rosenbrock_steps", "rosenbrock_loop_runs", "mlp_runs",
                 "mlp_steps", "mlp_loop_runs", "dask_chunk_size", "dask_reps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if args.device == "gpu" and not backend.gpu_available():
        ap.error("--device gpu: CuPy sees no GPU (or GPUOPT_BACKEND=numpy)")
    xp = backend.get_xp(args.device)

    info = {"python": platform.python_version(), "numpy": np.__version__, "gpuopt": go.__version__,
            "cpu_count": os.cpu_count(), "gpuopt_threads": go.parallel.num_threads(),
            "backend": backend.info(), "device": args.device,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    with contextlib.suppress(ImportError):
        import jax

        info["jax"] = jax.__version__
    print(f"gpuopt {info['gpuopt']}, numpy {info['numpy']}, jax {info.get('jax')}, {info['cpu_count']} CPUs, "
          f"gpuopt threads {info['gpuopt_threads']}, device {args.device}; load average {load()}")
    print(f"medians of {args.reps} interleaved repetitions (studies 1, 2), {args.dask_reps} (study 3)")

    def log(msg):
        print(msg, flush=True)

    results = []

    def save():  # after every study, so a run stopped by a time limit keeps what it measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(args.json.suffix + ".tmp")
            tmp.write_text(json.dumps({"info": info, "studies": results}, indent=1, default=str))
            tmp.replace(args.json)  # whole or absent

    if "1" in studies:
        results.append(study_rosenbrock(args, args.device, xp, log))
        save()
    if "2" in studies:
        results.append(study_mlp(args, args.device, xp, log))
        save()
    if "3" in studies:
        results.append(study_dask(args, args.device, log))
        save()
    return results


if __name__ == "__main__":
    main()
