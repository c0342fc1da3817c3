"""FlatParams: many tensors as views of one buffer, updated by one launch per rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_optimizer

import gpuopt as go


def random_shapes(n, seed=0):
    """``n`` small shapes of 0 to 3 dimensions (scalars included)."""
    rng = np.random.default_rng(seed)
    return [tuple(int(k) for k in rng.integers(1, 5, size=rng.integers(0, 4))) for _ in range(n)]


def grad_of(p):
    # np.asarray: a ufunc on a 0-d array returns a scalar, and optimizers take arrays.
    return np.asarray(np.sin(3.0 * p) + 0.5 * p, dtype=p.dtype)


def test_views_share_memory_with_data():
    shapes = [(2, 3), (), (4,), (1, 2, 2)]
    flat = go.FlatParams(shapes, dtype=np.float64)
    assert flat.data.shape == (sum(math.prod(s) for s in shapes),)
    assert flat.data.flags.c_contiguous
    for i, (v, s) in enumerate(zip(flat.views, shapes, strict=True)):
        assert v.shape == s and v.dtype == np.float64
        assert np.shares_memory(v, flat.data)
        v[...] = i + 1  # written through the view, seen in the buffer at its offset
    expect = np.concatenate([np.full(math.prod(s), i + 1.0) for i, s in enumerate(shapes)])
    np.testing.assert_array_equal(flat.data, expect)
    flat.data[:] = -1  # and the other way round
    assert all((v == -1).all() for v in flat.views)


def test_from_arrays_copies_and_keeps_values():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(3,), (2, 2), ()]]
    flat = go.FlatParams.from_arrays(arrays)
    assert flat.data.dtype == np.float32
    for v, a in zip(flat.views, arrays, strict=True):
        np.testing.assert_array_equal(v, a)
        assert not np.shares_memory(v, a)
    grads = flat.zeros_like()
    assert grads.shapes == flat.shapes and grads.data.shape == flat.data.shape
    assert not grads.data.any() and not np.shares_memory(grads.data, flat.data)


def test_one_launch_updates_a_thousand_tensors(case):
    shapes = random_shapes(1000)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s) for s in shapes]
    flat = go.FlatParams.from_arrays(arrays)
    grads = flat.zeros_like()
    opt = make_optimizer(case)
    state = opt.init(flat.data)
    separate = [a.copy() for a in arrays]
    sopt = make_optimizer(case)
    sstate = sopt.init(separate)
    for step in range(1, 4):
        for gv, v in zip(grads.views, flat.views, strict=True):  # the model writes through the views
            gv[...] = grad_of(v)
        opt.step(flat.data, grads.data, state)
        assert opt.launches == step  # one rule application for all 1000 tensors
        sopt.step(separate, [grad_of(a) for a in separate], sstate)
        assert sopt.launches == 1000 * step
    for v, a in zip(flat.views, separate, strict=True):
        np.testing.assert_array_equal(v, a)
    for name in opt.state_names:
        for a, b in zip(np.split(state[name], flat.offsets[1:-1]), sstate[name], strict=True):
            np.testing.assert_array_equal(a, b.ravel())


def test_runs_layout_with_per_run_hyperparameters(case):
    runs = 3
    shapes = random_shapes(20, seed=3)
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((runs,) + s) for s in shapes]
    flat = go.FlatParams.from_arrays(arrays, runs=runs)
    assert flat.data.shape == (runs, sum(math.prod(s) for s in shapes))
    for v, a in zip(flat.views, arrays, strict=True):
        assert v.shape == a.shape and np.shares_memory(v, flat.data)
    lrs = make_optimizer(case).lr * np.array([1.0, 0.5, 0.1])
    opt = make_optimizer(case, lr=lrs[:, None], batched=True)
    state = opt.init(flat.data)
    grads = flat.zeros_like()
    singles = [make_optimizer(case, lr=float(lr)) for lr in lrs]
    sparams = [[np.array(a[r]) for a in arrays] for r in range(runs)]
    sstates = [o.init(ps) for o, ps in zip(singles, sparams, strict=True)]
    for _ in range(3):
        for gv, v in zip(grads.views, flat.views, strict=True):
            gv[...] = grad_of(v)
        opt.step(flat.data, grads.data, state)
        for o, ps, st in zip(singles, sparams, sstates, strict=True):
            o.step(ps, [grad_of(p) for p in ps], st)
    assert opt.launches == 3
    for r in range(runs):
        for v, p in zip(flat.views, sparams[r], strict=True):
            np.testing.assert_allclose(v[r], p, rtol=1e-14, atol=0)
    assert not np.allclose(flat.views[0][0], flat.views[0][2])


def test_flat_float16_and_float32_buffers():
    flat = go.FlatParams([(2,), (3, 1)], dtype=np.float16)
    assert flat.data.dtype == np.float16 and all(v.dtype == np.float16 for v in flat.views)
    runs = go.FlatParams([(2,), (3, 1)], runs=2, dtype=np.float32)
    assert runs.data.shape == (2, 5) and runs.views[1].shape == (2, 3, 1)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        go.FlatParams([])
    with pytest.raises(ValueError, match="runs"):
        go.FlatParams([(2,)], runs=0)
    with pytest.raises(ValueError, match="runs"):
        go.FlatParams([(2,)], runs=2.5)
    with pytest.raises(ValueError, match="arrays"):
        go.FlatParams.from_arrays([])
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        go.FlatParams.from_arrays([np.zeros((3, 2)), np.zeros((2, 2))], runs=3)
