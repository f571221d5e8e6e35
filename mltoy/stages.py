"""The stage table: each stage of the pipeline, the function that runs it and the arguments it
takes. The command line that dvc.yaml runs (`python -m mltoy.cli STAGE`), Option B and the
sweep's trials all read it, so a stage is declared here once. To run your own code, point an
entry at your function and write its `cmd` in dvc.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Mapping

from mltoy.params import Params


@dataclass(frozen=True)
class StageFunction:
    """A stage's function, named "module:function" and imported only when the stage runs (pandas
    and scikit-learn take a second to import; a run that finds every stage up to date needs
    neither). `paths` maps each command-line flag to the function's path argument; `params`
    says whether it also takes the validated params."""

    function: str
    paths: Mapping[str, str] = field(default_factory=dict)
    params: bool = True

    def load(self) -> Callable[..., Any]:
        module, _, name = self.function.partition(":")
        return getattr(import_module(module), name)

    def __call__(self, paths: Mapping[str, Path], params: Params) -> Any:
        """Run the stage on these path arguments (by the function's names)."""
        if self.params:
            return self.load()(**paths, params=params)
        return self.load()(**paths)


STAGES: dict[str, StageFunction] = {
    "prepare": StageFunction(
        "mltoy.pipeline:stage_prepare", {"raw": "raw_csv", "train": "train_csv", "test": "test_csv"}),
    "train": StageFunction(
        "mltoy.pipeline:stage_train", {"train": "train_csv", "model": "model_path"}),
    "evaluate": StageFunction(
        "mltoy.pipeline:stage_evaluate",
        {"test": "test_csv", "model": "model_path", "metrics": "metrics_path", "predictions": "predictions_path"},
        params=False),
}
