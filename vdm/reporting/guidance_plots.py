"""The guidance figures: FID and the samples' class accuracy against the guidance weight w, the
precision–recall trade-off that w traces, and one cell's guided samples (w = 0, each kind's
best-FID weight and its largest).

One panel per guidance kind, in :data:`~vdm.reporting.aggregation.GUIDANCE_KIND_ORDER`
(``cfg``, ``classifier``, ``oracle``), one colour per cell. ``oracle`` (classifier guidance
with the exact ``p(c | z_lambda)`` of a known distribution) is drawn dashed, and where the grid
has both, also over the ``classifier`` panel (dashed, no band), so that at equal w the distance
between the two is the trained classifier's error and not the guidance method.

Bands are 95% Student-t confidence intervals of the cell mean over seeds (one seed: the run's
sampling interval where it has one, :func:`vdm.reporting.plot_style.one_seed_errors`); w = 0 is
the plain conditional sampler.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from vdm.reporting.aggregation import guidance_cells, guidance_rows
from vdm.reporting.plot_base import (
    CI_TEXT,
    PathLike,
    metric_label,
    new_figure,
    no_data,
    palette,
    save_figure,
    suptitle,
)
from vdm.reporting.plot_style import one_seed_errors
from vdm.reporting.summary_rows import (
    guidance_kind_column,
    ordered_levels,
    primary_rows,
    row_axis_name,
    spacing_column,
)

GUIDANCE_NAMES = {"cfg": "classifier-free guidance", "classifier": "classifier guidance",
                  "oracle": "oracle guidance (exact p(c | z))"}
"""Panel titles of the guidance kinds (``guidance_kind`` of ``summary.csv``)."""
GUIDANCE_LINESTYLES = {"cfg": "-", "classifier": "-", "oracle": "--"}
"""Line style of each guidance kind's curves (``-`` for a kind not listed)."""
ORACLE_OVERLAY_LABEL = "oracle, exact p(c | z) (dashed)"
"""Legend entry of the oracle curves drawn over the classifier-guidance panel."""


def _oracle_overlay(ax: Axes, cells: pd.DataFrame, x: str, y: str, colours: Mapping[str, str]) -> None:
    """The ``oracle`` curves of ``cells`` (with a ``cell`` column) on ``ax``, dashed in each
    cell's colour, one legend entry for all (:data:`ORACLE_OVERLAY_LABEL`)."""
    label = ORACLE_OVERLAY_LABEL
    for cell, line in cells[cells["guidance_kind"] == "oracle"].groupby("cell", sort=False):
        line = line.sort_values("guidance_weight")
        ax.plot(line[x], line[y], ls="--", lw=1.0, marker="x", ms=3, color=colours[cell],
                alpha=0.8, label=label)
        label = "_nolegend_"


def _guidance_curves(df: pd.DataFrame, metric: str, ylabel: str, path: Path,
                     reference: float | None = None, reference_label: str = "") -> Path:
    """One panel per guidance kind: ``metric`` against the guidance weight w, one line per cell
    that was guided with its 95% t-CI band over seeds (one seed: the run's sampling interval,
    where it has one); w = 0: the plain conditional sampler."""
    cells = guidance_cells(df)
    if not cells.empty:  # cells evaluated at w = 0 only (e.g. unconditional models) have no curve
        guided = cells.groupby(["objective", "schedule", "guidance_kind"], sort=False)[
            "guidance_weight"].transform("max") > 0
        cells = cells[guided]
    kinds = ordered_levels(cells["guidance_kind"]) if not cells.empty else []
    fig, axes = new_figure(1, max(len(kinds), 1), size=(5.2 * max(len(kinds), 1) + 1.0, 4.4),
                           sharey=True)
    if cells.empty or f"{metric}_mean" not in cells:
        no_data(axes[0, 0], "no guidance settings")
        return save_figure(fig, path)
    labels = [f"{o} · {s}" for o, s in zip(cells["objective"], cells["schedule"], strict=True)]
    cells = cells.assign(cell=labels)
    colours = palette(ordered_levels(cells["cell"]))
    rows = guidance_rows(df)
    sampling = None
    for ax, kind in zip(axes[0], kinds, strict=True):
        of_kind, sampling = one_seed_errors(
            cells[cells["guidance_kind"] == kind],
            rows[guidance_kind_column(rows).isin(["none", kind])], metric,
            {k: k for k in ("objective", "schedule", "guidance_weight")}, ci=f"{metric}_ci")
        for cell, line in of_kind.groupby("cell", sort=False):
            line = line.sort_values("guidance_weight")
            mean, ci = line[f"{metric}_mean"], line[f"{metric}_ci"].fillna(0.0)
            ax.plot(line["guidance_weight"], mean, marker="o", ms=4, color=colours[cell],
                    ls=GUIDANCE_LINESTYLES.get(kind, "-"), label=cell)
            ax.fill_between(line["guidance_weight"], mean - ci, mean + ci, color=colours[cell],
                            alpha=0.15, lw=0)
        if reference is not None:
            ax.axhline(reference, color="grey", ls=":", lw=1, label=reference_label)
        if kind == "classifier" and "oracle" in kinds:
            _oracle_overlay(ax, cells, "guidance_weight", f"{metric}_mean", colours)
            ax.legend(fontsize=7)
        ax.set_title(GUIDANCE_NAMES.get(kind, kind), fontsize=10)
        ax.set_xlabel("guidance weight w")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(title=f"{row_axis_name(df)} · schedule", fontsize=7)
    suptitle(fig, f"{ylabel.split(',')[0]} vs guidance weight ({sampling or CI_TEXT} as a band)")
    return save_figure(fig, path)


def plot_guidance(df: pd.DataFrame, out_dir: PathLike) -> list[Path]:
    """``fid_vs_guidance.png``, ``accuracy_vs_guidance.png`` (with the dataset classifier's own
    test accuracy as a dotted line) and ``precision_recall_guidance.png`` (the precision-recall
    trade-off traced by w: one line per cell, weights annotated). ``df``: all rows (display
    frame)."""
    out = Path(out_dir)
    test_accuracy = df.get("classifier_test_accuracy", pd.Series(dtype=float)).dropna()
    written = [
        _guidance_curves(df, "fid", metric_label(df, "fid"), out / "fid_vs_guidance.png"),
        _guidance_curves(df, "class_accuracy", "class accuracy of the samples, higher = more "
                         "on-class", out / "accuracy_vs_guidance.png",
                         float(test_accuracy.iloc[0]) if len(test_accuracy) else None,
                         "classifier's own test accuracy")]
    cells = guidance_cells(df)
    kinds = ordered_levels(cells["guidance_kind"]) if not cells.empty else []
    fig, axes = new_figure(1, max(len(kinds), 1), size=(5.2 * max(len(kinds), 1) + 1.0, 4.6),
                           sharey=True)
    if cells.empty or "precision_mean" not in cells:
        no_data(axes[0, 0], "no precision/recall with guidance")
    else:
        cells = cells.assign(cell=[f"{o} · {s}" for o, s in zip(cells["objective"],
                                                                cells["schedule"], strict=True)])
        colours = palette(ordered_levels(cells["cell"]))
        for ax, kind in zip(axes[0], kinds, strict=True):
            for cell, line in cells[cells["guidance_kind"] == kind].groupby("cell", sort=False):
                line = line.sort_values("guidance_weight")
                ax.plot(line["recall_mean"], line["precision_mean"], marker="o", ms=4,
                        color=colours[cell], ls=GUIDANCE_LINESTYLES.get(kind, "-"), label=cell)
                for row in line.itertuples():
                    ax.annotate(f"{row.guidance_weight:g}", (row.recall_mean, row.precision_mean),
                                fontsize=6, xytext=(2, 2), textcoords="offset points")
            if kind == "classifier" and "oracle" in kinds:
                _oracle_overlay(ax, cells, "recall_mean", "precision_mean", colours)
                ax.legend(fontsize=7)
            ax.set_title(GUIDANCE_NAMES.get(kind, kind), fontsize=10)
            ax.set_xlabel("recall (diversity), higher is better")
        axes[0, 0].set_ylabel("precision (fidelity), higher is better")
        axes[0, -1].legend(title=f"{row_axis_name(df)} · schedule", fontsize=7)
        suptitle(fig, "Precision-recall traced by the guidance weight w (numbers: w; mean over "
                    "seeds)")
    written.append(save_figure(fig, out / "precision_recall_guidance.png"))
    return written


def guidance_sample_panels(cells: pd.DataFrame, cell: tuple[str, str]
                           ) -> list[tuple[str, float, str]]:
    """Panels of :func:`plot_guidance_samples` for ``cell`` (objective row, schedule), from
    :func:`~vdm.reporting.aggregation.guidance_cells`: ``(kind, weight, title)`` for w = 0 (once,
    kind ``none``), then per guidance kind its best-FID weight among w > 0 and its largest
    weight (once if they coincide); titles say where the best FID overall is."""
    in_cell = cells[(cells["objective"] == cell[0]) & (cells["schedule"] == cell[1])]
    best_overall = {kind: float(curve.sort_values("fid_mean")["guidance_weight"].iloc[0])
                    for kind, curve in in_cell.groupby("guidance_kind", sort=False)}
    unguided_best = [GUIDANCE_NAMES.get(k, k) for k, w in best_overall.items() if w == 0]
    if unguided_best and len(unguided_best) == len(best_overall):
        unguided_best = ["every kind"]
    panels = [("none", 0.0, "w = 0 (no guidance)" + (
        f"\nbest FID of {' and '.join(unguided_best)}" if unguided_best else ""))]
    for kind in ordered_levels(cells["guidance_kind"]):
        guided = in_cell[(in_cell["guidance_kind"] == kind) & (in_cell["guidance_weight"] > 0)]
        if guided.empty:
            continue
        best = float(guided.sort_values("fid_mean")["guidance_weight"].iloc[0])
        largest = float(guided["guidance_weight"].max())
        name = GUIDANCE_NAMES.get(kind, kind)
        panels.append((kind, best, f"{name}\nw = {best:g}, best FID of w > 0"
                       + (" (and overall)" if best_overall[kind] == best else "")))
        if largest != best:
            panels.append((kind, largest, f"{name}\nw = {largest:g}, the largest"))
    return panels


def plot_guidance_samples(df: pd.DataFrame, samples: Mapping[tuple[str, str, str], PathLike],
                          out_dir: PathLike, per_class: int = 8) -> Path:
    """``guidance_samples.png``: the samples of one cell, one row per class: at w = 0 (no
    guidance; one panel, shared by every kind), then for each guidance kind at its best-FID
    weight among w > 0 and at its largest weight (the panel titles say which weight has the
    best FID overall, w = 0 included). The cell is the one with the lowest mean FID at w = 0;
    the images are those of its lowest seed, every panel from the same initial noise.
    ``samples`` maps (objective row, schedule, setting name) to that seed's ``samples.npz``
    (with ``labels``)."""
    cells = guidance_cells(df)
    path = Path(out_dir) / "guidance_samples.png"
    if cells.empty:
        fig, axes = new_figure()
        no_data(axes[0, 0], "no guidance settings")
        return save_figure(fig, path)
    start = cells[cells["guidance_weight"] == 0].sort_values("fid_mean").iloc[0]
    cell = (start["objective"], start["schedule"])
    panels = guidance_sample_panels(cells, cell)
    primary = primary_rows(df)
    method, steps = primary["sampler"].iloc[0], int(primary["sample_steps"].iloc[0])
    spacing = spacing_column(primary).iloc[0]  # the setting name's tag: none for time
    sampler = f"{method}-{steps}" + ("" if spacing == "time" else f"-{spacing}")
    fig, axes = new_figure(1, len(panels), size=(2.6 * len(panels) + 0.8, 3.4))
    for ax, (kind, weight, title) in zip(axes[0], panels, strict=True):
        setting = sampler + ("" if weight == 0 else f"-{kind}-{weight:g}")
        source = samples.get((*cell, setting))
        ax.set_xticks([])
        ax.set_yticks([])
        if source is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            continue
        with np.load(source) as npz:
            images, labels = npz["images"], npz["labels"]
        rows = []
        for c in sorted(set(labels.tolist())):
            chosen = images[labels == c][:per_class]
            rows.append(np.concatenate(list(chosen), axis=-1))  # (C, H, per_class * W)
        grid = np.concatenate(rows, axis=-2)  # (C, classes * H, per_class * W)
        ax.imshow(grid[0] if grid.shape[0] == 1 else grid.transpose(1, 2, 0),
                  cmap="gray" if grid.shape[0] == 1 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
    axes[0, 0].set_ylabel("one row per class (0 at the top)", fontsize=8)
    suptitle(fig, f"Guided samples of {cell[0]} · {cell[1]} (lowest seed)")
    return save_figure(fig, path)
