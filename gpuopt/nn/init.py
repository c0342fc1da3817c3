r"""Weight initializations, batched over runs with one seed stream per run.

Every scheme has the signature::

    scheme(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=numpy, dtype=numpy.float32)

(``constant`` also takes ``value``) and returns an array of ``shape``, or of
``(runs, *shape)`` with a leading run axis.

**Weight-shape convention.** A dense layer's weight has shape ``(fan_in, fan_out)``
and maps a batch of inputs ``X`` of shape ``(n, fan_in)`` to ``X @ W`` of shape
``(n, fan_out)`` (so ``fan_in = shape[0]``, ``fan_out = shape[1]``; with runs,
``W`` is ``(R, fan_in, fan_out)`` and ``X @ W`` a batched product). This is the
transpose of torch's ``(out_features, in_features)``. For a 1-D shape ``(n,)``
(a bias) ``fan_in = fan_out = n``; for more than two axes the trailing axes are a
receptive field: ``fan_in = shape[0] * prod(shape[2:])``, ``fan_out = shape[1] *
prod(shape[2:])``.

**Scale and gain.** ``scale`` and ``gain`` both multiply the standard deviation:
``normal``/``uniform`` have standard deviation ``scale * gain``, the named schemes
``scale * gain * (their formula)``. "Small" and "large" initializations are a
scheme with ``scale`` below or above 1. ``gain`` is meant for
``gpuopt.nn.gain(activation)``; ``he_*`` already contain relu's factor 2.

**Seeds.** Weights are drawn on the host with ``numpy.random.Generator(PCG64)`` in
float64, scaled, cast to ``dtype`` and then moved to ``xp`` (so NumPy and CuPy get
bit-identical weights). With ``runs=R`` and an integer ``seed``, run ``r`` draws
from ``numpy.random.SeedSequence(seed).spawn(R)[r]`` (the same stream as
``SeedSequence(seed, spawn_key=(r,))``): a run's weights do not depend on how many
runs share the batch. ``seed`` may instead be a sequence of one integer per run
(``runs`` may then be omitted): run ``r`` draws from ``SeedSequence(seed[r])``, the
stream ``runs=None, seed=seed[r]`` uses, so a grid point's seed gives the same
weights batched or alone. Use distinct seeds for distinct layers.

References: LeCun, Bottou, Orr & Müller 1998 (Efficient BackProp); Glorot & Bengio
2010; He, Zhang, Ren & Sun 2015; Saxe, McClelland & Ganguli 2014.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from .. import backend

# ---------------------------------------------------------------------------
# Argument checks


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in shape):
        raise ValueError(f"shape must be an int or a tuple of ints, not {shape!r}")
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must not have negative sizes, got {tuple(shape)}")
    return tuple(int(n) for n in shape)


def _check_factor(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
    return value


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float16, float32 or float64, not {dtype!r}") from None
    if dt not in backend.FLOAT_DTYPES:
        raise ValueError(f"dtype must be float16, float32 or float64, not {dt}")
    return dt


def _check_xp(xp):
    if xp is np:
        return np
    if getattr(xp, "__name__", "").split(".")[0] == "cupy":
        return xp
    raise ValueError(f"xp must be the numpy or cupy module, not {xp!r}")


def _seed_sequences(seed, runs) -> list[np.random.SeedSequence] | np.random.SeedSequence:
    """One SeedSequence per run (a list), or one for a single unbatched array."""
    if runs is not None:
        if isinstance(runs, bool) or not isinstance(runs, numbers.Integral) or runs < 1:
            raise ValueError(f"runs must be a positive int or None, not {runs!r}")
        runs = int(runs)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        root = np.random.SeedSequence(int(seed))
        return root if runs is None else root.spawn(runs)
    if isinstance(seed, np.ndarray):
        seed = seed.tolist()
    if not isinstance(seed, (list, tuple)) or not seed or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seed):
        raise ValueError("seed must be a non-negative int or a non-empty sequence of them, "
                         f"got {seed!r}")
    if runs is not None and runs != len(seed):
        raise ValueError(f"runs={runs} but seed has {len(seed)} entries (one per run)")
    return [np.random.SeedSequence(int(s)) for s in seed]


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` (see the module docstring)."""
    shape = _check_shape(shape)
    if len(shape) == 0:
        raise ValueError("shape is empty (a scalar): fan-based schemes need at least one axis")
    if len(shape) == 1:
        fan_in = fan_out = shape[0]
    else:
        receptive = math.prod(shape[2:])
        fan_in, fan_out = shape[0] * receptive, shape[1] * receptive
    if fan_in == 0 or fan_out == 0:
        raise ValueError(f"shape {shape} has a zero fan (fan_in={fan_in}, fan_out={fan_out})")
    return fan_in, fan_out


def _generate(shape, runs, seed, xp, dtype, draw: Callable[[np.random.Generator, tuple], np.ndarray]):
    """Draw with ``draw(rng, shape)`` (float64, already scaled) per run; stack; cast; move."""
    dtype = _check_dtype(dtype)
    xp = _check_xp(xp)
    seqs = _seed_sequences(seed, runs)
    if isinstance(seqs, np.random.SeedSequence):
        host = draw(np.random.Generator(np.random.PCG64(seqs)), shape).astype(dtype)
    else:
        host = np.empty((len(seqs),) + shape, dtype)
        for r, seq in enumerate(seqs):
            host[r] = draw(np.random.Generator(np.random.PCG64(seq)), shape)
    return host if xp is np else xp.asarray(host)


def _normal(std):
    return lambda rng, shape: rng.standard_normal(shape) * std


def _uniform(bound):
    return lambda rng, shape: rng.uniform(-bound, bound, shape)


# ---------------------------------------------------------------------------
# Schemes


def zeros(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    """All zeros (``scale`` and ``gain`` are checked but change nothing). With zeros,
    every hidden unit of a layer computes the same function and gets the same
    gradient, so they stay identical forever (the symmetry problem)."""
    shape = _check_shape(shape)
    _check_factor("scale", scale)
    _check_factor("gain", gain)
    return _generate(shape, runs, seed, xp, dtype, lambda rng, s: np.zeros(s))


def constant(shape, *, value=1.0, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    """Every entry ``value * scale * gain`` (so a grid over ``scale`` scans the constant)."""
    shape = _check_shape(shape)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"value must be a finite real number, got {value!r}")
    fill = float(value) * _check_factor("scale", scale) * _check_factor("gain", gain)
    return _generate(shape, runs, seed, xp, dtype, lambda rng, s: np.full(s, fill))


def normal(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r""":math:`W_{ij} \sim N(0, \sigma^2)`, :math:`\sigma` = ``scale * gain``."""
    shape = _check_shape(shape)
    std = _check_factor("scale", scale) * _check_factor("gain", gain)
    return _generate(shape, runs, seed, xp, dtype, _normal(std))


def uniform(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r""":math:`W_{ij} \sim U(-b, b)` with standard deviation :math:`\sigma` =
    ``scale * gain``, i.e. :math:`b = \sqrt3\,\sigma` (the variance of
    :math:`U(-b, b)` is :math:`b^2/3`)."""
    shape = _check_shape(shape)
    std = _check_factor("scale", scale) * _check_factor("gain", gain)
    return _generate(shape, runs, seed, xp, dtype, _uniform(math.sqrt(3.0) * std))


def lecun_normal(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""LeCun et al. 1998: :math:`W_{ij} \sim N(0, \sigma^2)`,
    :math:`\sigma^2 = (\text{scale}\cdot\text{gain})^2 / \text{fan\_in}`: each
    pre-activation :math:`\sum_i x_i W_{ij}` keeps the second moment of its inputs.
    With ``gain=gpuopt.nn.gain(act)`` this is ``torch.nn.init.kaiming_normal_(...,
    nonlinearity=act)`` (plain, not jax's truncated, normal)."""
    shape = _check_shape(shape)
    fan_in, _ = fans(shape)
    std = _check_factor("scale", scale) * _check_factor("gain", gain) / math.sqrt(fan_in)
    return _generate(shape, runs, seed, xp, dtype, _normal(std))


def xavier_normal(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""Glorot & Bengio 2010, eq. (12) compromise: :math:`W_{ij} \sim N(0, \sigma^2)`,
    :math:`\sigma^2 = (\text{scale}\cdot\text{gain})^2\;2/(\text{fan\_in} + \text{fan\_out})`,
    balancing the forward (fan_in) and backward (fan_out) variance conditions."""
    shape = _check_shape(shape)
    fan_in, fan_out = fans(shape)
    std = (_check_factor("scale", scale) * _check_factor("gain", gain)
           * math.sqrt(2.0 / (fan_in + fan_out)))
    return _generate(shape, runs, seed, xp, dtype, _normal(std))


def xavier_uniform(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""Glorot & Bengio 2010, eq. (16): :math:`W_{ij} \sim U(-b, b)`,
    :math:`b = \text{scale}\cdot\text{gain}\,\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`
    (variance :math:`b^2/3`, the same as ``xavier_normal``)."""
    shape = _check_shape(shape)
    fan_in, fan_out = fans(shape)
    bound = (_check_factor("scale", scale) * _check_factor("gain", gain)
             * math.sqrt(6.0 / (fan_in + fan_out)))
    return _generate(shape, runs, seed, xp, dtype, _uniform(bound))


def he_normal(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""He et al. 2015, eq. (10): :math:`W_{ij} \sim N(0, \sigma^2)`,
    :math:`\sigma^2 = (\text{scale}\cdot\text{gain})^2\; 2/\text{fan\_in}`: the factor 2
    compensates relu zeroing half its inputs, so leave ``gain`` at 1 for relu."""
    shape = _check_shape(shape)
    fan_in, _ = fans(shape)
    std = _check_factor("scale", scale) * _check_factor("gain", gain) * math.sqrt(2.0 / fan_in)
    return _generate(shape, runs, seed, xp, dtype, _normal(std))


def he_uniform(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""He et al. 2015 with a uniform law: :math:`W_{ij} \sim U(-b, b)`,
    :math:`b = \text{scale}\cdot\text{gain}\,\sqrt{6/\text{fan\_in}}` (variance
    :math:`2/\text{fan\_in}` times :math:`(\text{scale}\cdot\text{gain})^2`)."""
    shape = _check_shape(shape)
    fan_in, _ = fans(shape)
    bound = _check_factor("scale", scale) * _check_factor("gain", gain) * math.sqrt(6.0 / fan_in)
    return _generate(shape, runs, seed, xp, dtype, _uniform(bound))


def orthogonal(shape, *, runs=None, scale=1.0, gain=1.0, seed=0, xp=np, dtype=np.float32):
    r"""Saxe, McClelland & Ganguli 2014: a (semi-)orthogonal matrix times
    :math:`g = \text{scale}\cdot\text{gain}`. For ``shape = (m, n, ...)`` the matrix is
    ``(m, prod(shape[1:]))`` reshaped to ``shape``; with :math:`m \ge n` its columns are
    orthonormal (:math:`W^T W = g^2 I`), else its rows (:math:`W W^T = g^2 I`).

    Drawn as torch.nn.init.orthogonal_ does (Mezzadri 2007): the Q factor of a
    Gaussian matrix with the signs of R's diagonal folded in, which makes it Haar
    distributed. All singular values equal ``g``, so a deep linear network
    keeps every direction's norm (dynamical isometry)."""
    shape = _check_shape(shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 axes for orthogonal, got {shape}")
    if 0 in shape:
        raise ValueError(f"shape {shape} has a zero size")
    g = _check_factor("scale", scale) * _check_factor("gain", gain)
    rows, cols = shape[0], math.prod(shape[1:])

    def draw(rng, s):
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # Haar measure: fix QR's sign ambiguity
        if rows < cols:
            q = q.T
        return (g * q).reshape(s)

    return _generate(shape, runs, seed, xp, dtype, draw)


SCHEMES: dict[str, Callable] = {
    "zeros": zeros,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "lecun_normal": lecun_normal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "orthogonal": orthogonal,
}
"""Every initialization by name."""


def get(name: str) -> Callable:
    """The initialization called ``name`` (a key of ``SCHEMES``)."""
    if not isinstance(name, str) or name not in SCHEMES:
        raise ValueError(f"name must be one of {sorted(SCHEMES)}, not {name!r}")
    return SCHEMES[name]
