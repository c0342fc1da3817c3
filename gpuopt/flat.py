"""Many parameter arrays as views of one contiguous buffer (horizontal fusion).

An update kernel launched once per small tensor spends its time in launch overhead
(about 5 us each on a GPU, a few us of Python on a CPU); the same update over one
flat buffer that holds all of them costs one launch. ``FlatParams`` lays out the
arrays so that the model works on the views and the optimizer on ``data``::

    params = go.FlatParams.from_arrays(weights)          # copies into one buffer
    grads = params.zeros_like()                           # same layout
    state = opt.init(params.data)
    ...  compute into grads.views[i] ...
    opt.step(params.data, grads.data, state)              # one launch for all

With ``runs=R`` the buffer is ``(R, N)`` and every view ``(R, *shape)``, so per-run
hyperparameters of shape ``(R, 1)`` apply to all arrays at once.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend


class FlatParams:
    """A contiguous buffer ``data`` and the views ``views`` into it, one per shape."""

    def __init__(self, shapes, *, runs=None, dtype=np.float32, xp=np):
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        if not self.shapes:
            raise ValueError("shapes is empty")
        if runs is not None and (not isinstance(runs, int) or runs < 1):
            raise ValueError(f"runs must be a positive int or None, got {runs!r}")
        self.runs = runs
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        lead = () if runs is None else (runs,)
        self.data = xp.zeros(lead + (self.offsets[-1],), dtype=dtype)
        self.views = [
            _view(self.data[..., a:b], lead + s)
            for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        ]

    @classmethod
    def from_arrays(cls, arrays, *, runs=None):
        """A buffer holding copies of ``arrays`` (with a leading run axis when ``runs``)."""
        arrays = list(arrays)
        if not arrays:
            raise ValueError("arrays is empty")
        xp = backend.array_module(*((f"arrays[{i}]", a) for i, a in enumerate(arrays)))
        shapes = [a.shape if runs is None else a.shape[1:] for a in arrays]
        if runs is not None:
            for i, a in enumerate(arrays):
                if a.ndim == 0 or a.shape[0] != runs:
                    raise ValueError(f"arrays[{i}] has shape {a.shape}, not a leading run axis of {runs}")
        flat = cls(shapes, runs=runs, dtype=np.result_type(*[a.dtype for a in arrays]), xp=xp)
        for v, a in zip(flat.views, arrays, strict=True):
            v[...] = a
        return flat

    def zeros_like(self) -> FlatParams:
        """A new zero buffer with the same layout (for gradients)."""
        xp = backend.array_module(("data", self.data))
        return FlatParams(self.shapes, runs=self.runs, dtype=self.data.dtype, xp=xp)


def _view(a, shape):
    """``a.reshape(shape)`` that is guaranteed not to copy (a row slice always reshapes
    to its trailing shape without a copy, since each row's part is contiguous)."""
    try:
        return a.reshape(shape, copy=False)
    except TypeError:  # CuPy's reshape has no copy argument and returns a view here
        return a.reshape(shape)
