"""The ``gpuopt`` command.

::

    gpuopt run STUDY.toml --out DIR [--cluster none|local|cuda|slurm] [--scheduler ADDRESS]
                                    [--workers N] [--chunk-size N] [--dashboard ADDRESS|none]
    gpuopt plot DIR
    gpuopt info

``run`` shows a progress bar (runs done, diverged so far, rate, ETA) and, when
distributed, the Dask dashboard's address. Ctrl-C or SIGTERM stops it cleanly (every
finished chunk is stored); running the same command again resumes. Exit status: 0 done,
2 bad input (study file, output directory, cluster), 130 / 143 interrupted by SIGINT /
SIGTERM, 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import signal
import sys
from pathlib import Path

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _parser() -> argparse.ArgumentParser:
    from .cluster import CLUSTERS

    p = argparse.ArgumentParser(prog="gpuopt", description="Grid studies of optimizers on GPUs and clusters.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a study file",
                       description="Run a study file; rerunning the same command resumes it.")
    r.add_argument("study", help="the study file (TOML)")
    r.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    r.add_argument("--cluster", choices=CLUSTERS, default="local",
                   help="where chunks run (default: local, a Dask LocalCluster on this machine)")
    r.add_argument("--scheduler", metavar="ADDRESS", help="join a running Dask cluster at ADDRESS instead")
    r.add_argument("--workers", type=_positive_int, metavar="N",
                   help="worker processes (local: default one per core or per GPU)")
    r.add_argument("--chunk-size", type=_positive_int, metavar="N",
                   help="runs per chunk (default: measured; a resume reuses the stored one)")
    r.add_argument("--dashboard", default=":8787", metavar="ADDRESS",
                   help="Dask dashboard address for a cluster this command starts, or 'none'")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    pl = sub.add_parser("plot", help="write PNG figures of a study's results into DIR/figures")
    pl.add_argument("dir", help="the study's output directory")
    sub.add_parser("info", help="versions, backend, GPUs, Dask availability")
    return p


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info() -> dict:
    """What ``gpuopt info`` prints, as a dict."""
    from . import __version__, backend

    b = backend.info()
    out = {"gpuopt": __version__, "python": sys.version.split()[0]}
    for dist in ("numpy", "cupy", "dask", "distributed", "dask-cuda", "dask-jobqueue", "pandas",
                 "pyarrow", "bokeh"):
        out[dist] = _version(dist)
    if out["cupy"] == "not installed":
        # CuPy ships as cupy-cuda12x / cupy-cuda13x distributions.
        out["cupy"] = b["cupy"] or "not installed"
    from .parallel import usable_cores

    out["backend"] = b["default_backend"] + (" (GPUOPT_BACKEND=numpy)" if b["forced_numpy"] else "")
    out["gpus"] = ", ".join(f"{i}: {name}" for i, name in enumerate(b["devices"])) or "none"
    out["cores"] = usable_cores()
    return out


def _cmd_info(args) -> int:
    for k, v in info().items():
        print(f"{k:14s} {v}")
    return 0


def _cmd_plot(args) -> int:
    from .store import load_results

    try:
        runs = load_results(args.dir)
    except FileNotFoundError as e:
        print(f"gpuopt plot: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if runs.empty:
        print(f"gpuopt plot: error: {args.dir} holds no finished runs yet", file=sys.stderr)
        return EXIT_USAGE
    from .plots import plot_study

    for path in plot_study(args.dir):
        print(path)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as a KeyboardInterrupt so both stop the same clean way."""


def _on_sigterm(signum, frame):
    # Once: a second SIGTERM during the clean shutdown must not cut it short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated()


def _cmd_run(args, argv) -> int:
    from .cluster import ClusterError, run_study
    from .store import Store, StoreError
    from .study import load_spec

    dashboard = None if args.dashboard.lower() == "none" else args.dashboard
    try:
        spec = load_spec(Path(args.study))
    except (ValueError, OSError) as e:
        print(f"gpuopt run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        summary = run_study(spec, args.out, cluster=args.cluster, scheduler=args.scheduler,
                            workers=args.workers, chunk_size=args.chunk_size,
                            progress=not args.no_progress, dashboard=dashboard)
    except (StoreError, ClusterError, ValueError) as e:
        print(f"gpuopt run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        what = "SIGTERM" if isinstance(e, _Terminated) else "interrupt"
        store = Store(args.out)
        m = store.manifest()
        stored = len(store.done())
        total = f" of {m['n_chunks']}" if m else ""
        command = " ".join(shlex.quote(a) for a in ["gpuopt", *argv])
        print(f"\ngpuopt run: stopped by {what}; {stored}{total} chunks are stored in {store.root}.\n"
              f"Run the same command again to resume:\n  {command}", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{spec.name}: {summary['n_runs']} runs ({summary['diverged']} diverged) stored in "
          f"{Store(args.out).root} in {summary['seconds']:.1f} s. Next: gpuopt plot {shlex.quote(args.out)}, "
          f"or gpuopt.load_results({str(args.out)!r}) in Python.", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "info":
        return _cmd_info(args)
    if args.command == "plot":
        return _cmd_plot(args)
    return _cmd_run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
