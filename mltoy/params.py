"""The schema of params.yaml: loaded once at the boundary (CLI or flow), validated, passed in typed."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mltoy import InputError
from mltoy.files import read_yaml


class _Section(BaseModel):
    # strict: "0.1" (a string) is not a float; extra="forbid": a typo is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SplitParams(_Section):
    test_size: float = Field(gt=0, lt=1)
    random_state: int = Field(ge=0)


class PreprocessParams(_Section):
    standardize: bool


class TrainParams(_Section):
    C: float = Field(gt=0)
    max_iter: int = Field(ge=1)


class Params(_Section):
    split: SplitParams
    preprocess: PreprocessParams
    train: TrainParams


class ParamsError(InputError):
    """params.yaml is missing, unreadable or invalid; the message is one line naming file and key."""


def parse_params(data: object, source: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        # A typo shows as an unknown key plus a missing one: name the typo.
        err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ParamsError(f"{source}: {key}: {_allowed(err)}{got}{more}") from None


def load_params(path: Path) -> Params:
    return parse_params(read_yaml(path, ParamsError, "params file"), str(path))


def _allowed(err: dict) -> str:
    """Say what the key allows, in the user's terms rather than pydantic's."""
    kind = err["type"]
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        return f"unknown key (allowed: {', '.join(_known_keys(err['loc'][:-1]))})"
    return err["msg"][0].lower() + err["msg"][1:]


def _known_keys(section: tuple) -> list[str]:
    model: type[BaseModel] = Params
    for part in section:
        model = model.model_fields[part].annotation
    return list(model.model_fields)
