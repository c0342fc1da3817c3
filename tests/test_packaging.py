"""The built wheel ships every kernel file and works installed, away from the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from pathlib import Path
import numpy as np
import gpuopt as go

kernels = {}
for name in go.kernels.kernel_names():
    src = go.kernels.source(name)
    # Every variant a flag combination can select must resolve to plain text.
    for flags in [frozenset(), src.flags]:
        k = src.specialize(flags)
        assert k.body.strip() and k.outputs, name
    kernels[name] = sorted(src.flags)
p = np.array([1.0, -2.0, 3.0], np.float32)
opt = go.Adam(lr=0.1)
opt.step(p, np.array([0.5, -0.5, 0.0], np.float32), opt.init(p))
print(json.dumps({"file": go.__file__, "kernel_dir": str(go.kernels.kernel_dir()),
                  "kernels": kernels, "p": p.tolist()}))
"""


@pytest.mark.slow
def test_wheel_ships_kernels_and_runs_outside_the_repo(tmp_path):
    wheel_dir, target, elsewhere = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = list(wheel_dir.glob("gpuopt-*.whl"))
    assert len(wheels) == 1, wheels

    sources = sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))
    assert sources, "no kernel sources in the repository"
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    missing = [s for s in sources if f"gpuopt/_kernels/{s}" not in names]
    assert not missing, f"kernel files not in the wheel: {missing}"
    for extra in ("cuda12", "cuda13", "test"):
        assert f"Provides-Extra: {extra}" in metadata

    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheels[0])],
        capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr

    # A fresh interpreter that can only find gpuopt in the install target: cwd is
    # outside the repository and PYTHONPATH names the target alone.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), GPUOPT_BACKEND="numpy")
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env,
                         cwd=elsewhere, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(target.resolve())
    assert Path(got["kernel_dir"]).resolve() == (target / "gpuopt" / "_kernels").resolve()
    assert sorted(f"{k}.cu" for k in got["kernels"]) == sources
    # Adam's first step moves each coordinate by lr against the gradient's sign.
    assert got["p"] == pytest.approx([0.9, -1.9, 3.0], rel=1e-6)
