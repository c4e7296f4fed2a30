"""The report's figures, each drawn with matplotlib (Agg, no display) and returned as PNG bytes.

One function per figure; each takes plain arrays and returns the encoded image, so the HTML
page can embed it and tests can call it without a run directory.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from popdecode.evaluate.prediction_file import SessionPredictions  # noqa: E402

DPI = 90
TRUE_COLOUR, PRED_COLOUR = "#222222", "#d9480f"


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def trial_segments(timestamps: np.ndarray) -> list[slice]:
    """Runs of consecutive samples: a gap of more than 3 sample periods starts a new trial."""
    t = np.asarray(timestamps, dtype=np.float64)
    if len(t) < 2:
        return [slice(0, len(t))]
    dt = np.diff(t)
    step = float(np.median(dt))
    cuts = np.nonzero(dt > 3 * step)[0] + 1
    edges = [0, *cuts.tolist(), len(t)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def decoded_vs_true(item: SessionPredictions, r2: float, *, seconds: float = 20.0) -> bytes:
    """Predicted and recorded behaviour over the first ``seconds`` of one session's split.

    Stretches of consecutive samples (trials, or runs of adjacent trials) are laid side by
    side with a thin gap; one row per output dimension; the shaded stretches are the eval
    mask, the samples R^2 is computed on.
    """
    dims = item.prediction.shape[1]
    fig, axes = plt.subplots(dims, 1, figsize=(10, 1.6 * dims + 0.6), sharex=True, squeeze=False)
    offset = shown = 0.0
    for k, seg in enumerate(trial_segments(item.timestamps)):
        t = item.timestamps[seg]
        keep = t - t[0] <= seconds - shown  # the last stretch may be cut short
        t = t[keep]
        if len(t) == 0:
            break
        x = t - t[0] + offset
        mask = item.eval_mask[seg][keep]
        for d in range(dims):
            ax = axes[d, 0]
            ax.fill_between(x, 0, 1, where=mask, transform=ax.get_xaxis_transform(),
                            color="#e7f0fa", linewidth=0, step="mid")
            ax.plot(x, item.target[seg, d][keep], color=TRUE_COLOUR, lw=1.2, label="recorded" if k == 0 else None)
            ax.plot(x, item.prediction[seg, d][keep], color=PRED_COLOUR, lw=1.2, label="decoded" if k == 0 else None)
        shown += t[-1] - t[0]
        offset = x[-1] + 0.3
        if shown >= seconds:
            break
    for d in range(dims):
        column = item.columns[d] if d < len(item.columns) else str(d)
        axes[d, 0].set_ylabel(f"{column} ({item.unit})", fontsize=9)
    axes[0, 0].set_title(f"{item.session}, {item.readout}: the first {shown:.0f} s of the split, "
                         f"R$^2$ = {r2:.3f}", fontsize=10)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time within the stretches shown (s); shaded: evaluated samples")
    return to_png(fig)


def training_curves(logs: dict[str, list[dict]]) -> bytes:
    """Training loss and validation R^2 against epochs, one line per run."""
    fig, (ax_loss, ax_r2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, rows in logs.items():
        epoch = np.array([r.get("epoch", math.nan) for r in rows])
        loss = np.array([r.get("loss", math.nan) for r in rows])
        valid = np.array([r.get("valid_r2", math.nan) for r in rows])
        line, = ax_loss.plot(epoch, loss, marker=".", label=name)
        keep = np.isfinite(valid)
        ax_r2.plot(epoch[keep], valid[keep], marker=".", color=line.get_color(), lw=2, label=f"{name}: mean")
        # Per-session validation curves, thin, in the run's colour.
        for key in rows[0] if rows else []:
            if key.startswith("valid_r2/"):
                v = np.array([r.get(key, math.nan) for r in rows])
                ok = np.isfinite(v)
                ax_r2.plot(epoch[ok], v[ok], color=line.get_color(), lw=0.6, alpha=0.35)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (weighted MSE, normalised units)")
    losses = np.array([r.get("loss", math.nan) for rows in logs.values() for r in rows])
    losses = losses[np.isfinite(losses) & (losses > 0)]
    if len(losses) and losses.max() > 20 * losses.min():  # log scale only where it helps
        ax_loss.set_yscale("log")
    ax_r2.set_xlabel("epoch")
    ax_r2.set_ylabel("validation R$^2$ (thin: per session)")
    for ax in (ax_loss, ax_r2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    return to_png(fig)


def unit_embeddings(points: np.ndarray, explained: np.ndarray, *, groups: list[str], colours: np.ndarray | None,
                    colour_label: str, links: list[tuple[int, int]] | None = None) -> bytes:
    """Unit embeddings in 2-D, one panel per group (animal), coloured by ``colours``.

    With hidden neurons known, ``colours`` is each unit's pool neuron (a cyclic colour map),
    and ``links`` joins units that are the same neuron in different sessions: short links
    mean the model placed the two recordings of a neuron together. Without them, units are
    coloured by session.
    """
    names = list(dict.fromkeys(groups))
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    group = np.asarray(groups)
    for k, name in enumerate(names):
        ax = axes[k // cols, k % cols]
        sel = group == name
        if links:
            for i, j in links:
                if sel[i] and sel[j]:
                    ax.plot(points[[i, j], 0], points[[i, j], 1], color="#999999", lw=0.4, alpha=0.5, zorder=1)
        if colours is None:
            ax.scatter(points[sel, 0], points[sel, 1], s=8, zorder=2)
        else:
            c = colours[sel]
            ax.scatter(points[sel, 0], points[sel, 1], c=c, cmap="hsv", s=10, zorder=2,
                       vmin=float(np.min(colours)), vmax=float(np.max(colours)) + 1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)", fontsize=8)
        ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.suptitle(f"unit embeddings (first two principal components), colour: {colour_label}", fontsize=10)
    return to_png(fig)


def unit_embeddings_by_session(points: np.ndarray, explained: np.ndarray, sessions: list[str]) -> bytes:
    """Unit embeddings in 2-D, one colour per session, with a legend (real data)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    names = list(dict.fromkeys(sessions))
    session = np.asarray(sessions)
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for k, name in enumerate(names):
        sel = session == name
        ax.scatter(points[sel, 0], points[sel, 1], s=10, color=cmap(k % cmap.N), label=name)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)")
    if len(names) <= 20:
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("unit embeddings (first two principal components), colour: session", fontsize=10)
    return to_png(fig)


def session_embeddings(points: np.ndarray, explained: np.ndarray, names: list[str],
                       groups: list[str] | None = None) -> bytes:
    """Session embeddings in 2-D, each point labelled with its session id."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    groups = groups or ["session"] * len(names)
    kinds = list(dict.fromkeys(groups))
    cmap = plt.get_cmap("tab10")
    for k, kind in enumerate(kinds):
        sel = np.asarray(groups) == kind
        ax.scatter(points[sel, 0], points[sel, 1], s=30, color=cmap(k % 10), label=kind)
    for (x, y), name in zip(points, names):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)")
    if len(kinds) > 1:
        ax.legend(fontsize=8, frameon=False)
    ax.set_title("session embeddings (first two principal components)", fontsize=10)
    return to_png(fig)
