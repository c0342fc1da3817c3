"""The gpuopt command: run, interrupt (SIGKILL, SIGTERM) and resume to exactly the
uninterrupted table; clear errors with exit status 2; info; plot."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROSENBROCK_STUDY

import gpuopt as go
from gpuopt.cli import main
from gpuopt.cluster import run_study
from gpuopt.store import Store
from gpuopt.study import load_spec

ROOT = Path(__file__).resolve().parents[1]

STUDY = ROSENBROCK_STUDY.format(name="cli-test")
CHUNK = 4


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "study.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def reference(study_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    run_study(load_spec(study_file), out, cluster="none", chunk_size=CHUNK, progress=False)
    return go.load_results(out, curves=True)


def assert_same(out, reference):
    runs, curves = go.load_results(out, curves=True)
    assert runs.run_id.is_unique
    pd.testing.assert_frame_equal(runs, reference[0], check_exact=True)
    pd.testing.assert_frame_equal(curves, reference[1], check_exact=True)


def command(study_file, out, *extra):
    return [sys.executable, "-m", "gpuopt.cli", "run", str(study_file), "--out", str(out),
            "--chunk-size", str(CHUNK), "--dashboard", "none", *extra]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start(cmd):
    # Own session: the test can see (and clean up) every process the command started.
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for_chunks(proc, out, n, timeout=60):
    store = Store(out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "runs").is_dir() and len(store.done()) >= n:
            return len(store.done())
        if proc.poll() is not None:
            pytest.fail(f"the command ended early: {proc.communicate()}")
        time.sleep(0.01)
    pytest.fail("no chunks appeared")


def group_gone(pgid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)  # do not leave them behind
    return False


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_table(study_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = command(study_file, out, "--cluster", "none")
    proc = start(cmd)
    wait_for_chunks(proc, out, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_chunks = len(load_spec(study_file).chunks(CHUNK))
    assert 2 <= len(Store(out).done()) < n_chunks
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "chunks already stored" in done.stderr
    assert_same(out, reference)


@pytest.mark.slow
def test_sigterm_on_a_local_cluster_stops_cleanly_then_resumes(study_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = command(study_file, out, "--cluster", "local", "--workers", "2", "--no-progress")
    proc = start(cmd)
    wait_for_chunks(proc, out, 2)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Run the same command again to resume" in err
    assert f"--out {out}" in err and "Traceback" not in err, err
    assert group_gone(proc.pid), "worker processes outlived the command"
    assert len(Store(out).done()) < len(load_spec(study_file).chunks(CHUNK))
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same(out, reference)


def test_run_in_process_and_messages(study_file, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(study_file), "--out", str(out), "--cluster", "none", "--chunk-size",
                 str(CHUNK)]) == 0
    err = capsys.readouterr().err
    assert "cli-test: 80 runs in 20 chunks of 4" in err
    assert "runs/s" in err or "run/s" in err  # the progress bar's rate
    assert "diverged=" in err
    assert_same(out, reference)
    # rerun: nothing to do
    assert main(["run", str(study_file), "--out", str(out), "--cluster", "none"]) == 0
    assert "all 20 chunks already stored" in capsys.readouterr().err


def test_errors_exit_2_without_traceback(study_file, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(STUDY.replace("momentum = 0.9", "momentum = 1.9"))
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "line 20" in err and "'momentum'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    # a different study file in a directory holding results
    out = tmp_path / "out"
    assert main(["run", str(study_file), "--out", str(out), "--cluster", "none", "--no-progress"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(STUDY.replace("steps = 600", "steps = 601"))
    capsys.readouterr()
    assert main(["run", str(other), "--out", str(out), "--cluster", "none"]) == 2
    assert "holds results of a different study" in capsys.readouterr().err
    # an output directory that cannot be written
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(study_file), "--out", str(blocker / "o"), "--cluster", "none"]) == 2
    assert "cannot be written" in capsys.readouterr().err
    # a missing study file
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    assert "cannot read the study file" in capsys.readouterr().err
    # argparse's own checks also exit 2
    with pytest.raises(SystemExit) as info:
        main(["run", str(study_file), "--out", str(out), "--workers", "0"])
    assert info.value.code == 2


def test_info_lists_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("gpuopt", "numpy", "cupy", "dask", "distributed", "dask-cuda", "dask-jobqueue", "backend",
                 "gpus"):
        assert any(line.split()[0] == name for line in out.splitlines()), name
    assert go.__version__ in out


def test_plot(study_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["plot", str(out)]) == 2
    assert "not a gpuopt study directory" in capsys.readouterr().err
    store = Store(out)
    spec = load_spec(study_file)
    store.check(spec)
    store.create(spec, CHUNK, go.__version__)
    assert main(["plot", str(out)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    run_study(spec, out, cluster="none", progress=False)
    assert main(["plot", str(out)]) == 0
    paths = [Path(p) for p in capsys.readouterr().out.split()]
    assert paths and all(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(study_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = command(study_file, out, "--cluster", "none")
    proc = start(cmd)
    wait_for_chunks(proc, out, 1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by interrupt" in err and "Traceback" not in err
    assert not [p for p in out.rglob(".*") if p.is_file()]  # the chunk in flight left no temporary file
    assert subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, timeout=120).returncode == 0
    assert_same(out, reference)


def test_python_api(study_file, reference, tmp_path):
    study = go.Study(study_file, tmp_path / "api")
    assert study.n_runs == 80 and study.grid().run_id.tolist() == list(range(80))
    runs = study.run(cluster="none", chunk_size=CHUNK, progress=False)
    pd.testing.assert_frame_equal(runs, reference[0], check_exact=True)
    runs2, curves = study.results(curves=True)
    pd.testing.assert_frame_equal(curves, reference[1], check_exact=True)
    pd.testing.assert_frame_equal(go.load_results(tmp_path / "api"), runs2)
