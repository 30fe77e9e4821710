"""Hydra sweep overrides → Optuna distributions, with the syntax of hydra-optuna-sweeper:

choice(a, b) or a,b → categorical; range(lo, hi[, step]) → int/float stepped, `hi` INCLUDED (as in
the official plugin); interval(lo, hi) → float uniform, int(interval(lo, hi)) → int uniform (Hydra
makes plain interval bounds floats); tag(log, ...) → log scale; a plain value → the same fixed override
for every trial.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer, ValueType
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from .errors import SweeperConfigError

SYNTAX = (
    "choice(a,b,...), a,b,..., range(low,high[,step]), interval(low,high) or tag(log, interval(low,high))"
)


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # key → the override exactly as written, passed unchanged to every trial
    fixed: dict[str, str] = field(default_factory=dict)


def parse_search_space(overrides: Sequence[str]) -> SearchSpace:
    """Later overrides of a key replace earlier ones (command line after `hydra.sweeper.params`)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise SweeperConfigError(f"Invalid Optuna search space: {_one_line(e)}; use {SYNTAX}.") from None
    space = SearchSpace()
    for override in parsed:
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if override.is_sweep_override():
            space.distributions[key] = _distribution(key, override)
        else:
            space.fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _distribution(key: str, override: Override) -> BaseDistribution:
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:  # needs the config loader; not a search space
        raise SweeperConfigError(f"Unsupported sweep for {key!r} ({override.input_line}); use {SYNTAX}.")
    value = override.value()
    try:
        if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if isinstance(value, RangeSweep):
            return _range(value, _log_tag(key, value.tags))
        if isinstance(value, IntervalSweep):
            log = _log_tag(key, value.tags)
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)  # type: ignore[arg-type]
    except SweeperConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise SweeperConfigError(f"Invalid Optuna search space for {key!r}: {_one_line(e)}.") from None
    raise SweeperConfigError(f"Unsupported sweep for {key!r} ({override.input_line}); use {SYNTAX}.")


def _log_tag(key: str, tags: set[str]) -> bool:
    unknown = set(tags) - {"log"}
    if unknown:
        raise SweeperConfigError(
            f"Unknown tag {sorted(unknown)} on {key!r}; the only supported tag is 'log'."
        )
    return "log" in tags


def _range(value: RangeSweep, log: bool) -> BaseDistribution:
    start, stop, step = value.start, value.stop, value.step
    assert start is not None and stop is not None
    if step is None or step <= 0:
        raise ValueError(f"range step must be positive, got {step}")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(stop), log=log, step=int(step))
    if log:
        raise ValueError("log scale is not supported for a float range; use tag(log, interval(low, high))")
    return FloatDistribution(float(start), float(stop), step=float(step))


def grid_values(key: str, distribution: BaseDistribution) -> list[Any]:
    """The finite values of a discrete distribution, for the grid sampler (upper end included)."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        n = math.floor((distribution.high - distribution.low) / distribution.step + 1e-9) + 1
        return [round(distribution.low + i * distribution.step, 12) for i in range(n)]
    raise SweeperConfigError(
        f"sampler=grid needs discrete parameters, but {key!r} is continuous; use choice(...) or range(...)."
    )


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text. Strings stay raw, as in the official plugin, because
    categorical choices of lists/dicts arrive as their override text (e.g. `[64,64]`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def quote(text: str) -> str:
    """A Hydra quoted string, for values such as URLs and paths that may hold `,` `=` or spaces.

    Hydra treats a backslash as an escape only before a quote or the closing quote, so only those
    backslashes are doubled.
    """
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"
