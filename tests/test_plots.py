"""Study figures: the heatmap data against pandas' own pivot, and the files written."""

import numpy as np
import pandas as pd
import pytest

from gpuopt import plots


def _runs(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for lr in (1e-3, 1e-2, 1e-1):
        for scale in (0.5, 2.0):
            for s in range(5):
                diverged = bool(rng.random() < 0.3)
                rows.append(dict(optimizer="adam", lr=lr, init_scale=scale, init_scheme="normal", seed=s,
                                 final_loss=np.inf if diverged else float(rng.lognormal()),
                                 diverged=diverged))
    return pd.DataFrame(rows)


def test_heatmap_grid_is_the_median_over_converged_seeds():
    df = _runs()
    lrs, scales, med, frac = plots.heatmap_grid(df)
    ok = df[~df["diverged"]]
    pivot = ok.pivot_table(index="init_scale", columns="lr", values="final_loss", aggfunc="median")
    pivot = pivot.reindex(index=scales, columns=lrs)
    np.testing.assert_allclose(med, np.log10(pivot.to_numpy()), equal_nan=True)
    want = df.pivot_table(index="init_scale", columns="lr", values="diverged", aggfunc="mean")
    np.testing.assert_allclose(frac, want.reindex(index=scales, columns=lrs).to_numpy())


def test_heatmap_cell_where_every_seed_diverged_is_empty():
    df = _runs()
    df.loc[(df["lr"] == 1e-1) & (df["init_scale"] == 2.0), ["diverged", "final_loss"]] = [True, np.inf]
    _, _, med, frac = plots.heatmap_grid(df)
    assert np.isnan(med[1, 2]) and frac[1, 2] == 1.0


def test_plot_study_refuses_an_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a gpuopt study directory"):
        plots.plot_study(tmp_path)
