"""Study files: parsing, validation, and the grid of runs they describe.

A study file is TOML::

    [study]
    name = "rosenbrock-lr-scale"
    steps = 500
    seeds = 4              # seeds 0..3 for every grid point (or a list: [0, 7, 9])
    record_every = 10      # loss-curve cadence (default steps // 100, at least 1)
    diverge_factor = 1e6   # loss above factor * |initial loss|, or non-finite => diverged
    # dtype = "float64"    # default: float32 for mlp, float64 for the other problems
    # device = "auto"      # auto (a GPU when CuPy sees one) | cpu | gpu
    # base_seed = 0        # added to every seed

    [problem]
    kind = "rosenbrock"    # gpuopt.problems.make_problem(kind, **the other keys)
    dim = 2

    [init]
    scheme = { values = ["normal", "xavier_normal"] }
    scale = { logspace = [-1, 0.5, 4] }

    [[optimizers]]
    name = "adam"
    lr = { logspace = [-3, 0, 8] }
    betas = [0.9, 0.99]    # a list is a fixed value, not an axis

    [[optimizers]]
    name = "sgd"
    lr = { logspace = [-4, -1, 8] }
    momentum = { values = [0.0, 0.9] }

    [cluster]              # only read by --cluster slurm
    queue = "gpu"
    jobs = 4

**Axes.** ``{ values = [...] }``, ``{ logspace = [a, b, n] }`` (``n`` points from
``10**a`` to ``10**b``) and ``{ linspace = [a, b, n] }`` are grid axes; any other value
is fixed. An ``[[optimizers]]`` block may also carry ``label`` (default: the name,
suffixed ``-2``, ``-3``... when a name repeats) to tell two blocks of one optimizer apart.

**The grid.** Each optimizer block contributes the product of its axes, the init axes
(``scheme``, ``scale``) and the seeds; blocks are concatenated in file order. Within a
block the first axis in the file varies slowest and the seed fastest, except that axes
which cannot be per-run arrays (booleans such as ``nesterov``, integers such as
``cg_maxiter``) are moved outermost: each of their combinations is a *group*, run by its
own optimizer instance, and a chunk never straddles two groups. ``run_id`` numbers the
grid points 0..N-1 in this order; it depends only on the study file.

**Seeds: common random numbers.** A run's start point depends only on its seed, init
scheme and init scale (``problem.init_params``), so every optimizer and learning rate at
seed ``s`` starts from the same point: differences between grid cells are the
optimizers', not the draws'. Nothing depends on chunking, worker or resume history.

**Where ``[init]`` puts the start.** Networks (``mlp``): weights drawn by the
``gpuopt.nn.init`` scheme, times ``scale``. Test functions and convex problems:
the problem's standard start point plus ``scale`` times the scheme's noise. See
``problem.init_params`` of each problem.

Every error is a :class:`StudyError` (a ``ValueError``) naming the key, its table and its
line in the file, raised before anything runs.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .optim import Newton, Optimizer, get_optimizer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STUDY_KEYS = ("name", "steps", "seeds", "record_every", "diverge_factor", "dtype", "device", "base_seed")
INIT_KEYS = ("scheme", "scale")
CLUSTER_KEYS = {
    # key: (type, description) for the SLURM cluster table
    "queue": (str, "a partition name"),
    "account": (str, "an account name"),
    "walltime": (str, "a time such as '01:00:00'"),
    "jobs": (int, "a positive int"),
    "gpus_per_job": (int, "a non-negative int"),
    "cores": (int, "a positive int"),
    "processes": (int, "a positive int"),
    "memory": (str, "a size such as '16GB'"),
    "interface": (str, "a network interface name"),
    "local_directory": (str, "a path"),
    "log_directory": (str, "a path"),
    "python": (str, "a python executable"),
    "job_extra_directives": (list, "a list of strings"),
    "job_script_prologue": (list, "a list of strings"),
}
AXIS_KINDS = ("values", "logspace", "linspace")
DEVICES = ("auto", "cpu", "gpu")
DTYPES = ("float32", "float64")
# Keys an optimizer takes from the Optimizer base class (gradient transforms).
_TRANSFORM_KEYS = ("max_grad_norm", "clip_value", "skip_nonfinite")


class StudyError(ValueError):
    """A study-file error; ``key``, ``table`` and ``line`` say where (``line`` 1-based,
    or None when the key is absent from the file)."""

    def __init__(self, message, *, key=None, table=None, line=None, source=None):
        self.key, self.table, self.line, self.source = key, table, line, source
        where = source or "study"
        if line is not None:
            where += f", line {line}"
        parts = []
        if table is not None:
            parts.append(f"[{table}]" if not table.startswith("[") else table)
        if key is not None:
            parts.append(f"key '{key}'")
        super().__init__(f"{where}: {' '.join(parts)}{': ' if parts else ''}{message}")


# ---------------------------------------------------------------------------
# Line numbers: tomllib gives none, so the source is scanned for table headers and
# `key =` lines. Tables are "study", "problem", "init", "cluster" and ("optimizers", i).

_HEADER_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]\s*(#.*)?$")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)\s*(\.|=)")


class _Locator:
    """Line numbers of table headers and of ``key =`` lines in a TOML source text."""

    def __init__(self, text: str):
        self.headers: dict = {}
        self.keys: dict = {}
        table: object = None  # top level
        counts: dict = {}
        depth = 0  # open brackets of a multi-line array: its lines hold no keys
        for n, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                m = _HEADER_ARRAY.match(line)
                if m:
                    name = m.group(1).strip().strip("\"'")
                    i = counts.get(name, 0)
                    counts[name] = i + 1
                    table = (name, i)
                    self.headers.setdefault(table, n)
                    continue
                m = _HEADER.match(line)
                if m:
                    table = m.group(1).strip().strip("\"'")
                    self.headers.setdefault(table, n)
                    continue
                m = _KEY.match(line)
                if m:
                    self.keys.setdefault((table, m.group(1).strip("\"'")), n)
            depth = max(0, depth + _bracket_balance(line))

    def line(self, table, key=None):
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        return self.headers.get(table)


def _bracket_balance(line: str) -> int:
    """Open minus closed brackets on a line, outside strings and comments."""
    balance, quote = 0, None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance


# ---------------------------------------------------------------------------
# The parsed study


@dataclass
class Axis:
    """A grid axis: a name (a hyperparameter, ``init_scheme``, ``init_scale`` or
    ``seed``) and its values in grid order."""

    name: str
    values: tuple


@dataclass
class Block:
    """One ``[[optimizers]]`` table.

    ``fixed`` holds the fixed hyperparameters, ``axes`` the axes that run as per-run
    ``(R, 1)`` arrays, ``structural`` the axes that cannot (booleans, integers): each
    combination of those is one :class:`Group`.
    """

    index: int
    name: str
    label: str
    fixed: dict
    axes: list
    structural: list
    params: tuple  # every constructor parameter name, for the hyperparameter columns


@dataclass
class Group:
    """Runs ``start .. start + size - 1`` of one block with one combination of its
    structural axes; the per-run axes (the block's numeric axes, then init scheme, init
    scale, seed) vary with the last fastest."""

    index: int
    block: int
    structural: dict
    axes: list
    start: int

    @property
    def shape(self) -> tuple:
        return tuple(len(a.values) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Chunk:
    """Runs ``start .. stop - 1`` (run ids), all of group ``group``; ``id`` numbers the
    chunks of a study for one chunk size."""

    id: int
    group: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class StudySpec:
    """A validated study: what :func:`load_spec` returns."""

    name: str
    steps: int
    seeds: tuple
    record_every: int
    diverge_factor: float
    dtype: str
    device: str
    problem: dict  # kind and keys for gpuopt.problems.make_problem
    init_schemes: tuple
    init_scales: tuple
    blocks: list
    cluster: dict
    source: str  # the study file's text ("" when built from a dict)
    path: str | None
    hash: str  # over everything that decides results (not [cluster], not comments)
    groups: list = field(default_factory=list)

    @property
    def n_runs(self) -> int:
        return sum(g.size for g in self.groups)

    def chunks(self, chunk_size: int) -> list[Chunk]:
        """The chunks for ``chunk_size``: each group cut into pieces of that many runs
        (the last one shorter), numbered in run-id order."""
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        out = []
        for g in self.groups:
            for s in range(g.start, g.start + g.size, int(chunk_size)):
                out.append(Chunk(len(out), g.index, s, min(s + int(chunk_size), g.start + g.size)))
        return out

    def group_of(self, run_id: int) -> Group:
        for g in self.groups:
            if g.start <= run_id < g.start + g.size:
                return g
        raise IndexError(f"run_id {run_id} is outside 0..{self.n_runs - 1}")

    def points(self, start: int, stop: int) -> dict:
        """The grid points ``start .. stop - 1`` (one group) as columns: ``run_id``,
        ``block``, ``optimizer``, ``label``, ``seed``, ``init_scheme``, ``init_scale``
        and each hyperparameter (list-valued ones as ``name0``, ``name1``, ...), plus
        ``_kwargs``: the optimizer's keyword arguments (per-run ones as (R, 1) arrays)."""
        g = self.group_of(start)
        if not (start < stop <= g.start + g.size):
            raise ValueError(f"runs {start}..{stop - 1} do not lie in one group")
        block = self.blocks[g.block]
        idx = np.unravel_index(np.arange(start - g.start, stop - g.start), g.shape)
        n = stop - start
        cols = {"run_id": np.arange(start, stop, dtype=np.int64),
                "block": np.full(n, block.index, np.int64),
                "optimizer": [block.name] * n, "label": [block.label] * n}
        per_run = {}
        for a, i in zip(g.axes, idx, strict=True):
            vals = [a.values[k] for k in i]
            per_run[a.name] = vals
        cols["seed"] = np.asarray(per_run.pop("seed"), np.int64)
        cols["init_scheme"] = per_run.pop("init_scheme")
        cols["init_scale"] = np.asarray(per_run.pop("init_scale"), np.float64)
        kwargs = dict(block.fixed)
        kwargs.update(g.structural)
        for name, vals in per_run.items():
            arr = np.asarray(vals, np.float64)
            kwargs[name] = (tuple(arr[:, j:j + 1] for j in range(arr.shape[1])) if arr.ndim == 2
                            else arr[:, None])
        # Hyperparameter columns: every constructor parameter with its effective value.
        defaults = _defaults(get_optimizer(block.name))
        for p in block.params:
            v = kwargs.get(p, defaults.get(p, inspect.Parameter.empty))
            if v is inspect.Parameter.empty or v is None:
                continue
            if isinstance(v, (tuple, list)):
                for j, e in enumerate(v):
                    cols[f"{p}{j}"] = _column(e, n)
            else:
                cols[p] = _column(v, n)
        cols["_kwargs"] = kwargs
        return cols

    def make_problem(self):
        """The problem object (``gpuopt.problems.make_problem(kind, **keys)``)."""
        from .problems import make_problem

        keys = dict(self.problem)
        return make_problem(keys.pop("kind"), **keys)


def _column(v, n):
    if isinstance(v, np.ndarray):
        return v.reshape(n).copy()
    if isinstance(v, bool):
        return np.full(n, v, bool)
    if isinstance(v, (int, float)):
        return np.full(n, float(v), np.float64)
    return [v] * n


def _defaults(cls) -> dict:
    return {k: p.default for k, p in _signature(cls).items()
            if p.default is not inspect.Parameter.empty}


def _signature(cls) -> dict:
    """The keyword parameters a study may set for an optimizer class: its own
    constructor's plus the base class's gradient transforms, not ``batched``."""
    params = {}
    for c in (cls, Optimizer):
        for k, p in inspect.signature(c.__init__).parameters.items():
            if k in ("self", "batched") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if c is Optimizer and k not in _TRANSFORM_KEYS:
                continue
            params.setdefault(k, p)
    return params


# ---------------------------------------------------------------------------
# Parsing


class _Parser:
    """The source text and its locator; ``error`` builds a StudyError for a table
    ("study", ..., or ("optimizers", i)) and key, with the key's line."""

    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        self.loc = _Locator(text)

    def error(self, message, table=None, key=None):
        line = self.loc.line(table, key) if table is not None else None
        return StudyError(message, key=key, table=_table_name(table), line=line, source=self.source)


def _table_name(table):
    if table is None:
        return None
    if isinstance(table, tuple):
        return f"[[{table[0]}]] #{table[1] + 1}"
    return table


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_spec(study, *, source: str | None = None) -> StudySpec:
    """Parse and validate a study: a path to a TOML file, TOML text, or a dict of the
    same tables. Raises :class:`StudyError` naming the key, table and line."""
    if isinstance(study, StudySpec):
        return study
    path = None
    if isinstance(study, dict):
        text, data = "", _deep_copy(study)
        source = source or "study"
    else:
        # A string is a path when it is one line naming a .toml file or an existing file.
        if isinstance(study, Path) or (isinstance(study, str) and "\n" not in study and (
                study.strip().endswith(".toml") or Path(study).is_file())):
            path = Path(study)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                raise StudyError(f"cannot read the study file: {e.strerror or e}", source=str(path)) from None
            source = source or str(path)
        elif isinstance(study, str):
            text = study
            source = source or "study"
        else:
            raise TypeError("study must be a path, TOML text, a dict or a StudySpec, "
                            f"not {type(study).__name__}")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise StudyError(f"not valid TOML: {e}", source=source) from None
    p = _Parser(text, source)
    return _build(p, data, path)


def _deep_copy(d):
    return json.loads(json.dumps(d))


def _build(p: _Parser, data: dict, path) -> StudySpec:
    for key, value in data.items():
        if key not in ("study", "problem", "init", "optimizers", "cluster"):
            line = p.loc.line(key) or p.loc.line(None, key)
            raise StudyError("unknown table or top-level key; expected [study], [problem], [init], "
                             "[[optimizers]] or [cluster]", key=key, line=line, source=p.source)
        if key == "optimizers":
            if not isinstance(value, list) or not all(isinstance(b, dict) for b in value):
                raise StudyError("must be an array of tables, written [[optimizers]]", key=key,
                                 line=p.loc.line(key) or p.loc.line(None, key), source=p.source)
        elif not isinstance(value, dict):
            raise StudyError(f"must be a table, written [{key}]", key=key, line=p.loc.line(None, key),
                             source=p.source)
    for table in ("study", "problem"):
        if table not in data:
            raise StudyError(f"the study file needs a [{table}] table", source=p.source)
    if not data.get("optimizers"):
        raise StudyError("the study file needs at least one [[optimizers]] table", source=p.source)

    st = data["study"]
    for key in st:
        if key not in STUDY_KEYS:
            raise p.error(f"unknown key; [study] takes {', '.join(STUDY_KEYS)}", "study", key)
    if "steps" not in st:
        raise p.error("the number of optimizer steps, 'steps', is required", "study")
    steps = st["steps"]
    if not _is_int(steps) or steps < 1:
        raise p.error(f"must be a positive int, got {steps!r}", "study", "steps")
    name = st.get("name", Path(path).stem if path else "study")
    if not isinstance(name, str) or not name.strip():
        raise p.error(f"must be a non-empty string, got {name!r}", "study", "name")
    seeds = st.get("seeds", 1)
    if _is_int(seeds):
        if seeds < 1:
            raise p.error(f"must be a positive int (the number of seeds) or a list of seeds, got {seeds}",
                          "study", "seeds")
        seeds = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds and all(_is_int(s) and s >= 0 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise p.error(f"lists a seed twice: {seeds}", "study", "seeds")
        seeds = tuple(seeds)
    else:
        raise p.error(f"must be a positive int or a non-empty list of non-negative ints, got {seeds!r}",
                      "study", "seeds")
    base_seed = st.get("base_seed", 0)
    if not _is_int(base_seed) or base_seed < 0:
        raise p.error(f"must be a non-negative int, got {base_seed!r}", "study", "base_seed")
    seeds = tuple(s + base_seed for s in seeds)
    record_every = st.get("record_every", max(1, steps // 100))
    if not _is_int(record_every) or record_every < 1:
        raise p.error(f"must be a positive int, got {record_every!r}", "study", "record_every")
    factor = st.get("diverge_factor", 1e6)
    if not _is_real(factor) or not factor > 1:
        raise p.error(f"must be a number above 1 (inf switches the bound off), got {factor!r}",
                      "study", "diverge_factor")
    device = st.get("device", "auto")
    if device not in DEVICES:
        raise p.error(f"must be one of {', '.join(DEVICES)}, got {device!r}", "study", "device")

    problem_keys, problem = _parse_problem(p, data["problem"])
    dtype = st.get("dtype", "float32" if problem_keys["kind"] == "mlp" else "float64")
    if dtype not in DTYPES:
        raise p.error(f"must be one of {', '.join(DTYPES)}, got {dtype!r}", "study", "dtype")

    schemes, scales = _parse_init(p, data.get("init", {}), problem, np.dtype(dtype))
    blocks = _parse_blocks(p, data["optimizers"], problem)
    cluster = _parse_cluster(p, data.get("cluster", {}))

    decisive = {k: v for k, v in data.items() if k != "cluster"}
    decisive["_resolved"] = {"seeds": list(seeds), "dtype": dtype, "record_every": record_every,
                             "diverge_factor": factor, "device": device, "name": name}
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()
    spec = StudySpec(name=name, steps=steps, seeds=seeds, record_every=record_every,
                     diverge_factor=float(factor), dtype=dtype, device=device, problem=problem_keys,
                     init_schemes=schemes, init_scales=scales, blocks=blocks, cluster=cluster,
                     source=p.text, path=None if path is None else str(path), hash=digest)
    start = 0
    for b in blocks:
        per_run = list(b.axes) + [Axis("init_scheme", schemes), Axis("init_scale", scales),
                                  Axis("seed", seeds)]
        names = [a.name for a in b.structural]
        for combo in itertools.product(*(a.values for a in b.structural)):
            g = Group(len(spec.groups), b.index, dict(zip(names, combo, strict=True)), per_run, start)
            spec.groups.append(g)
            start += g.size
    _check_groups(p, spec)
    return spec


def _parse_axis(p, table, key, value):
    """``(values, is_axis)`` for a key's value; axis tables expanded to a value list."""
    if not isinstance(value, dict):
        return [value], False
    kinds = [k for k in value if k in AXIS_KINDS]
    unknown = [k for k in value if k not in AXIS_KINDS]
    if unknown or len(kinds) != 1:
        raise p.error(f"an axis is {{ values = [...] }}, {{ logspace = [a, b, n] }} or "
                      f"{{ linspace = [a, b, n] }}; got keys {sorted(value)}", table, key)
    kind = kinds[0]
    spec = value[kind]
    if kind == "values":
        if not isinstance(spec, list) or not spec:
            raise p.error("'values' must be a non-empty list", table, key)
        if len({json.dumps(v, sort_keys=True) for v in spec}) != len(spec):
            raise p.error(f"'values' lists a value twice: {spec}", table, key)
        return list(spec), True
    if (not isinstance(spec, list) or len(spec) != 3 or not _is_real(spec[0]) or not _is_real(spec[1])
            or not _is_int(spec[2]) or spec[2] < 1):
        raise p.error(f"'{kind}' needs [a, b, n] with numbers a, b and an integer n >= 1, got {spec!r}",
                      table, key)
    a, b, n = spec
    if not (math.isfinite(a) and math.isfinite(b)):
        raise p.error(f"'{kind}' needs finite ends, got {spec!r}", table, key)
    pts = np.logspace(a, b, n) if kind == "logspace" else np.linspace(a, b, n)
    if len(set(pts.tolist())) != n:
        raise p.error(f"'{kind}' = {spec!r} gives repeated values", table, key)
    return [float(v) for v in pts], True


def _parse_problem(p, table):
    if "kind" not in table:
        raise p.error("the problem's 'kind' is required", "problem")
    kind = table["kind"]
    from . import problems

    if not isinstance(kind, str) or kind not in problems.PROBLEMS:
        raise p.error(f"unknown problem kind {kind!r}; known: {', '.join(sorted(problems.PROBLEMS))}",
                      "problem", "kind")
    for key, value in table.items():
        if isinstance(value, dict):
            raise p.error("problem keys are fixed values, not axes (one study, one problem)",
                          "problem", key)
    keys = {k: v for k, v in table.items() if k != "kind"}
    try:
        problem = problems.make_problem(kind, **keys)
    except (ValueError, TypeError) as e:
        raise p.error(str(e), "problem", _blame(str(e), list(keys)) or "kind") from None
    return dict(table), problem


def _parse_init(p, table, problem, dtype):
    for key in table:
        if key not in INIT_KEYS:
            raise p.error(f"unknown key; [init] takes {', '.join(INIT_KEYS)}", "init", key)
    schemes, _ = _parse_axis(p, "init", "scheme", table.get("scheme", "normal"))
    scales, _ = _parse_axis(p, "init", "scale", table.get("scale", 1.0))
    for s in schemes:
        if not isinstance(s, str):
            raise p.error(f"schemes are strings, got {s!r}", "init", "scheme")
    for s in scales:
        if not _is_real(s) or not math.isfinite(s) or s < 0:
            raise p.error(f"scales are finite non-negative numbers, got {s!r}", "init", "scale")
    # Let the problem's own checks speak for every scheme and scale, on one run each.
    for s in schemes:
        try:
            problem.init_params([0], scheme=s, scale=float(scales[0]), dtype=dtype)
        except (ValueError, TypeError, KeyError) as e:
            raise p.error(_about(s, e), "init", "scheme") from None
    for s in scales:
        try:
            problem.init_params([0], scheme=schemes[0], scale=float(s), dtype=dtype)
        except (ValueError, TypeError) as e:
            raise p.error(_about(s, e), "init", "scale") from None
    return tuple(schemes), tuple(float(s) for s in scales)


def _about(value, error) -> str:
    """An error message that names the offending value (once)."""
    msg = str(error)
    return msg if repr(value) in msg else f"{value!r}: {msg}"


def _kind_of(param) -> str:
    """What values a constructor parameter takes, from its default: 'bool', 'pair'
    (a tuple of numbers such as betas) or 'real'."""
    d = param.default
    if isinstance(d, bool):
        return "bool"
    if isinstance(d, tuple):
        return "pair"
    return "real"


def _check_type(p, table, key, param, v):
    kind = _kind_of(param)
    if kind == "bool" and not isinstance(v, bool):
        raise p.error(f"must be true or false, got {v!r}", table, key)
    if kind == "pair" and not (isinstance(v, list) and len(v) == len(param.default)
                               and all(_is_real(e) for e in v)):
        raise p.error(f"must be a list of {len(param.default)} numbers, got {v!r}", table, key)
    if kind == "real" and not _is_real(v):
        raise p.error(f"must be a number, got {v!r}", table, key)


def _py(v):
    """A TOML value as the optimizer takes it: lists become tuples, ints stay ints."""
    return tuple(v) if isinstance(v, list) else v


def _parse_blocks(p, tables, problem):
    blocks = []
    names = []
    for i, t in enumerate(tables):
        tid = ("optimizers", i)
        if "name" not in t:
            raise p.error("each [[optimizers]] block needs a 'name'", tid)
        name = t["name"]
        try:
            cls = get_optimizer(name)
        except ValueError as e:
            raise p.error(str(e), tid, "name") from None
        names.append(cls.name)
    for i, t in enumerate(tables):
        tid = ("optimizers", i)
        cls = get_optimizer(t["name"])
        sig = _signature(cls)
        label = t.get("label")
        if label is None:
            k = names[:i].count(cls.name)
            label = cls.name if k == 0 else f"{cls.name}-{k + 1}"
        elif not isinstance(label, str) or not label:
            raise p.error(f"must be a non-empty string, got {label!r}", tid, "label")
        fixed, axes = {}, {}
        for key, value in t.items():
            if key in ("name", "label"):
                continue
            if key not in sig:
                raise p.error(f"{cls.name} takes no hyperparameter '{key}'; it takes "
                              f"{', '.join(sig)}", tid, key)
            values, is_axis = _parse_axis(p, tid, key, value)
            for v in values:
                _check_type(p, tid, key, sig[key], v)
            if is_axis:
                axes[key] = [_py(v) for v in values]
            else:
                fixed[key] = _py(values[0])
        for key, param in sig.items():
            if param.default is inspect.Parameter.empty and key not in fixed and key not in axes:
                raise p.error(f"{cls.name} needs '{key}'", tid, "name")
        # Let the optimizer's own validation speak: once with the first value of every
        # axis, then once per value of each axis (so the error names that axis).
        first = {k: v[0] for k, v in axes.items()}
        _construct(p, tid, cls, {**fixed, **first}, None, list(fixed) + list(axes))
        for key, values in axes.items():
            for v in values[1:]:
                _construct(p, tid, cls, {**fixed, **first, key: v}, key, None)
        if cls is Newton:
            _check_curvature(p, tid, problem)
        # Axes whose values the optimizer accepts as per-run arrays run in one batch;
        # the others (booleans, integer options) split the block into groups.
        per_run, structural = [], []
        for key, values in axes.items():
            if _per_run_ok(cls, {**fixed, **first}, key, values):
                per_run.append(Axis(key, tuple(values)))
            else:
                structural.append(Axis(key, tuple(values)))
        blocks.append(Block(i, cls.name, label, fixed, per_run, structural, tuple(sig)))
    labels = [b.label for b in blocks]
    for i, b in enumerate(blocks):
        if labels.index(b.label) != i:
            raise p.error(f"label {b.label!r} is used by an earlier block too", ("optimizers", i), "label")
    return blocks


def _blame(message: str, keys) -> str | None:
    """The key an error message is about: the first of ``keys`` it names."""
    best = None
    for k in keys:
        m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", message)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), k)
    return best[1] if best else None


def _construct(p, tid, cls, kwargs, key, keys):
    try:
        return cls(batched=True, **kwargs)
    except (ValueError, TypeError) as e:
        blamed = key or _blame(str(e), keys) or "name"
        raise p.error(str(e), tid, blamed) from None


def _per_run_ok(cls, base, key, values) -> bool:
    if not all(_is_real(v) or isinstance(v, tuple) for v in values):
        return False
    arr = np.asarray(values, np.float64)
    v = tuple(arr[:, j:j + 1] for j in range(arr.shape[1])) if arr.ndim == 2 else arr[:, None]
    try:
        cls(batched=True, **{**base, key: v})
    except (ValueError, TypeError):
        return False
    return True


def _check_curvature(p, tid, problem):
    if not (callable(getattr(problem, "hessian", None)) or callable(getattr(problem, "hvp", None))):
        raise p.error("newton needs the problem's hessian or hvp, and this problem has neither",
                      tid, "name")


def _check_groups(p, spec):
    """Construct each group's optimizer as the engine will, with every per-run axis as
    an array over its values, so combinations the per-key checks missed are refused."""
    for g in spec.groups:
        b = spec.blocks[g.block]
        kwargs = {**b.fixed, **g.structural}
        for a in b.axes:
            arr = np.asarray(a.values, np.float64)
            kwargs[a.name] = (tuple(arr[:, j:j + 1] for j in range(arr.shape[1])) if arr.ndim == 2
                              else arr[:, None])
        _construct(p, ("optimizers", b.index), get_optimizer(b.name), kwargs, None,
                   list(kwargs))


def _parse_cluster(p, table):
    out = {}
    for key, value in table.items():
        if key not in CLUSTER_KEYS:
            raise p.error(f"unknown key; [cluster] takes {', '.join(CLUSTER_KEYS)}", "cluster", key)
        typ, what = CLUSTER_KEYS[key]
        ok = isinstance(value, typ) and not isinstance(value, bool)
        if typ is int:
            ok = ok and value >= (0 if key == "gpus_per_job" else 1)
        if typ is list:
            ok = ok and all(isinstance(s, str) for s in value)
        if not ok:
            raise p.error(f"must be {what}, got {value!r}", "cluster", key)
        out[key] = value
    return out


# ---------------------------------------------------------------------------
# The user-facing object


class Study:
    """A study file bound to an output directory.

    >>> study = go.Study("examples/quickstart.toml", "results/quickstart")
    >>> runs = study.run(cluster="local")          # a pandas DataFrame, one row per run

    Running again on the same directory resumes (finished chunks are skipped).
    """

    def __init__(self, spec, out):
        self.spec = load_spec(spec)
        self.out = Path(out)

    @property
    def n_runs(self) -> int:
        return self.spec.n_runs

    def grid(self):
        """Every grid point as a DataFrame (run_id, optimizer, seed, init_scheme,
        init_scale, hyperparameters), in run-id order; nothing runs."""
        import pandas as pd

        frames = []
        for g in self.spec.groups:
            cols = self.spec.points(g.start, g.start + g.size)
            cols.pop("_kwargs")
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)

    def run(self, cluster: str = "local", scheduler: str | None = None, workers: int | None = None,
            chunk_size: int | None = None, progress: bool = True, dashboard: str | None = ":8787"):
        """Run every chunk not yet stored in ``out`` and return :func:`load_results`.

        ``cluster``: ``"none"`` (this process), ``"local"`` (a LocalCluster of
        processes, one per core or per GPU), ``"cuda"`` (dask-cuda), ``"slurm"``
        (dask-jobqueue, options from ``[cluster]``); ``scheduler`` joins an existing
        Dask cluster instead. ``dashboard``: the address for Dask's dashboard, or None.
        """
        from .cluster import run_study
        from .store import load_results

        run_study(self.spec, self.out, cluster=cluster, scheduler=scheduler, workers=workers,
                  chunk_size=chunk_size, progress=progress, dashboard=dashboard)
        return load_results(self.out)

    def results(self, curves: bool = False):
        from .store import load_results

        return load_results(self.out, curves=curves)
