"""The small harness every example shares: command line, claim table, figures.

An example states claims of the lecture, measures them, and records each one with
:meth:`Claims.check`; :meth:`Claims.report` prints the table and gives the exit
status (1 if any claim failed), so CI fails when a measurement stops matching
the theory. Each printed row starts with ``PASS`` or ``FAIL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")  # examples write PNGs; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gpuopt import backend  # noqa: E402

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def parse_args(description: str, argv=None) -> argparse.Namespace:
    """``--quick`` (CI size), ``--device cpu|gpu``, ``--out DIR``; adds ``args.xp``,
    the array module of the device (NumPy, or CuPy for ``gpu``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small size, for CI (a few seconds)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="gpu runs the arrays on CuPy")
    parser.add_argument("--out", default=FIGURES, help="folder for the figure (default: %(default)s)")
    args = parser.parse_args(argv)
    args.xp = backend.get_xp(args.device)
    os.makedirs(args.out, exist_ok=True)
    return args


def to_numpy(a) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array (figures and tables are host-side)."""
    return backend.to_numpy(a)


class Claims:
    """Claims with the theory's value, the measured value and the verdict."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[tuple[str, str, str, bool]] = []
        self.start = time.perf_counter()

    def check(self, claim: str, expected: str, measured: str, ok) -> bool:
        """Record one claim; ``ok`` is the honest comparison of measured and expected."""
        ok = bool(ok)
        self.rows.append((claim, expected, measured, ok))
        return ok

    def report(self) -> int:
        """Print the table; return the exit status (0 when every claim passed)."""
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in
                  enumerate(("claim", "expected (theory)", "measured"))]
        print(f"\n{self.title}")
        header = f"{'':4}  {'claim':{widths[0]}}  {'expected (theory)':{widths[1]}}  measured"
        print(header)
        print("-" * (len(header) + widths[2] - len("measured")))
        for claim, expected, measured, ok in self.rows:
            verdict = "PASS" if ok else "FAIL"
            print(f"{verdict:4}  {claim:{widths[0]}}  {expected:{widths[1]}}  {measured}")
        failed = sum(not r[3] for r in self.rows)
        print(f"\n{len(self.rows) - failed}/{len(self.rows)} claims pass "
              f"({time.perf_counter() - self.start:.1f} s)")
        return 1 if failed or not self.rows else 0


def save(fig, args, name: str) -> str:
    """Write ``fig`` to ``<out>/<name>.png`` and close it; return the path."""
    path = os.path.join(args.out, f"{name}.png")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {path}")
    return path


def finish(claims: Claims) -> None:
    """Print the table and exit with its status."""
    sys.exit(claims.report())
