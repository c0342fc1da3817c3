"""The engine: a chunk as one batch gives exactly what each run gives on its own,
whatever the chunk size; diverged runs are recorded and cost nothing afterwards."""

import math
import warnings

import numpy as np
import pandas as pd

import gpuopt as go
from gpuopt import engine
from gpuopt.cluster import default_chunk_size, run_study
from gpuopt.problems import make_problem
from gpuopt.study import Chunk, load_spec

ROSEN = """\
[study]
name = "rosen"
steps = 120
seeds = 3
record_every = 25
diverge_factor = {factor}

[problem]
kind = "rosenbrock"
dim = 3

[init]
scheme = {{ values = ["normal", "uniform"] }}
scale = {{ values = [0.1, 0.5] }}

[[optimizers]]
name = "adam"
lr = {{ values = {adam_lrs} }}
betas = [0.8, 0.99]

[[optimizers]]
name = "sgd"
lr = {{ values = [1e-4, 1e-3, 3e-3] }}
momentum = {{ values = [0.0, 0.9] }}
"""


def rosen(factor="1e6", adam_lrs="[0.003, 0.03, 0.3]"):
    return load_spec(ROSEN.format(factor=factor, adam_lrs=adam_lrs))


def direct(problem, name, kwargs, x0, steps, factor, record_every):
    """One run with scalar hyperparameters, no batch, no compaction: the reference the
    engine's batched rows must match bit for bit."""
    opt = go.get_optimizer(name)(batched=True, **kwargs)
    x = x0[None].copy()
    state = opt.init(x)
    curve, best, bound = {}, math.inf, None
    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            if t < steps:
                f, g = problem.value_and_grad(x)
            else:
                f, g = problem.value(x), None
            f = float(f[0])
            if t == 0:
                bound = factor * (abs(f) if f != 0 else 1.0)
            if not math.isfinite(f) or f > bound:
                return {"final_loss": f, "best_loss": best, "diverged_step": t,
                        "diverged_reason": "blowup" if math.isfinite(f) else "nonfinite", "curve": curve}
            best = min(best, f)
            if t % record_every == 0 or t == steps:
                curve[t] = f
            if g is not None:
                if name == "newton":
                    opt.step(x, g, state, hessian=problem.hessian(x))
                else:
                    opt.step(x, g, state)
    return {"final_loss": f, "best_loss": best, "diverged_step": None, "diverged_reason": None,
            "curve": curve}


def kwargs_of(row, keys):
    return {k: row[k] for k in keys}


def check_against_direct(spec, result, keys_by_opt, fixed_by_opt):
    problem = make_problem(**spec.problem)
    curves = result.curves
    for _, row in result.runs.iterrows():
        x0 = problem.init_params([int(row.seed)], scheme=row.init_scheme, scale=row.init_scale,
                                 dtype=np.dtype(spec.dtype))[0]
        kw = {**fixed_by_opt.get(row.optimizer, {}), **kwargs_of(row, keys_by_opt[row.optimizer])}
        ref = direct(problem, row.optimizer, kw, x0, spec.steps, spec.diverge_factor, spec.record_every)
        assert row.final_loss == ref["final_loss"] or (np.isnan(row.final_loss)
                                                       and np.isnan(ref["final_loss"]))
        # a run diverged at step 0 has no best loss
        assert row.best_loss == ref["best_loss"] or (np.isnan(row.best_loss) and ref["best_loss"] == math.inf)
        if ref["diverged_step"] is None:
            assert not row.diverged and pd.isna(row.diverged_step) and row.steps == spec.steps
        else:
            assert row.diverged and row.diverged_step == ref["diverged_step"] == row.steps
            assert row.diverged_reason == ref["diverged_reason"]
        c = curves[curves.run_id == row.run_id]
        assert dict(zip(c.step.tolist(), c.loss.tolist(), strict=True)) == ref["curve"]


def test_chunk_equals_each_run_on_its_own():
    spec = rosen()
    g_adam, g_sgd = spec.groups
    for g, keys, fixed in ((g_adam, {"adam": ["lr"]}, {"adam": {"betas": (0.8, 0.99)}}),
                           (g_sgd, {"sgd": ["lr", "momentum"]}, {})):
        res = engine.run_chunk(spec, Chunk(0, g.index, g.start, g.start + g.size))
        assert len(res.runs) == g.size
        check_against_direct(spec, res, keys, fixed)
    # SGD with momentum at the larger lrs diverges on some runs, so both paths are exercised
    res = engine.run_chunk(spec, Chunk(0, 1, g_sgd.start, g_sgd.start + g_sgd.size))
    assert 0 < res.runs.diverged.sum() < len(res.runs)


def test_nonfinite_divergence_and_reason():
    spec = rosen(factor="inf", adam_lrs="[0.003]")
    g = spec.groups[1]  # sgd with lr up to 3e-3 and momentum 0.9 overflows
    res = engine.run_chunk(spec, Chunk(0, g.index, g.start, g.start + g.size))
    assert set(res.runs.diverged_reason.dropna()) == {"nonfinite"}
    check_against_direct(spec, res, {"sgd": ["lr", "momentum"]}, {})


def test_mlp_chunk_equals_each_run_on_its_own():
    spec = load_spec("""
        [study]
        steps = 30
        seeds = 2
        record_every = 10
        [problem]
        kind = "mlp"
        widths = [3, 5, 1]
        samples = 16
        [init]
        scheme = "xavier_normal"
        scale = { values = [0.5, 2.0] }
        [[optimizers]]
        name = "adam"
        lr = { values = [0.01, 0.1, 30.0] }
    """)
    g = spec.groups[0]
    res = engine.run_chunk(spec, Chunk(0, 0, g.start, g.start + g.size))
    assert res.runs.final_loss.dtype == np.float64
    check_against_direct(spec, res, {"adam": ["lr"]}, {})


def test_newton_uses_the_hessian():
    spec = load_spec("""
        [study]
        steps = 8
        seeds = 2
        record_every = 1
        [problem]
        kind = "rosenbrock"
        [init]
        scale = 0.3
        [[optimizers]]
        name = "newton"
        lr = { values = [0.5, 1.0] }
        damping = 0.01
    """)
    res = engine.run_chunk(spec, Chunk(0, 0, 0, spec.n_runs))
    check_against_direct(spec, res, {"newton": ["lr"]}, {"newton": {"damping": 0.01}})
    assert res.runs.final_loss.min() < 1e-8  # Newton with lr = 1 converges


def test_structural_axis_runs_as_separate_groups():
    spec = load_spec("""
        [study]
        steps = 20
        seeds = 2
        [problem]
        kind = "beale"
        [init]
        scale = 0.2
        [[optimizers]]
        name = "sgd"
        lr = { values = [0.001, 0.002] }
        momentum = 0.5
        nesterov = { values = [false, true] }
    """)
    assert len(spec.groups) == 2
    for g in spec.groups:
        res = engine.run_chunk(spec, Chunk(0, g.index, g.start, g.start + g.size))
        assert (res.runs.nesterov == g.structural["nesterov"]).all()
        check_against_direct(spec, res, {"sgd": ["lr", "nesterov"]}, {"sgd": {"momentum": 0.5}})


def test_results_do_not_depend_on_chunk_size(tmp_path):
    spec = rosen()
    tables = []
    for size in (7, 64):
        run_study(spec, tmp_path / str(size), cluster="none", chunk_size=size, progress=False)
        runs, curves = go.load_results(tmp_path / str(size), curves=True)
        assert runs.run_id.tolist() == list(range(spec.n_runs))
        tables.append((runs.drop(columns="chunk"), curves))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0], check_exact=True)
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1], check_exact=True)
    assert tables[0][0].diverged.any()


def test_a_diverged_run_leaves_the_others_unchanged(tmp_path):
    """The others' results equal those of a grid without the divergent point."""
    with_bad = engine.run_chunk(rosen(adam_lrs="[0.003, 0.03, 1000.0]"), Chunk(0, 0, 0, 36)).runs
    without = engine.run_chunk(rosen(adam_lrs="[0.003, 0.03]"), Chunk(0, 0, 0, 24)).runs
    bad = with_bad[with_bad.lr == 1000.0]
    assert bad.diverged.all() and (bad.steps == bad.diverged_step).all()
    kept = with_bad[with_bad.lr != 1000.0].drop(columns=["run_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, without.drop(columns=["run_id"]), check_exact=True)


class Counting:
    """A problem wrapper that counts the run-rows each evaluation receives."""

    def __init__(self, problem):
        self.problem, self.rows = problem, 0
        self.dim = problem.dim

    def value_and_grad(self, x):
        self.rows += x.shape[0]
        return self.problem.value_and_grad(x)

    def value(self, x):
        self.rows += x.shape[0]
        return self.problem.value(x)

    def init_params(self, *a, **k):
        return self.problem.init_params(*a, **k)


def test_diverged_runs_cost_nothing_afterwards():
    spec = rosen(adam_lrs="[0.003, 0.03, 1000.0]")
    counting = Counting(spec.make_problem())
    engine._PROBLEMS[spec.hash] = counting
    try:
        res = engine.run_chunk(spec, Chunk(0, 0, 0, 36))
    finally:
        engine._PROBLEMS.pop(spec.hash)
    runs = res.runs
    assert runs.diverged.sum() >= 12
    # one evaluation per step taken plus the one that found the run finished or diverged
    assert counting.rows == int((runs.steps + 1).sum())


def test_divergence_emits_no_warnings():
    spec = load_spec("""
        [study]
        steps = 40
        seeds = 40
        diverge_factor = inf
        [problem]
        kind = "mlp"
        widths = [4, 64, 64, 1]
        samples = 32
        [init]
        scheme = "xavier_normal"
        scale = { values = [1.0, 30.0] }
        [[optimizers]]
        name = "sgd"
        lr = { values = [1e3, 1e30] }
        momentum = 0.9
    """)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = engine.run_chunk(spec, Chunk(0, 0, 0, spec.n_runs))
    assert res.runs.diverged.all()
    assert set(res.runs.diverged_reason) == {"nonfinite"}


def test_runs_table_columns():
    spec = rosen()
    res = engine.run_chunk(spec, Chunk(3, 1, 36, 40))
    cols = set(res.runs.columns)
    assert {"run_id", "chunk", "block", "optimizer", "label", "seed", "init_scheme", "init_scale", "lr",
            "momentum", "dampening", "nesterov", "final_loss", "best_loss", "initial_loss", "diverged",
            "diverged_step", "diverged_reason", "steps"} <= cols
    assert (res.runs.chunk == 3).all() and res.runs.run_id.tolist() == [36, 37, 38, 39]
    assert res.summary() == {"chunk": 3, "runs": 4, "diverged": int(res.runs.diverged.sum()),
                             "seconds": res.seconds}


def test_default_chunk_size_rules():
    spec = rosen()  # 108 runs, 121 evaluations per run, groups of 36 and 72
    # balance: 108 / (8 * 1) = 14 runs, when 0.5 s takes fewer (0.5 / 121 / 1e-3 = 5)
    assert default_chunk_size(spec, 1, per_step=(0.0, 1e-3)) == 14
    # 0.5 s needs 0.5/121/1e-4 = 42 runs, more than 108/(8*2) = 7 runs for balance
    assert default_chunk_size(spec, 2, per_step=(0.0, 1e-4)) == 42
    # expensive runs: 30 s / 121 / 0.1 s = 2 runs at most per chunk
    assert default_chunk_size(spec, 1, per_step=(0.0, 0.1)) == 2
    # tiny cost: at least 0.5 s means more runs than the largest group holds
    assert default_chunk_size(spec, 1, per_step=(0.0, 1e-9)) == 72
    a, b = engine.measure(spec)
    assert a >= 0 and b > 0
