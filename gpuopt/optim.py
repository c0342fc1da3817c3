"""Optimizers: fused elementwise updates on CuPy, the same arithmetic on NumPy.

Every optimizer has the same small interface::

    opt = go.Adam(lr=1e-3)
    state = opt.init(params)           # params: one array or a list/tuple of arrays
    opt.step(params, grads, state)     # updates params and state in place

The arrays pick the backend: CuPy arrays run the kernel of ``kernels/<rule>.cu``
(one launch per parameter array), NumPy arrays run the NumPy mirror of the same
arithmetic in cache-sized blocks with preallocated scratch. Both evaluate the same
expressions in the same order with the same host-folded scalars, so they agree to
rounding (the test suite checks this, including the kernel text run on the CPU).

**Batches of runs.** Every hyperparameter may be a Python scalar or an array that
broadcasts against the parameters, so a leading run axis ``R`` can carry one value
per run: ``lr=np.logspace(-4, 0, R)[:, None]`` for parameters of shape ``(R, d)``.
An array of shape ``(R, 1, ..., 1)`` is read as per-run for every parameter whatever
its number of dimensions. With ``batched=True`` the step count, gradient clipping
and the non-finite guard are per run as well.

**Gradient transforms** (applied to ``grads`` in place, in this order, as
``torch.nn.utils.clip_grad_*_`` do):

- ``skip_nonfinite=True``: runs whose gradient holds NaN or Inf are left unchanged
  (parameters, state and step count); ``state["skipped"]`` counts them.
- ``clip_value=c``: clamp each gradient entry to ``[-c, c]``.
- ``max_grad_norm=c``: scale each run's gradient by ``min(1, c / (norm + 1e-6))``
  where ``norm`` is the run's global 2-norm over all parameter arrays.

References: Polyak 1964; Nesterov 1983; Duchi, Hazan & Singer 2011 (AdaGrad);
Tieleman & Hinton 2012 (RMSProp); Zeiler 2012 (AdaDelta); Kingma & Ba 2015 (Adam);
Loshchilov & Hutter 2019 (AdamW); the ``torch.optim`` implementations for the
conventions where the papers leave a choice.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import ClassVar

import numpy as np

from . import backend, kernels, parallel

# NumPy blocks (elements): the p, g, state and scratch blocks of one update stay in
# cache across the ~12 ufunc passes an update needs, so main memory sees about one
# read and one write per array instead of one per pass. Smaller blocks that fit the
# L2 cache lose more to the ~1 us fixed cost of each ufunc call (taken under the GIL,
# so it also serializes the threads) than they gain; on a 2-core EPYC with 1 MiB L2
# and 32 MiB L3, an Adam step on 8M float32 took 26 ms with 2**14, 12 ms with 2**16
# and 9 ms with 2**18 (benchmarks/bench_update.py).
BLOCK = 1 << 18
# Below this many elements the thread pool costs more than it saves.
_THREAD_MIN = 1 << 18


# ---------------------------------------------------------------------------
# Hyperparameter checks


def _check_hyper(name, value, low=0.0, high=math.inf, low_open=False, high_open=False):
    """Validate a scalar or array hyperparameter; return a float or a float64 array."""
    if backend.is_cupy_array(value):
        value = value.get()
    if isinstance(value, bool) or not (np.isscalar(value) or isinstance(value, np.ndarray)):
        raise TypeError(f"{name} must be a real number or an array of them, not {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} is an empty array")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    lo_bad = arr <= low if low_open else arr < low
    hi_bad = arr >= high if high_open else arr > high
    if np.any(lo_bad) or np.any(hi_bad):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        bad = arr[lo_bad | hi_bad].flat[0]
        raise ValueError(f"{name} must lie in {interval}, got {bad:g}")
    return float(arr) if arr.ndim == 0 else arr


def _nonzero(value) -> bool:
    """Whether a hyperparameter switches its term on (an array always does)."""
    return isinstance(value, np.ndarray) or value != 0.0


def _per_run(a: np.ndarray, p_shape: tuple) -> np.ndarray:
    """Reshape an ``(R, 1, ..., 1)`` array to ``(R, 1, ..., 1)`` of ``len(p_shape)`` dims."""
    if (a.ndim >= 2 and all(n == 1 for n in a.shape[1:]) and len(p_shape) >= 1
            and a.shape[0] == p_shape[0]):
        return a.reshape((a.shape[0],) + (1,) * (len(p_shape) - 1))
    return a


def _prepare(name, value, p, xp, cdtype):
    """A hyperparameter as the kernel and the NumPy rule take it: a scalar of the
    compute dtype, or an array of it on ``p``'s device that broadcasts against ``p``."""
    if np.ndim(value) == 0:
        return cdtype.type(value)
    a = _per_run(np.asarray(value, dtype=cdtype), p.shape)
    try:
        shape = np.broadcast_shapes(a.shape, p.shape)
    except ValueError:
        shape = None
    if shape != p.shape:
        raise ValueError(f"{name} has shape {a.shape}, which does not broadcast against a "
                         f"parameter of shape {p.shape}")
    return a if xp is np else xp.asarray(a)


# ---------------------------------------------------------------------------
# Arguments: params, grads, state


def _as_list(x, name):
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is empty")
        return list(x), False
    return [x], True


def _check_arrays(named, name):
    for i, a in enumerate(named):
        label = f"{name}[{i}]"
        if not backend.is_array(a):
            raise TypeError(f"{label} must be a NumPy or CuPy array, not {type(a).__name__}")
        if a.dtype not in backend.FLOAT_DTYPES:
            raise TypeError(f"{label} has dtype {a.dtype}; optimizers need float16, float32 or float64")


class OptimizeState(dict):
    """An optimizer's state: per-array buffers by name, plus ``step`` and ``skipped``.

    ``step`` counts the updates applied (per run when ``batched``) and ``skipped`` the
    updates the non-finite guard refused; both live on the host as int64 arrays.
    Buffers are one array, or a list of arrays when the parameters were a list.
    """


class Optimizer:
    """Base class: construction validates, ``init`` makes state, ``step`` updates."""

    name: ClassVar[str]

    def __init__(self, *, batched=False, max_grad_norm=None, clip_value=None, skip_nonfinite=False):
        self.batched = bool(batched)
        self.max_grad_norm = None if max_grad_norm is None else _check_hyper(
            "max_grad_norm", max_grad_norm, low_open=True)
        self.clip_value = None if clip_value is None else _check_hyper(
            "clip_value", clip_value, low_open=True)
        self.skip_nonfinite = bool(skip_nonfinite)
        self._checked_shapes: set = set()  # parameter shapes the hyperparameters fit
        self.launches = 0  # kernel launches (NumPy: rule applications) so far

    # -- subclasses -------------------------------------------------------
    state_names: tuple[str, ...] = ()

    def _init_value(self, name: str) -> float:
        return 0.0

    # -- state --------------------------------------------------------------
    def _runs(self, ps) -> int | None:
        if not self.batched:
            return None
        for i, p in enumerate(ps):
            if p.ndim == 0 or p.shape[0] != ps[0].shape[0]:
                raise ValueError(f"batched=True needs a common leading run axis; params[{i}] has "
                                 f"shape {p.shape}, params[0] has {ps[0].shape}")
        return ps[0].shape[0]

    def init(self, params) -> OptimizeState:
        """Fresh state for ``params`` (zeros, or the rule's initial value)."""
        ps, single = _as_list(params, "params")
        _check_arrays(ps, "params")
        xp = backend.array_module(*((f"params[{i}]", p) for i, p in enumerate(ps)))
        runs = self._runs(ps)
        shape = () if runs is None else (runs,)
        state = OptimizeState(step=np.zeros(shape, np.int64), skipped=np.zeros(shape, np.int64))
        for name in self.state_names:
            bufs = [xp.full(p.shape, self._init_value(name), dtype=p.dtype) for p in ps]
            state[name] = bufs[0] if single else bufs
        return state

    def _check(self, params, grads, state):
        """Validate everything a step touches; return (xp, params, grads, buffers)."""
        ps, single = _as_list(params, "params")
        gs, _ = _as_list(grads, "grads")
        _check_arrays(ps, "params")
        _check_arrays(gs, "grads")
        if len(gs) != len(ps):
            raise ValueError(f"grads has {len(gs)} arrays but params has {len(ps)}")
        if not isinstance(state, dict) or "step" not in state:
            raise TypeError("state must be what this optimizer's init() returned")
        bufs = {}
        named = [(f"params[{i}]", p) for i, p in enumerate(ps)]
        named += [(f"grads[{i}]", g) for i, g in enumerate(gs)]
        for name in self.state_names:
            if name not in state:
                raise ValueError(f"state has no {name!r} buffer: was it made by another optimizer?")
            b, b_single = _as_list(state[name], f"state[{name!r}]")
            if b_single != single or len(b) != len(ps):
                raise ValueError(f"state[{name!r}] does not match params in structure")
            bufs[name] = b
            named += [(f"state[{name!r}][{i}]", a) for i, a in enumerate(b)]
        xp = backend.array_module(*named)
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"grads[{i}] is {g.dtype}{list(g.shape)} but params[{i}] is "
                                 f"{p.dtype}{list(p.shape)}")
            for name, b in bufs.items():
                if b[i].shape != p.shape or b[i].dtype != p.dtype:
                    raise ValueError(f"state[{name!r}][{i}] is {b[i].dtype}{list(b[i].shape)} but "
                                     f"params[{i}] is {p.dtype}{list(p.shape)}")
        runs = self._runs(ps)
        want = () if runs is None else (runs,)
        if state["step"].shape != want:
            raise ValueError(f"state['step'] has shape {state['step'].shape}, expected {want}")
        return xp, ps, gs, bufs

    # -- gradient transforms --------------------------------------------------
    def _run_reduce(self, xp, gs, fn):
        """Per-run (or whole, when not batched) sum of ``fn(g)`` over all arrays."""
        total = 0
        for g in gs:
            axes = tuple(range(1, g.ndim)) if self.batched else None
            total = total + fn(g).sum(axis=axes, dtype=backend.compute_dtype(g.dtype))
        return total

    def _bad_runs(self, xp, gs):
        """Host bool array (R,) or () of runs whose gradient is not finite."""
        bad = self._run_reduce(xp, gs, lambda g: ~xp.isfinite(g)) > 0
        return backend.to_numpy(bad)

    def _clip(self, xp, gs):
        if self.clip_value is not None:
            for g in gs:
                c = _prepare("clip_value", self.clip_value, g, xp, backend.compute_dtype(g.dtype))
                xp.clip(g, -c, c, out=g)
        if self.max_grad_norm is not None:
            norm = xp.sqrt(self._run_reduce(xp, gs, lambda g: g.astype(backend.compute_dtype(g.dtype)) ** 2))
            for g in gs:
                cd = backend.compute_dtype(g.dtype)
                c = _prepare("max_grad_norm", self.max_grad_norm, g, xp, cd)
                n = norm.reshape(norm.shape + (1,) * (g.ndim - 1)) if self.batched else norm
                coef = xp.minimum(c / (n + cd.type(1e-6)), cd.type(1))
                xp.multiply(g, coef.astype(cd), out=g, casting="unsafe")

    # -- the step -------------------------------------------------------------
    def step(self, params, grads, state) -> None:
        """Apply one update to ``params`` and ``state`` in place (``grads`` may be
        clipped in place). Bad input raises before anything is changed."""
        xp, ps, gs, bufs = self._check(params, grads, state)
        self._prepare_step(xp, ps)
        bad = self._bad_runs(xp, gs) if self.skip_nonfinite else np.zeros(state["step"].shape, bool)
        if bad.all():
            state["skipped"] += 1
            return
        self._clip(xp, gs)
        t = state["step"] + ~bad
        if bad.any():
            saved = self._save_runs(xp, ps, bufs, bad)
            # The skipped runs' NaN and Inf flow through the update and are then
            # undone; they were asked to be skipped, so NumPy must not warn about them.
            with np.errstate(all="ignore"):
                self._update(xp, ps, gs, bufs, t)
            self._restore_runs(ps, bufs, bad, saved)
        else:
            self._update(xp, ps, gs, bufs, t)
        state["step"] = t
        state["skipped"] += bad

    def _prepare_step(self, xp, ps):
        """Per-step checks that need the parameters: every hyperparameter array must
        broadcast against every parameter array. Checked here, by the name the user
        gave, before anything changes; later the host-folded scalars (``step_size``,
        ``decay``, ...) would report it under their own names, after earlier arrays
        had been updated or clipped."""
        for p in ps:
            if p.shape in self._checked_shapes:
                continue
            for name, value in self._array_hypers():
                _prepare(name, value, p, np, np.dtype(np.float64))
            self._checked_shapes.add(p.shape)

    def _array_hypers(self):
        """The hyperparameters given as arrays, by name (``betas[0]`` for a pair)."""
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                yield name, value
            elif isinstance(value, tuple):
                yield from ((f"{name}[{i}]", v) for i, v in enumerate(value) if isinstance(v, np.ndarray))

    def _save_runs(self, xp, ps, bufs, bad):
        idx = xp.asarray(np.flatnonzero(bad))
        arrays = ps + [b for name in self.state_names for b in bufs[name]]
        return idx, [a[idx].copy() for a in arrays]

    def _restore_runs(self, ps, bufs, bad, saved):
        idx, copies = saved
        arrays = ps + [b for name in self.state_names for b in bufs[name]]
        for a, c in zip(arrays, copies, strict=True):
            a[idx] = c

    def _update(self, xp, ps, gs, bufs, t):
        raise NotImplementedError

    # -- saving ---------------------------------------------------------------
    def state_dict(self, state) -> dict[str, np.ndarray]:
        """The state as a flat dict of NumPy arrays, ready for ``numpy.savez``.

        Keys: ``optimizer`` (the rule's name), ``step``, ``skipped``, and each buffer
        as ``name`` (single array) or ``name.i`` (list of arrays).
        """
        out = {"optimizer": np.array(self.name), "step": np.array(state["step"]),
               "skipped": np.array(state["skipped"])}
        for name in self.state_names:
            bufs, single = _as_list(state[name], name)
            for i, b in enumerate(bufs):
                out[name if single else f"{name}.{i}"] = backend.to_numpy(b).copy()
        return out

    def load_state_dict(self, saved, params) -> OptimizeState:
        """State for ``params`` (on their device) from what ``state_dict`` returned, or
        from the ``numpy.load`` of a ``numpy.savez`` of it. Shapes and dtypes are
        checked against ``params``."""
        saved = dict(saved)
        name = str(np.asarray(saved.get("optimizer", "")))
        if name != self.name:
            raise ValueError(f"saved state is for optimizer {name!r}, not {self.name!r}")
        fresh = self.init(params)
        ps, single = _as_list(params, "params")
        xp = backend.array_module(*((f"params[{i}]", p) for i, p in enumerate(ps)))
        for key in ("step", "skipped"):
            v = np.asarray(backend.to_numpy(saved[key]), dtype=np.int64)
            if v.shape != fresh[key].shape:
                raise ValueError(f"saved {key!r} has shape {v.shape}, expected {fresh[key].shape}")
            fresh[key] = v.copy()
        for sname in self.state_names:
            bufs, _ = _as_list(fresh[sname], sname)
            for i, b in enumerate(bufs):
                key = sname if single else f"{sname}.{i}"
                if key not in saved:
                    raise ValueError(f"saved state has no {key!r}")
                # to_numpy: numpy.asarray raises TypeError on a CuPy array
                v = backend.to_numpy(saved[key])
                if v.shape != b.shape or v.dtype != b.dtype:
                    raise ValueError(f"saved {key!r} is {v.dtype}{list(v.shape)}, params need "
                                     f"{b.dtype}{list(b.shape)}")
                b[...] = xp.asarray(v)
        return fresh


class ElementwiseOptimizer(Optimizer):
    """An optimizer whose update is one elementwise kernel per parameter array.

    Subclasses name the kernel file, the flags of its variant, the kernel inputs that
    are constant (``_static``) and those that depend on the step count ``t``
    (``_dynamic``), and the NumPy mirror of the kernel body (``_numpy_rule``).
    """

    kernel: ClassVar[str]
    n_scratch: ClassVar[int] = 2

    def __init__(self, **transforms):
        super().__init__(**transforms)
        self._variant = kernels.variant(self.kernel, self._flags())
        names = [p.name for p in self._variant.outputs]
        assert names[0] == "p", f"kernel {self.kernel}: first output must be p"
        self.state_names = tuple(names[1:])
        self._static_cache: dict = {}
        self._scratch: dict = {}

    def _flags(self) -> frozenset[str]:
        return frozenset()

    def _static(self) -> dict:
        return {}

    def _dynamic(self, t) -> dict:
        return {}

    def _numpy_rule(self, p, g, s, h, tmp) -> None:
        raise NotImplementedError

    def _prepare_step(self, xp, ps):
        super()._prepare_step(xp, ps)
        for p in ps:  # shape errors name the hyperparameter before anything changes
            self._static_for(p, xp)

    def _static_for(self, p, xp):
        # Per device too: hyperparameter arrays live on one GPU, and one optimizer may
        # step parameters on several.
        key = (xp.__name__, str(getattr(p, "device", "")), p.shape, p.dtype)
        hit = self._static_cache.get(key)
        if hit is None:
            cd = backend.compute_dtype(p.dtype)
            hit = {k: _prepare(k, v, p, xp, cd) for k, v in self._static().items()}
            self._static_cache[key] = hit
        return hit

    @property
    def variant(self) -> kernels.Kernel:
        """The kernel variant (file and flags) this optimizer's settings select."""
        return self._variant

    def kernel_inputs(self, p, t) -> dict:
        """The kernel inputs other than ``g`` for parameter array ``p`` when the update
        makes the step count ``t`` (1 on the first update; an int, or an int array of
        shape ``(R,)`` per run): by name, in the kernel's order, each a scalar of the
        compute dtype or an array on ``p``'s device that broadcasts against ``p``.
        Exactly what the kernel launch and the NumPy rule receive (the CPU test harness
        feeds them to the kernel text)."""
        xp = backend.array_module(("p", p))
        return self._inputs_for(p, xp, self._dynamic(_step_count(t)))

    def _inputs_for(self, p, xp, dynamic) -> dict:
        cd = backend.compute_dtype(p.dtype)
        h = self._static_for(p, xp)
        out = {}
        for q in self._variant.inputs:
            if q.name == "g":
                continue
            if q.name in dynamic:
                out[q.name] = _prepare(q.name, dynamic[q.name], p, xp, cd)
            elif q.name in h:
                out[q.name] = h[q.name]
            else:
                raise KeyError(f"{type(self).__name__} provides no input {q.name!r} of kernel "
                               f"{self._variant.cuda_name}")
        return out

    def _update(self, xp, ps, gs, bufs, t):
        dynamic = self._dynamic(_step_count(t))
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            h = self._inputs_for(p, xp, dynamic)
            s = {name: bufs[name][i] for name in self.state_names}
            if xp is np:
                self._numpy_apply(p, g, s, h)
            else:
                k = kernels.cupy_kernel(self.kernel, self._variant.flags, p.dtype)
                k(*[g if q.name == "g" else h[q.name] for q in self._variant.inputs],
                  p, *[s[n] for n in self.state_names])
            self.launches += 1

    # -- the NumPy path -------------------------------------------------------
    def _numpy_apply(self, p, g, s, h):
        """Run ``_numpy_rule`` over cache-sized blocks, on threads for large arrays."""
        cd = backend.compute_dtype(p.dtype)
        arrays = [p, g, *s.values()]
        views = [_as_2d(a) for a in arrays]
        if any(v is None for v in views):
            # A stride pattern no 2-D view expresses: update contiguous copies and
            # write them back (rare; costs one extra pass).
            copies = [np.ascontiguousarray(a) for a in arrays]
            self._numpy_apply(copies[0], copies[1], dict(zip(s, copies[2:], strict=True)), h)
            for a, c in zip([p, *s.values()], [copies[0], *copies[2:]], strict=True):
                a[...] = c
            return
        shape2 = views[0].shape
        # Scalars go to every block as they are; array hyperparameters (per run) are
        # sliced along with the block.
        # 0-d arrays, not NumPy scalars: a ufunc converts a scalar operand on every
        # call, which doubles the fixed cost of a call (~0.5 us against ~0.3 us).
        scalars = {k: np.asarray(v, dtype=cd) for k, v in h.items() if np.ndim(v) == 0}
        sliced = [(k, _broadcast_2d(v, p.shape, shape2)) for k, v in h.items() if np.ndim(v) != 0]
        nthreads = parallel.num_threads() if p.size >= _THREAD_MIN else 1
        nblocks = max(1, -(-p.size // BLOCK))
        if nthreads > 1:  # a whole number of equal blocks per thread
            nblocks = -(-nblocks // nthreads) * nthreads
        block = max(1, -(-p.size // nblocks))
        blocks = _blocks(*shape2, block)
        nthreads = min(nthreads, len(blocks))
        upcast = p.dtype != cd
        nrule = self.n_scratch
        nscratch = nrule + (len(views) if upcast else 0)
        names = list(s)
        rule = self._numpy_rule

        def run(worker, part):
            key = (worker, cd)
            scratch = self._scratch.get(key)
            if scratch is None or len(scratch) < nscratch or scratch[0].size < block:
                scratch = self._scratch[key] = [np.empty(block, cd) for _ in range(nscratch)]
            shaped = {}  # scratch views by block shape: all blocks but a ragged last share one
            for rs, cs in part:
                bv = [v[rs, cs] for v in views]
                shape = bv[0].shape
                tmp = shaped.get(shape)
                if tmp is None:
                    n = math.prod(shape)
                    views_n = [a[:n].reshape(shape) for a in scratch[:nscratch]]
                    tmp = shaped[shape] = (views_n[:nrule], views_n[nrule:])
                hb = scalars
                if sliced:
                    hb = dict(scalars)
                    for k, v in sliced:
                        hb[k] = v[rs, cs]
                if upcast:  # float16 storage: the rule runs on float32 copies of the block
                    wide = tmp[1]
                    for w, a in zip(wide, bv, strict=True):
                        np.copyto(w, a)
                    rule(wide[0], wide[1], dict(zip(names, wide[2:], strict=True)), hb, tmp[0])
                    for i in range(len(bv)):
                        if i != 1:  # g is an input only
                            np.copyto(bv[i], wide[i], casting="same_kind")
                else:
                    rule(bv[0], bv[1], dict(zip(names, bv[2:], strict=True)), hb, tmp[0])

        if nthreads <= 1:
            run(0, blocks)
            return
        # The threads take blocks from one shared queue rather than fixed shares: a
        # pool thread that wakes late (an idle thread can take milliseconds to be
        # scheduled again) then takes fewer blocks instead of making the others wait.
        # The calling thread works too instead of idling. Workers run in a copy of the
        # caller's context, so that the caller's np.errstate holds there too.
        queue = _BlockQueue(blocks)
        parallel.run_parallel(lambda w: run(w, queue), nthreads, pool="elementwise")


class _BlockQueue:
    """An iterator over blocks that several threads may share."""

    def __init__(self, blocks):
        self._it = iter(blocks)
        self._lock = threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            return next(self._it)


def _step_count(t):
    """The step count as host scalars take it. One count for all runs (the usual
    case) folds into a float; after the non-finite guard skipped some runs,
    step-dependent scalars become per-run arrays of shape ``(R, 1)``."""
    t = np.asarray(t)
    if t.ndim and (t == t.flat[0]).all():
        t = t.flat[0]
    return float(t) if np.ndim(t) == 0 else t.astype(np.float64)[:, None]


def _is_one(h) -> bool:
    """A host scalar equal to 1 (a per-run array never counts)."""
    return np.ndim(h) == 0 and h == 1


def _as_2d(a):
    """A view of ``a`` as (rows, columns), rows along the leading axis; None if that
    would need a copy."""
    shape = (1, a.size) if a.ndim <= 1 else (a.shape[0], -1)
    try:
        return a.reshape(shape, copy=False)
    except ValueError:
        return None


def _broadcast_2d(h, p_shape, shape2):
    b = np.broadcast_to(h, p_shape)
    try:
        return b.reshape(shape2, copy=False)
    except ValueError:  # a broadcast the 2-D view cannot express: materialize once
        return np.ascontiguousarray(b).reshape(shape2)


def _blocks(rows, cols, block):
    """Index pairs covering a (rows, cols) array in blocks of about ``block`` elements."""
    if cols >= block:
        return [(slice(r, r + 1), slice(c, min(c + block, cols)))
                for r in range(rows) for c in range(0, cols, block)]
    step = max(1, block // max(cols, 1))
    return [(slice(r, min(r + step, rows)), slice(None)) for r in range(0, rows, step)]


# ---------------------------------------------------------------------------
# The rules


class SGD(ElementwiseOptimizer):
    r"""Gradient descent with momentum, dampening, Nesterov and weight decay, with
    ``torch.optim.SGD``'s semantics:

    .. math::
        d_t = \pm g_t + \lambda p_t,\quad
        b_t = \mu b_{t-1} + (1-\tau) d_t \ (b_1 = d_1),\quad
        p_{t+1} = p_t - \eta\,(d_t + \mu b_t \text{ if nesterov else } b_t)

    with :math:`\eta` = ``lr``, :math:`\mu` = ``momentum``, :math:`\tau` =
    ``dampening``, :math:`\lambda` = ``weight_decay``; ``maximize`` flips the gradient.
    Without momentum this is plain gradient descent. Reference: Sutskever et al. 2013
    for this form of Nesterov momentum; the torch.optim.SGD documentation.
    """

    name = "sgd"
    kernel = "sgd"

    def __init__(self, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 maximize=False, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.momentum = _check_hyper("momentum", momentum, high=1.0, high_open=True)
        self.dampening = _check_hyper("dampening", dampening, high=1.0)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.nesterov, self.maximize = bool(nesterov), bool(maximize)
        if self.nesterov and (not _nonzero(self.momentum) or _nonzero(self.dampening)):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        super().__init__(**transforms)

    def _flags(self):
        f = set()
        if _nonzero(self.weight_decay):
            f.add("WD")
        if _nonzero(self.momentum):
            f.add("MOMENTUM")
            if self.nesterov:
                f.add("NESTEROV")
        return frozenset(f)

    def _static(self):
        return {"lr": self.lr, "sign": -1.0 if self.maximize else 1.0,
                "wd": self.weight_decay, "momentum": self.momentum}

    def _dynamic(self, t):
        return {"damp": np.where(np.asarray(t) == 1, 1.0, 1.0 - np.asarray(self.dampening))}

    def _numpy_rule(self, p, g, s, h, tmp):
        dbuf, t1 = tmp
        # A factor of exactly 1 (sign without maximize, damp without dampening) is the
        # identity in IEEE arithmetic: skipping its pass over memory changes no bit.
        d = g if _is_one(h["sign"]) else np.multiply(g, h["sign"], out=dbuf)
        if "WD" in self._variant.flags:
            np.multiply(p, h["wd"], out=t1)
            d = np.add(d, t1, out=dbuf)
        if "MOMENTUM" in self._variant.flags:
            buf = s["buf"]
            np.multiply(buf, h["momentum"], out=buf)
            if _is_one(h["damp"]):
                np.add(buf, d, out=buf)
            else:
                np.multiply(d, h["damp"], out=t1)
                np.add(buf, t1, out=buf)
            if self.nesterov:
                np.multiply(buf, h["momentum"], out=t1)
                d = np.add(d, t1, out=dbuf)
            else:
                d = buf
        np.multiply(d, h["lr"], out=t1)
        np.subtract(p, t1, out=p)


class HeavyBall(ElementwiseOptimizer):
    r"""Polyak's heavy-ball method in the lecture's notation:

    .. math:: v_{t+1} = -\nabla f(x_t) + \beta v_t,\qquad x_{t+1} = x_t + \eta\, v_{t+1}

    It is ``SGD(lr, momentum=beta)`` with the velocity stored as :math:`v = -b`.
    On a quadratic with :math:`\mu I \preceq A \preceq L I` the optimal choice is
    :math:`\eta = 4/(\sqrt L + \sqrt\mu)^2`, :math:`\beta = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2`
    (``gpuopt.theory.optimal_params``). Reference: Polyak 1964.
    """

    name = "heavy_ball"
    kernel = "heavy_ball"
    n_scratch = 1

    def __init__(self, lr, beta=0.9, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.beta = _check_hyper("beta", beta, high=1.0, high_open=True)
        super().__init__(**transforms)

    def _static(self):
        return {"lr": self.lr, "beta": self.beta}

    def _numpy_rule(self, p, g, s, h, tmp):
        v, (t0,) = s["v"], tmp
        np.multiply(v, h["beta"], out=v)
        np.subtract(v, g, out=v)
        np.multiply(v, h["lr"], out=t0)
        np.add(p, t0, out=p)


class Nesterov(ElementwiseOptimizer):
    r"""Nesterov's accelerated gradient in the lecture's notation.

    .. math::
        v_{t+1} = \beta v_t - \nabla f(x_t + \eta\beta v_t),\qquad x_{t+1} = x_t + \eta v_{t+1}

    The lecture writes the look-ahead point as :math:`x + \beta v`, which is only
    consistent with :math:`x_{t+1} = x_t + \eta v_{t+1}` when :math:`\eta = 1`; this
    class uses the consistent point :math:`y = x + \eta\beta v`. The parameters hold
    ``y`` (where the caller evaluates the gradient), and the update is
    :math:`y_{t+1} = y_t - \eta\nabla f(y_t) + \eta\beta v_{t+1}` — exactly the
    iterates of ``torch.optim.SGD(lr, momentum=beta, nesterov=True)``. Recover
    :math:`x` with :meth:`x_from_lookahead`. Reference: Nesterov 1983; Sutskever et
    al. 2013.
    """

    name = "nesterov"
    kernel = "nesterov"

    def __init__(self, lr, beta=0.9, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.beta = _check_hyper("beta", beta, high=1.0, high_open=True)
        super().__init__(**transforms)

    def _static(self):
        return {"lr": self.lr, "beta": self.beta, "lrbeta": np.asarray(self.lr) * self.beta}

    def _numpy_rule(self, p, g, s, h, tmp):
        v, (t0, t1) = s["v"], tmp
        np.multiply(v, h["beta"], out=v)
        np.subtract(v, g, out=v)
        np.multiply(g, h["lr"], out=t0)
        np.subtract(p, t0, out=p)
        np.multiply(v, h["lrbeta"], out=t1)
        np.add(p, t1, out=p)

    def x_from_lookahead(self, params, state):
        """The iterate :math:`x = y - \\eta\\beta v` behind the stored look-ahead point."""
        ps, single = _as_list(params, "params")
        vs, _ = _as_list(state["v"], "state['v']")
        xs = []
        for p, v in zip(ps, vs, strict=True):
            xp = backend.array_module(("params", p), ("state['v']", v))
            c = _prepare("lr*beta", self._static()["lrbeta"], p, xp, backend.compute_dtype(p.dtype))
            xs.append((p - c * v).astype(p.dtype))
        return xs[0] if single else xs


class AdaGrad(ElementwiseOptimizer):
    r"""AdaGrad with ``torch.optim.Adagrad``'s semantics:

    .. math::
        s_t = s_{t-1} + g_t^2,\qquad
        p_{t+1} = p_t - \frac{\eta}{1 + (t-1)\,\delta}\;\frac{g_t}{\sqrt{s_t} + \epsilon}

    with :math:`\delta` = ``lr_decay`` and :math:`s_0` = ``initial_accumulator_value``.
    The square root is Duchi et al.'s (2011) diagonal AdaGrad, as torch has it; the
    lecture's slide divides by :math:`s_t` itself, which is not scale-invariant and
    not what is used in practice.
    """

    name = "adagrad"
    kernel = "adagrad"

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.lr_decay = _check_hyper("lr_decay", lr_decay)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.initial_accumulator_value = _check_hyper("initial_accumulator_value",
                                                      initial_accumulator_value)
        if isinstance(self.initial_accumulator_value, np.ndarray):
            raise TypeError("initial_accumulator_value must be a scalar")
        self.eps = _check_hyper("eps", eps, low_open=True)
        super().__init__(**transforms)

    def _init_value(self, name):
        return self.initial_accumulator_value

    def _flags(self):
        return frozenset({"WD"} if _nonzero(self.weight_decay) else ())

    def _static(self):
        return {"eps": self.eps, "wd": self.weight_decay}

    def _dynamic(self, t):
        return {"clr": np.asarray(self.lr) / (1.0 + (np.asarray(t) - 1.0) * self.lr_decay)}

    def _numpy_rule(self, p, g, s, h, tmp):
        acc, (t0, t1) = s["sum"], tmp
        gi = _weight_decayed(self, p, g, h, t0)
        np.multiply(gi, gi, out=t1)
        np.add(acc, t1, out=acc)
        np.sqrt(acc, out=t1)
        np.add(t1, h["eps"], out=t1)
        np.divide(gi, t1, out=t1)
        np.multiply(t1, h["clr"], out=t1)
        np.subtract(p, t1, out=p)


def _weight_decayed(opt, p, g, h, out):
    """``g + wd * p`` into ``out`` when the WD flag is on, else ``g`` itself."""
    if "WD" not in opt._variant.flags:
        return g
    np.multiply(p, h["wd"], out=out)
    np.add(g, out, out=out)
    return out


class RMSProp(ElementwiseOptimizer):
    r"""RMSProp with ``torch.optim.RMSprop``'s semantics:

    .. math::
        s_t = \alpha s_{t-1} + (1-\alpha) g_t^2,\qquad
        \hat s_t = s_t - a_t^2 \text{ (centered, } a_t = \alpha a_{t-1} + (1-\alpha) g_t),

    .. math::
        b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{\hat s_t} + \epsilon},\qquad p_{t+1} = p_t - \eta b_t

    (without momentum, :math:`p_{t+1} = p_t - \eta g_t / (\sqrt{\hat s_t}+\epsilon)`).
    Reference: Tieleman & Hinton 2012 (lecture 6.5); Graves 2013 for the centered form.
    """

    name = "rmsprop"
    kernel = "rmsprop"
    n_scratch = 3

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.alpha = _check_hyper("alpha", alpha, high=1.0, high_open=True)
        self.eps = _check_hyper("eps", eps, low_open=True)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.momentum = _check_hyper("momentum", momentum, high=1.0, high_open=True)
        self.centered = bool(centered)
        super().__init__(**transforms)

    def _flags(self):
        f = {"CENTERED"} if self.centered else set()
        if _nonzero(self.weight_decay):
            f.add("WD")
        if _nonzero(self.momentum):
            f.add("MOMENTUM")
        return frozenset(f)

    def _static(self):
        return {"lr": self.lr, "alpha": self.alpha, "oma": 1.0 - np.asarray(self.alpha),
                "eps": self.eps, "wd": self.weight_decay, "momentum": self.momentum}

    def _numpy_rule(self, p, g, s, h, tmp):
        t0, t1, t2 = tmp
        sq = s["sq"]
        gi = _weight_decayed(self, p, g, h, t0)
        np.multiply(sq, h["alpha"], out=sq)
        np.multiply(gi, h["oma"], out=t1)
        np.multiply(t1, gi, out=t1)
        np.add(sq, t1, out=sq)
        den = sq
        if self.centered:
            ga = s["ga"]
            np.multiply(ga, h["alpha"], out=ga)
            np.multiply(gi, h["oma"], out=t1)
            np.add(ga, t1, out=ga)
            np.multiply(ga, ga, out=t2)
            den = np.subtract(sq, t2, out=t2)
        np.sqrt(den, out=t1)
        np.add(t1, h["eps"], out=t1)
        d = np.divide(gi, t1, out=t1)
        if "MOMENTUM" in self._variant.flags:
            buf = s["buf"]
            np.multiply(buf, h["momentum"], out=buf)
            np.add(buf, d, out=buf)
            d = buf
        np.multiply(d, h["lr"], out=t1)
        np.subtract(p, t1, out=p)


class AdaDelta(ElementwiseOptimizer):
    r"""AdaDelta, Zeiler 2012, Algorithm 1:

    .. math::
        s_t = \rho s_{t-1} + (1-\rho) g_t^2,\quad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}\, g_t,\quad
        u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2,\quad p_{t+1} = p_t - \eta\Delta_t

    The numerator uses the update accumulated up to the previous step
    (:math:`u_{t-1}`), as in the paper and in ``torch.optim.Adadelta``; ``lr`` = 1
    is the paper's method, other values scale it as torch does.
    """

    name = "adadelta"
    kernel = "adadelta"
    n_scratch = 3

    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.rho = _check_hyper("rho", rho, high=1.0)
        self.eps = _check_hyper("eps", eps, low_open=True)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        super().__init__(**transforms)

    def _flags(self):
        return frozenset({"WD"} if _nonzero(self.weight_decay) else ())

    def _static(self):
        return {"lr": self.lr, "rho": self.rho, "omr": 1.0 - np.asarray(self.rho),
                "eps": self.eps, "wd": self.weight_decay}

    def _numpy_rule(self, p, g, s, h, tmp):
        t0, t1, t2 = tmp
        sq, acc = s["sq"], s["acc"]
        gi = _weight_decayed(self, p, g, h, t0)
        np.multiply(sq, h["rho"], out=sq)
        np.multiply(gi, h["omr"], out=t1)
        np.multiply(t1, gi, out=t1)
        np.add(sq, t1, out=sq)
        np.add(acc, h["eps"], out=t1)
        np.sqrt(t1, out=t1)
        np.add(sq, h["eps"], out=t2)
        np.sqrt(t2, out=t2)
        np.divide(t1, t2, out=t1)
        np.multiply(t1, gi, out=t1)  # t1 = delta
        np.multiply(acc, h["rho"], out=acc)
        np.multiply(t1, h["omr"], out=t2)
        np.multiply(t2, t1, out=t2)
        np.add(acc, t2, out=acc)
        np.multiply(t1, h["lr"], out=t1)
        np.subtract(p, t1, out=p)


class Adam(ElementwiseOptimizer):
    r"""Adam with ``torch.optim.Adam``'s semantics:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
        p_{t+1} = p_t - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    evaluated in the paper's efficient form (Kingma & Ba 2015, end of Section 2):
    :math:`\eta_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)` and
    :math:`\hat\epsilon = \epsilon\sqrt{1-\beta_2^t}` folded on the host, so the
    kernel computes :math:`p - \eta_t m / (\sqrt v + \hat\epsilon)`. ``amsgrad`` uses
    :math:`\max_{s\le t} v_s` (Reddi et al. 2018; the max ignores NaN, as ``fmax``).
    ``bias_correction=False`` gives the lecture's form
    :math:`p_{t+1} = p_t - \eta\, m_t / (\sqrt{v_t} + \epsilon)`, whose early steps are
    the corrected ones times :math:`(1-\beta_1^t)/\sqrt{1-\beta_2^t}` (about 3.2 at
    :math:`t = 1` for the default betas: larger, since :math:`v` starts further from
    its mean than :math:`m`; example 05 measures it). ``weight_decay`` adds
    :math:`\lambda p` to the gradient (L2; see :class:`AdamW` for decoupled decay).
    """

    name = "adam"
    kernel = "adam"
    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 bias_correction=True, **transforms):
        self.lr = _check_hyper("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_hyper("betas[0]", betas[0], high=1.0, high_open=True),
                      _check_hyper("betas[1]", betas[1], high=1.0, high_open=True))
        self.eps = _check_hyper("eps", eps, low_open=True)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        self.amsgrad, self.bias_correction = bool(amsgrad), bool(bias_correction)
        super().__init__(**transforms)

    def _flags(self):
        f = {"AMSGRAD"} if self.amsgrad else set()
        if _nonzero(self.weight_decay):
            f.add("DECOUPLED" if self._decoupled else "WD")
        return frozenset(f)

    def _static(self):
        b1, b2 = (np.asarray(b) for b in self.betas)
        return {"beta1": b1, "omb1": 1.0 - b1, "beta2": b2, "omb2": 1.0 - b2,
                "wd": self.weight_decay, "decay": 1.0 - np.asarray(self.lr) * self.weight_decay}

    def _dynamic(self, t):
        lr, eps = np.asarray(self.lr), np.asarray(self.eps)
        if not self.bias_correction:
            return {"step_size": lr, "eps_hat": eps}
        b1, b2 = (np.asarray(b) for b in self.betas)
        bc2_sqrt = np.sqrt(1.0 - b2 ** t)
        return {"step_size": lr * bc2_sqrt / (1.0 - b1 ** t), "eps_hat": eps * bc2_sqrt}

    def _numpy_rule(self, p, g, s, h, tmp):
        t0, t1 = tmp
        m, v = s["m"], s["v"]
        if "DECOUPLED" in self._variant.flags:
            np.multiply(p, h["decay"], out=p)
        gi = _weight_decayed(self, p, g, h, t0)
        np.multiply(m, h["beta1"], out=m)
        np.multiply(gi, h["omb1"], out=t1)
        np.add(m, t1, out=m)
        np.multiply(v, h["beta2"], out=v)
        np.multiply(gi, h["omb2"], out=t1)
        np.multiply(t1, gi, out=t1)
        np.add(v, t1, out=v)
        if self.amsgrad:
            v = np.fmax(s["vmax"], v, out=s["vmax"])
        np.sqrt(v, out=t1)
        np.add(t1, h["eps_hat"], out=t1)
        np.divide(m, t1, out=t1)
        np.multiply(t1, h["step_size"], out=t1)
        np.subtract(p, t1, out=p)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019), as
    ``torch.optim.AdamW``: before the Adam update,
    :math:`p \leftarrow p\,(1 - \eta\lambda)`; the gradient is not changed.
    """

    name = "adamw"
    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 **transforms):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, **transforms)


class Newton(Optimizer):
    r"""Newton's method, damped and batched over runs:

    .. math:: x_{t+1} = x_t - \eta\,(\nabla^2 f(x_t) + \lambda I)^{-1}\nabla f(x_t)

    with :math:`\eta` = ``lr`` and :math:`\lambda` = ``damping``. It is not
    elementwise: :meth:`step` also takes the Hessian, ``hessian`` of shape
    ``(d, d)`` (``(R, d, d)`` for a batch ``(R, d)``), solved as a stacked linear system
    by ``numpy.linalg.solve`` / ``cupy.linalg.solve`` (a singular system falls back to
    the pseudo-inverse). Newton-CG: pass ``hvp``, a callable ``v -> H v`` on arrays of
    the parameters' shape, instead; conjugate gradients then solve the system with
    Hessian-vector products only, each run stopping at its own tolerance
    ``cg_tol * ||g||`` or at negative curvature (then the last CG iterate is used, or
    the gradient on the first iteration: truncated Newton, Nocedal & Wright 2006,
    Algorithm 7.1). One step minimizes a quadratic exactly (lr = 1, damping = 0).
    """

    name = "newton"

    def __init__(self, lr=1.0, damping=0.0, cg_maxiter=None, cg_tol=1e-10, **transforms):
        self.lr = _check_hyper("lr", lr)
        self.damping = _check_hyper("damping", damping)
        if cg_maxiter is not None and (not isinstance(cg_maxiter, int) or cg_maxiter < 1):
            raise ValueError(f"cg_maxiter must be a positive int, got {cg_maxiter!r}")
        self.cg_maxiter = cg_maxiter
        self.cg_tol = _check_hyper("cg_tol", cg_tol, low_open=True)
        self._curvature = None
        super().__init__(**transforms)

    def step(self, params, grads, state, hessian=None, hvp=None) -> None:
        """One Newton step; exactly one of ``hessian`` and ``hvp`` must be given."""
        if (hessian is None) == (hvp is None):
            raise ValueError("Newton.step needs exactly one of hessian= and hvp=")
        if isinstance(params, (list, tuple)):
            raise TypeError("Newton takes one parameter array (d,) or, batched, (R, d)")
        want_ndim = 2 if self.batched else 1
        if getattr(params, "ndim", None) != want_ndim:
            raise ValueError(f"params must have {want_ndim} dimension(s) for Newton "
                             f"(batched={self.batched}), got shape {getattr(params, 'shape', None)}")
        if hessian is not None:
            if not backend.is_array(hessian):
                raise TypeError("hessian must be an array")
            want = params.shape + params.shape[-1:]
            if hessian.shape != want:
                raise ValueError(f"hessian has shape {hessian.shape}, expected {want}")
            backend.array_module(("params", params), ("hessian", hessian))
        elif not callable(hvp):
            raise TypeError("hvp must be a callable v -> H v")
        self._curvature = (hessian, hvp)
        try:
            super().step(params, grads, state)
        finally:
            self._curvature = None

    def _update(self, xp, ps, gs, bufs, t):
        p, g = ps[0], gs[0]
        cd = backend.compute_dtype(p.dtype)
        lr = _prepare("lr", self.lr, p, xp, cd)
        damping = _prepare("damping", self.damping, p, xp, cd)
        hessian, hvp = self._curvature
        if hessian is not None:
            a = hessian.astype(cd) + xp.asarray(damping)[..., None] * xp.eye(p.shape[-1], dtype=cd)
            try:
                with _linalg_raises(xp):
                    d = xp.linalg.solve(a, g.astype(cd)[..., None])[..., 0]
            except np.linalg.LinAlgError:
                d = (xp.linalg.pinv(a) @ g.astype(cd)[..., None])[..., 0]
        else:
            d = self._cg(xp, lambda v: hvp(v.astype(p.dtype)).astype(cd) + damping * v, g.astype(cd))
        p -= (lr * d).astype(p.dtype)
        self.launches += 1

    def _cg(self, xp, matvec, b):
        """Solve ``matvec(x) = b`` per row (per run) by conjugate gradients."""
        x = xp.zeros_like(b)
        r = b.copy()
        d = r.copy()
        rs = (r * r).sum(-1, keepdims=True)
        stop = xp.sqrt(rs) * self.cg_tol
        active = xp.ones(rs.shape, dtype=bool)
        for k in range(self.cg_maxiter or b.shape[-1]):
            ad = matvec(d)
            dad = (d * ad).sum(-1, keepdims=True)
            negative = active & (dad <= 0)
            if k == 0:  # no curvature information yet: step along the gradient
                x = xp.where(negative, b, x)
            active &= ~negative
            alpha = xp.where(active, rs / xp.where(active, dad, 1), 0)
            x += alpha * d
            r -= alpha * ad
            rs_new = (r * r).sum(-1, keepdims=True)
            active &= xp.sqrt(rs_new) > stop
            if not bool(active.any()):
                break
            d = r + xp.where(active, rs_new / xp.where(rs > 0, rs, 1), 0) * d
            rs = rs_new
        return x


def _linalg_raises(xp):
    """A context in which a singular ``xp.linalg.solve`` raises ``LinAlgError``.

    NumPy always raises. CuPy by default skips the cuSOLVER/cuBLAS info check (it
    would synchronize) and returns Inf/NaN for a singular system, so the pinv
    fallback would never run; ``cupyx.errstate(linalg="raise")`` turns the check on
    (cupy/linalg/_util.py, ``_check_cusolver_dev_info_if_synchronization_allowed``)."""
    if xp is np:
        return contextlib.nullcontext()
    import cupyx

    return cupyx.errstate(linalg="raise")


# Every optimizer by its method name (``minimize(method=...)``, study files).
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls
    for cls in (SGD, HeavyBall, Nesterov, Newton, AdaGrad, RMSProp, AdaDelta, Adam, AdamW)
}


def get_optimizer(name: str) -> type[Optimizer]:
    """The optimizer class for a method name (case-insensitive)."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[key]
