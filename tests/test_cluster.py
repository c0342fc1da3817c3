"""Distribution over a real dask.distributed LocalCluster of processes (loopback only):
the same table as in-process, and a worker killed mid-run loses and duplicates nothing."""

import importlib.util
import os
import signal
import threading
import time

import pandas as pd
import pytest
from conftest import ROSENBROCK_STUDY

import gpuopt as go
from gpuopt.cluster import ClusterError, run_study
from gpuopt.store import Store
from gpuopt.study import load_spec

pytestmark = pytest.mark.slow

STUDY = ROSENBROCK_STUDY.format(name="cluster-test")
CHUNK = 4


@pytest.fixture(scope="module")
def spec():
    return load_spec(STUDY)


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    """The uninterrupted in-process run every distributed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref")
    run_study(spec, out, cluster="none", chunk_size=CHUNK, progress=False)
    return go.load_results(out, curves=True)


def assert_same(out, reference):
    runs, curves = go.load_results(out, curves=True)
    assert runs.run_id.is_unique and runs.run_id.tolist() == list(range(len(reference[0])))
    pd.testing.assert_frame_equal(runs, reference[0], check_exact=True)
    pd.testing.assert_frame_equal(curves, reference[1], check_exact=True)


def test_local_cluster_equals_in_process(spec, reference, tmp_path):
    logs = []
    summary = run_study(spec, tmp_path, cluster="local", workers=2, chunk_size=CHUNK, progress=False,
                        dashboard=None, log=logs.append)
    assert summary["ran_chunks"] == len(spec.chunks(CHUNK))
    assert any(line.startswith("dask: local cluster") for line in logs)
    assert_same(tmp_path, reference)


def test_worker_killed_mid_run(spec, reference, tmp_path):
    from distributed import Client, LocalCluster

    n_chunks = len(spec.chunks(CHUNK))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        errors = []

        def drive():
            try:
                run_study(spec, tmp_path, scheduler=cluster.scheduler_address, chunk_size=CHUNK,
                          progress=False, log=lambda m: None)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        driver = threading.Thread(target=drive)
        driver.start()
        store = Store(tmp_path)
        deadline = time.monotonic() + 60
        while len(store.done()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        done_at_kill = len(store.done())
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        driver.join(120)
        assert not driver.is_alive()
        assert not errors, errors
        assert 3 <= done_at_kill < n_chunks  # killed mid-run, not before or after
        # the nanny restarted the worker under a new pid
        assert victim not in client.run(os.getpid).values()
    assert_same(tmp_path, reference)
    assert store.done() == set(range(n_chunks))


@pytest.mark.parametrize("kind, package", [("cuda", "dask_cuda"), ("slurm", "dask_jobqueue")])
def test_missing_optional_cluster_packages(kind, package, spec, tmp_path):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(ClusterError, match=rf"--cluster {kind} needs {package.replace('_', '-')}"):
        run_study(spec, tmp_path / "out", cluster=kind, progress=False)
    assert not (tmp_path / "out").exists()  # refused before touching the output directory


def test_bad_arguments_are_refused(spec, tmp_path):
    with pytest.raises(ValueError, match="cluster must be one of"):
        run_study(spec, tmp_path, cluster="mpi")
    with pytest.raises(ValueError, match="workers must be a positive int"):
        run_study(spec, tmp_path, cluster="local", workers=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        run_study(spec, tmp_path, cluster="none", chunk_size=-1)


def test_unreachable_scheduler_is_a_clear_error(spec, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(
            ClusterError, match=f"cannot connect to the Dask scheduler at tcp://127.0.0.1:{port}"):
        run_study(spec, tmp_path, scheduler=f"tcp://127.0.0.1:{port}", chunk_size=CHUNK, progress=False)


def test_one_process_per_gpu_cluster_pins_devices():
    """The fallback for GPU machines without dask-cuda: one worker process per GPU,
    each seeing only its own device (checked here on CPU through the environment)."""
    from distributed import Client

    from gpuopt.cluster import _gpu_process_cluster

    with _gpu_process_cluster(2, None) as cluster, Client(cluster) as client:
        seen = client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"),
                                   os.environ.get("GPUOPT_NUM_THREADS")))
        assert sorted(seen.values()) == [("0", "1"), ("1", "1")]
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in seen)
