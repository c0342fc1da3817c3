"""The output directory: atomic chunk files, manifest, resume, refusals, load_results."""

import json
import os
import socket

import pandas as pd
import pytest

import gpuopt as go
from gpuopt import engine
from gpuopt.cluster import run_study
from gpuopt.store import Store, StoreError, atomic_write, chunk_name
from gpuopt.study import load_spec

STUDY = """\
[study]
name = "store-test"
steps = 30
seeds = 2
record_every = 10

[problem]
kind = "himmelblau"

[init]
scale = { values = [0.5, 1.0] }

[[optimizers]]
name = "adam"
lr = { values = [0.01, 0.1, 1.0] }

[[optimizers]]
name = "sgd"
lr = { values = [0.001, 0.01] }
"""


@pytest.fixture
def spec():
    return load_spec(STUDY)


def test_layout_manifest_and_load_results(tmp_path, spec):
    out = tmp_path / "out"
    summary = run_study(spec, out, cluster="none", chunk_size=4, progress=False)
    chunks = spec.chunks(4)
    assert summary["n_chunks"] == len(chunks) == 5  # 12 adam runs: 3 chunks; 8 sgd runs: 2 chunks
    assert (out / "study.toml").read_text() == STUDY
    m = json.loads((out / "manifest.json").read_text())
    assert m["spec_hash"] == spec.hash and m["chunk_size"] == 4 and m["n_chunks"] == 5 and m["n_runs"] == 20
    assert m["gpuopt_version"] == go.__version__
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == [chunk_name(i) for i in range(5)]
    assert sorted(p.name for p in (out / "curves").iterdir()) == names
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary files left
    runs, curves = go.load_results(out, curves=True)
    assert runs.run_id.tolist() == list(range(20))
    assert runs.attrs["n_runs"] == 20
    # each chunk file holds exactly the engine's output for that chunk
    for c in chunks:
        expected = engine.run_chunk(spec, c)
        got = pd.read_parquet(out / "runs" / chunk_name(c.id))
        pd.testing.assert_frame_equal(got, expected.runs, check_exact=True)
        got_c = pd.read_parquet(out / "curves" / chunk_name(c.id))
        pd.testing.assert_frame_equal(got_c, expected.curves, check_exact=True)
    # curves: steps 0, 10, 20, 30 for every run that did not diverge
    ok = runs.loc[~runs.diverged, "run_id"]
    steps = curves[curves.run_id.isin(ok)].groupby("run_id").step.apply(list)
    assert steps.tolist() == [[0, 10, 20, 30]] * len(ok)
    assert go.load_results(out).equals(runs)


def test_resume_skips_done_chunks_and_redoes_half_stored_ones(tmp_path, spec):
    ref = tmp_path / "ref"
    run_study(spec, ref, cluster="none", chunk_size=3, progress=False)
    out = tmp_path / "out"
    run_study(spec, out, cluster="none", chunk_size=3, progress=False)
    # chunk 1: curves stored, runs not (a writer died between the two) -> not done
    (out / "runs" / chunk_name(1)).unlink()
    # chunk 4: nothing stored
    (out / "runs" / chunk_name(4)).unlink()
    (out / "curves" / chunk_name(4)).unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert Store(out).done() == set(range(len(spec.chunks(3)))) - {1, 4}
    summary = run_study(spec, out, cluster="none", progress=False)  # chunk size from the manifest
    assert summary["ran_chunks"] == 2 and summary["chunk_size"] == 3
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert all(after[n] == t for n, t in before.items())  # done chunks untouched
    a, ac = go.load_results(out, curves=True)
    b, bc = go.load_results(ref, curves=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(ac, bc, check_exact=True)
    # everything done: a rerun does nothing
    assert run_study(spec, out, cluster="none", progress=False)["ran_chunks"] == 0


def test_a_different_study_is_refused(tmp_path, spec):
    out = tmp_path / "out"
    run_study(spec, out, cluster="none", chunk_size=5, progress=False)
    other = load_spec(STUDY.replace("steps = 30", "steps = 31"))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(StoreError, match="different study"):
        run_study(other, out, cluster="none", progress=False)
    assert sorted(p.name for p in out.rglob("*")) == before
    # the same study with a different chunk size is refused too, naming the stored one
    with pytest.raises(StoreError, match="chunk size 5"):
        run_study(spec, out, cluster="none", chunk_size=6, progress=False)
    # comments and [cluster] do not make a different study
    same = load_spec("# note\n" + STUDY + '\n[cluster]\nqueue = "x"\n')
    assert run_study(same, out, cluster="none", progress=False)["ran_chunks"] == 0


def test_unwritable_output_directory_fails_before_any_work(tmp_path, spec):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    calls = []
    engine._PROBLEMS[spec.hash] = None  # any chunk run would fail on this
    try:
        for out in (blocker / "out", blocker):
            with pytest.raises(StoreError, match="cannot be written|not a directory") as info:
                run_study(spec, out, cluster="none", chunk_size=4, progress=False, log=calls.append)
            assert str(out) in str(info.value)
    finally:
        engine._PROBLEMS.pop(spec.hash)
    assert calls == []  # nothing was started, not even a log line
    assert blocker.read_text() == "not a directory"


def test_foreign_directory_is_refused(tmp_path, spec):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not empty.*thesis.tex"):
        run_study(spec, out, cluster="none", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]  # nothing added


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"


def test_stale_temporaries_are_cleaned(tmp_path, spec):
    out = tmp_path / "out"
    store = Store(out)
    store.check(spec)
    host = socket.gethostname()
    dead = out / "runs" / f".{chunk_name(0)}~{host}~999999999~abcdef.tmp"
    live = out / "runs" / f".{chunk_name(1)}~{host}~{os.getpid()}~abcdef.tmp"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    store.create(spec, 4, go.__version__)
    assert not dead.exists() and live.exists()


def test_load_results_errors_and_partial(tmp_path, spec):
    with pytest.raises(FileNotFoundError, match="not a gpuopt study directory"):
        go.load_results(tmp_path)
    out = tmp_path / "out"
    store = Store(out)
    store.check(spec)
    store.create(spec, 4, go.__version__)
    assert go.load_results(out).empty
    c = spec.chunks(4)[2]
    res = engine.run_chunk(spec, c)
    store.write_chunk(c.id, res.runs, res.curves)
    runs = go.load_results(out)
    assert runs.run_id.tolist() == list(range(c.start, c.stop)) and runs.attrs["n_runs"] == 20
