"""Figures of a grid study: where each optimizer trains, where it diverges.

``plot_study(out_dir)`` reads a study's results (``gpuopt.load_results``) and writes
PNG files into ``out_dir/figures``:

- ``heatmap_<optimizer>.png``: median final loss over seeds on the learning rate x
  init scale grid, one panel per init scheme and per value of any other swept
  hyperparameter; cells where most seeds diverged are marked with a cross.
- ``curves_<optimizer>.png``: the loss curves of the best runs (lowest final loss).
- ``diverged.png``: fraction of diverged runs against the learning rate, one panel
  per optimizer and setting of its other swept hyperparameters, one line per init
  scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Result columns that describe the run or its outcome rather than a hyperparameter.
_NOT_HYPER = {
    "run_id", "chunk", "block", "optimizer", "seed", "init_scheme", "init_scale", "final_loss",
    "best_loss", "initial_loss", "diverged", "diverged_step", "diverged_reason", "steps",
}


def _swept(df, exclude=()):
    """Hyperparameter columns that take more than one value in ``df``."""
    cols = [c for c in df.columns if c not in _NOT_HYPER and c not in exclude]
    return [c for c in cols if df[c].nunique(dropna=True) > 1]


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def plot_study(out_dir, *, top=10) -> list[Path]:
    """Write the study's figures; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .store import load_results

    out_dir = Path(out_dir)
    runs, curves = load_results(out_dir, curves=True)
    if runs.empty:
        raise ValueError(f"{out_dir} holds no finished runs to plot")
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    written = []
    for opt_name, df in runs.groupby("optimizer", sort=True):
        written.append(_heatmaps(plt, df, opt_name, fig_dir / f"heatmap_{opt_name}.png"))
        written.append(_curves(plt, df, curves, opt_name, top, fig_dir / f"curves_{opt_name}.png"))
    written.append(_diverged(plt, runs, fig_dir / "diverged.png"))
    return written


def heatmap_grid(df):
    """The heatmap of one panel: ``(lrs, scales, median, fraction)`` where
    ``median[i, j]`` is log10 of the median final loss over the runs at
    ``scales[i]`` and ``lrs[j]`` that did not diverge (NaN when all did) and
    ``fraction[i, j]`` the fraction of those runs that diverged."""
    lrs = np.sort(df["lr"].unique())
    scales = np.sort(df["init_scale"].unique())
    med = np.full((len(scales), len(lrs)), np.nan)
    frac = np.zeros_like(med)
    for (s, lr), cell in df.groupby(["init_scale", "lr"]):
        i, j = np.searchsorted(scales, s), np.searchsorted(lrs, lr)
        frac[i, j] = cell["diverged"].mean()
        ok = cell.loc[~cell["diverged"], "final_loss"]
        if len(ok):
            med[i, j] = np.log10(max(float(ok.median()), 1e-300))
    return lrs, scales, med, frac


def _heatmaps(plt, df, opt_name, path):
    facets = ["init_scheme", *_swept(df, exclude=("lr",))]
    groups = list(df.groupby(facets, sort=True, dropna=False))
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 4.0 * nrows), squeeze=False,
                             layout="constrained")
    finite = df.loc[~df["diverged"], "final_loss"]
    lo = np.log10(max(finite.min(), 1e-300)) if len(finite) else -1.0
    hi = np.log10(max(finite.max(), 1e-300)) if len(finite) else 1.0
    image = None
    for ax, (key, g) in zip(axes.flat, groups, strict=False):
        lrs, scales, med, frac = heatmap_grid(g)
        image = ax.imshow(med, origin="lower", aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
        ii, jj = np.nonzero(frac > 0.5)
        ax.scatter(jj, ii, marker="x", color="red", s=40)
        ax.set_xticks(range(len(lrs)), [f"{v:.2g}" for v in lrs], rotation=60, fontsize=7)
        ax.set_yticks(range(len(scales)), [f"{v:.2g}" for v in scales], fontsize=7)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("init scale")
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(", ".join(f"{k}={_fmt(v)}" for k, v in zip(facets, key, strict=False)), fontsize=9)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, label="log10 median final loss (converged seeds)")
    fig.suptitle(f"{opt_name}: final loss over learning rate x init scale (x: most seeds diverged)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _curves(plt, df, curves, opt_name, top, path):
    best = df[~df["diverged"]].nsmallest(top, "final_loss")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    shown = curves[curves["run_id"].isin(best["run_id"])]
    for run_id, c in shown.groupby("run_id", sort=False):
        row = best[best["run_id"] == run_id].iloc[0]
        label = f"lr={row['lr']:.2g}, scale={row['init_scale']:.2g}, {row['init_scheme']}, seed {row['seed']}"
        ax.plot(c["step"], np.maximum(c["loss"], 1e-300), lw=1.2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{opt_name}: the {len(best)} best runs")
    if len(best):
        ax.legend(fontsize=6)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _diverged(plt, runs, path):
    # One panel per optimizer and setting of its other swept hyperparameters (a
    # momentum of 0 and of 0.9 diverge at different learning rates).
    panels = []
    for name, df in runs.groupby("optimizer", sort=True):
        facets = _swept(df, exclude=("lr",))
        for key, g in (df.groupby(facets, sort=True) if facets else [((), df)]):
            key = key if isinstance(key, tuple) else (key,)
            title = ", ".join([name, *(f"{k}={_fmt(v)}" for k, v in zip(facets, key, strict=True))])
            panels.append((title, g))
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (title, df) in zip(axes.flat, panels, strict=False):
        for scale, g in df.groupby("init_scale"):
            frac = g.groupby("lr")["diverged"].mean()
            ax.plot(frac.index, frac.values, marker="o", ms=3, label=f"scale {scale:.2g}")
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("fraction diverged")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Divergence against the learning rate (all seeds and init schemes)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
