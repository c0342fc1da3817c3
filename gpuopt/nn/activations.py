r"""Activation functions and their derivatives, as fused elementwise kernels.

Each activation :math:`\phi` lives in ``kernels/act_<name>.cu``: one CuPy
``ElementwiseKernel`` computes :math:`a = \phi(z)` and, in its ``DERIV`` variant,
:math:`a` and :math:`\phi'(z)` in the same pass. On NumPy arrays the same expressions
run as in-place ufuncs over cache-sized blocks, so the handful of passes an
activation needs stay in the L2 cache and main memory sees one read of ``z`` and one
write per output (the forward pass of an MLP grid study is dominated by this and
the matrix products). Both paths evaluate the same expressions with the same
constants in the compute type (float32 for float16 storage, else the storage type),
so they agree to rounding; the test suite compiles each kernel body on the CPU and
compares.

Definitions (``z`` real; :math:`\sigma(z) = 1/(1+e^{-z})`):

==============  =======================================  ===================================
name            :math:`\phi(z)`                          :math:`\phi'(z)`
==============  =======================================  ===================================
identity        :math:`z`                                :math:`1`
sigmoid         :math:`\sigma(z)`                        :math:`\sigma(z)\sigma(-z)`
tanh            :math:`\tanh z`                          :math:`1 - \tanh^2 z`
relu            :math:`\max(z, 0)`                       :math:`[z > 0]` (0 at 0, as torch)
leaky_relu      :math:`z` if :math:`z>0` else            1 or :math:`s` (:math:`s` at 0)
                :math:`s z`, :math:`s` = LEAKY_RELU_SLOPE
elu             :math:`z` if :math:`z>0` else            1 or :math:`\alpha e^z`
                :math:`\alpha(e^z-1)`, :math:`\alpha` =
                ELU_ALPHA
softplus        :math:`\log(1+e^z)`                      :math:`\sigma(z)`
gelu            :math:`z\,\sigma(u)`,                    :math:`\sigma(u) + z\,\sigma(u)\sigma(-u)\,u'(z)`
                :math:`u = 2\sqrt{2/\pi}(z + 0.044715 z^3)`
silu            :math:`z\,\sigma(z)`                     :math:`\sigma(z)(1 + z\sigma(-z))`
==============  =======================================  ===================================

GELU is the **tanh approximation** (Hendrycks & Gimpel 2016; torch's
``gelu(approximate="tanh")``) :math:`\tfrac12 z(1 + \tanh(u/2)) = z\sigma(u)`, not
the erf form: NumPy has no erf ufunc, and the kernel and the NumPy path must compute
the same function. The two forms differ by less than 5e-4 everywhere. The sigmoid
form keeps full relative precision in the left tail, where :math:`1 + \tanh` cancels.

Infinite inputs follow the formulas: ``gelu`` and ``silu`` of :math:`-\infty` give
NaN (:math:`-\infty \cdot 0`), as in torch; every other finite input, however large,
gives a finite result (the sigmoids are computed from :math:`e^{-|z|}`, which cannot
overflow).

References: Maas, Hannun & Ng 2013 (leaky ReLU); Clevert et al. 2016 (ELU);
Hendrycks & Gimpel 2016 (GELU); Elfwing et al. 2018 and Ramachandran et al. 2017
(SiLU / swish); torch.nn.init.calculate_gain and He et al. 2015 for the gains.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend, kernels, parallel

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu")

LEAKY_RELU_SLOPE = 0.01
"""Slope of leaky_relu for z < 0 (torch's default ``negative_slope``)."""

ELU_ALPHA = 1.0
"""ELU's alpha: the value ELU saturates to is -alpha (torch's default)."""

# GELU's tanh-approximation constants, as written in kernels/act_gelu.cu.
_GELU_C2 = 1.5957691216057308  # 2 sqrt(2 / pi)
_GELU_K = 0.044715
_GELU_K3 = 0.134145  # 3 k
_GELU_CLAMP = 30.0

# Elements per NumPy block: a block of z, the outputs and ~4 scratch buffers stay in
# the L2 cache across the activation's passes.
BLOCK = 1 << 14
# Above this many elements the blocks are spread over the optimizers' thread pool
# (NumPy releases the GIL inside ufuncs).
_THREAD_MIN = 1 << 18


def _check_name(name) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"name must be one of {ACTIVATIONS}, not {name!r}")
    return name


def _kernel_scalars(name: str) -> dict[str, float]:
    """The host scalars of ``kernels/act_<name>.cu``, by parameter name."""
    return {"one": 1.0, "slope": LEAKY_RELU_SLOPE, "alpha": ELU_ALPHA}


# ---------------------------------------------------------------------------
# The NumPy mirrors of the kernel bodies.
#
# rule(x, a, da, t, c): x is a block of z in the compute dtype, a and da the output
# blocks (da None for the value-only variant), t a list of scratch blocks of the
# compute dtype, c the constants in the compute dtype (c["zero"] a block of zeros).
# x may be the same memory as a or da (``out=z``), so every rule reads x only before
# its first write to a or da.
#
# Speed: a kernel ternary ``x < 0 ? p : q`` is not a masked copy (np.copyto with
# where= runs ~10x slower than a plain ufunc) but arithmetic that is exact for a 0/1
# float mask m: ``|m - s|`` picks s or 1 - s, and ``m p + (1 - m) q`` picks p or q
# for finite p, q (one product is an exact 0, the other exact). Comparisons of NaN
# are false in both the kernel and NumPy, so NaN inputs give NaN (or the kernel's
# value) on both paths. Maximum and minimum take the zero block, not the scalar 0:
# NumPy's SIMD loops skip scalar operands for them.


def _identity(x, a, da, t, c):
    if a is not x:
        np.copyto(a, x)
    if da is not None:
        da.fill(c["one"])


def _sigmoid_small(x, e, w, c):
    """e = s = sigmoid(-|x|) = exp(-|x|) / (1 + exp(-|x|)); clobbers w."""
    np.abs(x, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.add(e, c["one"], out=w)
    np.divide(e, w, out=e)
    return e


def _sigmoid(x, a, da, t, c):
    m = np.greater_equal(x, c["zero"], out=t[2])
    s = _sigmoid_small(x, t[0], t[1], c)
    np.subtract(m, s, out=a)  # x < 0 ? s : 1 - s
    np.abs(a, out=a)
    if da is not None:
        np.subtract(c["one"], s, out=t[1])
        np.multiply(s, t[1], out=da)


def _tanh(x, a, da, t, c):
    np.tanh(x, out=a)
    if da is not None:
        np.multiply(a, a, out=da)
        np.subtract(c["one"], da, out=da)


def _relu(x, a, da, t, c):
    # np.maximum propagates NaN like the kernel's ternary; [a > 0] = [x > 0].
    np.maximum(x, c["zero"], out=a)
    if da is not None:
        np.greater(a, c["zero"], out=da)


def _leaky_relu(x, a, da, t, c):
    # x > 0 ? x : s x equals max(x, s x) for 0 <= s <= 1, NaN included.
    np.multiply(x, c["slope"], out=t[0])
    np.maximum(x, t[0], out=a)
    if da is not None:
        m = np.greater(a, c["zero"], out=t[0])  # a > 0 exactly where x > 0
        np.subtract(c["one"], m, out=da)
        np.multiply(da, c["slope"], out=da)
        np.add(da, m, out=da)  # m + (1 - m) slope


def _elu(x, a, da, t, c):
    # x > 0 ? x : alpha expm1(xm) equals max(x, 0) + alpha expm1(min(x, 0)) exactly:
    # one of the two terms is an exact zero.
    xm, pos = t[0], t[1]
    np.minimum(x, c["zero"], out=xm)
    np.maximum(x, c["zero"], out=pos)
    np.expm1(xm, out=a)
    np.multiply(a, c["alpha"], out=a)
    if da is not None:
        m = np.greater(pos, c["zero"], out=t[2])  # [x > 0]
        np.exp(xm, out=xm)
        np.multiply(xm, c["alpha"], out=xm)
        np.subtract(c["one"], m, out=da)
        np.multiply(da, xm, out=da)
        np.add(da, m, out=da)  # m + (1 - m) alpha exp(xm)
    np.add(a, pos, out=a)


def _softplus(x, a, da, t, c):
    e, w = t[0], t[1]
    m = None if da is None else np.greater_equal(x, c["zero"], out=t[2])
    np.abs(x, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.maximum(x, c["zero"], out=w)  # the last read of x
    np.log1p(e, out=a)
    np.add(w, a, out=a)
    if da is not None:
        np.add(e, c["one"], out=w)
        np.divide(e, w, out=e)  # s = sigmoid(-|x|)
        np.subtract(m, e, out=da)  # x < 0 ? s : 1 - s
        np.abs(da, out=da)


def _gelu(x, a, da, t, c):
    u, s, h = t[0], t[1], t[2]
    # u = 2c (x + k x x x), in the kernel's left-to-right order
    np.multiply(x, c["k"], out=u)
    np.multiply(u, x, out=u)
    np.multiply(u, x, out=u)
    np.add(x, u, out=u)
    np.multiply(u, c["c2"], out=u)
    m = np.greater_equal(u, c["zero"], out=h)
    _sigmoid_small(u, s, u, c)  # s = sigmoid(-|u|); u is clobbered
    np.subtract(m, s, out=h)  # h = sigmoid(u) = u < 0 ? s : 1 - s
    np.abs(h, out=h)
    if da is None:
        np.multiply(x, h, out=a)
        return
    xc = np.clip(x, -c["clamp"], c["clamp"], out=u)
    np.multiply(x, h, out=a)  # the last read of x
    # da = h + ((((xc s) (1 - s)) 2c) (1 + (3k xc) xc))
    np.multiply(xc, s, out=da)
    np.subtract(c["one"], s, out=s)
    np.multiply(da, s, out=da)
    np.multiply(da, c["c2"], out=da)
    np.multiply(xc, c["k3"], out=s)
    np.multiply(s, xc, out=s)
    np.add(s, c["one"], out=s)
    np.multiply(da, s, out=da)
    np.add(h, da, out=da)


def _silu(x, a, da, t, c):
    m = np.greater_equal(x, c["zero"], out=t[2])
    s = _sigmoid_small(x, t[0], t[1], c)
    sp = np.subtract(m, s, out=t[1])  # sigmoid(x) = x < 0 ? s : 1 - s
    np.abs(sp, out=sp)
    if da is not None:
        sn = np.subtract(c["one"], m, out=m)  # [x < 0] (NaN: 1, and s is NaN anyway)
        np.subtract(sn, s, out=sn)  # sigmoid(-x) = x < 0 ? 1 - s : s
        np.abs(sn, out=sn)
        np.multiply(x, sn, out=sn)  # before a is written: a may be x
        np.multiply(x, sp, out=a)
        np.add(sn, c["one"], out=sn)
        np.multiply(sp, sn, out=da)
    else:
        np.multiply(x, sp, out=a)


# name -> (rule, number of scratch blocks it needs)
_RULES = {
    "identity": (_identity, 0),
    "sigmoid": (_sigmoid, 3),
    "tanh": (_tanh, 0),
    "relu": (_relu, 0),
    "leaky_relu": (_leaky_relu, 1),
    "elu": (_elu, 3),
    "softplus": (_softplus, 3),
    "gelu": (_gelu, 3),
    "silu": (_silu, 3),
}


def _constants(dtype: np.dtype) -> dict:
    """Every constant a rule uses, in the compute dtype (as the kernel's ``(F)`` casts)."""
    f = dtype.type
    return {"one": f(1), "half": f(0.5), "slope": f(LEAKY_RELU_SLOPE), "alpha": f(ELU_ALPHA),
            "c2": f(_GELU_C2), "k": f(_GELU_K), "k3": f(_GELU_K3), "clamp": f(_GELU_CLAMP)}


def _numpy_apply(name, z, a, da):
    """Run the NumPy rule of ``name`` over cache-sized blocks of the flat arrays."""
    arrays = [z, a] + ([] if da is None else [da])
    if not all(x.flags.c_contiguous for x in arrays):
        # Blocks need flat views; other layouts work on contiguous copies (one extra
        # pass each way), which also makes any aliasing between them harmless.
        zc = np.ascontiguousarray(z)
        ac = np.empty(z.shape, z.dtype)
        dc = None if da is None else np.empty(z.shape, z.dtype)
        _numpy_apply(name, zc, ac, dc)
        a[...] = ac
        if da is not None:
            da[...] = dc
        return
    rule, nscratch = _RULES[name]
    cd = backend.compute_dtype(z.dtype)
    consts = _constants(cd)
    upcast = cd != z.dtype
    zf, af = z.reshape(-1), a.reshape(-1)
    df = None if da is None else da.reshape(-1)
    n = zf.size
    size = min(BLOCK, n)

    def run(starts):
        scratch = [np.empty(size, cd) for _ in range(nscratch + (3 if upcast else 0))]
        zero = np.zeros(size, cd)
        # exp(-|z|) underflowing to 0 is intended, and +-inf inputs may give NaN as in
        # the kernel: no warnings (errstate is per thread, so it is set here).
        with np.errstate(all="ignore"):
            for s in starts:
                e = min(s + BLOCK, n)
                t = [b[: e - s] for b in scratch]
                c = dict(consts, zero=zero[: e - s])
                xb, ab = zf[s:e], af[s:e]
                db = None if df is None else df[s:e]
                if upcast:
                    wx, wa, wd = t[-3:]
                    np.copyto(wx, xb)
                    rule(wx, wa, None if db is None else wd, t[:-3], c)
                    np.copyto(ab, wa, casting="same_kind")
                    if db is not None:
                        np.copyto(db, wd, casting="same_kind")
                else:
                    rule(xb, ab, db, t, c)

    starts = range(0, n, BLOCK)
    nthreads = min(parallel.num_threads(), len(starts)) if n >= _THREAD_MIN else 1
    parallel.run_parallel(lambda w: run(starts[w::nthreads]), nthreads, pool="elementwise")


# ---------------------------------------------------------------------------
# Public API


def _check_array(name, a):
    if not backend.is_array(a):
        raise TypeError(f"{name} must be a NumPy or CuPy array, not {type(a).__name__}")
    if a.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {a.dtype}; activations need float16, float32 or float64")


def _check_out(label, out, z):
    if out is None:
        return
    _check_array(label, out)
    if out.shape != z.shape or out.dtype != z.dtype:
        raise ValueError(f"{label} is {out.dtype}{list(out.shape)} but z is {z.dtype}{list(z.shape)}")


def _prepare(name, z, out, dout, deriv):
    _check_name(name)
    _check_array("z", z)
    _check_out("out", out, z)
    _check_out("dout", dout, z)
    if deriv and out is not None and dout is not None and out is dout:
        raise ValueError("out and dout must be different arrays")
    named = [("z", z)] + [(k, v) for k, v in (("out", out), ("dout", dout)) if v is not None]
    xp = backend.array_module(*named)
    if out is None:
        out = xp.empty(z.shape, z.dtype)
    if deriv and dout is None:
        dout = xp.empty(z.shape, z.dtype)
    return xp, out, dout


def _launch(name, z, a, da):
    flags = frozenset({"DERIV"}) if da is not None else frozenset()
    k = kernels.cupy_kernel(f"act_{name}", flags, z.dtype)
    cd = backend.compute_dtype(z.dtype).type
    values = _kernel_scalars(name)
    scalars = [cd(values[p.name]) for p in kernels.variant(f"act_{name}", flags).inputs[1:]]
    outs = (a,) if da is None else (a, da)
    k(z, *scalars, *outs)


def activation(name: str, z, out=None):
    r"""The activation ``name`` applied elementwise: :math:`a = \phi(z)`.

    ``z`` is a NumPy or CuPy array of float16, float32 or float64; ``a`` has its shape,
    dtype and backend. ``out`` (same shape and dtype; may be ``z`` itself) receives the
    result. See the module docstring for the definitions.
    """
    xp, out, _ = _prepare(name, z, out, None, deriv=False)
    if xp is np:
        _numpy_apply(name, z, out, None)
    else:
        _launch(name, z, out, None)
    return out


def activation_with_derivative(name: str, z, out=None, dout=None):
    r"""The activation and its derivative in one fused pass: ``(a, da)`` with
    :math:`a = \phi(z)`, :math:`da = \phi'(z)`.

    On CuPy this is one kernel launch with two outputs; on NumPy one blocked pass
    over ``z``. ``out`` and ``dout`` (same shape and dtype as ``z``) receive the
    results; either may be ``z`` itself (in place), but not each other. This is what
    an MLP's forward pass calls, keeping ``da`` for the backward pass.
    """
    xp, out, dout = _prepare(name, z, out, dout, deriv=True)
    if xp is np:
        _numpy_apply(name, z, out, dout)
    else:
        _launch(name, z, out, dout)
    return out, dout


# ---------------------------------------------------------------------------
# Gains

_LITERATURE_GAINS = {"identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}


def gain(name: str, param=None) -> float:
    r"""The recommended gain of an activation: the factor the standard deviation of
    a fan-in initialization (``gpuopt.nn.init.lecun_normal(gain=...)``) is scaled by.

    - identity 1, sigmoid 1, tanh 5/3, relu :math:`\sqrt 2`, leaky_relu
      :math:`\sqrt{2/(1+s^2)}` (``param`` = the slope s, default
      ``LEAKY_RELU_SLOPE``): the values of ``torch.nn.init.calculate_gain``
      (He et al. 2015 for the rectifiers; the tanh and sigmoid values are torch's
      conventions).
    - elu (``param`` = alpha, default ``ELU_ALPHA``), softplus, gelu, silu, for which
      the literature has no agreed value: the **second-moment rule**
      :math:`g = 1/\sqrt{E[\phi(z)^2]}`, :math:`z \sim N(0, 1)`. A layer with weights of
      variance :math:`g^2/\text{fan\_in}` maps pre-activations of variance 1 to
      pre-activations of variance :math:`g^2 E[\phi(z)^2] = 1`, i.e. :math:`q = 1`
      is a fixed point of the length map of Poole et al. 2016 (with no bias). This is
      He et al.'s (2015) derivation applied to :math:`\phi`, and it reproduces
      relu's :math:`\sqrt 2` and leaky_relu's value. Computed by quadrature
      (``gaussian_quadrature``): elu 1.2452, softplus 1.0419, gelu 1.5336, silu 1.6765
      (to 4 digits).
    """
    _check_name(name)
    if param is not None and name not in ("leaky_relu", "elu"):
        raise ValueError(f"param is only for leaky_relu (slope) and elu (alpha), not {name!r}")
    if param is not None:
        if isinstance(param, bool) or not isinstance(param, (int, float, np.integer, np.floating)):
            raise TypeError(f"param must be a real number, not {type(param).__name__}")
        if not math.isfinite(param) or param < 0:
            raise ValueError(f"param must be finite and non-negative, got {param!r}")
    if name in _LITERATURE_GAINS:
        return _LITERATURE_GAINS[name]
    if name == "leaky_relu":
        slope = LEAKY_RELU_SLOPE if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope * slope))
    alpha = ELU_ALPHA if param is None else float(param)
    return _second_moment_gain(name, alpha)


@functools.cache
def _second_moment_gain(name: str, alpha: float) -> float:
    z, w = gaussian_quadrature()
    if name == "elu":  # alpha enters only here; the module constant stays untouched
        a = np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))
    else:
        a = activation(name, z)
    return float(1.0 / math.sqrt(w @ (a * a)))


QUADRATURE_NODES = 80
"""Gauss-Legendre nodes per half-line in ``gaussian_quadrature``."""
QUADRATURE_CUTOFF = 12.0
"""Gaussian expectations integrate over [-12, 12]: the mass outside is 4e-33."""


@functools.cache
def gaussian_quadrature(n: int = QUADRATURE_NODES, cutoff: float = QUADRATURE_CUTOFF):
    r"""Nodes ``z`` and weights ``w`` with :math:`E[f(Z)] \approx \sum_i w_i f(z_i)`,
    :math:`Z \sim N(0, 1)`, for functions smooth except at 0.

    Gauss-Legendre with ``n`` nodes on each of :math:`[-c, 0]` and :math:`[0, c]`,
    weights times the normal density. The activations' kinks all sit at 0 (relu's
    and leaky_relu's first derivative jumps, elu's second), so each half is an
    analytic integrand and the rule converges exponentially: E[elu(Z)^2] to 1e-13
    with 64 nodes per half (80 are used: Gaussian moments come out to ~1e-15).
    Gauss-Hermite (``numpy.polynomial.hermite_e.hermegauss``) converges only
    algebraically across such a kink (2e-5 relative error for E[elu(Z)^2] at 100
    nodes, 1e-5 at 200, and hermegauss breaks down beyond ~300).
    Truncating at ``cutoff`` = 12 drops a mass of 4e-33.
    """
    x, w = np.polynomial.legendre.leggauss(n)
    half = (x + 1.0) * (cutoff / 2.0)  # nodes on [0, cutoff]
    wh = w * (cutoff / 2.0) * np.exp(-half * half / 2.0) / math.sqrt(2.0 * math.pi)
    z = np.concatenate([-half[::-1], half])
    weights = np.concatenate([wh[::-1], wh])
    z.setflags(write=False)
    weights.setflags(write=False)
    return z, weights
