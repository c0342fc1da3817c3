"""Read the elementwise kernel sources in ``kernels/`` and build CuPy kernels from them.

A kernel file holds what ``cupy.ElementwiseKernel`` needs, in plain text:

.. code-block:: c

    // Any comment lines.
    // in:  T g, F lr, F wd if WD
    // out: T p, T buf if MOMENTUM
    F d = (F)g;
    #if WD
    d = d + wd * (F)p;
    #endif
    p = (T)((F)p - lr * d);

``T`` is the storage type of the arrays (float16, float32 or float64) and ``F`` the
type the arithmetic runs in (float32 for float16 storage, else the storage type).
Outputs are updated in place and may be read in the body. A parameter followed by
``if FLAG`` (or ``if !FLAG``) exists only in the variants where the flag holds, and
``#if FLAG`` / ``#if !FLAG`` / ``#else`` / ``#endif`` lines select body lines the
same way. Flags are resolved here, in Python, so that the text handed to a compiler
is plain C: the same text compiles with nvcc for the GPU and with a host C++
compiler for the CPU test harness (``tests/kernel_harness.py``).

On CuPy (``cupy_kernel``) ``T`` stays a type placeholder, bound by the arrays, while
the ``F`` parameters are declared with the concrete compute dtype and ``F`` is named
by a ``typedef`` in the preamble (``elementwise_signature``): CuPy binds placeholders
from array arguments only, and hyperparameters are usually scalars.

The files live in the top-level ``kernels/`` folder of the source tree; the wheel
ships them as ``gpuopt/_kernels``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PARAM = re.compile(r"^\s*([TF])\s+([A-Za-z_]\w*)(?:\s+if\s+(!?)([A-Z_][A-Z0-9_]*))?\s*$")
_HEADER = re.compile(r"^\s*//\s*(in|out):(.*)$")
_DIRECTIVE = re.compile(r"^\s*#\s*(if|else|endif)\b\s*(!?)\s*([A-Z_][A-Z0-9_]*)?\s*$")


def kernel_dir() -> Path:
    """The folder holding the kernel sources: inside the installed package, else the
    source tree's ``kernels/`` (editable installs and checkouts)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_kernels", here.parent / "kernels"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no kernel folder next to {here}: the package is incomplete")


def kernel_names() -> list[str]:
    """Names of all kernel files (without the ``.cu`` suffix)."""
    return sorted(p.stem for p in kernel_dir().glob("*.cu"))


@dataclass(frozen=True)
class Param:
    type: str  # "T" (storage) or "F" (compute)
    name: str
    flag: str | None = None  # present only when this flag holds ...
    negate: bool = False  # ... or, with negate, when it does not

    def present(self, flags: frozenset[str]) -> bool:
        return self.flag is None or ((self.flag in flags) != self.negate)


@dataclass(frozen=True)
class KernelSource:
    """A parsed kernel file: parameters with their flags, and the raw body."""

    name: str
    inputs: tuple[Param, ...]
    outputs: tuple[Param, ...]
    body: str
    flags: frozenset[str]  # every flag the file mentions

    def specialize(self, flags=()) -> Kernel:
        """The plain-C variant for the given set of true flags."""
        flags = frozenset(flags)
        unknown = flags - self.flags
        if unknown:
            raise ValueError(f"kernel {self.name!r} has no flag(s) {sorted(unknown)}")
        return Kernel(
            name=self.name,
            flags=flags,
            inputs=tuple(p for p in self.inputs if p.present(flags)),
            outputs=tuple(p for p in self.outputs if p.present(flags)),
            body=_resolve(self.body, flags, self.name),
        )


@dataclass(frozen=True)
class Kernel:
    """One variant of a kernel: the parameter lists and body cupy.ElementwiseKernel takes."""

    name: str
    flags: frozenset[str]
    inputs: tuple[Param, ...]
    outputs: tuple[Param, ...]
    body: str

    @property
    def in_params(self) -> str:
        return ", ".join(f"{p.type} {p.name}" for p in self.inputs)

    @property
    def out_params(self) -> str:
        return ", ".join(f"{p.type} {p.name}" for p in self.outputs)

    @property
    def cuda_name(self) -> str:
        return "gpuopt_" + "_".join([self.name, *sorted(f.lower() for f in self.flags)])


def _parse_params(text: str, where: str) -> tuple[Param, ...]:
    params = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = _PARAM.match(item)
        if not m:
            raise ValueError(f"{where}: cannot read parameter {item!r} (want 'T name [if FLAG]')")
        typ, name, neg, flag = m.groups()
        params.append(Param(typ, name, flag, neg == "!"))
    return tuple(params)


def parse(text: str, name: str) -> KernelSource:
    """Parse the text of a kernel file (see the module docstring for the format)."""
    headers: dict[str, tuple[Param, ...]] = {}
    body = []
    flags = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            kind = m.group(1)
            if kind in headers:
                raise ValueError(f"{name}.cu:{lineno}: second '// {kind}:' line")
            headers[kind] = _parse_params(m.group(2), f"{name}.cu:{lineno}")
            continue
        d = _DIRECTIVE.match(line)
        if d is None and line.lstrip().startswith("#"):
            # Anything else (#ifdef WD, #if wd, #define) would reach the C compiler,
            # which reads an unknown flag as 0 and silently drops the branch.
            raise ValueError(f"{name}.cu:{lineno}: {line.strip()!r}: only '#if FLAG', "
                             "'#if !FLAG', '#else' and '#endif' (FLAG in capitals) may appear")
        if d and d.group(3):
            flags.add(d.group(3))
        body.append(line)
    for kind in ("in", "out"):
        if kind not in headers:
            raise ValueError(f"{name}.cu: missing the '// {kind}: ...' parameter line")
    flags |= {p.flag for p in headers["in"] + headers["out"] if p.flag}
    return KernelSource(name, headers["in"], headers["out"], "\n".join(body).strip() + "\n",
                        frozenset(flags))


def _resolve(body: str, flags: frozenset[str], name: str) -> str:
    """Keep the body lines whose enclosing #if conditions hold; drop the directives."""
    out, stack = [], []  # stack of (this branch active, parent active, in #else)
    for line in body.splitlines():
        d = _DIRECTIVE.match(line)
        if not d:
            if all(active for active, _, _ in stack):
                out.append(line)
            continue
        kind, neg, flag = d.groups()
        if kind == "if":
            if flag is None:
                raise ValueError(f"kernel {name!r}: '#if' needs a flag name")
            stack.append(((flag in flags) != (neg == "!"), all(a for a, _, _ in stack), False))
        elif not stack:
            raise ValueError(f"kernel {name!r}: '#{kind}' without '#if'")
        elif kind == "else":
            active, parent, in_else = stack.pop()
            if in_else:
                raise ValueError(f"kernel {name!r}: second '#else' in one '#if'")
            stack.append((not active, parent, True))
        else:
            stack.pop()
    if stack:
        raise ValueError(f"kernel {name!r}: '#if' without '#endif'")
    return "\n".join(out) + "\n"


@functools.cache
def source(name: str) -> KernelSource:
    """The parsed kernel file ``kernels/<name>.cu`` (read once per process)."""
    path = kernel_dir() / f"{name}.cu"
    if not path.is_file():
        raise ValueError(f"no kernel named {name!r}; known: {kernel_names()}")
    return parse(path.read_text(), name)


@functools.cache
def variant(name: str, flags: frozenset[str] = frozenset()) -> Kernel:
    """The specialized variant ``name`` with ``flags`` (cached)."""
    return source(name).specialize(flags)


def elementwise_signature(kernel: Kernel, dtype) -> tuple[str, str, str, str]:
    """``(in_params, out_params, preamble, name)`` for ``cupy.ElementwiseKernel`` of a
    variant whose arrays are stored in ``dtype``.

    ``T`` stays a type placeholder, bound by the arrays. ``F`` cannot be one: CuPy binds
    placeholders from array arguments only, and with every hyperparameter a scalar
    nothing would bind it. So the ``F`` parameters are declared with the concrete
    compute dtype (float32 for float16 and float32 storage, float64 for float64), which
    makes CuPy cast the scalars to it, and the preamble names it ``F`` for the body.
    """
    compute = np.dtype(np.float32) if np.dtype(dtype) in (np.float16, np.float32) else np.dtype(np.float64)
    if np.dtype(dtype) not in (np.float16, np.float32, np.float64):
        raise TypeError(f"kernel {kernel.name!r}: dtype must be float16, float32 or float64, not {dtype}")
    c_type = "float" if compute == np.float32 else "double"

    def params(ps):
        return ", ".join(f"{compute.name if p.type == 'F' else p.type} {p.name}" for p in ps)

    return (params(kernel.inputs), params(kernel.outputs), f"typedef {c_type} F;\n",
            f"{kernel.cuda_name}_{c_type}")


@functools.cache
def cupy_kernel(name: str, flags: frozenset[str], dtype):
    """The ``cupy.ElementwiseKernel`` of a variant for arrays stored in ``dtype``,
    built once per process.

    CuPy compiles an ElementwiseKernel lazily, once per combination of argument
    dtypes, and keeps the module; caching the kernel object here therefore means a
    rule is compiled once per kernel, flag set and dtype, never per call.
    """
    import cupy

    in_params, out_params, preamble, cuda_name = elementwise_signature(variant(name, flags), dtype)
    return cupy.ElementwiseKernel(in_params, out_params, variant(name, flags).body, cuda_name,
                                  preamble=preamble)
