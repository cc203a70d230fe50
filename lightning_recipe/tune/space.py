"""Search spaces: Optuna distributions, a short form for them, and the command line's strings.

A space is a mapping from parameter name to one of:

* an Optuna distribution (``FloatDistribution(1e-4, 1e-1, log=True)``, ``IntDistribution``,
  ``CategoricalDistribution``);
* a list of choices (``["adam", "sgd"]``): categorical;
* a string, as on the command line: ``"log:1e-4:1e-1"`` (float, log scale), ``"float:0:0.5"``,
  ``"int:8:64"`` (``"int:8:64:log"`` for a log scale), ``"choice:adam,sgd"``;

or a function ``space(trial) -> dict`` that calls ``trial.suggest_*`` itself (define-by-run).

Example:
    >>> parse_space({"lr": "log:1e-4:1e-1", "channels": "int:8:32", "opt": ["adam", "sgd"]})["lr"]
    FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
    >>> parse_spec("dropout", "choice:0,0.1,0.5")
    CategoricalDistribution(choices=(0, 0.1, 0.5))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = ["Space", "parse_space", "parse_spec", "suggest"]

Space = Mapping[str, Any] | Callable[[optuna.Trial], Mapping[str, Any]]

_FORMS = "'log:LOW:HIGH', 'float:LOW:HIGH', 'int:LOW:HIGH[:log]' or 'choice:A,B,C'"


def _number(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(name: str, spec: Any) -> BaseDistribution:
    """One parameter's distribution from an Optuna distribution, a list of choices or a string."""
    if isinstance(spec, BaseDistribution):
        return spec
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"tune(space={{{name!r}: []}}): pass at least one choice.")
        return CategoricalDistribution(tuple(spec))
    if isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        parts = rest.split(":")
        try:
            if kind in ("log", "float") and len(parts) == 2:
                return FloatDistribution(float(parts[0]), float(parts[1]), log=kind == "log")
            if kind == "int" and len(parts) in (2, 3) and parts[2:] in ([], ["log"]):
                return IntDistribution(int(parts[0]), int(parts[1]), log=parts[2:] == ["log"])
            if kind == "choice" and rest:
                return CategoricalDistribution(tuple(_number(c) for c in rest.split(",")))
        except ValueError as err:
            raise ValueError(f"tune(space={{{name!r}: {spec!r}}}): {err}; pass {_FORMS}.") from None
    raise ValueError(
        f"tune(space={{{name!r}: {spec!r}}}): unknown parameter form; pass an Optuna distribution, a list of "
        f"choices, or one of {_FORMS}."
    )


def parse_space(space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """Every parameter's distribution (see the module docstring for the forms)."""
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            f"tune(space={space!r}): pass a mapping of parameter names to distributions, e.g. "
            "{'lr': 'log:1e-4:1e-1'}, or a function space(trial) -> dict."
        )
    return {str(name): parse_spec(str(name), spec) for name, spec in space.items()}


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """The trial's parameters: ``space(trial)`` when it is a function, else one public ``suggest_*``
    call per distribution."""
    if callable(space) and not isinstance(space, Mapping):
        return dict(space(trial))
    params: dict[str, Any] = {}
    for name, dist in parse_space(space).items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:  # pragma: no cover - Optuna has no other distribution today
            raise TypeError(f"tune(space={{{name!r}: {dist!r}}}): unsupported distribution.")
    return params
