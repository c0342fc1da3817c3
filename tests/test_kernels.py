"""The kernel texts of ``kernels/`` checked without a GPU (``pytest -k kernel``).

- every kernel file compiles with nvcc for sm_80 and sm_90, all flag combinations,
  float / double / __half storage;
- every optimizer variant's kernel body, compiled for the host and run on the CPU
  (tests/kernel_harness.py), gives what the NumPy path gives, on edge values too;
- the optimizers feed each kernel exactly the inputs and state its file declares;
- the kernel-file parser resolves flags and refuses malformed files;
- with a GPU, the real CuPy kernels give what the NumPy path gives.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from conftest import ELEMENTWISE_CASES, make_optimizer
from kernel_harness import CompileError, nvcc_compile, require, run_on_cpu, tools_required

import gpuopt as go
from gpuopt import backend, kernels

SHAPE = (5, 37)  # 5 runs along axis 0
CTYPE = {np.float32: "float", np.float64: "double"}
RTOL = {np.float32: 1e-5, np.float64: 1e-6}
# Results at denormal level carry only a few significant bits, so a relative
# tolerance means nothing there; differences below the smallest normal number pass.
ATOL = {t: float(np.finfo(t).tiny) for t in RTOL}


def _seed(*parts) -> int:
    """A seed fixed across processes (``hash`` of a str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _edge_values(dtype):
    """Values an update must carry through the same way on every path."""
    big, small = (1e30, 1e-30) if dtype == np.float32 else (1e300, 1e-300)
    denormal = 3 * float(np.finfo(dtype).smallest_subnormal)
    return np.array([0.0, -0.0, big, -big, small, -small, denormal, -denormal,
                     np.nan, np.inf, -np.inf], dtype=np.float64)


def _sample(rng, dtype, positive=False, edge_fraction=0.2):
    """A random array of SHAPE with edge values at about ``edge_fraction`` of places.

    ``positive`` keeps the ordinary values >= 0 (state such as second moments, where
    negative values would only give NaN); edge values are signed either way.
    """
    a = rng.standard_normal(SHAPE)
    if positive:
        a = np.abs(a)
    mask = rng.random(SHAPE) < edge_fraction
    a[mask] = rng.choice(_edge_values(dtype), int(mask.sum()))
    return a.astype(dtype)


def _scenarios(case, rng):
    """(label, optimizer, step count before the update) triples covering a first
    update, a later one, and a batch with per-run learning rates and step counts."""
    base = make_optimizer(case)
    per_run_lr = np.asarray(base.lr) * rng.uniform(0.25, 2.0, (SHAPE[0], 1))
    return [
        ("first update", base, np.array(0)),
        ("step 7", make_optimizer(case), np.array(6)),
        ("per-run lr and steps", make_optimizer(case, lr=per_run_lr, batched=True),
         np.array([0, 6, 0, 1, 6])),
    ]


def _assert_same(actual, expected, dtype, what):
    # assert_allclose also demands NaN and +-Inf at the same places.
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype],
                               equal_nan=True, err_msg=what)


# -- tools and nvcc ---------------------------------------------------------------------


def test_kernel_tools_missing_skip_unless_required(monkeypatch):
    """A missing compiler skips its tests, but fails them under GPUOPT_REQUIRE_NVCC=1
    (CI), so CI cannot turn green by skipping the kernel checks."""
    monkeypatch.setenv("CXX", "no-such-compiler-for-gpuopt")
    monkeypatch.delenv("GPUOPT_REQUIRE_NVCC", raising=False)
    assert not tools_required()
    with pytest.raises(pytest.skip.Exception, match="g\\+\\+ not found"):
        require("g++")
    monkeypatch.setenv("GPUOPT_REQUIRE_NVCC", "1")
    with pytest.raises(pytest.fail.Exception, match="GPUOPT_REQUIRE_NVCC=1 requires it"):
        require("g++")



@pytest.mark.parametrize("name", kernels.kernel_names())
def test_kernel_compiles_with_nvcc(name):
    """Every kernel file, every flag combination, float/double/__half, sm_80 and sm_90."""
    require("nvcc")
    obj, wrappers = nvcc_compile(name)
    n_flags = len(kernels.source(name).flags)
    assert len(wrappers) == 2 ** n_flags * 3
    data = obj.read_bytes()
    # extern "C" names are stored verbatim; a wrapper missing from the object would
    # mean a variant silently not compiled.
    missing = [w for w in wrappers if w.encode() not in data]
    assert not missing, f"{name}: not in the object file: {missing}"


# -- the kernel text on the CPU against the NumPy path ------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kernel_on_cpu_matches_numpy(case, dtype):
    """The kernel body run on the host equals ``opt.step`` on NumPy arrays."""
    require("g++")
    rng = np.random.default_rng(_seed(case[0], dtype))
    for label, opt, step in _scenarios(case, rng):
        p0, g0 = _sample(rng, dtype), _sample(rng, dtype)
        state = opt.init(p0.copy())
        state["step"] = step.copy()  # 0-d, or one count per run when batched
        buffers0 = {name: _sample(rng, dtype, positive=True) for name in opt.state_names}

        # The kernel on the CPU, with the inputs the optimizer hands the kernel.
        inputs = {"g": g0.copy(), **opt.kernel_inputs(p0, state["step"] + 1)}
        outputs = {"p": p0.copy(), **{k: v.copy() for k, v in buffers0.items()}}
        run_on_cpu(opt.variant, CTYPE[dtype], inputs, outputs)

        # The NumPy path on other copies.
        p = p0.copy()
        for name, b in buffers0.items():
            state[name] = b.copy()
        with np.errstate(all="ignore"):  # overflow and NaN are the point here
            opt.step(p, g0.copy(), state)

        for name in ["p", *opt.state_names]:
            got = p if name == "p" else state[name]
            _assert_same(outputs[name], got, dtype, f"{case[0]}, {label}: {name!r} (kernel vs NumPy)")
        # Ordinary values must have moved, or the comparison proves nothing.
        assert np.any((outputs["p"] != p0) & np.isfinite(p0)), f"{case[0]}, {label}: p unchanged"


def test_kernel_on_cpu_harness_detects_a_different_rule():
    """The comparison can fail: a body that differs from SGD's NumPy rule by a small
    shift of the gradient (1e-3, so 1e-4 in p) is caught."""
    require("g++")
    opt = go.SGD(lr=0.1)
    src = kernels.parse("// in: T g, F lr, F sign\n// out: T p\n"
                        "p = (T)((F)p - lr * ((F)g + (F)1e-3));\n", "sgd_off")
    rng = np.random.default_rng(0)
    p0, g0 = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    outputs = {"p": p0.copy()}
    run_on_cpu(src.specialize(), "double", {"g": g0, **opt.kernel_inputs(p0, 1)}, outputs)
    p = p0.copy()
    opt.step(p, g0.copy(), opt.init(p))
    with pytest.raises(AssertionError):
        _assert_same(outputs["p"], p, np.float64, "off by 1e-4")


def test_kernel_harness_binds_like_elementwise_kernel():
    """Inputs broadcast (scalars and per-run columns), outputs read and written in
    place, F parameters in the compute type, optional parameters by flag."""
    require("g++")
    src = kernels.parse("// in: T x, F a, F b if SHIFT\n// out: T y, T z\n"
                        "F s = a * (F)x + (F)y;\n#if SHIFT\ns = s + b;\n#endif\n"
                        "y = (T)s;\nz = (T)(s * (F)z);\n", "bind")
    x = np.arange(6.0).reshape(2, 3)
    a = np.array([[2.0], [3.0]])  # one value per row, as per-run hyperparameters
    y, z = np.ones((2, 3)), np.full((2, 3), 2.0)
    run_on_cpu(src.specialize(["SHIFT"]), "double", {"x": x, "a": a, "b": 0.5}, {"y": y, "z": z})
    s = a * x + 1.0 + 0.5
    np.testing.assert_array_equal(y, s)
    np.testing.assert_array_equal(z, 2.0 * s)
    y32 = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="takes inputs"):
        run_on_cpu(src.specialize(), "float", {"x": x, "a": a, "b": 1.0}, {"y": y32, "z": y32.copy()})
    with pytest.raises(ValueError, match="must be a float32 array"):
        run_on_cpu(src.specialize(), "float", {"x": x, "a": a}, {"y": y, "z": z})
    broken = kernels.parse("// in: T x\n// out: T y\ny = undefined_name(x);\n", "broken")
    with pytest.raises(CompileError, match="undefined_name"):
        run_on_cpu(broken.specialize(), "double", {"x": x}, {"y": y})


# -- optimizers against their kernel files ----------------------------------------------


@pytest.mark.parametrize("row", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_kernel_inputs_match_kernel_file(row):
    """The optimizer provides every kernel input but ``g``, in the compute dtype and
    broadcastable against ``p``; its state buffers are the kernel outputs after ``p``."""
    opt = make_optimizer(row)
    k = opt.variant
    assert k == kernels.source(opt.kernel).specialize(k.flags)
    assert k.inputs[0].name == "g" and k.inputs[0].type == "T"
    assert k.outputs[0].name == "p" and all(q.type == "T" for q in k.outputs)
    for dtype, cd in ((np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)):
        p = np.zeros((4, 3), dtype)
        inputs = opt.kernel_inputs(p, 3)
        assert list(inputs) == [q.name for q in k.inputs[1:]]
        for name, v in inputs.items():
            assert np.asarray(v).dtype == cd, f"{name} is {np.asarray(v).dtype}, not {cd}"
            assert np.broadcast_shapes(np.shape(v), p.shape) == p.shape, name
        state = opt.init(p)
        assert [n for n in state if n not in ("step", "skipped")] == [q.name for q in k.outputs[1:]]


def test_kernel_flags_all_switched_on_by_the_case_table():
    """Every flag of every optimizer's kernel file is on in some ELEMENTWISE_CASES row,
    so the CPU comparison above runs every #if branch of every rule."""
    seen: dict[str, set] = {}
    for row in ELEMENTWISE_CASES:
        opt = make_optimizer(row)
        seen.setdefault(opt.kernel, set()).update(opt.variant.flags)
    for cls in go.OPTIMIZERS.values():
        name = getattr(cls, "kernel", None)
        if name is None:
            continue  # not elementwise (Newton)
        assert name in seen, f"no ELEMENTWISE_CASES row uses kernel {name!r}"
        assert seen[name] == set(kernels.source(name).flags), (
            f"kernel {name!r}: flags {sorted(set(kernels.source(name).flags) - seen[name])} "
            "are never switched on by ELEMENTWISE_CASES")


# -- the kernel-file parser --------------------------------------------------------------

TEXT = """\
// A test kernel.
// in:  T g, F lr, F wd if WD, F c if !WD
// out: T p, T buf if MOM
F d = (F)g;
#if WD
d = d + wd * (F)p;
#else
d = d * c;
#endif
#if MOM
#if !WD
buf = (T)(d + (F)buf);
#else
buf = (T)d;
#endif
d = (F)buf;
#endif
p = (T)((F)p - lr * d);
"""


def test_kernel_parser_reads_parameters_and_flags():
    src = kernels.parse(TEXT, "t")
    assert src.flags == {"WD", "MOM"}
    assert [(q.type, q.name, q.flag, q.negate) for q in src.inputs] == [
        ("T", "g", None, False), ("F", "lr", None, False), ("F", "wd", "WD", False),
        ("F", "c", "WD", True)]
    assert [q.name for q in src.specialize(["WD"]).inputs] == ["g", "lr", "wd"]
    assert [q.name for q in src.specialize().inputs] == ["g", "lr", "c"]
    assert [q.name for q in src.specialize(["MOM"]).outputs] == ["p", "buf"]
    assert src.specialize(["MOM"]).in_params == "T g, F lr, F c"
    assert src.specialize(["MOM", "WD"]).cuda_name == "gpuopt_t_mom_wd"


@pytest.mark.parametrize("flags, expected", [
    ((), ["d = d * c;"]),
    (("WD",), ["d = d + wd * (F)p;"]),
    (("MOM",), ["d = d * c;", "buf = (T)(d + (F)buf);", "d = (F)buf;"]),
    (("MOM", "WD"), ["d = d + wd * (F)p;", "buf = (T)d;", "d = (F)buf;"]),
], ids=["none", "WD", "MOM", "MOM+WD"])
def test_kernel_parser_resolves_if_else_endif(flags, expected):
    body = kernels.parse(TEXT, "t").specialize(flags).body.splitlines()
    assert body == ["// A test kernel.", "F d = (F)g;", *expected, "p = (T)((F)p - lr * d);"]


@pytest.mark.parametrize("text, match", [
    ("// out: T p\np = p;\n", "missing the '// in: ...'"),
    ("// in: T g\np = g;\n", "missing the '// out: ...'"),
    ("// in: T g\n// in: F lr\n// out: T p\n", "second '// in:'"),
    ("// in: float g\n// out: T p\n", "cannot read parameter 'float g'"),
    ("// in: T g if wd\n// out: T p\n", "cannot read parameter"),
    # A directive the resolver does not know would reach the C compiler, which
    # reads an undefined name as 0 and silently drops the branch.
    ("// in: T g\n// out: T p\n#ifdef WD\np = g;\n#endif\n", "'#ifdef WD': only"),
    ("// in: T g\n// out: T p\n#if wd\np = g;\n#endif\n", "'#if wd': only"),
    ("// in: T g\n// out: T p\n#define X 1\n", "'#define X 1': only"),
], ids=["no-in", "no-out", "two-in", "bad-type", "lowercase-flag", "ifdef", "if-lowercase", "define"])
def test_kernel_parser_rejects_malformed_headers(text, match):
    with pytest.raises(ValueError, match=match):
        kernels.parse(text, "bad")


@pytest.mark.parametrize("body, match", [
    ("#if A\np = g;\n", "'#if' without '#endif'"),
    ("#if A\n#if B\n#endif\n", "'#if' without '#endif'"),
    ("p = g;\n#endif\n", "'#endif' without '#if'"),
    ("#else\np = g;\n", "'#else' without '#if'"),
    ("#if\np = g;\n#endif\n", "'#if' needs a flag name"),
    ("#if A\np = g;\n#else\np = -g;\n#else\np = g;\n#endif\n", "second '#else'"),
], ids=["if-no-endif", "nested-no-endif", "endif-no-if", "else-no-if", "if-no-flag", "two-else"])
def test_kernel_parser_rejects_unbalanced_directives(body, match):
    src = kernels.parse("// in: T g\n// out: T p\n" + body, "bad")
    with pytest.raises(ValueError, match=match):
        src.specialize(src.flags)


def test_kernel_parser_rejects_unknown_flag_in_specialize():
    src = kernels.parse(TEXT, "t")
    with pytest.raises(ValueError, match=r"has no flag\(s\) \['NESTEROV'\]"):
        src.specialize(["WD", "NESTEROV"])
    with pytest.raises(ValueError, match="no kernel named 'no_such_rule'"):
        kernels.source("no_such_rule")


@pytest.mark.parametrize("name", kernels.kernel_names())
def test_kernel_file_resolves_for_every_flag_combination(name):
    """Every shipped file parses, and every combination of its flags leaves plain C
    (no directive survives) with distinct parameter names."""
    src = kernels.source(name)
    flags = sorted(src.flags)
    for combo in itertools.chain.from_iterable(
            itertools.combinations(flags, n) for n in range(len(flags) + 1)):
        k = src.specialize(combo)
        assert not [line for line in k.body.splitlines() if line.lstrip().startswith("#")], combo
        assert k.inputs and k.outputs and len({q.name for q in k.inputs + k.outputs}) == len(
            k.inputs + k.outputs), f"{name} {combo}: duplicate parameter names"


# -- the real kernels, when a GPU is present ---------------------------------------------


@pytest.mark.skipif(not backend.gpu_available(), reason="CuPy sees no GPU")
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=["float16", "float32", "float64"])
def test_kernel_cupy_matches_numpy(case, dtype):
    """Three steps of ``opt.step`` on CuPy arrays equal the same steps on NumPy arrays.

    float16 is compared with the NumPy path on float16 storage, which computes in
    float32 as the kernel does. The GPU may fuse multiply-adds, so results agree to
    a few roundings of O(1) values: atol equals rtol.
    """
    cp = backend.cupy_module()
    rtol = {np.float16: 4e-3, np.float32: 1e-5, np.float64: 1e-6}[dtype]
    rng = np.random.default_rng(_seed(case[0], dtype))
    base = make_optimizer(case)
    per_run_lr = np.asarray(base.lr) * rng.uniform(0.25, 2.0, (SHAPE[0], 1))
    for label, extra in (("scalar", {}), ("per-run lr", {"lr": per_run_lr, "batched": True})):
        opt_np, opt_cp = make_optimizer(case, **extra), make_optimizer(case, **extra)
        p_np = rng.standard_normal(SHAPE).astype(dtype)
        p_np[0, :3] = 0.0
        p_cp = cp.asarray(p_np)
        s_np, s_cp = opt_np.init(p_np), opt_cp.init(p_cp)
        for step in range(3):
            g = rng.standard_normal(SHAPE).astype(dtype)
            g[1, step] = 0.0
            g[2, step] = np.nan  # NaN must land in the same places
            with np.errstate(all="ignore"):
                opt_np.step(p_np, g.copy(), s_np)
            opt_cp.step(p_cp, cp.asarray(g), s_cp)
        for name in ["p", *opt_np.state_names]:
            a_cp = p_cp if name == "p" else s_cp[name]
            a_np = p_np if name == "p" else s_np[name]
            np.testing.assert_allclose(cp.asnumpy(a_cp).astype(np.float64), a_np.astype(np.float64),
                                       rtol=rtol, atol=rtol, equal_nan=True,
                                       err_msg=f"{case[0]}, {label}: {name!r} (CuPy vs NumPy)")
        assert opt_cp.launches == 3 and opt_np.launches == 3


@pytest.mark.parametrize("dtype, compute, ctype", [(np.float16, "float32", "float"),
                                                   (np.float32, "float32", "float"),
                                                   (np.float64, "float64", "double")])
def test_kernel_cupy_signature_fixes_the_compute_type(dtype, compute, ctype):
    # CuPy binds a type placeholder only from array arguments: F, which only scalar
    # hyperparameters carry, must be declared with a concrete dtype (and named F in
    # the preamble for the body), while T stays a placeholder bound by the arrays.
    for name in kernels.kernel_names():
        src = kernels.source(name)
        k = src.specialize(src.flags)
        in_params, out_params, preamble, cuda_name = kernels.elementwise_signature(k, dtype)
        params = [p.split() for p in (in_params + ", " + out_params).split(", ")]
        want = [(compute if p.type == "F" else "T", p.name) for p in k.inputs + k.outputs]
        assert [tuple(p) for p in params] == want, name
        assert preamble.strip() == f"typedef {ctype} F;"
        assert cuda_name.endswith(ctype) and cuda_name.isidentifier()
    with pytest.raises(TypeError, match="dtype"):
        kernels.elementwise_signature(k, np.int32)
