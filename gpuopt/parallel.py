"""CPU parallelism of the NumPy paths: one thread count, one way to fan work out to
threads, and OpenBLAS held to one thread while our own threads run.

NumPy releases the GIL inside ufuncs and BLAS calls, so Python threads working on
disjoint blocks of an array run in parallel. Three layers use this: the optimizers'
blocked updates, the activations, and the MLP's chunks of runs. Each layer has its
own named pool, because an MLP worker calls the activations, and a pool whose
threads wait on tasks queued to that same pool can deadlock.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

NUM_THREADS_ENV = "GPUOPT_NUM_THREADS"

_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def num_threads() -> int:
    """Threads for CPU work: ``GPUOPT_NUM_THREADS``, else the cores this process may
    run on (its affinity mask, which is what a batch system or ``taskset`` grants)."""
    if NUM_THREADS_ENV in os.environ:
        value = os.environ[NUM_THREADS_ENV]
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{NUM_THREADS_ENV} must be an integer, got {value!r}") from None
    return usable_cores()


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask where the OS has one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool(name: str) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(num_threads(), thread_name_prefix=f"gpuopt-{name}")
        return pool


def run_parallel(work, nthreads: int, pool: str) -> None:
    """Call ``work(w)`` for ``w = 0 .. nthreads - 1``, each on its own thread, and
    return when all are done (raising the first error).

    The calling thread runs ``w = 0`` itself instead of idling. The others run on the
    named pool, each in a copy of the caller's context: NumPy's ``errstate`` is a
    context variable, so the caller's error handling then holds on every thread.
    """
    if nthreads <= 1:
        work(0)
        return
    executor = _pool(pool)
    futures = [executor.submit(contextvars.copy_context().run, work, w) for w in range(1, nthreads)]
    try:
        work(0)
    finally:  # never return while a worker still writes into the caller's arrays
        wait(futures)
    for f in futures:
        f.result()


# NumPy's OpenBLAS, when it is one: (get_num_threads, set_num_threads) by ctypes, as
# threadpoolctl finds them. Python workers that each call a multithreaded OpenBLAS
# oversubscribe the cores; OpenBLAS's spinning threads then starve the callers
# (measured on 2 cores under load: calls 10-100x slower, seconds instead of 0.1 s).
# With OpenBLAS pinned to one thread during the parallel section, the workers run
# side by side at full speed. The setting is process-wide (despite its name,
# openblas_set_num_threads_local is too), so it is held only while the workers run and
# restored by the last one to leave.
_OPENBLAS_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
)
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = 1


@functools.cache
def openblas():
    """``(get, set)`` for the OpenBLAS NumPy was built with, or None (another BLAS,
    or OpenBLAS not found)."""
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except (AttributeError, KeyError, TypeError):
        return None
    if "openblas" not in str(blas).lower():
        return None
    here = os.path.dirname(np.__file__)
    paths = glob.glob(os.path.join(here, os.pardir, "numpy.libs", "*openblas*"))
    paths += glob.glob(os.path.join(here, ".dylibs", "*openblas*"))
    try:  # a system OpenBLAS NumPy links to: among the loaded libraries
        with open("/proc/self/maps") as maps:
            paths += [line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line]
    except OSError:
        pass
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle
        except OSError:
            continue
        for get_name, set_name in _OPENBLAS_SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def single_threaded_blas():
    """OpenBLAS on one thread while the block runs (reference-counted across threads)."""
    global _blas_users, _blas_saved
    control = openblas()
    if control is None:
        yield
        return
    get, set_ = control
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = get()
            set_(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                set_(_blas_saved)
