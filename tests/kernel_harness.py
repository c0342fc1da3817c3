"""Run and compile the kernel texts of ``kernels/`` without a GPU.

CI has no GPU, so the kernel bodies are checked in two ways:

- ``compile_cpu`` / ``run_on_cpu``: the body of one kernel variant is wrapped in a
  C++ function that binds the parameters exactly as ``cupy.ElementwiseKernel`` does
  (each input a ``const`` value, each output a reference into its array, one element
  ``i`` per loop iteration, ``T``/``F`` as typedefs), compiled with the host ``g++``
  and called through ctypes, so the text a GPU would run is executed here on NumPy
  arrays and can be compared with the NumPy path.
- ``nvcc_compile``: every flag combination of a kernel file, for float, double and
  __half storage, is wrapped the same way in a ``__global__`` function and compiled
  with one nvcc call for sm_80 and sm_90.

Tools: a missing ``nvcc`` or ``g++`` skips the tests that need it, unless
``GPUOPT_REQUIRE_NVCC=1`` (set by ``.ci/run``), which makes it a failure.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gpuopt import kernels

# C type name -> NumPy dtype; T (storage) and F (compute) are the same type on the CPU.
CTYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}
# (T, F) pairs every kernel is compiled for with nvcc: float16 storage computes in float.
CUDA_TYPES = (("float", "float"), ("double", "double"), ("__half", "float"))
CUDA_ARCHS = ("80", "90")
# -ffp-contract=off: no fused multiply-add, so the host evaluates each expression
# with the same roundings as the NumPy ufunc sequence it is compared with.
GXX_FLAGS = ("-O2", "-ffp-contract=off", "-shared", "-fPIC")


class CompileError(RuntimeError):
    """A compiler rejected generated code; the message holds its output."""


# -- tools -------------------------------------------------------------------


def tools_required() -> bool:
    """True when missing compilers must fail the tests (CI sets GPUOPT_REQUIRE_NVCC=1)."""
    return os.environ.get("GPUOPT_REQUIRE_NVCC", "").strip() == "1"


def nvcc_path() -> str | None:
    """The nvcc executable: on PATH, else under CUDA_HOME or /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(Path(home, "bin", "nvcc"), os.X_OK):
            return str(Path(home, "bin", "nvcc"))
    return None


def nvcc_available() -> bool:
    return nvcc_path() is not None


def gxx_path() -> str | None:
    """The host C++ compiler (``$CXX``, else g++)."""
    return shutil.which(os.environ.get("CXX", "g++"))


def gxx_available() -> bool:
    return gxx_path() is not None


def require(tool: str) -> None:
    """Skip the calling test when ``tool`` ("nvcc" or "g++") is missing; fail instead
    under GPUOPT_REQUIRE_NVCC=1, so CI cannot pass by skipping the kernel checks."""
    have = {"nvcc": nvcc_available, "g++": gxx_available}[tool]()
    if have:
        return
    message = f"{tool} not found"
    if tools_required():
        pytest.fail(f"{message}, and GPUOPT_REQUIRE_NVCC=1 requires it")
    pytest.skip(message)


@functools.lru_cache(maxsize=1)
def _workdir() -> Path:
    """One temporary folder per process for generated sources and built libraries."""
    path = Path(tempfile.mkdtemp(prefix="gpuopt-kernels-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _compile(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"{what}: {' '.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")


# -- code generation ---------------------------------------------------------------


def _function(kernel: kernels.Kernel, fname: str, t: str, f: str, *, gpu: bool) -> str:
    """One C++/CUDA function running ``kernel``'s body over ``_n`` elements.

    The binding is ElementwiseKernel's: ``const T g = g_ptr[i];`` for inputs,
    ``T& p = p_ptr[i];`` for outputs, so the body reads and assigns the names as
    plain values and writes land in the arrays. Every input is a full array here
    (scalars are broadcast by the caller), which CuPy's scalar arguments equal.
    """
    concrete = {"T": t, "F": f}  # the signature precedes the typedefs
    args = ["long long _n"]
    args += [f"const {concrete[q.type]}* {q.name}_ptr" for q in kernel.inputs]
    args += [f"{concrete[q.type]}* {q.name}_ptr" for q in kernel.outputs]
    binds = [f"const {q.type} {q.name} = {q.name}_ptr[i];" for q in kernel.inputs]
    binds += [f"{q.type}& {q.name} = {q.name}_ptr[i];" for q in kernel.outputs]
    if gpu:
        head = f'extern "C" __global__ void {fname}'
        loop = ("for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < _n;"
                " i += (long long)blockDim.x * gridDim.x)")
    else:
        head = f'extern "C" void {fname}'
        loop = "for (long long i = 0; i < _n; ++i)"
    body = "".join(f"        {line}\n" for line in kernel.body.splitlines())
    bound = "".join(f"        {b}\n" for b in binds)
    return (f"{head}({', '.join(args)}) {{\n"
            f"    typedef {t} T;\n    typedef {f} F;\n"
            f"    {loop} {{\n{bound}{body}    }}\n}}\n")


def cpu_source(kernel: kernels.Kernel, ctype: str) -> tuple[str, str]:
    """(function name, C++ translation unit) for ``kernel`` on the host in ``ctype``."""
    if ctype not in CTYPES:
        raise ValueError(f"ctype must be one of {sorted(CTYPES)}, not {ctype!r}")
    fname = f"{kernel.cuda_name}_{ctype}"
    text = ("#include <cmath>\nusing namespace std;\n\n"
            + _function(kernel, fname, ctype, ctype, gpu=False))
    return fname, text


def cuda_source(name: str) -> tuple[list[str], str]:
    """(kernel names, CUDA translation unit) with a ``__global__`` wrapper for every
    flag combination of kernel file ``name`` and every storage type of CUDA_TYPES."""
    src = kernels.source(name)
    flags = sorted(src.flags)
    names, parts = [], ["#include <cmath>\n#include <cuda_fp16.h>\nusing namespace std;\n"]
    for n in range(len(flags) + 1):
        for combo in itertools.combinations(flags, n):
            k = src.specialize(combo)
            for t, f in CUDA_TYPES:
                fname = f"{k.cuda_name}_{t.strip('_')}"
                names.append(fname)
                parts.append(_function(k, fname, t, f, gpu=True))
    return names, "\n".join(parts)


# -- the CPU harness ---------------------------------------------------------------


_cpu_cache: dict = {}  # (Kernel, ctype) -> ctypes function


def compile_cpu(kernel: kernels.Kernel, ctype: str):
    """The host-compiled function of ``kernel`` in ``ctype`` ("float" or "double"),
    built once per (variant, ctype) per process.

    Its C signature is ``void f(long long n, const T* <input>_ptr..., T* <output>_ptr...)``
    with the parameters in the kernel's order (``F`` parameters are pointers too);
    ``run_on_cpu`` is the convenient way to call it. Raises CompileError with g++'s
    output when the body does not compile.
    """
    key = (kernel, ctype)
    fn = _cpu_cache.get(key)
    if fn is not None:
        return fn
    fname, text = cpu_source(kernel, ctype)
    gxx = gxx_path()
    if gxx is None:
        raise CompileError("no host C++ compiler (g++) found")
    # The text's hash in the file name: parser tests build different bodies under
    # one kernel name, and a reloaded library of the same path would be the old one.
    stem = f"{fname}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    cpp, lib = _workdir() / f"{stem}.cpp", _workdir() / f"{stem}.so"
    cpp.write_text(text)
    _compile([gxx, *GXX_FLAGS, str(cpp), "-o", str(lib)], f"kernel {kernel.cuda_name} ({ctype})")
    fn = getattr(ctypes.CDLL(str(lib)), fname)
    fn.restype = None
    fn.argtypes = [ctypes.c_longlong] + [ctypes.c_void_p] * (len(kernel.inputs) + len(kernel.outputs))
    _cpu_cache[key] = fn
    return fn


def run_on_cpu(kernel: kernels.Kernel, ctype: str, inputs: dict, outputs: dict) -> None:
    """Run ``kernel``'s body on the host over every element of ``outputs``.

    ``inputs`` maps every input name to an array or scalar; each is broadcast to the
    outputs' common shape and converted to ``ctype``'s dtype (as CuPy broadcasts its
    arguments). ``outputs`` maps every output name to an array of that dtype and
    shape, updated in place.
    """
    if ctype not in CTYPES:
        raise ValueError(f"ctype must be one of {sorted(CTYPES)}, not {ctype!r}")
    dtype = CTYPES[ctype]
    want_in = [q.name for q in kernel.inputs]
    want_out = [q.name for q in kernel.outputs]
    if sorted(inputs) != sorted(want_in):
        raise ValueError(f"{kernel.cuda_name} takes inputs {want_in}, got {sorted(inputs)}")
    if sorted(outputs) != sorted(want_out):
        raise ValueError(f"{kernel.cuda_name} takes outputs {want_out}, got {sorted(outputs)}")
    shape = outputs[want_out[0]].shape
    for name in want_out:
        a = outputs[name]
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
            raise ValueError(f"output {name!r} must be a {dtype} array of shape {shape}")
    fn = compile_cpu(kernel, ctype)
    ins = [np.ascontiguousarray(np.broadcast_to(np.asarray(inputs[n], dtype=dtype), shape))
           for n in want_in]
    # Outputs are worked on in contiguous buffers (the arrays themselves when they
    # are contiguous) and copied back, so any strided output works in place.
    outs = [np.ascontiguousarray(outputs[n]) for n in want_out]
    fn(int(np.prod(shape, dtype=np.int64)), *[a.ctypes.data for a in ins + outs])
    for name, buf in zip(want_out, outs, strict=True):
        if buf is not outputs[name]:
            outputs[name][...] = buf


# -- nvcc ----------------------------------------------------------------------------


@functools.cache
def nvcc_compile(name: str) -> tuple[Path, tuple[str, ...]]:
    """Compile every variant of kernel file ``name`` (all flag combinations, float,
    double and __half storage) with one nvcc call for sm_80 and sm_90.

    Returns (object file, names of the ``__global__`` wrappers). Raises CompileError
    with nvcc's output on failure; the generated ``.cu`` is kept in the temporary
    folder for the length of the process and named in the error.
    """
    nvcc = nvcc_path()
    if nvcc is None:
        raise CompileError("nvcc not found")
    fnames, text = cuda_source(name)
    cu, obj = _workdir() / f"{name}.cu", _workdir() / f"{name}.o"
    cu.write_text(text)
    cmd = [nvcc]
    for arch in CUDA_ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    _compile(cmd + ["-c", str(cu), "-o", str(obj)], f"kernel file {name}.cu (generated {cu})")
    return obj, tuple(fnames)
