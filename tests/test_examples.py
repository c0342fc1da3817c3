"""Every example in examples/ runs in its --quick size, every claim it prints says
PASS, and it writes its figure. The examples are what a newcomer runs first; a
claim that stops matching its theory is a failure here."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))
ROW = re.compile(r"^(PASS|FAIL)\s{2}", re.MULTILINE)


def test_every_claim_has_an_example():
    assert [p.name[:2] for p in EXAMPLES] == [f"{i:02d}" for i in range(1, 9)]


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_quick(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    # the package from this checkout, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    verdicts = ROW.findall(proc.stdout)
    assert verdicts, f"no claim rows printed:\n{output}"
    assert set(verdicts) == {"PASS"}, output
    figure = tmp_path / f"{script.stem}.png"
    assert figure.is_file() and figure.stat().st_size > 10_000, output
