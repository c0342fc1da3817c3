"""Run one chunk of a study as one batch of runs on one device.

A chunk is runs ``start .. stop - 1`` of one optimizer group (see
:mod:`gpuopt.study`). All its runs live in one ``(R, d)`` array on one device (CuPy
when the study's ``device`` allows and a GPU is seen, else NumPy); each per-run
hyperparameter is an ``(R, 1)`` array; one ``batched=True`` optimizer advances them all.
The loop, for ``t = 0 .. steps``::

    f, g = problem.value_and_grad(x)       # at t = steps: f = problem.value(x), no step
    runs with f non-finite ("nonfinite") or f > diverge_factor * |f_0| ("blowup")
        -> record step t and reason, then drop them from the batch
    best = min(best, f); every record_every steps (and at t = steps): record f
    optimizer.step(x, g, state)            # Newton: with problem.hessian (or hvp)

so ``final_loss`` is ``f(x_steps)`` and ``best_loss`` the least of ``f(x_0) .. f(x_steps)``.
(For ``nesterov`` the parameters hold the look-ahead point, so its losses are taken
there.) ``|f_0| = 0`` counts as 1 in the blowup bound.

**Dropping diverged runs.** The parameters, the optimizer state buffers, the step
counts and every per-run hyperparameter are compacted to the surviving rows, and a new
optimizer instance is made from the kept hyperparameter rows. A diverged run costs
nothing afterwards, and a survivor's arithmetic is exactly what it would be had the
diverged run never been in the batch (every operation is per run). The loop runs under
``numpy.errstate(all="ignore")``: the step that produces an overflow is the one the
check then catches, and it must not print warnings.

The result of a diverged run: ``final_loss`` is the loss that tripped the check (NaN,
Inf, or the blown-up value), ``best_loss`` the least loss before it (NaN when it
diverged at step 0), ``steps`` the number of updates it received (= ``diverged_step``).

**The runs table**, one row per run, in run-id order:

- ``run_id``, ``chunk``, ``block`` (index of the ``[[optimizers]]`` table),
  ``optimizer`` (its name), ``label`` (its label: the name unless the file says
  otherwise or the name repeats), ``seed``, ``init_scheme``, ``init_scale``;
- every constructor hyperparameter of the optimizer with its effective value, swept,
  fixed or default (``lr``, ``momentum``, ``nesterov``, ...); a pair is split into
  ``name0``, ``name1`` (Adam's ``betas`` -> ``betas0``, ``betas1``); hyperparameters left
  at None (``max_grad_norm``...) have no column;
- ``initial_loss``, ``final_loss``, ``best_loss`` (float64), ``diverged`` (bool),
  ``diverged_step`` (nullable Int64, <NA> for runs that did not diverge),
  ``diverged_reason`` (``"nonfinite"``, ``"blowup"`` or <NA>), ``steps``.

**The curves table**, long format: ``run_id``, ``step``, ``loss`` at steps 0,
``record_every``, ``2 record_every``, ... and ``steps``, for as long as the run was
running (a diverged run's curve stops before the step that tripped the check).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import backend
from .optim import Newton, OptimizeState, get_optimizer
from .study import Chunk, StudySpec

# Problems by spec hash, so a worker process builds a study's problem (its synthetic
# data, its network) once and reuses it for every chunk it runs.
_PROBLEMS: dict = {}
_PROBLEM_CACHE_SIZE = 4


def problem_for(spec: StudySpec):
    """The study's problem, built once per process."""
    problem = _PROBLEMS.get(spec.hash)
    if problem is None:
        problem = spec.make_problem()
        if len(_PROBLEMS) >= _PROBLEM_CACHE_SIZE:
            _PROBLEMS.pop(next(iter(_PROBLEMS)))
        _PROBLEMS[spec.hash] = problem
    return problem


@dataclass
class ChunkResult:
    """One chunk's outcome: ``runs`` (one row per run, in run-id order), ``curves``
    (long format: run_id, step, loss) and the wall time it took."""

    chunk: Chunk
    runs: pd.DataFrame
    curves: pd.DataFrame
    seconds: float

    def summary(self) -> dict:
        return {"chunk": self.chunk.id, "runs": len(self.runs),
                "diverged": int(self.runs["diverged"].sum()), "seconds": self.seconds}


def _is_per_run(v) -> bool:
    return isinstance(v, np.ndarray) or (isinstance(v, tuple) and any(isinstance(e, np.ndarray) for e in v))


def _take(v, keep):
    if isinstance(v, np.ndarray):
        return v[keep]
    if isinstance(v, tuple):
        return tuple(e[keep] if isinstance(e, np.ndarray) else e for e in v)
    return v


def _init_batch(problem, cols, xp, dtype):
    """The start points: each row depends only on its seed, scheme and scale, so each
    distinct (scheme, scale, seed) is drawn once and copied to every row that has it
    (a grid repeats it for every learning rate: drawing per row made the start of a
    million-run chunk take longer than its thousand steps)."""
    seeds, scales = cols["seed"], cols["init_scale"]
    schemes = np.asarray(cols["init_scheme"], dtype=object)
    x = xp.empty((len(seeds), problem.dim), dtype=dtype)
    for scheme in dict.fromkeys(schemes.tolist()):
        rows = np.flatnonzero(schemes == scheme)
        sc, sd = scales[rows], seeds[rows]
        order = np.lexsort((sd, sc))  # by scale, then seed
        sc, sd = sc[order], sd[order]
        new = np.ones(len(order), bool)
        new[1:] = (sc[1:] != sc[:-1]) | (sd[1:] != sd[:-1])
        first = np.flatnonzero(new)
        draws = xp.empty((len(first), problem.dim), dtype=dtype)
        u_sc, u_sd = sc[first], sd[first]
        bounds = np.flatnonzero(np.r_[True, u_sc[1:] != u_sc[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            draws[a:b] = problem.init_params([int(s) for s in u_sd[a:b]], scheme=scheme,
                                             scale=float(u_sc[a]), xp=xp, dtype=dtype)
        which = np.empty(len(rows), np.int64)
        which[order] = np.cumsum(new) - 1  # row -> its draw
        if len(rows) == len(x):
            xp.take(draws, xp.asarray(which), axis=0, out=x)
        else:
            x[xp.asarray(rows)] = draws[xp.asarray(which)]
    return x


def _has_hessian(problem, x) -> bool:
    try:
        problem.hessian(x[:1])
    except (AttributeError, NotImplementedError):
        return False
    return True


def run_chunk(spec: StudySpec, chunk: Chunk, *, steps: int | None = None) -> ChunkResult:
    """Run the chunk's runs as one batch; ``steps`` overrides the study's (for
    measuring). Returns its runs and curves tables."""
    t_start = time.perf_counter()
    steps = spec.steps if steps is None else steps
    xp = backend.get_xp(spec.device)
    problem = problem_for(spec)
    dtype = np.dtype(spec.dtype)
    cols = spec.points(chunk.start, chunk.stop)
    kwargs = cols.pop("_kwargs")
    block = spec.blocks[spec.groups[chunk.group].block]
    cls = get_optimizer(block.name)
    R = chunk.size

    x = _init_batch(problem, cols, xp, dtype)
    opt = cls(batched=True, **kwargs)
    state = opt.init(x)
    curvature = None
    if cls is Newton:
        curvature = "hessian" if _has_hessian(problem, x) else "hvp"

    active = np.arange(R)  # chunk rows still running, in order
    initial = np.full(R, np.nan)
    final = np.full(R, np.nan)
    best = np.full(R, np.nan)
    div_step = np.full(R, -1, np.int64)
    reason = np.full(R, None, object)
    # rec[k, row]: the loss at the k-th recorded step (rows that were no longer
    # running then hold garbage, never read). Filled in place and read out run by run
    # at the end, so the curves table needs no sort (a sort of the long table took
    # longer than the steps of a million-run chunk).
    n_rec = len(range(0, steps + 1, spec.record_every)) + (steps % spec.record_every != 0)
    rec = np.empty((n_rec, R))
    rec_steps = []
    bound = best_dev = None

    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            if t < steps:
                f, g = problem.value_and_grad(x)
                if g.dtype != x.dtype:
                    g = g.astype(x.dtype)
            else:
                f, g = problem.value(x), None
            f = f.astype(np.float64, copy=False)
            if t == 0:
                initial[:] = backend.to_numpy(f)
                bound = spec.diverge_factor * xp.where(f != 0, xp.abs(f), 1.0)
                best_dev = xp.full(R, np.inf)
            bad = ~xp.isfinite(f) | (f > bound)
            if bool(bad.any()):
                bad_h = backend.to_numpy(bad)
                f_bad = backend.to_numpy(f[bad])
                rows = active[bad_h]
                div_step[rows] = t
                reason[rows] = np.where(np.isfinite(f_bad), "blowup", "nonfinite")
                final[rows] = f_bad
                best[rows] = backend.to_numpy(best_dev[bad])
                keep_h = ~bad_h
                active = active[keep_h]
                if active.size == 0:
                    break
                keep = xp.asarray(np.flatnonzero(keep_h))
                x, f, bound, best_dev = x[keep], f[keep], bound[keep], best_dev[keep]
                if g is not None:
                    g = g[keep]
                kwargs = {k: _take(v, keep_h) for k, v in kwargs.items()}
                opt, state = _compact(cls, kwargs, opt, state, keep, keep_h)
            xp.minimum(best_dev, f, out=best_dev)
            if t % spec.record_every == 0 or t == steps:
                k = len(rec_steps)
                rec_steps.append(t)
                if active.size == R:
                    rec[k] = backend.to_numpy(f)
                else:
                    rec[k, active] = backend.to_numpy(f)
            if g is not None:
                if curvature == "hessian":
                    opt.step(x, g, state, hessian=problem.hessian(x))
                elif curvature == "hvp":
                    opt.step(x, g, state, hvp=lambda v, x=x: problem.hvp(x, v))
                else:
                    opt.step(x, g, state)
        else:
            final[active] = backend.to_numpy(f)
            best[active] = backend.to_numpy(best_dev)

    diverged = div_step >= 0
    runs = pd.DataFrame(cols)
    runs.insert(1, "chunk", np.full(R, chunk.id, np.int64))
    runs["initial_loss"] = initial
    runs["final_loss"] = final
    runs["best_loss"] = best
    runs["diverged"] = diverged
    runs["diverged_step"] = pd.arrays.IntegerArray(div_step.copy(), ~diverged)  # <NA>: did not diverge
    runs["diverged_reason"] = pd.array(reason, dtype="string")
    runs["steps"] = np.where(diverged, div_step, steps).astype(np.int64)

    # A run's curve is its records before it diverged: a prefix of the recorded steps.
    rec_steps = np.asarray(rec_steps, np.int64)
    K = rec_steps.size
    loss = _by_run(rec[:K]).reshape(-1)
    step = np.tile(rec_steps, R)
    counts = K
    if diverged.any():
        counts = np.where(diverged, np.searchsorted(rec_steps, div_step, side="left"), K)
        taken = (np.arange(K) < counts[:, None]).reshape(-1)
        loss, step = loss[taken], step[taken]
    curves = pd.DataFrame({"run_id": np.repeat(cols["run_id"], counts), "step": step, "loss": loss},
                          copy=False)
    return ChunkResult(chunk, runs, curves, time.perf_counter() - t_start)


def _by_run(rec):
    """``rec`` ``(K, R)`` as a contiguous ``(R, K)`` array, transposed in cache-sized
    blocks (a plain copy of the transposed view is ~7x slower for R in the millions)."""
    k, r = rec.shape
    out = np.empty((r, k), rec.dtype)
    b = max(1, (1 << 18) // max(k, 1))  # 2 MiB of float64 per block
    for i in range(0, r, b):
        out[i:i + b] = rec[:, i:i + b].T
    return out


def _compact(cls, kwargs, opt, state, keep, keep_h):
    """A new optimizer from the kept hyperparameter rows, and its state: the kept rows
    of every buffer, step count and skip count."""
    new_opt = cls(batched=True, **kwargs)
    new_state = OptimizeState(step=state["step"][keep_h], skipped=state["skipped"][keep_h])
    for name in opt.state_names:
        new_state[name] = state[name][keep]
    return new_opt, new_state


def measure(spec: StudySpec, runs=(8, 64), steps: int = 3) -> tuple[float, float]:
    """Seconds per step as ``a + b * R``, fitted from short runs of the study's first
    group at two batch sizes (after one warm-up, which builds the problem and kernels).
    Used to size chunks."""
    g = spec.groups[0]
    sizes = [max(1, min(r, g.size)) for r in runs]
    times = []
    run_chunk(spec, Chunk(0, g.index, g.start, g.start + sizes[0]), steps=1)
    for r in sizes:
        t0 = time.perf_counter()
        run_chunk(spec, Chunk(0, g.index, g.start, g.start + r), steps=steps)
        times.append((time.perf_counter() - t0) / (steps + 1))
    if sizes[1] == sizes[0]:
        return times[0] / 2, times[0] / (2 * sizes[0])
    b = max((times[1] - times[0]) / (sizes[1] - sizes[0]), 1e-9)
    a = max(times[0] - b * sizes[0], 0.0)
    return a, b
