"""A study's output directory: the study as run, a manifest, and Parquet chunk files.

Layout::

    DIR/study.toml                      the study file as run
    DIR/manifest.json                   spec hash, chunk size, chunk and run counts, versions
    DIR/runs/chunk-000000.parquet       one row per run of chunk 0
    DIR/curves/chunk-000000.parquet     its loss curves: run_id, step, loss
    ...

Every file is written under a temporary name in its final directory, flushed to disk
(fsync), then renamed over the final name (``os.replace``, atomic on POSIX): nothing
half-written is ever visible under a final name. The worker that ran a chunk writes
its files, curves first and runs last, and a chunk counts as done exactly when its
runs file exists; so a chunk is either wholly stored or redone, and redoing it rewrites
the same files with the same bytes' worth of rows. Resuming skips done chunks; a study
file whose content differs from the stored one is refused.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used, so `import gpuopt` stays light
    import pandas as pd

MANIFEST = "manifest.json"
STUDY_FILE = "study.toml"
FORMAT = 1
_CHUNK_RE = re.compile(r"^chunk-(\d{6,})\.parquet$")
_TMP_RE = re.compile(r"^\.(.+)~(.+)~(\d+)~[0-9a-f]+\.tmp$")
# Temporary files of a writer on another host are only removed once this old.
_STALE_SECONDS = 3600
# Names an output directory may hold before it has a manifest (a run that stopped
# before writing one); anything else means DIR is not ours to write into.
_OWN_NAMES = {STUDY_FILE, MANIFEST, "runs", "curves", "figures"}


class StoreError(ValueError):
    """The output directory cannot be used: not writable, or holding another study."""


def chunk_name(chunk_id: int) -> str:
    return f"chunk-{chunk_id:06d}.parquet"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, and rename it
    to ``path``. The temporary name starts with a dot and names host and pid, so a
    stale one can be told from a live writer's."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}~{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(path, lambda f: pq.write_table(table, f))


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class Store:
    """The output directory ``root`` of one study."""

    def __init__(self, root):
        self.root = Path(root).absolute()
        self.runs_dir = self.root / "runs"
        self.curves_dir = self.root / "curves"

    # -- the driver's side ------------------------------------------------------
    def manifest(self) -> dict | None:
        """The manifest, or None when there is none yet."""
        path = self.root / MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StoreError(f"{path} cannot be read: {e}") from None

    def check(self, spec, chunk_size: int | None = None) -> int | None:
        """Check, before any work, that the directory can hold this study: writable,
        and either new, or holding this same study. Returns the stored chunk size on a
        resume (None for a new directory); refuses a ``chunk_size`` that differs from it."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"output directory {root} exists and is not a directory")
        self._writable(root)
        manifest = self.manifest()
        stored = None
        if manifest is None:
            foreign = sorted(p.name for p in root.iterdir()
                             if p.name not in _OWN_NAMES and not p.name.startswith("."))
            if foreign:
                raise StoreError(f"output directory {root} is not empty and holds no {MANIFEST} "
                                 f"(found {', '.join(foreign[:5])}): give a new or empty directory")
        else:
            if manifest.get("spec_hash") != spec.hash:
                raise StoreError(
                    f"output directory {root} holds results of a different study "
                    f"({manifest.get('study')!r}, spec hash {str(manifest.get('spec_hash'))[:12]}; this "
                    f"study file gives {spec.hash[:12]}): use another --out, or delete {root} to start over")
            stored = int(manifest["chunk_size"])
            if chunk_size is not None and int(chunk_size) != stored:
                raise StoreError(f"output directory {root} was started with chunk size {stored}: resume "
                                 f"without --chunk-size, or with --chunk-size {stored}")
        # Only now, with the directory known to be this study's, add the chunk folders.
        self._writable(self.runs_dir)
        self._writable(self.curves_dir)
        return stored

    @staticmethod
    def _writable(d: Path) -> None:
        """Create ``d`` if needed and prove a file can be written in it."""
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".write-test.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"output directory {d} cannot be written: {e.strerror or e} "
                             f"({e.filename or d})") from None

    def create(self, spec, chunk_size: int, version: str) -> dict:
        """Write the study file and the manifest (on a resume: keep them)."""
        manifest = self.manifest()
        if manifest is not None:
            return manifest
        self.clean_temporaries()
        if spec.source:
            _write_text(self.root / STUDY_FILE, spec.source)
        manifest = {
            "format": FORMAT,
            "study": spec.name,
            "spec_hash": spec.hash,
            "chunk_size": int(chunk_size),
            "n_chunks": len(spec.chunks(chunk_size)),
            "n_runs": spec.n_runs,
            "gpuopt_version": version,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        _write_text(self.root / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        return manifest

    def clean_temporaries(self) -> int:
        """Remove temporary files left by writers that died: this host's whose process
        is gone, other hosts' once stale. Returns how many were removed."""
        removed = 0
        host = socket.gethostname()
        for d in (self.root, self.runs_dir, self.curves_dir):
            if not d.is_dir():
                continue
            for p in d.iterdir():
                m = _TMP_RE.match(p.name)
                if not m:
                    continue
                if m.group(2) == host:
                    stale = not _pid_alive(int(m.group(3)))
                else:
                    try:
                        stale = time.time() - p.stat().st_mtime > _STALE_SECONDS
                    except OSError:
                        continue
                if stale:
                    try:
                        p.unlink()
                        removed += 1
                    except OSError:
                        pass
        return removed

    def done(self) -> set[int]:
        """Ids of the chunks whose runs file exists (those are whole)."""
        if not self.runs_dir.is_dir():
            return set()
        out = set()
        for p in self.runs_dir.iterdir():
            m = _CHUNK_RE.match(p.name)
            if m:
                out.add(int(m.group(1)))
        return out

    # -- the worker's side -------------------------------------------------------
    def write_chunk(self, chunk_id: int, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
        """Store one chunk: curves first, then runs (which marks the chunk done)."""
        _write_parquet(self.curves_dir / chunk_name(chunk_id), curves)
        _write_parquet(self.runs_dir / chunk_name(chunk_id), runs)

    def read_chunk(self, chunk_id: int, columns=None) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.runs_dir / chunk_name(chunk_id), columns=columns)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_results(out, curves: bool = False):
    """The runs of the study stored in ``out`` as a DataFrame, one row per run, sorted
    by ``run_id``; with ``curves=True`` a pair ``(runs, curves)``, the curves in long
    format (``run_id, step, loss``) sorted by run and step.

    Only whole chunks are read, so a study still running (or interrupted) gives the
    runs finished so far; ``runs.attrs["n_runs"]`` is the study's total.
    """
    import pandas as pd

    store = Store(out)
    manifest = store.manifest()
    if manifest is None:
        raise FileNotFoundError(f"{store.root} is not a gpuopt study directory (no {MANIFEST})")
    ids = sorted(store.done())
    frames = [pd.read_parquet(store.runs_dir / chunk_name(i)) for i in ids]
    runs = _concat(frames, "run_id")
    runs.attrs["n_runs"] = manifest.get("n_runs")
    runs.attrs["study"] = manifest.get("study")
    if not curves:
        return runs
    cframes = [pd.read_parquet(store.curves_dir / chunk_name(i)) for i in ids]
    return runs, _concat(cframes, ["run_id", "step"])


def _concat(frames, by) -> pd.DataFrame:
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    # Chunks of different optimizer blocks have different hyperparameter columns;
    # the union keeps every column, missing values where a block has none.
    df = pd.concat(frames, ignore_index=True, sort=False)
    return df.sort_values(by, kind="stable", ignore_index=True)
