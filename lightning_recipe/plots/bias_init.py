"""Figures of the "init well" step: the prediction the final bias implies against the data.

Example:
    >>> import numpy as np
    >>> fig = prior_figure(np.array([0.6, 0.3, 0.1]), softmax(np.log([0.6, 0.3, 0.1])), "multiclass", "head")
    >>> fig.axes[0].get_title()
    "final bias of 'head': prediction at init vs data"
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lightning_recipe.plots.style import PALETTE, new_figure

__all__ = ["bias_figure", "prior_figure", "regression_figure", "softmax"]

_DATA, _BIAS = PALETTE[0], PALETTE[1]


def softmax(b: np.ndarray) -> np.ndarray:
    """``softmax`` of a vector of logits (numerically stable)."""
    e = np.exp(b - b.max())
    return e / e.sum()


def prior_figure(prior: np.ndarray | None, predicted: np.ndarray, task: str, layer: str) -> Figure:
    """Data priors (``None``: not known) against ``softmax(bias)`` / ``sigmoid(bias)``, per class or label."""
    n = predicted.size
    fig = new_figure(max(4.0, min(9.0, 1.2 + 0.35 * n)), 3.0, dpi=100)
    ax = fig.add_subplot()
    xs = np.arange(n)
    pred_label = "softmax(bias)" if task == "multiclass" else "sigmoid(bias)"
    if n <= 60:
        w = 0.38
        if prior is not None:
            ax.bar(xs - w / 2, prior, w, label="data prior", color=_DATA)
        ax.bar(xs + w / 2, predicted, w, label=pred_label, color=_BIAS)
        if n <= 6:
            for i in range(n):
                top = predicted[i] if prior is None else max(prior[i], predicted[i])
                ax.annotate(f"{predicted[i]:.3f}", (xs[i], top), ha="center", va="bottom", fontsize=8)
        ax.set_xlim(-0.8 if n > 2 else -1.5, n - 0.2 if n > 2 else n + 0.5)
        ax.set_xticks(xs if n <= 30 else xs[:: max(1, n // 15)])
        ax.set_xlabel("class" if task == "multiclass" else "label")
        peak = float(max(predicted.max(), prior.max() if prior is not None else 0.0))
        ax.set_ylim(0, peak * 1.3 if peak > 0 else 1.0)
    else:
        order = np.argsort(-(prior if prior is not None else predicted))
        if prior is not None:
            ax.plot(prior[order], label="data prior", color=_DATA)
        ax.plot(predicted[order], "--", label=pred_label, color=_BIAS)
        ax.set_xlabel("classes, most frequent first")
    ax.set_ylabel("probability at init")
    ax.set_title(f"final bias of {layer!r}: prediction at init vs data", fontsize=9)
    ax.legend(fontsize=8, frameon=False, ncol=2, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def regression_figure(mean: np.ndarray, std: np.ndarray | None, bias: np.ndarray) -> Figure:
    """Target mean (± std when known) against the bias, per output."""
    n = bias.size
    fig = new_figure(max(4.0, min(9.0, 1.5 + 0.4 * n)), 3.0, dpi=100)
    ax = fig.add_subplot()
    xs = np.arange(n)
    label = "target mean ± std" if std is not None else "target mean"
    ax.errorbar(xs, mean, yerr=std, fmt="o", color=_DATA, capsize=4, label=label)
    ax.plot(xs, bias, "x", color=_BIAS, markersize=10, mew=2, label="bias")
    ax.set_xticks(xs if n <= 30 else xs[:: max(1, n // 15)])
    ax.set_xlabel("output")
    ax.set_ylabel("value")
    ax.set_title("final bias vs target mean", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def bias_figure(
    task: str,
    bias: np.ndarray,
    layer: str = "",
    prior: np.ndarray | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> Figure:
    """The step's figure for ``task``: :func:`regression_figure` (``mean`` defaults to the bias) or
    :func:`prior_figure` of ``softmax(bias)`` (multiclass) / ``sigmoid(bias)`` (binary, multilabel)."""
    if task == "regression":
        return regression_figure(bias.copy() if mean is None else mean, std, bias)
    predicted = softmax(bias) if task == "multiclass" else 1.0 / (1.0 + np.exp(-bias))
    return prior_figure(prior, predicted, task, layer)
