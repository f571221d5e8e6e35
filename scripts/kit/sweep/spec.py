"""The sweep file (sweep.yaml): read, validated and expanded into points, each one a complete,
valid params.yaml, before any trial runs.

    objective: accuracy          # or f1_macro; higher is better
    grid:                        # every combination of these params.yaml keys
      train.C: [0.01, 0.1, 1.0, 10.0]
      preprocess.standardize: [true, false]

or, instead of `grid`, a seeded random search:

    random:
      trials: 8                  # distinct points drawn
      seed: 0                    # same seed, same points
      space:
        train.C: {low: 0.001, high: 100, log: true}   # a number in the range (integers if both are)
        preprocess.standardize: [true, false]         # one of the values

A point is params.yaml with its keys set; every key is checked by the params schema, so an
unknown key, a bad value or an empty grid is a one-line error naming the key. Each point is named
by the sweep (the file's name) and its values, `sweep-C=0.1-standardize=true` (the whole dotted
key where two swept keys end alike): the name of its DVC experiment.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.dotted import assign, flatten
from mltoy import InputError
from mltoy.files import read_yaml
from mltoy.params import Params, ParamsError, load_params, parse_params

# The kit's metrics (mltoy.pipeline.score); higher is better for both. Another repository's
# sweep may name any metric of its metrics file.
OBJECTIVES = ("accuracy", "f1_macro")
RANDOM_KEYS = ("trials", "seed", "space")
# A sampled number keeps this many significant digits: names and params.yaml stay readable.
SAMPLED_DIGITS = 3
# Characters kept in a point's name; any other becomes "_". Git allows more, but these read the
# same in a shell, a URL and `dvc exp show`, and none of them can form a ref git rejects.
NAME_CHARS = re.compile(r"[^A-Za-z0-9._+=-]")
MAX_NAME = 200  # git refuses a ref whose last part is longer than the file system allows (255)


class SweepError(InputError):
    """The sweep file is missing or invalid; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Point:
    """One trial's params: `values` are the swept keys (dotted), `params` the whole params.yaml:
    typed by mltoy's schema for the kit's pipeline, else the nested mapping."""

    name: str
    values: dict[str, Any]
    params: Params | dict

    def as_dict(self) -> dict:
        return self.params if isinstance(self.params, dict) else self.params.model_dump()


@dataclass(frozen=True)
class Sweep:
    name: str
    objective: str
    points: list[Point]


def load_sweep(path: Path, params_path: Path, schema: bool = True) -> Sweep:
    """The sweep in `path`, its points set on the params in `params_path`; raises SweepError, or
    ParamsError for params_path itself. With `schema` (the kit's own pipeline), every point is
    checked by mltoy's params schema and carries typed params; without (another repository's),
    a point's keys must be params.yaml's, and its params are the nested mapping."""
    path = Path(path)
    base = load_params(params_path).model_dump() if schema else read_yaml(params_path, ParamsError, "params file")
    if not isinstance(base, dict):
        raise ParamsError(f"{params_path}: expected a mapping of params")
    spec = _read(path)
    unknown = sorted(set(spec) - {"objective", "grid", "random"})
    if unknown:
        raise SweepError(f"{path}: {unknown[0]}: unknown key (allowed: objective, grid, random)")
    objective = spec.get("objective")
    if objective not in OBJECTIVES if schema else not (isinstance(objective, str) and objective):
        got = "missing" if objective is None else f"unknown metric {objective!r}"
        allowed = ", ".join(OBJECTIVES) if schema else "a metric of the metrics file, dotted"
        raise SweepError(f"{path}: objective: {got} (allowed: {allowed})")
    if ("grid" in spec) == ("random" in spec):
        raise SweepError(f"{path}: give either `grid` or `random`, not {'both' if 'grid' in spec else 'neither'}")
    if "grid" in spec:
        combinations = _grid(path, spec["grid"], base)
    else:
        combinations = _random(path, spec["random"], base)
    name = path.stem
    if NAME_CHARS.search(name) or name.startswith("."):
        raise SweepError(f"{path}: the file's name is the sweep's: use letters, digits, '.', '_', '-'")
    points = [_point(path, name, values, base, schema) for values in combinations]
    names = [point.name for point in points]
    if len(set(names)) < len(names):  # values that differ only in characters a name cannot hold
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise SweepError(f"{path}: two points would both be named {twice}; make their values differ more")
    return Sweep(name, objective, points)


def _read(path: Path) -> dict:
    spec = read_yaml(path, SweepError, "sweep file")
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected a mapping with `objective` and `grid` or `random`")
    return spec


def _check_key(path: Path, where: str, key: object, base: dict) -> None:
    """A swept key must name one value of params.yaml, e.g. train.C."""
    leaves = list(flatten(base))  # every value's dotted key, e.g. 'train.C'
    if key not in leaves:
        raise SweepError(f"{path}: {where}: {key}: not a key of params.yaml (its keys: {', '.join(leaves)})")


def _grid(path: Path, grid: object, base: dict) -> list[dict[str, Any]]:
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{path}: grid: empty; give each key to sweep a list of values")
    for key, values in grid.items():
        _check_key(path, "grid", key, base)
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid: {key}: expected a non-empty list of values (got {values!r})")
        repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if repeated is not None:
            raise SweepError(f"{path}: grid: {key}: {repeated!r} is listed twice")
    return [dict(zip(grid, combination)) for combination in itertools.product(*grid.values())]


def _random(path: Path, spec: object, base: dict) -> list[dict[str, Any]]:
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: random: expected a mapping with {', '.join(RANDOM_KEYS)}")
    for key in RANDOM_KEYS:
        if key not in spec:
            raise SweepError(f"{path}: random: {key}: missing (required)")
    unknown = sorted(set(spec) - set(RANDOM_KEYS))
    if unknown:
        raise SweepError(f"{path}: random: {unknown[0]}: unknown key (allowed: {', '.join(RANDOM_KEYS)})")
    trials, seed, space = spec["trials"], spec["seed"], spec["space"]
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SweepError(f"{path}: random: trials: expected a whole number of 1 or more (got {trials!r})")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SweepError(f"{path}: random: seed: expected a whole number (got {seed!r})")
    if not isinstance(space, dict) or not space:
        raise SweepError(f"{path}: random: space: empty; give each key to sweep a range or a list of values")
    draws = {key: _sampler(path, key, rule, base) for key, rule in space.items()}
    rng = random.Random(seed)
    points: list[dict[str, Any]] = []
    for _ in range(100 * trials):  # a small space runs out of distinct points: say so below
        point = {key: draw(rng) for key, draw in draws.items()}
        if point not in points:
            points.append(point)
            if len(points) == trials:
                return points
    raise SweepError(f"{path}: random: trials: this space has only {len(points)} distinct points; "
                     "ask for fewer or use `grid`")


def _sampler(path: Path, key: str, rule: object, base: dict):
    """A function drawing one value for `key` from a random generator, by its rule: a list to
    choose from, or {low, high, log} for a number."""
    where = "random: space"
    _check_key(path, where, key, base)
    if isinstance(rule, list) and rule:
        return lambda rng: rng.choice(rule)
    if not isinstance(rule, dict) or set(rule) - {"low", "high", "log"} or not {"low", "high"} <= set(rule):
        raise SweepError(f"{path}: {where}: {key}: expected a list of values or {{low, high, log}} (got {rule!r})")
    low, high, log = rule["low"], rule["high"], rule.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
        raise SweepError(f"{path}: {where}: {key}: expected numbers low < high (low > 0 with log: true); "
                         f"got {rule!r}")
    if log:
        uniform = lambda rng: math.exp(rng.uniform(math.log(low), math.log(high)))  # noqa: E731
    else:
        uniform = lambda rng: rng.uniform(low, high)  # noqa: E731
    if isinstance(low, int) and isinstance(high, int):
        return lambda rng: round(uniform(rng))
    return lambda rng: float(f"{uniform(rng):.{SAMPLED_DIGITS}g}")


def _point(path: Path, sweep: str, values: dict[str, Any], base: dict, schema: bool) -> Point:
    params = copy.deepcopy(base)
    for key, value in values.items():
        assign(params, key, value)
    label = {key: key.rpartition(".")[2] for key in values}  # C=0.1 rather than train.C=0.1...
    if len(set(label.values())) < len(label):  # ...unless two keys end alike
        label = {key: key for key in values}
    name = "-".join([sweep, *(f"{label[key]}={_text(value)}" for key, value in values.items())])
    if len(name) > MAX_NAME:
        raise SweepError(f"{path}: the trial name {name[:40]}... is longer than {MAX_NAME} characters; "
                         "sweep fewer keys or rename the file")
    if not schema:
        return Point(name, values, params)
    try:
        return Point(name, values, parse_params(params, str(path)))
    except ParamsError as exc:  # names the sweep file and the key
        raise SweepError(str(exc)) from None


def _text(value: object) -> str:
    """A value as it reads in YAML (true, 0.1), with any character unsafe in a name replaced."""
    text = yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()
    return NAME_CHARS.sub("_", text)
