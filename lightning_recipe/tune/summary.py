"""The study's summary: the best trial, parameter importances and what they mean, bugs, the ensemble.

Importances come from Optuna (``optuna.importance.get_param_importances``, normalised to sum to 1).
The advice follows the recipe's reason for random search: *"if a parameter a matters but changing b
has no effect then you'd rather sample a more thoroughly"*:

* a parameter with importance ``>= MATTERS`` matters, one below ``DOES_NOT`` does not:
  "`lr` matters (0.81), `dropout` does not (0.04): sample `lr` more densely and fix `dropout`";
* a best value in the outer ``EDGE`` of its range (on the log scale for a log range): widen the range;
* trials whose recipe checks failed are listed as bugs, not as bad hyperparameters.

Example:
    >>> importance_advice({"lr": 0.85, "dropout": 0.05, "channels": 0.1})
    '`lr` matters (0.85), `dropout` does not (0.05): sample `lr` more densely (more trials, a range narrowed around its best value) and fix `dropout`'
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

__all__ = [
    "DOES_NOT",
    "EDGE",
    "MATTERS",
    "edge_advice",
    "importance_advice",
    "summarize",
    "summary_markdown",
    "write_summary",
]

#: Importance at or above which a parameter matters ...
MATTERS = 0.3
#: ... and below which it does not.
DOES_NOT = 0.1
#: A best value within this fraction of its range's ends is "at the edge".
EDGE = 0.05


def _names(params: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in params)


def importance_advice(importances: dict[str, float]) -> str:
    """What the importances say to do next (see the module docstring)."""
    if len(importances) < 2:
        only = next(iter(importances), None)
        return f"only `{only}` was searched" if only else "no parameter was searched"
    ranked = sorted(importances.items(), key=lambda kv: -kv[1])
    matters = [p for p, v in ranked if v >= MATTERS]
    idle = [p for p, v in ranked if v < DOES_NOT]
    if not matters:
        top = ", ".join(f"`{p}` {v:.2f}" for p, v in ranked[:3])
        return (
            f"no parameter stands out ({top}): the ranges may be too narrow to matter, or the noise between "
            "runs larger than their effect"
        )
    head = ", ".join(f"`{p}`" for p in matters)
    verb = "matters" if len(matters) == 1 else "matter"
    shown = f"{head} {verb} ({', '.join(f'{importances[p]:.2f}' for p in matters)})"
    if not idle:
        return f"{shown}: sample {head} more densely (more trials, a range narrowed around its best value)"
    idle_verb = "does not" if len(idle) == 1 else "do not"
    return (
        f"{shown}, {_names(idle)} {idle_verb} ({', '.join(f'{importances[p]:.2f}' for p in idle)}): sample {head} "
        f"more densely (more trials, a range narrowed around its best value) and fix {_names(idle)}"
    )


def edge_advice(best: optuna.trial.FrozenTrial) -> list[str]:
    """One line per best value at the edge of its range: widen the range."""
    lines = []
    for name, dist in best.distributions.items():
        if isinstance(dist, CategoricalDistribution) or not isinstance(
            dist, (FloatDistribution, IntDistribution)
        ):
            continue
        value = best.params[name]
        lo, hi, v = float(dist.low), float(dist.high), float(value)
        if hi <= lo:
            continue
        if dist.log and lo > 0:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, 1e-300))
        where = (v - lo) / (hi - lo)
        if where <= EDGE or where >= 1 - EDGE:
            side = "lower" if where <= EDGE else "upper"
            lines.append(
                f"the best `{name}`={value:.4g} is at the {side} edge of its range [{dist.low:.4g}, {dist.high:.4g}]: "
                "widen the range"
            )
    return lines


def summarize(study: optuna.Study, monitor: str, mode: str = "min", ensemble: Any = None) -> dict[str, Any]:
    """The study as a JSON-ready dict: counts, best trial, importances, bugs, ensemble and advice."""
    trials = study.get_trials(deepcopy=False)
    bugs = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("recipe_bug")]
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "bug": len(bugs),
        "failed": sum(t.state == TrialState.FAIL for t in trials) - len(bugs),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
    }
    summary: dict[str, Any] = {
        "study": study.study_name,
        "monitor": monitor,
        "mode": mode,
        "sampler": type(study.sampler).__name__,
        "trials": len(trials),
        "counts": counts,
        "best": None,
        "importances": None,
        "bugs": [
            {"trial": t.number, "params": t.params, "failures": t.user_attrs.get("recipe_failures", [])}
            for t in bugs
        ],
        "advice": [],
    }
    advice: list[str] = summary["advice"]
    if counts["complete"]:
        best = study.best_trial
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
            "recipe_counts": best.user_attrs.get("recipe_counts", {}),
        }
        advice.append(
            f"best trial {best.number}: {monitor}={best.value:.4g} with "
            + ", ".join(f"{k}={v!r}" for k, v in best.params.items())
        )
        if counts["complete"] >= 2:
            try:
                summary["importances"] = {
                    k: float(v) for k, v in optuna.importance.get_param_importances(study).items()
                }
                advice.append(importance_advice(summary["importances"]))
            except (RuntimeError, ValueError) as err:  # too few distinct trials, one value for all
                summary["importances_error"] = str(err)
        advice.extend(edge_advice(best))
    else:
        advice.append(
            f"no trial completed ({counts['pruned']} pruned, {counts['bug']} bugs, {counts['failed']} failed)"
        )
    if bugs:
        first = bugs[0].user_attrs.get("recipe_failures", ["?"])[0]
        advice.append(
            f"{len(bugs)} trial(s) failed a recipe check, a bug rather than a bad hyperparameter (trial "
            f"{bugs[0].number}: {first[:160]}); fix it before tuning further"
        )
    if counts["pruned"]:
        advice.append(f"{counts['pruned']} trial(s) pruned by {type(study.pruner).__name__} on {monitor}")
    if ensemble is not None:
        summary["ensemble"] = ensemble.to_dict()
        advice.append(ensemble.message)
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown for TensorBoard's Text tab."""
    c = summary["counts"]
    lines = [
        f"**Study `{summary['study']}`** ({summary['sampler']}): {summary['trials']} trials: {c['complete']} complete, "
        f"{c['pruned']} pruned, {c['bug']} bugs, {c['failed']} failed",
        "",
        *[f"- {line}" for line in summary["advice"]],
    ]
    if summary.get("importances"):
        lines += ["", "| parameter | importance |", "| --- | --- |"]
        lines += [f"| {k} | {v:.3f} |" for k, v in summary["importances"].items()]
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], directory: str, ensemble: Any = None) -> str:
    """Write ``study_summary.json`` in ``directory`` and the Markdown (and the ensemble figure) to the
    TensorBoard run ``directory/summary``; returns the JSON's path."""
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "study_summary.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, default=str)
    writer = SummaryWriter(os.path.join(directory, "summary"))
    try:
        writer.add_text("recipe/tune/summary", summary_markdown(summary), global_step=summary["trials"])
        if ensemble is not None:
            from lightning_recipe.core.plots import figure_to_array

            writer.add_text("recipe/ensemble/summary", ensemble.markdown(), global_step=summary["trials"])
            image = figure_to_array(ensemble.figure())
            writer.add_image("recipe/ensemble/gain", image, global_step=summary["trials"], dataformats="HWC")
    finally:
        writer.close()
    return path
