"""Study files: every class of bad input is refused naming key, table and line; the
grid has the documented size and order; chunks tile it."""

import itertools
import textwrap

import numpy as np
import pytest

import gpuopt as go
from gpuopt.study import StudyError, load_spec

BASE = """\
[study]
name = "t"
steps = 10
seeds = 2

[problem]
kind = "rosenbrock"
dim = 2

[init]
scheme = "normal"
scale = { values = [0.1, 1.0] }

[[optimizers]]
name = "adam"
lr = { logspace = [-3, -1, 3] }

[[optimizers]]
name = "sgd"
lr = { values = [0.001, 0.01] }
momentum = { values = [0.0, 0.9] }
"""


def line_of(text, needle, nth=0):
    """1-based line number of the nth line containing needle: an independent locator."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth]


# (id, replace old -> new in BASE (or append), key, table, line needle, message fragment)
ERRORS = [
    ("unknown-study-key", ("seeds = 2", "seeds = 2\nstepz = 3"), "stepz", "study", "stepz =", "unknown key"),
    ("steps-wrong-type", ("steps = 10", 'steps = "10"'), "steps", "study", "steps =", "positive int"),
    ("steps-zero", ("steps = 10", "steps = 0"), "steps", "study", "steps =", "positive int"),
    ("seeds-float", ("seeds = 2", "seeds = 2.5"), "seeds", "study", "seeds =", "seeds"),
    ("dtype", ("seeds = 2", 'seeds = 2\ndtype = "float16"'), "dtype", "study", "dtype =", "float32"),
    ("diverge-factor", ("seeds = 2", "seeds = 2\ndiverge_factor = 0.5"), "diverge_factor", "study",
     "diverge_factor", "above 1"),
    ("empty-axis", ("scale = { values = [0.1, 1.0] }", "scale = { values = [] }"), "scale", "init",
     "scale =", "non-empty"),
    ("logspace-n-float", ("lr = { logspace = [-3, -1, 3] }", "lr = { logspace = [-3, -1, 3.0] }"), "lr",
     "[[optimizers]] #1", "lr = { logspace", "integer n"),
    ("logspace-n-zero", ("lr = { logspace = [-3, -1, 3] }", "lr = { logspace = [-3, -1, 0] }"), "lr",
     "[[optimizers]] #1", "lr = { logspace", "n >= 1"),
    ("logspace-two", ("lr = { logspace = [-3, -1, 3] }", "lr = { logspace = [-3, -1] }"), "lr",
     "[[optimizers]] #1", "lr = { logspace", "[a, b, n]"),
    ("axis-unknown-kind", ("lr = { logspace = [-3, -1, 3] }", "lr = { geomspace = [-3, -1, 3] }"), "lr",
     "[[optimizers]] #1", "lr = { geomspace", "values"),
    ("duplicate-values", ('lr = { values = [0.001, 0.01] }', 'lr = { values = [0.01, 0.01] }'), "lr",
     "[[optimizers]] #2", "lr = { values = [0.01, 0.01]", "twice"),
    ("unknown-optimizer", ('name = "sgd"', 'name = "sgdd"'), "name", "[[optimizers]] #2", 'name = "sgdd"',
     "unknown optimizer"),
    ("unknown-hyper", ("momentum = { values", "nesterovv = true\nmomentum = { values"), "nesterovv",
     "[[optimizers]] #2", "nesterovv", "takes no hyperparameter"),
    ("hyper-wrong-type", ("momentum = { values", 'nesterov = "yes"\nmomentum = { values'), "nesterov",
     "[[optimizers]] #2", "nesterov =", "true or false"),
    ("hyper-invalid-axis-value", ("momentum = { values = [0.0, 0.9] }", "momentum = { values = [0.0, 1.5] }"),
     "momentum", "[[optimizers]] #2", "momentum =", "1.5"),
    ("hyper-invalid-fixed", ("lr = { logspace = [-3, -1, 3] }",
                             "lr = { logspace = [-3, -1, 3] }\neps = -1.0"),
     "eps", "[[optimizers]] #1", "eps = -1", "eps"),
    ("betas-invalid", ("lr = { logspace = [-3, -1, 3] }",
                       "lr = { logspace = [-3, -1, 3] }\nbetas = [0.9, 1.5]"),
     "betas", "[[optimizers]] #1", "betas =", "betas[1]"),
    ("betas-wrong-length", ("lr = { logspace = [-3, -1, 3] }",
                            "lr = { logspace = [-3, -1, 3] }\nbetas = [0.9]"),
     "betas", "[[optimizers]] #1", "betas =", "list of 2"),
    ("unknown-problem-kind", ('kind = "rosenbrock"', 'kind = "rosenbrok"'), "kind", "problem", "kind =",
     "unknown problem kind"),
    ("unknown-problem-key", ("dim = 2", "dim = 2\nwidth = 3"), "width", "problem", "width =", "width"),
    ("bad-problem-value", ("dim = 2", "dim = 1"), "dim", "problem", "dim =", "dim"),
    ("unknown-init-key", ('scheme = "normal"', 'scheme = "normal"\ngain = 2.0'), "gain", "init", "gain =",
     "unknown key"),
    ("bad-scheme", ('scheme = "normal"', 'scheme = "orthogonal"'), "scheme", "init", "scheme =",
     "orthogonal"),
    ("negative-scale", ("scale = { values = [0.1, 1.0] }", "scale = { values = [0.1, -1.0] }"), "scale",
     "init", "scale =", "non-negative"),
    ("cluster-wrong-type", (None, '\n[cluster]\nqueue = "gpu"\njobs = "four"\n'), "jobs", "cluster", "jobs =",
     "positive int"),
    ("cluster-unknown", (None, '\n[cluster]\nqueues = "gpu"\n'), "queues", "cluster", "queues =",
     "unknown key"),
    ("unknown-table", (None, "\n[studdy]\nsteps = 3\n"), "studdy", None, "[studdy]", "unknown table"),
    ("missing-lr", ("lr = { values = [0.001, 0.01] }\n", ""), "name", "[[optimizers]] #2", 'name = "sgd"',
     "needs 'lr'"),
]


def _apply(edit):
    old, new = edit
    if old is None:
        return BASE + new
    assert BASE.count(old) >= 1, old
    # replace the last occurrence for the sgd block's lr, else the first
    if old.startswith("lr = { values"):
        i = BASE.rindex(old)
        return BASE[:i] + new + BASE[i + len(old):]
    return BASE.replace(old, new, 1)


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_name_key_table_and_line(case, tmp_path):
    _, edit, key, table, needle, fragment = case
    text = _apply(edit)
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(StudyError) as info:
        load_spec(path)
    e = info.value
    assert isinstance(e, ValueError)
    assert e.key == key
    assert e.table == table
    assert e.line == line_of(text, needle), str(e)
    msg = str(e)
    assert f"line {e.line}" in msg and f"'{key}'" in msg and str(path) in msg
    assert fragment in msg, msg


def test_toml_syntax_error_has_position(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE.replace("steps = 10", "steps = = 10"))
    with pytest.raises(StudyError, match=r"not valid TOML.*line 3"):
        load_spec(path)


@pytest.mark.parametrize("text, fragment", [
    (BASE.replace("[study]\n", "[study]\n").replace('kind = "rosenbrock"\ndim = 2\n', "dim = 2\n"),
     "'kind' is required"),
    ("[problem]\nkind = 'beale'\n[[optimizers]]\nname='adam'\n", "needs a [study] table"),
    (BASE.split("[[optimizers]]")[0], "at least one [[optimizers]]"),
    (BASE.replace("steps = 10\n", ""), "'steps', is required"),
    (BASE.replace("[[optimizers]]", "[optimizers]", 1).split("[[optimizers]]")[0], "array of tables"),
])
def test_structural_errors(text, fragment):
    with pytest.raises(StudyError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        load_spec(text)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StudyError, match="cannot read the study file"):
        load_spec(tmp_path / "nope.toml")


def test_grid_size_and_order():
    spec = load_spec(BASE)
    study = go.Study(spec, "unused")
    grid = study.grid()
    # adam: 3 lrs x 1 scheme x 2 scales x 2 seeds; sgd: 2 lrs x 2 momenta x 2 x 2
    assert spec.n_runs == len(grid) == 3 * 2 * 2 + 2 * 2 * 2 * 2
    assert grid["run_id"].tolist() == list(range(spec.n_runs))
    # Independent expectation: itertools.product in file order, seed fastest.
    expected = [("adam", lr, None, sc, s) for lr, sc, s in
                itertools.product(np.logspace(-3, -1, 3), [0.1, 1.0], [0, 1])]
    expected += [("sgd", lr, m, sc, s) for lr, m, sc, s in
                 itertools.product([0.001, 0.01], [0.0, 0.9], [0.1, 1.0], [0, 1])]
    got = list(zip(grid["optimizer"], grid["lr"], grid["momentum"], grid["init_scale"], grid["seed"],
                   strict=True))
    assert len(got) == len(expected)
    for (o, lr, m, sc, s), (go_, glr, gm, gsc, gs) in zip(expected, got, strict=True):
        assert (o, sc, s) == (go_, gsc, gs)
        assert lr == glr
        assert (m is None and o == "adam") or m == gm
    # Defaults and fixed values appear as columns; pairs split as betas0/betas1.
    assert (grid.loc[grid.optimizer == "adam", "betas0"] == 0.9).all()
    assert (grid.loc[grid.optimizer == "adam", "betas1"] == 0.999).all()


def test_structural_axes_are_outermost_groups():
    text = BASE.replace("momentum = { values = [0.0, 0.9] }",
                        "momentum = { values = [0.5, 0.9] }\nnesterov = { values = [false, true] }")
    spec = load_spec(text)
    sgd = [g for g in spec.groups if spec.blocks[g.block].name == "sgd"]
    assert [g.structural for g in sgd] == [{"nesterov": False}, {"nesterov": True}]
    grid = go.Study(spec, "unused").grid()
    nest = grid.loc[grid.optimizer == "sgd", "nesterov"].tolist()
    assert nest == [False] * 16 + [True] * 16
    # chunks never straddle a group boundary
    for c in spec.chunks(5):
        g = spec.groups[c.group]
        assert g.start <= c.start < c.stop <= g.start + g.size


def test_seeds_list_base_seed_labels_and_logspace():
    text = BASE.replace("seeds = 2", "seeds = [3, 7]\nbase_seed = 100").replace(
        'name = "sgd"', 'name = "adam"\nlabel = "adam-small"').replace(
        "momentum = { values = [0.0, 0.9] }", "")
    spec = load_spec(text)
    grid = go.Study(spec, "unused").grid()
    assert sorted(set(grid["seed"])) == [103, 107]
    assert grid["label"].unique().tolist() == ["adam", "adam-small"]
    assert np.array_equal(np.unique(grid.loc[grid.label == "adam", "lr"]), np.logspace(-3, -1, 3))
    # A repeated name without a label gets a numbered one.
    spec2 = load_spec(BASE.replace('name = "sgd"', 'name = "adam"').replace(
        "momentum = { values = [0.0, 0.9] }", ""))
    assert [b.label for b in spec2.blocks] == ["adam", "adam-2"]


def test_chunks_tile_the_grid_and_are_stable():
    spec = load_spec(BASE)
    for size in (1, 3, 7, 64):
        chunks = spec.chunks(size)
        assert [c.id for c in chunks] == list(range(len(chunks)))
        covered = [r for c in chunks for r in range(c.start, c.stop)]
        assert covered == list(range(spec.n_runs))
        assert all(c.size <= size for c in chunks)
        assert chunks == load_spec(BASE).chunks(size)
    with pytest.raises(ValueError, match="chunk_size"):
        spec.chunks(0)


def test_hash_ignores_comments_and_cluster_but_not_content():
    h = load_spec(BASE).hash
    assert load_spec("# a comment\n" + BASE.replace("steps = 10", "steps = 10   # ten")).hash == h
    assert load_spec(BASE + '\n[cluster]\nqueue = "gpu"\n').hash == h
    assert load_spec(BASE.replace("steps = 10", "steps = 11")).hash != h
    assert load_spec(BASE.replace("[-3, -1, 3]", "[-3, -1, 4]")).hash != h


def test_dict_input_and_default_dtype():
    spec = load_spec({"study": {"steps": 3}, "problem": {"kind": "mlp", "widths": [2, 3, 1], "samples": 8},
                      "optimizers": [{"name": "sgd", "lr": 0.1}]})
    assert spec.dtype == "float32" and spec.n_runs == 1
    assert load_spec(BASE).dtype == "float64"


def test_example_files_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"
    files = sorted(root.glob("*.toml"))
    assert {"rosenbrock_lr_scale.toml", "quickstart.toml"} <= {f.name for f in files}
    for f in files:
        spec = load_spec(f)
        assert spec.n_runs > 0
    issue = load_spec(root / "rosenbrock_lr_scale.toml")
    assert issue.n_runs == 2 * 4 * 4 * (8 + 8 * 2)


def test_locator_handles_multiline_arrays_and_comments():
    text = textwrap.dedent("""\
        [study]
        steps = 5
        # seeds = 3
        seeds = [
          0,
          1,
        ]
        [problem]
        kind = "beale"
        [[optimizers]]
        name = "adam"
        lr = { values = [
          0.1, 0.2 ] }
        betas = [0.9, 0.9999]
        amsgrad = 3
    """)
    with pytest.raises(StudyError) as info:
        load_spec(text)
    assert (info.value.key, info.value.line) == ("amsgrad", 15)
