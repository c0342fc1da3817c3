"""Where a study's chunks run: this process, or one Dask task per chunk on a cluster.

``cluster``:

- ``"none"``: a loop in this process, chunk after chunk.
- ``"local"`` (the default): a ``dask.distributed.LocalCluster`` on this machine, one
  single-threaded worker process per core; on a GPU machine (and a study whose
  ``device`` is not ``"cpu"``), one worker per GPU: dask-cuda's ``LocalCUDACluster``
  when it is installed, else one process per GPU with ``CUDA_VISIBLE_DEVICES`` set.
- ``"cuda"``: dask-cuda's ``LocalCUDACluster`` (``pip install gpuopt[cuda-cluster]``).
- ``"slurm"``: dask-jobqueue's ``SLURMCluster`` with the study's ``[cluster]`` table,
  scaled to ``jobs`` jobs (``pip install gpuopt[slurm]``); the output directory must be
  on a file system the compute nodes share.
- ``scheduler="tcp://host:8786"``: join a running Dask cluster instead.

Each chunk is one task, keyed by the spec hash and the chunk id. The worker that runs
it writes the chunk's files itself (:meth:`gpuopt.store.Store.write_chunk`) and
returns only a small summary, so no result data flows through the scheduler. A task
whose worker dies is rerun by Dask on another worker; the atomic, idempotent writes
mean nothing is lost or stored twice.

**Chunk size** (when not given): measured, not guessed. A few steps of the study's
first group at two batch sizes give the seconds per step as ``a + b R``; the chunk size
is the largest of (a) the size whose task takes at least 0.5 s (Dask's overhead is
about 1 ms per task, so that is well over 100 ms even when the measurement is 5x off)
and (b) the size that gives every worker about 8 chunks (load balance: the slowest
last chunk is then a small part of the whole), capped so that a chunk takes at most
about 30 s (progress and resume granularity), holds at most 2**24 parameters, and is
no larger than the largest group. The manifest stores it, so a resume reuses it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time

from . import backend, engine, parallel
from .store import Store, StoreError

CLUSTERS = ("none", "local", "cuda", "slurm")
MIN_CHUNK_SECONDS = 0.5
MAX_CHUNK_SECONDS = 30.0
CHUNKS_PER_WORKER = 8
MAX_CHUNK_ELEMENTS = 1 << 24


class ClusterError(RuntimeError):
    """A cluster cannot be made or joined (a missing optional package, no GPU)."""


# ---------------------------------------------------------------------------
# The task


def _gpu_for_worker():
    """On a worker that sees several GPUs (a SLURM job running several worker processes),
    the GPU this process should use: its process index within the job modulo the GPU
    count. None where CUDA_VISIBLE_DEVICES already pins one GPU, or without GPUs."""
    n = backend.device_count()
    if n <= 1:
        return None
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):
        return None
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) % n if m else None


def run_chunk_task(spec, chunk, out: str) -> dict:
    """Run one chunk and store it; return its summary (chunk, runs, diverged, seconds).
    What a Dask worker executes, and what ``cluster="none"`` calls in-process."""
    store = Store(out)
    gpu = _gpu_for_worker() if spec.device != "cpu" else None
    ctx = backend.cupy_module().cuda.Device(gpu) if gpu is not None else contextlib.nullcontext()
    with ctx:
        result = engine.run_chunk(spec, chunk)
    store.write_chunk(chunk.id, result.runs, result.curves)
    return result.summary()


# ---------------------------------------------------------------------------
# Clusters


def _uses_gpu(spec) -> bool:
    return spec.device != "cpu" and backend.gpu_available()


def _need(module: str, cluster: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise ClusterError(f"--cluster {cluster} needs {module.replace('_', '-')}, which is not installed: "
                           f"pip install 'gpuopt[{extra}]' (or {module.replace('_', '-')})") from None


# Worker processes run one task at a time on one core; their math libraries and
# gpuopt's NumPy thread pool must not spawn a thread per core each.
_WORKER_ENV = {"GPUOPT_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}


def _local_cluster(spec, workers, dashboard):
    from distributed import LocalCluster

    if _uses_gpu(spec):
        n = backend.device_count()
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            return _gpu_process_cluster(min(workers or n, n), dashboard)
        return LocalCUDACluster(n_workers=min(workers or n, n), threads_per_worker=1,
                                dashboard_address=dashboard)
    return LocalCluster(n_workers=workers or parallel.usable_cores(), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=dashboard, env=dict(_WORKER_ENV))


def _gpu_process_cluster(n, dashboard):
    """One worker process per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES)."""
    from distributed import Nanny, Scheduler, SpecCluster

    sched = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": dashboard is not None,
                                           "dashboard_address": dashboard or ":0"}}
    workers = {f"gpu-{i}": {"cls": Nanny, "options": {
        "nthreads": 1, "host": "127.0.0.1",
        "env": {**_WORKER_ENV, "CUDA_VISIBLE_DEVICES": str(i)}}} for i in range(n)}
    return SpecCluster(scheduler=sched, workers=workers)


def _slurm_cluster(spec, workers):
    _need("dask_jobqueue", "slurm", "slurm")
    from dask_jobqueue import SLURMCluster

    opts = dict(spec.cluster)
    jobs = opts.pop("jobs", 1)
    gpus = opts.pop("gpus_per_job", 0)
    opts.setdefault("processes", max(1, gpus))
    opts.setdefault("cores", opts["processes"])
    opts.setdefault("memory", f"{4 * opts['processes']}GB")
    extra = list(opts.pop("job_extra_directives", []))
    if gpus:
        extra.append(f"--gres=gpu:{gpus}")
    env = [f"export {k}={v}" for k, v in _WORKER_ENV.items()]
    opts["job_script_prologue"] = env + list(opts.get("job_script_prologue", []))
    cluster = SLURMCluster(job_extra_directives=extra, **opts)
    if workers:
        cluster.scale(n=workers)
    else:
        cluster.scale(jobs=jobs)
    return cluster


@contextlib.contextmanager
def connect(kind: str = "local", *, spec=None, scheduler: str | None = None, workers: int | None = None,
            dashboard: str | None = ":8787"):
    """A ``distributed.Client`` for ``kind`` (or for the running cluster at
    ``scheduler``); the cluster it started is closed on exit."""
    from distributed import Client

    if scheduler:
        import dask

        try:  # waits up to Dask's connect timeout (distributed.comm.timeouts.connect)
            client = Client(scheduler, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot connect to the Dask scheduler at {scheduler}: {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if kind == "local":
        cluster = _local_cluster(spec, workers, dashboard)
    elif kind == "cuda":
        _need("dask_cuda", "cuda", "cuda-cluster")
        from dask_cuda import LocalCUDACluster

        n = backend.device_count()
        if n == 0:
            raise ClusterError("--cluster cuda needs a GPU, and CuPy sees none")
        cluster = LocalCUDACluster(n_workers=min(workers or n, n), threads_per_worker=1,
                                   dashboard_address=dashboard)
    elif kind == "slurm":
        cluster = _slurm_cluster(spec, workers)
    else:
        raise ValueError(f"cluster must be one of {', '.join(CLUSTERS)}, got {kind!r}")
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def dashboard_link(client) -> str | None:
    """The dashboard's address, or None when the scheduler serves none (no bokeh)."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an old scheduler or a closed client: no link to show
        return None
    if "dashboard" not in services:
        return None
    try:
        import bokeh  # noqa: F401  (without bokeh the address serves only a hint page)
    except ImportError:
        return None
    return client.dashboard_link


# ---------------------------------------------------------------------------
# Chunk size


@contextlib.contextmanager
def _single_threaded():
    """gpuopt's NumPy thread pools limited to one thread, as on a worker process (the
    pools read GPUOPT_NUM_THREADS at each call)."""
    old = os.environ.get("GPUOPT_NUM_THREADS")
    os.environ["GPUOPT_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GPUOPT_NUM_THREADS", None)
        else:
            os.environ["GPUOPT_NUM_THREADS"] = old


def default_chunk_size(spec, workers: int, per_step: tuple[float, float] | None = None,
                       single_thread: bool = False) -> int:
    """The chunk size for ``workers`` workers (see the module docstring); ``per_step``
    is ``(a, b)`` seconds per step for ``R`` runs as ``a + b R``, measured when None
    (with ``single_thread``, measured as a single-threaded CPU worker runs)."""
    if per_step is None:
        with _single_threaded() if single_thread else contextlib.nullcontext():
            per_step = engine.measure(spec)
    a, b = per_step
    b = max(b, 1e-12)
    evals = spec.steps + 1
    low = max(1, math.ceil((MIN_CHUNK_SECONDS / evals - a) / b))
    high = max(1, math.floor((MAX_CHUNK_SECONDS / evals - a) / b))
    balance = max(1, math.ceil(spec.n_runs / (CHUNKS_PER_WORKER * max(1, workers))))
    size = max(low, min(balance, high))
    dim = int(engine.problem_for(spec).dim)
    largest = max(g.size for g in spec.groups)
    return int(max(1, min(size, MAX_CHUNK_ELEMENTS // max(dim, 1), largest)))


def _expected_workers(kind, workers, spec, client) -> int:
    if client is None:
        return 1
    n = len(client.nthreads()) if kind != "slurm" else 0
    if kind == "slurm" and not workers:
        c = spec.cluster
        n = c.get("jobs", 1) * c.get("processes", max(1, c.get("gpus_per_job", 0)))
    return max(1, workers or n)


# ---------------------------------------------------------------------------
# The driver


def _done_diverged(store, ids) -> tuple[int, int]:
    runs = diverged = 0
    for i in ids:
        df = store.read_chunk(i, columns=["diverged"])
        runs += len(df)
        diverged += int(df["diverged"].sum())
    return runs, diverged


def run_study(spec, out, *, cluster: str = "local", scheduler: str | None = None,
              workers: int | None = None, chunk_size: int | None = None, progress: bool = True,
              dashboard: str | None = ":8787", log=None) -> dict:
    """Run every chunk of ``spec`` not yet stored in ``out``; return a summary dict
    (``n_runs, n_chunks, chunk_size, ran_chunks, diverged, seconds``).

    Everything that can be refused is refused before any work: the cluster kind, the
    worker count, the chunk size, the output directory (writable, not another study's).
    Ctrl-C (KeyboardInterrupt) stops cleanly: finished chunks stay stored, and running
    the same call again resumes.
    """
    from tqdm import tqdm

    from . import __version__

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    for name, v in (("workers", workers), ("chunk_size", chunk_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    local = cluster in ("none", "local") and not scheduler
    if spec.device == "gpu" and local and not backend.gpu_available():
        raise ClusterError("the study asks device = 'gpu', but CuPy sees no GPU here")
    if cluster == "cuda" and not scheduler:
        _need("dask_cuda", "cuda", "cuda-cluster")
    if cluster == "slurm" and not scheduler:
        _need("dask_jobqueue", "slurm", "slurm")

    store = Store(out)
    stored = store.check(spec, chunk_size)
    t0 = time.perf_counter()
    summary = {"n_runs": spec.n_runs, "ran_chunks": 0, "diverged": 0}
    if stored is not None:
        chunks = spec.chunks(stored)
        done = store.done()
        if all(c.id in done for c in chunks):
            runs, diverged = _done_diverged(store, [c.id for c in chunks])
            log(f"{spec.name}: all {len(chunks)} chunks already stored in {store.root}")
            return {**summary, "n_chunks": len(chunks), "chunk_size": stored, "diverged": diverged,
                    "seconds": 0.0}

    distributed = cluster != "none" or scheduler is not None
    conn = (connect(cluster, spec=spec, scheduler=scheduler, workers=workers, dashboard=dashboard)
            if distributed else contextlib.nullcontext(None))
    with conn as client:
        if client is not None:
            link = dashboard_link(client)
            where = scheduler or f"{cluster} cluster"
            log(f"dask: {where}, {len(client.nthreads())} workers, "
                f"dashboard: {link or 'not available (pip install bokeh)'}")
        if not (stored or chunk_size):
            n = _expected_workers(cluster, workers, spec, client)
            # CPU workers run one thread each: measure as they will run.
            chunk_size = default_chunk_size(spec, n, single_thread=client is not None and not _uses_gpu(spec))
        size = stored or chunk_size
        manifest = store.create(spec, size, __version__)
        if manifest.get("gpuopt_version") != __version__:
            log(f"warning: {store.root} was started by gpuopt {manifest.get('gpuopt_version')}, this is "
                f"{__version__}: the new chunks may differ from the stored ones in the last bits")
        chunks = spec.chunks(size)
        done = store.done()
        todo = [c for c in chunks if c.id not in done]
        done_runs, diverged = _done_diverged(store, [c.id for c in chunks if c.id in done])
        log(f"{spec.name}: {spec.n_runs} runs in {len(chunks)} chunks of {size}; "
            f"{len(chunks) - len(todo)} chunks already stored in {store.root}")
        bar = tqdm(total=spec.n_runs, initial=done_runs, unit="run", desc=spec.name, disable=not progress,
                   dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
        bar.set_postfix(diverged=diverged)
        try:
            for s in _execute(client, spec, todo, store):
                diverged += s["diverged"]
                summary["ran_chunks"] += 1
                bar.update(s["runs"])
                bar.set_postfix(diverged=diverged)
        finally:
            bar.close()
    missing = [c.id for c in chunks if c.id not in store.done()]
    if missing:
        raise StoreError(f"{len(missing)} chunks are not stored after the run (first: {missing[0]}); "
                         "run again to complete them")
    return {**summary, "n_chunks": len(chunks), "chunk_size": size, "diverged": diverged,
            "seconds": time.perf_counter() - t0}


def _execute(client, spec, todo, store):
    """Yield each chunk's summary as it finishes: in this process, or as Dask tasks."""
    root = str(store.root)
    if client is None:
        for c in todo:
            yield run_chunk_task(spec, c, root)
        return
    from distributed import as_completed

    futures = [client.submit(run_chunk_task, spec, c, root, key=f"gpuopt-{spec.hash[:12]}-chunk-{c.id:06d}",
                             pure=False) for c in todo]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        # On an error or an interrupt, stop the chunks still queued; those running
        # finish or die with their workers, and anything unstored reruns on resume.
        client.cancel([f for f in futures if not f.done()])
